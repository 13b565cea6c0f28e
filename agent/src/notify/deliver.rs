//! POSTing a notification: hyper over plain TCP or rustls (the platform's roots, as readiness
//! uses), a timeout per attempt, retries with doubling backoff for what may pass (connection
//! errors, timeouts, 408/429/5xx). The client is built per message and dropped after, so an
//! idle agent holds neither connections nor parsed root certificates.
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tokio::sync::mpsc;

use super::{Notification, NotifyConfig, format, redact};

const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// A delivered message: the receiver's status and how many attempts it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub status: u16,
    pub attempts: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("the receiver answered HTTP {0}")]
    Status(u16),
    #[error("no answer within {}s", ATTEMPT_TIMEOUT.as_secs())]
    Timeout,
    // hyper's client errors do not carry the URL.
    #[error("request failed: {0}")]
    Request(#[from] hyper_util::client::legacy::Error),
    #[error("TLS setup: {0}")]
    Tls(std::io::Error),
    #[error("the URL is not usable: {0}")]
    Url(String),
}

impl NotifyError {
    /// Whether trying again later may succeed.
    fn transient(&self) -> bool {
        match self {
            NotifyError::Status(s) => *s == 408 || *s == 429 || *s >= 500,
            NotifyError::Timeout | NotifyError::Request(_) => true,
            NotifyError::Tls(_) | NotifyError::Url(_) => false,
        }
    }
}

/// Delivers what arrives on `rx` to one target, in order, until the notifier is dropped.
pub(crate) async fn worker(
    config: NotifyConfig,
    project: String,
    mut rx: mpsc::Receiver<Notification>,
) {
    while let Some(n) = rx.recv().await {
        let target = redact(&config.url);
        match with_retry(&config, &project, &n).await {
            Ok(d) => {
                tracing::info!(%target, event = n.event.as_str(), attempts = d.attempts, "notification delivered")
            }
            Err((e, attempts)) => {
                tracing::warn!(%target, event = n.event.as_str(), attempts, error = %e, "notification not delivered")
            }
        }
    }
}

/// Up to [`ATTEMPTS`] tries with doubling backoff; stops early on a permanent failure.
pub async fn with_retry(
    config: &NotifyConfig,
    project: &str,
    n: &Notification,
) -> Result<Delivery, (NotifyError, u32)> {
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match post(config, project, n).await {
            Ok(status) => {
                return Ok(Delivery {
                    status,
                    attempts: attempt,
                });
            }
            Err(e) if !e.transient() || attempt >= ATTEMPTS => return Err((e, attempt)),
            Err(e) => {
                tracing::debug!(target = %redact(&config.url), attempt, error = %e, "notification attempt failed; retrying");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        attempt += 1;
    }
}

/// One attempt (`clawops notify test`).
pub async fn once(
    config: &NotifyConfig,
    project: &str,
    n: &Notification,
) -> Result<Delivery, NotifyError> {
    post(config, project, n).await.map(|status| Delivery {
        status,
        attempts: 1,
    })
}

/// One POST; a 2xx answer is delivered.
async fn post(config: &NotifyConfig, project: &str, n: &Notification) -> Result<u16, NotifyError> {
    let uri: hyper::Uri = config
        .url
        .parse()
        .map_err(|_| NotifyError::Url("not a URL".into()))?;
    let body = serde_json::to_vec(&format::body(config.format, project, n))
        .map_err(|e| NotifyError::Url(e.to_string()))?;
    let request = hyper::Request::post(uri.clone())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(
            hyper::header::USER_AGENT,
            concat!("clawops-agent/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| NotifyError::Url(e.to_string()))?;
    let builder = Client::builder(TokioExecutor::new());
    let send = async {
        match uri.scheme_str() {
            Some("http") => builder
                .build::<_, Full<Bytes>>(HttpConnector::new())
                .request(request)
                .await
                .map_err(NotifyError::from),
            Some("https") => {
                let _ = rustls::crypto::ring::default_provider().install_default();
                let connector = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_native_roots()
                    .map_err(NotifyError::Tls)?
                    .https_only()
                    .enable_http1()
                    .build();
                builder
                    .build::<_, Full<Bytes>>(connector)
                    .request(request)
                    .await
                    .map_err(NotifyError::from)
            }
            _ => Err(NotifyError::Url("must be http:// or https://".into())),
        }
    };
    let response = tokio::time::timeout(ATTEMPT_TIMEOUT, send)
        .await
        .map_err(|_| NotifyError::Timeout)??;
    let status = response.status().as_u16();
    if response.status().is_success() {
        Ok(status)
    } else {
        Err(NotifyError::Status(status))
    }
}
