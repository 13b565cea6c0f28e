//! Connecting to the agent: directly, through a tunnel command, or in-process; with the token.
use std::time::Duration;

use clawops_proto::v1::agent_client::AgentClient;
use tonic::{
    metadata::MetadataValue,
    service::interceptor::InterceptedService,
    transport::{Channel, Endpoint},
};

use crate::{
    error::ClientError,
    target::Target,
    tunnel::{CommandConnector, TunnelDiagnostics},
};

pub use clawops_proto::DEFAULT_AGENT_PORT;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a failed call through a tunnel waits for the tunnel process to exit and say why.
const TUNNEL_EXIT_WAIT: Duration = Duration::from_secs(3);

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

pub type AuthedChannel = InterceptedService<Channel, Bearer>;

/// A connected agent client with what is needed to explain failures.
#[derive(Clone)]
pub struct Client {
    pub agent: AgentClient<AuthedChannel>,
    pub health: tonic_health::pb::health_client::HealthClient<AuthedChannel>,
    via: String,
    tunnel: Option<(String, TunnelDiagnostics)>,
}

#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub target: Target,
    pub agent_port: u16,
    pub token: String,
    pub ssh_options: Vec<String>,
}

impl ConnectOptions {
    /// The agent at `addr` (`http://HOST:PORT`), reached directly as `--addr` does: no tunnel.
    pub fn direct(addr: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            target: Target::Addr(addr.into()),
            agent_port: 0,
            token: token.into(),
            ssh_options: vec![],
        }
    }
}

impl Client {
    pub async fn connect(opts: &ConnectOptions) -> Result<Self, ClientError> {
        let bearer = bearer(&opts.token)?;
        let via = opts.target.to_string();
        match opts
            .target
            .tunnel_command(opts.agent_port, &opts.ssh_options)
        {
            None => {
                let Target::Addr(addr) = &opts.target else {
                    unreachable!("only Addr has no tunnel")
                };
                let endpoint = Endpoint::from_shared(addr.clone())
                    .map_err(|e| ClientError::Usage(format!("--addr {addr:?}: {e}")))?
                    .connect_timeout(CONNECT_TIMEOUT);
                let channel = endpoint.connect().await.map_err(|e| {
                    ClientError::Connect(format!(
                        "cannot reach the agent at {addr}: {}. Is clawops-agent running there \
                         (`systemctl status clawops-agent`), and is the port right (--agent-port / --addr)?",
                        source_chain(&e)
                    ))
                })?;
                Ok(Self::from_channel(channel, bearer, via, None))
            }
            Some((program, args)) => {
                let connector = CommandConnector::new(program.clone(), args);
                let diagnostics = connector.diagnostics();
                let endpoint = Endpoint::from_static("http://clawops-agent.tunnel")
                    .connect_timeout(CONNECT_TIMEOUT);
                let channel =
                    endpoint
                        .connect_with_connector(connector)
                        .await
                        .map_err(|e| {
                            ClientError::Connect(diagnostics.explain(&program).unwrap_or_else(
                                || format!("tunnel to {via}: {}", source_chain(&e)),
                            ))
                        })?;
                Ok(Self::from_channel(
                    channel,
                    bearer,
                    via,
                    Some((program, diagnostics)),
                ))
            }
        }
    }

    pub(crate) fn from_channel(
        channel: Channel,
        bearer: Bearer,
        via: String,
        tunnel: Option<(String, TunnelDiagnostics)>,
    ) -> Self {
        let authed = InterceptedService::new(channel, bearer);
        Self {
            agent: AgentClient::new(authed.clone()).max_decoding_message_size(64 * 1024 * 1024),
            health: tonic_health::pb::health_client::HealthClient::new(authed),
            via,
            tunnel,
        }
    }

    pub fn via(&self) -> &str {
        &self.via
    }

    /// Turns a failed call into an error with the right exit code and a hint.
    pub async fn explain(&self, status: tonic::Status) -> ClientError {
        // The tunnel's own words are the best explanation when it died. A transport failure
        // (it carries a source error) can reach us before ssh has exited and been reaped, so
        // wait for that rather than guess; on a loaded CI runner it takes well over 100 ms.
        if let Some((program, diag)) = &self.tunnel
            && (std::error::Error::source(&status).is_some()
                || matches!(
                    status.code(),
                    tonic::Code::Unavailable | tonic::Code::Unknown
                ))
        {
            diag.wait_ended(TUNNEL_EXIT_WAIT).await;
            if let Some(msg) = diag.explain(program) {
                return ClientError::Connect(msg);
            }
        }
        ClientError::from_status(status, &self.via)
    }
}

pub(crate) fn bearer(token: &str) -> Result<Bearer, ClientError> {
    let value = format!("Bearer {}", token.trim());
    value.parse().map(Bearer).map_err(|_| {
        ClientError::Usage("the token contains characters that cannot go in a header".into())
    })
}

fn source_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}
