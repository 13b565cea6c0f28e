//! Waiting until a started container is ready: an HTTP URL answering 2xx, a log line matching a
//! regex, and/or docker's healthcheck reporting healthy — every configured check must pass.
//! Fails fast when the container exits or restarts (crash loop), and on timeout; failures carry
//! the container's last 50 log lines so the caller can show and journal why.
use std::time::{Duration, Instant};

use futures::StreamExt;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use regex::Regex;
use tokio::sync::mpsc;

use crate::{
    config::ReadinessConfig,
    docker::{DockerError, Engine, LogsRequest, models::HealthStatusEnum},
    events::{Event, EventSink, LogStream, Phase, PhaseStatus},
};

/// Log lines kept with a failure.
pub const LAST_LOG_LINES: usize = 50;
/// How often the container and the URL are probed.
const PROBE_EVERY: Duration = Duration::from_millis(250);
/// How often a "still waiting" progress event is sent.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Log lines forwarded to the caller while waiting, at most.
const FORWARD_LINES: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum ReadinessError {
    #[error("{service} did not become ready within {}s (still waiting for {pending})", timeout.as_secs())]
    Timeout {
        service: String,
        timeout: Duration,
        pending: String,
        last_logs: Vec<String>,
    },
    #[error("{service} exited with code {code}{} before it was ready", if *oom_killed { " (killed: out of memory)" } else { "" })]
    Exited {
        service: String,
        code: i64,
        oom_killed: bool,
        last_logs: Vec<String>,
    },
    #[error("{service} keeps exiting and being restarted by its restart policy (restart #{restarts}{}): it crashes at start", code.map(|c| format!(", last exit code {c}")).unwrap_or_default())]
    CrashLoop {
        service: String,
        code: Option<i64>,
        restarts: i64,
        last_logs: Vec<String>,
    },
    #[error("{service}'s healthcheck reports unhealthy: {detail}")]
    Unhealthy {
        service: String,
        detail: String,
        last_logs: Vec<String>,
    },
    #[error(
        "readiness.healthcheck is set but {service} has no healthcheck: add `healthcheck:` to the compose service or configure readiness.url / readiness.log_regex"
    )]
    NoHealthcheck { service: String },
    #[error("readiness: {0}")]
    Config(String),
    #[error("while waiting for {service}: {source}")]
    Docker {
        service: String,
        source: DockerError,
    },
}

impl ReadinessError {
    /// The container's last log lines, when the failure has them.
    pub fn last_logs(&self) -> &[String] {
        match self {
            ReadinessError::Timeout { last_logs, .. }
            | ReadinessError::Exited { last_logs, .. }
            | ReadinessError::CrashLoop { last_logs, .. }
            | ReadinessError::Unhealthy { last_logs, .. } => last_logs,
            _ => &[],
        }
    }
}

/// What "ready" means. Build it from `[readiness]` with [`Readiness::from_config`].
#[derive(Debug, Clone)]
pub struct Readiness {
    pub url: Option<String>,
    pub log_regex: Option<Regex>,
    pub healthcheck: bool,
    pub timeout: Duration,
}

impl Readiness {
    pub fn from_config(c: &ReadinessConfig) -> Result<Self, ReadinessError> {
        let log_regex = c
            .log_regex
            .as_deref()
            .map(Regex::new)
            .transpose()
            .map_err(|e| ReadinessError::Config(format!("log_regex: {e}")))?;
        let url = c.url.clone().filter(|u| !u.is_empty());
        if let Some(url) = &url {
            url.parse::<hyper::Uri>()
                .map_err(|e| ReadinessError::Config(format!("url {url:?}: {e}")))?;
        }
        Ok(Self {
            url,
            log_regex,
            healthcheck: c.healthcheck,
            timeout: Duration::from_secs(c.timeout_secs),
        })
    }

    /// Running is enough: no check configured.
    pub fn is_trivial(&self) -> bool {
        self.url.is_none() && self.log_regex.is_none() && !self.healthcheck
    }

    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(u) = &self.url {
            parts.push(format!("GET {u} → 2xx"));
        }
        if let Some(r) = &self.log_regex {
            parts.push(format!("a log line matching /{r}/"));
        }
        if self.healthcheck {
            parts.push("the healthcheck to report healthy".into());
        }
        if parts.is_empty() {
            parts.push("the container to keep running".into());
        }
        parts.join(" and ")
    }
}

/// How long readiness took.
#[derive(Debug, Clone, Copy)]
pub struct Ready {
    pub waited: Duration,
}

