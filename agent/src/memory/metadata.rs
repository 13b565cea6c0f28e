//! Which machine the agent runs on, from the GCE metadata server. Off GCE (or when the server
//! does not answer in time) the machine is "unknown": never an error, because memory stats are
//! just as useful on any other host.
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;

pub const UNKNOWN: &str = "unknown";
/// Answers are short strings; a larger body is not the metadata server.
const MAX_BODY: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum MetadataUrlError {
    #[error(
        "{0:?} is not an http:// URL with a host (the GCE metadata server is \
         http://metadata.google.internal/computeMetadata/v1)"
    )]
    Invalid(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub on_gce: bool,
    pub name: String,
    /// Short zone name, e.g. `us-central1-a`.
    pub zone: String,
    /// Short machine type, e.g. `e2-micro`.
    pub machine_type: String,
    pub project: String,
}

impl Machine {
    pub fn unknown() -> Self {
        Self {
            on_gce: false,
            name: UNKNOWN.into(),
            zone: UNKNOWN.into(),
            machine_type: UNKNOWN.into(),
            project: UNKNOWN.into(),
        }
    }

    /// A field as an option: `None` when unknown.
    pub fn known(value: &str) -> Option<&str> {
        (!value.is_empty() && value != UNKNOWN).then_some(value)
    }
}

/// A client of the metadata server at a configurable base URL.
#[derive(Debug, Clone)]
pub struct MetadataClient {
    host: String,
    port: u16,
    /// Path prefix without trailing slash, e.g. `/computeMetadata/v1`.
    prefix: String,
    timeout: Duration,
}

impl MetadataClient {
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, MetadataUrlError> {
        let invalid = || MetadataUrlError::Invalid(base_url.to_owned());
        let uri: Uri = base_url.parse().map_err(|_| invalid())?;
        if uri.scheme_str() != Some("http") {
            return Err(invalid());
        }
        let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(invalid)?;
        // IPv6 literals come bracketed from the URI; connect() wants them bare.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Ok(Self {
            host,
            port: uri.port_u16().unwrap_or(80),
            prefix: uri.path().trim_end_matches('/').to_owned(),
            timeout,
        })
    }

    /// Looks the machine up; "unknown" when the server is absent, slow or not GCE's.
    pub async fn lookup(&self) -> Machine {
        match tokio::time::timeout(self.timeout, self.fetch()).await {
            Ok(Ok(machine)) => machine,
            Ok(Err(e)) => {
                tracing::debug!(host = %self.host, error = %e, "no GCE metadata server");
                Machine::unknown()
            }
            Err(_) => {
                tracing::debug!(host = %self.host, timeout_ms = self.timeout.as_millis() as u64,
                    "the GCE metadata server did not answer in time");
                Machine::unknown()
            }
        }
    }

    async fn fetch(&self) -> Result<Machine, FetchError> {
        let stream = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await?;
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await?;
        // The connection task ends with the sender, or with the timeout dropping this future.
        let conn = tokio::spawn(async move {
            let _ = connection.await;
        });
        let result = async {
            // The machine type decides whether we are on GCE; the rest fill in the commands.
            let machine_type = self.get(&mut sender, "/instance/machine-type").await?;
            let name = self.get(&mut sender, "/instance/name").await.ok();
            let zone = self.get(&mut sender, "/instance/zone").await.ok();
            let project = self.get(&mut sender, "/project/project-id").await.ok();
            Ok(Machine {
                on_gce: true,
                machine_type: last_segment(&machine_type),
                name: name.unwrap_or_else(|| UNKNOWN.into()),
                zone: zone.map_or_else(|| UNKNOWN.into(), |z| last_segment(&z)),
                project: project.unwrap_or_else(|| UNKNOWN.into()),
            })
        }
        .await;
        drop(sender);
        conn.abort();
        result
    }

    async fn get(
        &self,
        sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
        path: &str,
    ) -> Result<String, FetchError> {
        let authority = if self.port == 80 {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let request = Request::get(format!("{}{path}", self.prefix))
            .header(header::HOST, authority)
            .header("Metadata-Flavor", "Google")
            .body(Empty::new())
            .map_err(|e| FetchError::Protocol(e.to_string()))?;
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        if response.status() != StatusCode::OK {
            return Err(FetchError::Protocol(format!(
                "{path}: {}",
                response.status()
            )));
        }
        // GCE's server always sets it; a proxy or captive portal answering instead does not.
        if response
            .headers()
            .get("Metadata-Flavor")
            .is_none_or(|v| v != "Google")
        {
            return Err(FetchError::Protocol(format!(
                "{path}: answer without Metadata-Flavor: Google"
            )));
        }
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| FetchError::Protocol(e.to_string()))?
            .to_bytes();
        let text = String::from_utf8_lossy(&body).trim().to_owned();
        if text.is_empty() {
            return Err(FetchError::Protocol(format!("{path}: empty answer")));
        }
        Ok(text)
    }
}

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Http(#[from] hyper::Error),
    #[error("{0}")]
    Protocol(String),
}

/// `projects/123/machineTypes/e2-micro` → `e2-micro`; `projects/123/zones/us-central1-a` →
/// `us-central1-a`.
pub fn last_segment(value: &str) -> String {
    value.rsplit('/').next().unwrap_or(value).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_parsing() {
        let c = MetadataClient::new(
            "http://metadata.google.internal/computeMetadata/v1/",
            Duration::from_millis(300),
        )
        .unwrap();
        assert_eq!(c.host, "metadata.google.internal");
        assert_eq!(c.port, 80);
        assert_eq!(c.prefix, "/computeMetadata/v1");
        let c = MetadataClient::new("http://127.0.0.1:8123", Duration::from_millis(1)).unwrap();
        assert_eq!((c.port, c.prefix.as_str()), (8123, ""));
        let c = MetadataClient::new("http://[::1]:81/x", Duration::from_millis(1)).unwrap();
        assert_eq!(c.host, "::1");
        for bad in ["https://x/y", "metadata", "http:///x", ""] {
            assert!(
                MetadataClient::new(bad, Duration::from_millis(1)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn short_names() {
        assert_eq!(
            last_segment("projects/42/machineTypes/e2-micro"),
            "e2-micro"
        );
        assert_eq!(
            last_segment("projects/42/zones/europe-west1-b"),
            "europe-west1-b"
        );
        assert_eq!(last_segment("e2-small"), "e2-small");
    }
}
