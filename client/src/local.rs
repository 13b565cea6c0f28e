//! In-process mode (`clawops local …`): the agent's own code serves the same API over an
//! in-memory stream, so every command behaves exactly as it does against a remote agent, with
//! no process, port or token on disk.
use std::path::Path;

use clawops_agent::{auth::Token, config::Config, server, startup};
use tokio::sync::mpsc;
use tonic::transport::Endpoint;

use crate::{connect::Client, error::ClientError};

/// Starts the agent in this process with `config` and returns a client connected to it.
pub async fn connect_local(config_path: &Path) -> Result<Client, ClientError> {
    let config = Config::load(config_path).map_err(|e| ClientError::Usage(e.to_string()))?;
    connect_with_config(config).await
}

pub async fn connect_with_config(config: Config) -> Result<Client, ClientError> {
    let ctx = startup::build_context(config).map_err(|e| ClientError::Usage(e.to_string()))?;
    clawops_agent::reconcile::recover(&ctx).await;
    clawops_agent::watch::start(&ctx, clawops_agent::watch::AfterCheck::Nothing);
    // A fresh random token: the in-memory channel is private, but the server path is the same.
    let secret = uuid_token();
    let token = Token::new(&secret);
    let (conn_tx, conn_rx) = mpsc::unbounded_channel::<tokio::io::DuplexStream>();
    let incoming = futures::stream::unfold(conn_rx, |mut rx| async move {
        rx.recv().await.map(|io| (Ok::<_, std::io::Error>(io), rx))
    });
    tokio::spawn(async move {
        if let Err(e) = server::serve_incoming(ctx, token, incoming).await {
            tracing::error!("in-process agent stopped: {e}");
        }
    });
    let channel = Endpoint::from_static("http://clawops-agent.local")
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let conn_tx = conn_tx.clone();
            async move {
                let (client, server) = tokio::io::duplex(256 * 1024);
                conn_tx
                    .send(server)
                    .map_err(|_| std::io::Error::other("in-process agent stopped"))?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(client))
            }
        }))
        .await
        .map_err(|e| ClientError::Failed(format!("in-process agent: {e}")))?;
    Ok(Client::from_channel(
        channel,
        crate::connect::bearer(&secret)?,
        "local".into(),
        None,
    ))
}

fn uuid_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}
