//! The engine's event stream.
use std::collections::HashMap;

use bollard::query_parameters::EventsOptionsBuilder;
use futures::{Stream, StreamExt};

use super::{DockerError, Engine, models::EventMessage};

/// Which events to follow.
#[derive(Debug, Clone, Default)]
pub struct EventsRequest {
    /// docker's `since`: `seconds.nanoseconds`, empty for "from now".
    pub since: String,
    /// Filter name (`type`, `event`, `label`, …) → accepted values.
    pub filters: HashMap<String, Vec<String>>,
}

impl Engine {
    /// Answers when the engine is there.
    pub async fn ping(&self) -> Result<(), DockerError> {
        self.docker
            .ping()
            .await
            .map(drop)
            .map_err(self.err("pinging the engine"))
    }

    pub fn events(
        &self,
        req: &EventsRequest,
    ) -> impl Stream<Item = Result<EventMessage, DockerError>> + Send + 'static + use<> {
        let filters: HashMap<&str, Vec<String>> = req
            .filters
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let mut options = EventsOptionsBuilder::default().filters(&filters);
        if !req.since.is_empty() {
            options = options.since(&req.since);
        }
        let endpoint = self.endpoint.clone();
        self.docker.events(Some(options.build())).map(move |item| {
            item.map_err(|e| DockerError::classify("following events", &endpoint, e))
        })
    }
}