/// Waits until `container` (of `service`) is ready per `check`, reporting `waiting` progress
/// and log lines through `sink`.
pub async fn wait(
    docker: &Engine,
    container: &str,
    service: &str,
    check: &Readiness,
    sink: &EventSink,
) -> Result<Ready, ReadinessError> {
    let mut w = Waiter {
        docker,
        container,
        service,
        check,
        sink,
        start: Instant::now(),
        passed: Passed::new(check),
        initial_restarts: 0,
    };
    let deadline = tokio::time::Instant::now() + check.timeout;
    w.phase(
        PhaseStatus::Started,
        format!("waiting for {}", check.describe()),
    );
    let first = w.first_look().await?;
    let (log_tx, mut log_rx) = mpsc::channel::<(LogStream, String)>(256);
    let follower = check.log_regex.as_ref().map(|_| {
        tokio::spawn(follow_logs(
            docker.clone(),
            container.to_owned(),
            first.since,
            log_tx,
        ))
    });
    let _abort = AbortOnDrop(follower);
    let mut forwarded = 0usize;
    let mut last_progress = Instant::now();
    let mut probe = tokio::time::interval(PROBE_EVERY);
    let http = HttpProbe::new(check.url.as_deref())?;
    loop {
        if w.passed.all() {
            let waited = w.start.elapsed();
            w.phase(
                PhaseStatus::Done,
                format!("ready after {:.1}s", waited.as_secs_f64()),
            );
            return Ok(Ready { waited });
        }
        tokio::select! {
            line = log_rx.recv(), if !w.passed.log => {
                if let Some((stream, line)) = line {
                    w.passed.log = check.log_regex.as_ref().is_some_and(|re| re.is_match(&line));
                    if forwarded < FORWARD_LINES {
                        forwarded += 1;
                        sink.emit(Event::Log { container: container.to_owned(), stream, line });
                    }
                }
            }
            _ = probe.tick() => {
                w.probe_container().await?;
                if !w.passed.url {
                    w.passed.url = http.ok().await;
                }
                if last_progress.elapsed() >= PROGRESS_EVERY {
                    last_progress = Instant::now();
                    w.phase(PhaseStatus::Started, format!("still waiting ({}s) for {}",
                        w.start.elapsed().as_secs(), w.pending()));
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Err(ReadinessError::Timeout {
                    service: service.to_owned(),
                    timeout: check.timeout,
                    pending: w.pending(),
                    last_logs: last_logs(docker, container).await,
                });
            }
        }
    }
}

/// Which of the configured checks have passed (an unconfigured check counts as passed).
#[derive(Debug, Clone, Copy)]
struct Passed {
    url: bool,
    log: bool,
    health: bool,
}

impl Passed {
    fn new(check: &Readiness) -> Self {
        Self {
            url: check.url.is_none(),
            log: check.log_regex.is_none(),
            health: !check.healthcheck,
        }
    }

    fn all(&self) -> bool {
        self.url && self.log && self.health
    }
}

/// What the first inspect tells the wait.
struct FirstLook {
    /// Unix seconds the container started: logs are read from there.
    since: i32,
}

/// One readiness wait: the container, what to check and how far it got.
struct Waiter<'a> {
    docker: &'a Engine,
    container: &'a str,
    service: &'a str,
    check: &'a Readiness,
    sink: &'a EventSink,
    start: Instant,
    passed: Passed,
    initial_restarts: i64,
}

impl Waiter<'_> {
    fn phase(&self, status: PhaseStatus, message: String) {
        self.sink.phase(
            Phase::Readiness,
            status,
            self.service,
            message,
            self.start.elapsed(),
        );
    }

    fn docker_err(&self, source: DockerError) -> ReadinessError {
        ReadinessError::Docker {
            service: self.service.to_owned(),
            source,
        }
    }

    /// Records the restart count, and refuses a healthcheck wait without a healthcheck.
    async fn first_look(&mut self) -> Result<FirstLook, ReadinessError> {
        let first = self
            .docker
            .inspect_container(self.container)
            .await
            .map_err(|e| self.docker_err(e))?;
        self.initial_restarts = first.restart_count.unwrap_or(0);
        let no_healthcheck = first
            .config
            .as_ref()
            .and_then(|c| c.healthcheck.as_ref())
            .and_then(|h| h.test.as_ref())
            .is_none_or(|t| t.first().map(String::as_str) == Some("NONE"));
        if self.check.healthcheck && no_healthcheck {
            return Err(ReadinessError::NoHealthcheck {
                service: self.service.to_owned(),
            });
        }
        let since = first
            .state
            .and_then(|s| s.started_at)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.timestamp().max(0) as i32)
            .unwrap_or(0);
        Ok(FirstLook { since })
    }

    /// Fails on an exit, a restart or an unhealthy report; notes a healthy one.
    async fn probe_container(&mut self) -> Result<(), ReadinessError> {
        let info = self
            .docker
            .inspect_container(self.container)
            .await
            .map_err(|e| self.docker_err(e))?;
        let st = info.state.unwrap_or_default();
        let code = st.exit_code.unwrap_or(0);
        let restarts = info.restart_count.unwrap_or(0);
        if st.restarting == Some(true) || restarts > self.initial_restarts {
            return Err(ReadinessError::CrashLoop {
                service: self.service.to_owned(),
                code: (code != 0).then_some(code),
                restarts,
                last_logs: last_logs(self.docker, self.container).await,
            });
        }
        if st.running != Some(true) {
            return Err(ReadinessError::Exited {
                service: self.service.to_owned(),
                code,
                oom_killed: st.oom_killed == Some(true),
                last_logs: last_logs(self.docker, self.container).await,
            });
        }
        if self.passed.health {
            return Ok(());
        }
        match st.health.as_ref().and_then(|h| h.status) {
            Some(HealthStatusEnum::HEALTHY) => self.passed.health = true,
            Some(HealthStatusEnum::UNHEALTHY) => {
                let detail = st
                    .health
                    .as_ref()
                    .and_then(|h| h.log.as_ref())
                    .and_then(|l| l.last())
                    .and_then(|r| r.output.clone())
                    .unwrap_or_default();
                return Err(ReadinessError::Unhealthy {
                    service: self.service.to_owned(),
                    detail: detail.trim().to_owned(),
                    last_logs: last_logs(self.docker, self.container).await,
                });
            }
            _ => {}
        }
        Ok(())
    }

    fn pending(&self) -> String {
        pending(
            self.check,
            self.passed.url,
            self.passed.log,
            self.passed.health,
        )
    }
}

