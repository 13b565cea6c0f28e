//! Attaching containers to more networks than the one they were created on.
use super::{DockerError, Engine, models::EndpointSettings};

impl Engine {
    /// Connects a created (not yet started) container to `network` with `endpoint`'s aliases.
    pub async fn connect_network(
        &self,
        network: &str,
        container: &str,
        endpoint: EndpointSettings,
    ) -> Result<(), DockerError> {
        let request = bollard::models::NetworkConnectRequest {
            container: container.to_owned(),
            endpoint_config: Some(endpoint),
        };
        self.docker
            .connect_network(network, request)
            .await
            .map_err(self.err(format!("connecting {container} to network {network}")))
    }
}
