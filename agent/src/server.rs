//! Assembles the gRPC server: the Agent service, grpc.health.v1 and reflection, all behind the
//! token interceptor; served on a TCP listener (loopback, or TLS) or on in-process streams.
use std::{future::Future, sync::Arc, time::Duration};

use clawops_proto::v1::{FILE_DESCRIPTOR_SET, agent_server::AgentServer};
use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::transport::{
    Server, ServerTlsConfig,
    server::{Connected, Router},
};

use crate::{
    auth::{self, Token},
    context::AgentContext,
    rpc::AgentService,
};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("TLS: {0}")]
    Tls(String),
    #[error("reflection: {0}")]
    Reflection(String),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Long streams (logs -f, a 3-minute readiness wait) cross SSH tunnels and NAT; keepalives stop
/// idle connections from being cut and detect dead peers.
const KEEPALIVE: Duration = Duration::from_secs(30);

fn router(
    ctx: Arc<AgentContext>,
    token: Token,
    tls: Option<ServerTlsConfig>,
) -> Result<
    Router<
        tower::layer::util::Stack<
            tonic::service::InterceptorLayer<impl tonic::service::Interceptor + Clone>,
            tower::layer::util::Identity,
        >,
    >,
    ServeError,
> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    // "" (the whole server) is SERVING by default; name our service too.
    let reporter = health_reporter.clone();
    tokio::spawn(async move {
        reporter.set_serving::<AgentServer<AgentService>>().await;
    });
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let limits = &ctx.config.limits;
    // One connection must not pin unbounded streams and tasks in a 1-2 GB VM's agent.
    let mut builder = Server::builder()
        .max_concurrent_streams(limits.max_streams_per_connection)
        .concurrency_limit_per_connection(limits.max_requests_per_connection)
        .http2_keepalive_interval(Some(KEEPALIVE))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)));
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls)
            .map_err(|e| ServeError::Tls(e.to_string()))?;
    }
    let requests = ctx.counters.requests.clone();
    let mut check_token = auth::interceptor(token);
    let counted = move |req: tonic::Request<()>| {
        requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        check_token(req)
    };
    Ok(builder
        .layer(tonic::service::InterceptorLayer::new(counted))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(AgentServer::new(AgentService::new(ctx))))
}

/// Serves on `listener` until `shutdown` completes.
pub async fn serve_tcp(
    ctx: Arc<AgentContext>,
    token: Token,
    tls: Option<ServerTlsConfig>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    router(ctx, token, tls)?
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}

/// Serves connections handed in by `incoming` (in-process mode: `clawops local`).
pub async fn serve_incoming<S, IO>(
    ctx: Arc<AgentContext>,
    token: Token,
    incoming: S,
) -> Result<(), ServeError>
where
    S: Stream<Item = Result<IO, std::io::Error>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
{
    router(ctx, token, None)?
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}