fn pending(check: &Readiness, url_ok: bool, log_ok: bool, health_ok: bool) -> String {
    let mut p = Vec::new();
    if let (Some(u), false) = (&check.url, url_ok) {
        p.push(format!("GET {u} → 2xx"));
    }
    if let (Some(r), false) = (&check.log_regex, log_ok) {
        p.push(format!("a log line matching /{r}/"));
    }
    if !health_ok {
        p.push("healthcheck healthy".into());
    }
    p.join(", ")
}

/// The container's last [`LAST_LOG_LINES`] log lines (stdout and stderr interleaved).
pub async fn last_logs(docker: &Engine, container: &str) -> Vec<String> {
    let req = LogsRequest {
        tail: Some(LAST_LOG_LINES as u64),
        ..Default::default()
    };
    let mut stream = std::pin::pin!(docker.logs(container, &req));
    let mut text = Vec::new();
    while let Some(Ok(chunk)) = stream.next().await {
        text.extend_from_slice(&chunk.data);
    }
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let skip = lines.len().saturating_sub(LAST_LOG_LINES);
    lines.into_iter().skip(skip).collect()
}

async fn follow_logs(
    docker: Engine,
    container: String,
    since: i32,
    tx: mpsc::Sender<(LogStream, String)>,
) {
    let req = LogsRequest {
        follow: true,
        since,
        ..Default::default()
    };
    let mut stream = std::pin::pin!(docker.logs(&container, &req));
    let mut partial = [String::new(), String::new()];
    while let Some(Ok(chunk)) = stream.next().await {
        let (kind, idx) = match chunk.stream {
            LogStream::Stderr => (LogStream::Stderr, 1),
            LogStream::Stdout => (LogStream::Stdout, 0),
        };
        partial[idx].push_str(&String::from_utf8_lossy(&chunk.data));
        while let Some(pos) = partial[idx].find('\n') {
            let line: String = partial[idx].drain(..=pos).collect();
            let line = line.trim_end_matches(['\n', '\r']).to_owned();
            if tx.send((kind, line)).await.is_err() {
                return;
            }
        }
    }
}

struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.abort();
        }
    }
}

/// GET with a short timeout; any 2xx counts.
enum HttpProbe {
    None,
    Http(
        Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
        hyper::Uri,
    ),
    Https(
        Client<
            hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
            Empty<Bytes>,
        >,
        hyper::Uri,
    ),
}

const HTTP_TIMEOUT: Duration = Duration::from_secs(2);

impl HttpProbe {
    fn new(url: Option<&str>) -> Result<Self, ReadinessError> {
        let Some(url) = url else {
            return Ok(HttpProbe::None);
        };
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| ReadinessError::Config(format!("url {url:?}: {e}")))?;
        let builder = Client::builder(TokioExecutor::new());
        match uri.scheme_str() {
            Some("http") => Ok(HttpProbe::Http(builder.build_http(), uri)),
            Some("https") => {
                let _ = rustls::crypto::ring::default_provider().install_default();
                let connector = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_native_roots()
                    .map_err(|e| ReadinessError::Config(format!("TLS roots for {url}: {e}")))?
                    .https_only()
                    .enable_http1()
                    .build();
                Ok(HttpProbe::Https(builder.build(connector), uri))
            }
            _ => Err(ReadinessError::Config(format!(
                "url {url:?} must start with http:// or https://"
            ))),
        }
    }

    async fn ok(&self) -> bool {
        let fut = async {
            match self {
                HttpProbe::None => true,
                HttpProbe::Http(c, u) => c
                    .get(u.clone())
                    .await
                    .is_ok_and(|r| r.status().is_success()),
                HttpProbe::Https(c, u) => c
                    .get(u.clone())
                    .await
                    .is_ok_and(|r| r.status().is_success()),
            }
        };
        tokio::time::timeout(HTTP_TIMEOUT, fut)
            .await
            .unwrap_or(false)
    }
}
