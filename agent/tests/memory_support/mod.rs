//! What the memory tests share: an agent context with the sampler running, and containers of
//! its project started through the engine.
use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use bollard::{
    Docker,
    models::{ContainerCreateBody, HostConfig},
    query_parameters::{CreateContainerOptionsBuilder, StartContainerOptions},
};
use clawops_agent::{
    config::Config,
    context::AgentContext,
    memory::{MemoryReport, ReportOptions},
    startup,
};

pub struct TestAgent {
    pub ctx: Arc<AgentContext>,
    pub project: String,
    _state: tempfile::TempDir,
    _guard: testkit::cleanup::ProjectGuard,
}

impl TestAgent {
    /// MemoryStats' report, as the RPC builds it.
    #[allow(dead_code)] // memory_sampling.rs shares this module and asks for no report.
    pub async fn report(&self, options: ReportOptions) -> MemoryReport {
        clawops_agent::memory::report(&self.ctx.memory, &self.ctx.project_engine(), options)
            .await
            .unwrap()
    }
}

pub fn agent_with(edit: impl FnOnce(&mut Config)) -> TestAgent {
    let project = testkit::unique("memtest");
    let state = tempfile::tempdir().unwrap();
    let mut config = Config {
        state_dir: state.path().to_path_buf(),
        ..Config::default()
    };
    config.app.project = Some(project.clone());
    config.memory.sample_interval_secs = 1;
    edit(&mut config);
    // build_context starts the sampler and the events watcher, as the agent does.
    let ctx = startup::build_context(config).unwrap();
    TestAgent {
        ctx,
        _guard: testkit::cleanup::ProjectGuard::new(project.clone()),
        project,
        _state: state,
    }
}

pub async fn run_container(
    docker: &Docker,
    project: &str,
    image: &str,
    script: &str,
    memory: Option<i64>,
) -> String {
    let labels = HashMap::from([
        (
            "com.docker.compose.project".to_string(),
            project.to_string(),
        ),
        ("com.docker.compose.service".to_string(), "gw".to_string()),
        (
            "com.docker.compose.container-number".to_string(),
            "1".to_string(),
        ),
        ("com.docker.compose.oneoff".to_string(), "False".to_string()),
        ("clawops.test".to_string(), "1".to_string()),
    ]);
    let body = ContainerCreateBody {
        image: Some(image.into()),
        cmd: Some(vec!["sh".into(), "-c".into(), script.into()]),
        labels: Some(labels),
        host_config: Some(HostConfig {
            memory,
            // Same as memory: no swap to escape into, so the limit really is the limit.
            memory_swap: memory,
            ..Default::default()
        }),
        ..Default::default()
    };
    let name = testkit::unique(&format!("{project}-gw"));
    let id = docker
        .create_container(
            Some(CreateContainerOptionsBuilder::default().name(&name).build()),
            body,
        )
        .await
        .unwrap()
        .id;
    docker
        .start_container(&id, None::<StartContainerOptions>)
        .await
        .unwrap();
    id
}

/// Polls `check` every 100 ms until it returns Some, or panics with `what` after `limit`.
pub async fn eventually<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
