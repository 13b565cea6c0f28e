//! `clawops demo`: the whole flow on this machine's Docker engine, in a throwaway directory,
//! with the agent in-process: build → up → update (no-op) → a new commit → update → a broken
//! commit → automatic rollback → history. Every step runs the same code as the real commands
//! and is checked; the demo fails (exit 1) if any step does not behave as it should.
use std::time::Instant;

use clawops::{Client, ClientError, demo::DemoApp, local, proto};

use super::{
    DemoArgs, Output, build, history, status,
    up::{self, UpArgs},
    update::{self, UpdateArgs},
};

struct Steps {
    n: usize,
    total: usize,
}

impl Steps {
    fn next(&mut self, title: &str, command: &str) {
        self.n += 1;
        println!(
            "\n\x1b[1m[{}/{}] {title}\x1b[0m\n      $ {command}",
            self.n, self.total
        );
    }
}

fn check(ok: bool, what: &str) -> Result<(), ClientError> {
    if ok {
        println!("      ✓ {what}");
        Ok(())
    } else {
        Err(ClientError::Failed(format!("demo: expected {what}")))
    }
}

pub async fn run(args: DemoArgs, out: &Output) -> Result<u8, ClientError> {
    let root = tempfile::Builder::new()
        .prefix("clawops-demo-")
        .tempdir()
        .map_err(|e| ClientError::Failed(format!("cannot create a temporary directory: {e}")))?;
    let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let app = DemoApp::create(root.path(), &id).map_err(|e| ClientError::Failed(e.to_string()))?;
    let cleanup = DemoCleanup {
        project: app.project.clone(),
        image_repo: app.image_repo.clone(),
        keep: args.keep,
    };
    println!(
        "clawops demo: an OpenClaw-like gateway (busybox, built FROM scratch) in a throwaway git \
         checkout, deployed and updated by the clawops agent running in this process.\n  \
         remote   {}\n  checkout {}\n  gateway  {}",
        app.remote.display(),
        app.checkout.display(),
        app.healthz_url()
    );
    let client = local::connect_with_config(app.config()).await?;
    let result = flow(&client, &app, out).await;
    if args.keep {
        std::mem::forget(root);
        println!(
            "\nLeft running for you to explore (remove with `docker rm -f {p}-openclaw-gateway-1 && \
             docker network rm {p}_default && docker rmi $(docker images -q {repo})`):\n  \
             curl {url}\n  docker compose -p {p} -f {dir}/docker-compose.yml ps\n  \
             cat {dir}/../agent-state/journal.jsonl",
            p = app.project,
            repo = app.image_repo,
            url = app.healthz_url(),
            dir = app.checkout.display()
        );
    }
    drop(cleanup);
    result.map(|()| 0)
}

async fn flow(client: &Client, app: &DemoApp, out: &Output) -> Result<(), ClientError> {
    let mut steps = Steps { n: 0, total: 7 };
    let quiet = Output::new(false);
    let _ = out;
    build_and_up(client, app, &mut steps, &quiet).await?;
    updates(client, app, &mut steps, &quiet).await?;

    steps.next("What happened, from the journal", "clawops history");
    history::run(client.clone(), history::HistoryArgs { limit: 10 }, &quiet).await?;

    steps.next("Where things stand", "clawops status");
    status::run(client.clone(), status::StatusArgs {}, &quiet).await?;
    println!("\nDemo complete: every step behaved as expected.");
    Ok(())
}

/// Steps 1–2: build the image, start the gateway.
async fn build_and_up(
    client: &Client,
    app: &DemoApp,
    steps: &mut Steps,
    quiet: &Output,
) -> Result<(), ClientError> {
    steps.next("Build the gateway image from the checkout", "clawops build");
    let code = build::run(
        client.clone(),
        build::BuildArgs {
            no_cache: false,
            service: String::new(),
            requested_by: Some("demo".into()),
        },
        quiet,
    )
    .await?;
    check(code == 0, "the image is built and tagged with the commit")?;

    steps.next("Start it from docker-compose.yml and .env", "clawops up");
    let code = up::run(
        client.clone(),
        UpArgs {
            services: Vec::new(),
            force_recreate: false,
            remove_orphans: false,
            no_wait: false,
            requested_by: Some("demo".into()),
        },
        quiet,
    )
    .await?;
    check(code == 0, "the gateway is up and ready")?;
    check(
        app.served_version().await.as_deref() == Some("v1"),
        "/healthz answers with v1",
    )
}

/// Steps 3–5: a no-op update, a good one, a broken one that rolls back.
async fn updates(
    client: &Client,
    app: &DemoApp,
    steps: &mut Steps,
    quiet: &Output,
) -> Result<(), ClientError> {
    steps.next("Nothing was pushed: update is a no-op", "clawops update");
    let started = Instant::now();
    let code = update::update(client.clone(), demo_update(), quiet).await?;
    check(
        code == 0 && last_result(client).await == "up_to_date",
        &format!(
            "already up to date in {} ms, nothing rebuilt or restarted",
            started.elapsed().as_millis()
        ),
    )?;

    steps.next(
        "Push v2 upstream, then update",
        "git push && clawops update",
    );
    let v2 = app
        .commit("v2", "ok", "v2: a new gateway version")
        .map_err(|e| ClientError::Failed(e.to_string()))?;
    println!("      pushed {}", &v2[..12]);
    let code = update::update(client.clone(), demo_update(), quiet).await?;
    check(code == 0, "fetched, fast-forwarded, built, swapped, ready")?;
    check(
        app.served_version().await.as_deref() == Some("v2"),
        "/healthz answers with v2",
    )?;

    steps.next(
        "Push a broken v3 (it exits at start), then update",
        "git push && clawops update",
    );
    let v3 = app
        .commit("v3", "exit", "v3: breaks the config")
        .map_err(|e| ClientError::Failed(e.to_string()))?;
    println!("      pushed {}", &v3[..12]);
    let code = update::update(client.clone(), demo_update(), quiet).await?;
    check(code == 1, "the update failed (exit code 1)…")?;
    check(
        last_result(client).await == "rolled_back",
        "…and rolled back automatically",
    )?;
    check(
        app.served_version().await.as_deref() == Some("v2"),
        "v2 serves again; the gateway was down only between stop and ready",
    )
}

fn demo_update() -> UpdateArgs {
    UpdateArgs {
        git_ref: None,
        allow_non_ff: false,
        force: false,
        accept_changes: false,
        rebase: false,
        requested_by: Some("demo".into()),
    }
}

async fn last_result(client: &Client) -> String {
    let mut c = client.clone();
    c.agent
        .history(proto::HistoryRequest { limit: 1 })
        .await
        .ok()
        .and_then(|h| h.into_inner().entries.into_iter().next())
        .map(|e| e.result)
        .unwrap_or_default()
}

/// Removes the demo's containers, network and images, also when a step failed.
struct DemoCleanup {
    project: String,
    image_repo: String,
    keep: bool,
}

impl Drop for DemoCleanup {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let project = self.project.clone();
        let repo = self.image_repo.clone();
        // Drop runs inside the runtime: do the async cleanup on a thread of its own.
        let done = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| rt.block_on(clawops::demo::remove(&project, &repo)))
        })
        .join();
        if !matches!(done, Ok(Ok(Ok(())))) {
            eprintln!(
                "clawops demo: cleanup incomplete; remove leftovers with `docker rm -f $(docker ps -aq --filter label=com.docker.compose.project={})`",
                self.project
            );
        }
    }
}
