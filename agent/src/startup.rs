//! Turning arguments and the config file into a running agent: the parts of `main` worth testing
//! and reusing (`clawops local` builds the same context in-process).
use std::{path::PathBuf, sync::Arc};

use crate::{
    config::{Config, ConfigError},
    context::AgentContext,
    journal::{Journal, JournalError},
};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("{path}: {message}")]
    Tls { path: PathBuf, message: String },
}

/// Opens the journal and builds the shared context. Call [`crate::reconcile::recover`] before
/// serving, so operations a crash interrupted are recovered first.
pub fn build_context(config: Config) -> Result<Arc<AgentContext>, StartupError> {
    config.validate()?;
    let app = config.resolve_app()?;
    let journal_max = config.limits.journal_max_mb.saturating_mul(1024 * 1024);
    let journal = Journal::open_with_limit(&config.state_dir, journal_max)?;
    let ctx = AgentContext::new(config, app, journal);
    // Memory history and the docker events watcher run for the agent's whole life.
    crate::memory::sampler::start(&ctx.memory, ctx.project_engine());
    ctx.notifier.start();
    Ok(ctx)
}

/// Loads the TLS identity named in `[tls]`, if any.
pub fn tls_config(
    config: &Config,
) -> Result<Option<tonic::transport::ServerTlsConfig>, StartupError> {
    let Some(tls) = &config.tls else {
        return Ok(None);
    };
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|e| StartupError::Tls {
            path: path.clone(),
            message: e.to_string(),
        })
    };
    let identity = tonic::transport::Identity::from_pem(read(&tls.cert)?, read(&tls.key)?);
    // tonic's tls-ring feature brings ring; rustls wants one process-wide provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(Some(
        tonic::transport::ServerTlsConfig::new().identity(identity),
    ))
}
