//! The Build RPC and `clawops build` against a real agent process, a real git checkout and the
//! real engine: progress streams before the result, the image is tagged with HEAD's sha, a
//! second caller is ABORTED naming the first, a client that disconnects does not stop the
//! build, and the CLI exits 1 with the failing step and its output.
mod build_support;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use build_support::{BASE, ProjectImages};
use clawops_proto::v1::{self as pb, agent_client::AgentClient};
use testkit::{agent::AgentProcess, git::GitFixture};
use tonic::{Code, Request, service::interceptor::InterceptedService, transport::Channel};

type Client = AgentClient<InterceptedService<Channel, Bearer>>;

/// Adds the agent's token to every call.
#[derive(Clone)]
struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

struct App {
    name: String,
    git: GitFixture,
    agent: AgentProcess,
    _images: ProjectImages,
}

/// A checkout named like the project with busybox, `dockerfile` and a compose file whose
/// `gateway` service builds `.`, and an agent managing it.
fn app(dockerfile: &str) -> App {
    let name = testkit::unique("clawops-buildrpc");
    let images = ProjectImages(name.clone());
    let busybox = std::fs::read(testkit::image::busybox_path()).unwrap();
    let compose = format!("services:\n  gateway:\n    image: {name}:latest\n    build: .\n");
    let git = GitFixture::new(
        &name,
        &[
            ("busybox", &busybox),
            ("Dockerfile", dockerfile.as_bytes()),
            ("compose.yaml", compose.as_bytes()),
        ],
    );
    let agent = AgentProcess::start(&format!(
        "[app]\nrepo = {:?}\nservice = \"gateway\"\n\n[build]\nkeep_images = 2\n\
         min_free_disk_mb = 64\nmin_available_memory_mb = 0\n\n[build.labels]\n\"clawops.test\" = \"1\"\n",
        git.checkout.display().to_string()
    ));
    App {
        name,
        git,
        agent,
        _images: images,
    }
}

async fn connect(agent: &AgentProcess) -> Client {
    let channel = Channel::from_shared(agent.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let auth = format!("Bearer {}", agent.token).parse().unwrap();
    AgentClient::with_interceptor(channel, Bearer(auth))
}

#[tokio::test]
async fn build_rpc_streams_tags_head_locks_and_survives_disconnect() {
    let app = app(&format!("{BASE}RUN echo progress-line && sleep 3\n"));
    let head = app.git.checkout_head();
    let mut client = connect(&app.agent).await;

    let started = Instant::now();
    let mut stream = client
        .build(pb::BuildRequest {
            requested_by: "test".into(),
            // A cached RUN prints nothing; this test watches its output arrive.
            no_cache: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut progress_at = None;
    let mut phases = Vec::new();
    let mut result = None;
    while let Some(event) = stream.message().await.unwrap() {
        match event.event.unwrap() {
            pb::build_event::Event::Progress(p) if p.line == "progress-line" => {
                progress_at = Some(started.elapsed());
            }
            pb::build_event::Event::Phase(p) => phases.push((p.phase, p.status)),
            pb::build_event::Event::Result(r) => result = Some((r, started.elapsed())),
            _ => {}
        }
    }
    let (result, result_at) = result.expect("one result at the end");
    assert!(result.ok, "{result:?}");
    let progress_at = progress_at.expect("the RUN output was streamed");
    assert!(
        result_at - progress_at >= Duration::from_millis(800),
        "output arrived only with the result: {progress_at:?} vs {result_at:?}"
    );
    assert_eq!(result.git_sha, head);
    assert_eq!(
        result.tags,
        [
            format!("{}:{}", app.name, &head[..12]),
            format!("{}:latest", app.name)
        ]
    );
    assert_eq!(result.builder, "BuildKit");
    assert!(result.size_bytes > 0 && result.image_id.starts_with("sha256:"));
    assert!(
        phases.contains(&(pb::Phase::Build as i32, pb::PhaseStatus::Done as i32)),
        "{phases:?}"
    );

    // A second caller is refused while a build runs; the first client then walks away.
    let running = client
        .build(pb::BuildRequest {
            no_cache: true,
            requested_by: "first-caller".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let refused = client
        .build(pb::BuildRequest {
            requested_by: "second-caller".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Aborted, "{refused:?}");
    assert!(
        refused.message().contains("build") && refused.message().contains("first-caller"),
        "{}",
        refused.message()
    );
    drop(running);

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = client
            .status(pb::StatusRequest {})
            .await
            .unwrap()
            .into_inner();
        if status.lock_holder.is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "the build never finished");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let history = client
        .history(pb::HistoryRequest { limit: 5 })
        .await
        .unwrap()
        .into_inner();
    let last = &history.entries[0];
    assert_eq!(
        (
            last.kind.as_str(),
            last.requested_by.as_str(),
            last.result.as_str()
        ),
        ("build", "first-caller", "succeeded"),
        "{last:?}"
    );
    assert_eq!(last.to_sha, head);
    assert!(
        last.phases
            .iter()
            .any(|p| p.phase == "build" && p.status == "done"),
        "{:?}",
        last.phases
    );
}

#[test]
fn cli_build_shows_the_failing_step_and_exits_1() {
    let app = app(&format!("{BASE}RUN echo boom-output; exit 7\n"));
    let cli = |json: bool| {
        let mut cmd = Command::new(testkit::agent::client_binary());
        cmd.args(["--addr", &app.agent.url()])
            .arg("--token-file")
            .arg(app.agent.token_file());
        if json {
            cmd.arg("--json");
        }
        cmd.arg("build").output().unwrap()
    };

    let out = cli(false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("FAILED"), "{stderr}");
    assert!(stderr.contains("[3/3] RUN echo boom-output"), "{stderr}");
    assert!(stderr.contains("exit code: 7"), "{stderr}");
    assert!(
        stderr.lines().any(|l| l.trim() == "boom-output"),
        "the step's output is shown: {stderr}"
    );

    let out = cli(true);
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert!(lines.iter().any(|v| v["type"] == "progress"), "{lines:?}");
    let result = lines.last().unwrap();
    assert_eq!(result["type"], "result");
    assert_eq!(result["ok"], false);
    assert!(
        result["failed_step"]
            .as_str()
            .unwrap()
            .contains("RUN echo boom-output"),
        "{result}"
    );
    assert!(
        result["output_tail"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "boom-output"),
        "{result}"
    );

    // Fixed upstream and pulled: the build succeeds, exit 0.
    app.git
        .commit(&[("Dockerfile", BASE.as_bytes())], "fix the build");
    testkit::git::git(&app.git.checkout, &["pull", "-q", "--ff-only"]);
    let out = cli(false);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let head = app.git.checkout_head();
    assert!(
        stdout.contains(&format!("{}:{}", app.name, &head[..12])),
        "{stdout}"
    );
}
