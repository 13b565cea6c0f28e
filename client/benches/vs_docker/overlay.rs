//! `[build] overlay` against a full rebuild of the demo image: after an edit of a skill binary,
//! the overlay rebuilds one layer on the cached base, where a change to the repository's image
//! means a full rebuild (measured without the layer cache, as a fresh VM or a changed first
//! layer sees it). Both through the agent's own build code, on the same engine, median of
//! `RUNS` builds each. `CLAWOPS_BENCH_ONLY=overlay` runs just this part.
use std::time::{Duration, Instant};

use clawops::demo::DemoApp;
use clawops_agent::build::{self, BuildSpec, overlay};
use testkit::cleanup::AppGuard;

use super::{Row, median, ms};

const RUNS: usize = 3;

pub fn rows(rt: &tokio::runtime::Runtime) -> Vec<Row> {
    let root = tempfile::tempdir().unwrap();
    let app = DemoApp::create(root.path(), &testkit::unique("o")[2..]).unwrap();
    let _guard = AppGuard::new(&app.project, &app.image_repo);
    let overlay_dir = root.path().join("overlay");
    std::fs::create_dir_all(&overlay_dir).unwrap();
    std::fs::write(
        overlay_dir.join("Dockerfile"),
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY himalaya /usr/local/bin/himalaya\n",
    )
    .unwrap();
    let tool = |version: usize| {
        use std::os::unix::fs::PermissionsExt;
        let path = overlay_dir.join("himalaya");
        std::fs::write(&path, format!("#!/bin/sh\necho himalaya 1.{version}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    tool(0);
    let engine = clawops_agent::docker::Engine::new(rt.block_on(testkit::docker::connect()));
    let sink = clawops_agent::events::EventSink::discard();
    let mut spec = BuildSpec::new(
        &app.checkout,
        &format!("{}:latest", app.image_repo),
        &app.project,
    );
    spec.git_sha = Some("e".repeat(40));
    spec.preflight.min_free_disk_mb = 256;
    spec.preflight.min_available_memory_mb = 0;
    spec.overlay = Some(overlay_dir.join("Dockerfile"));
    eprintln!("overlay: first build of the demo image with its overlay…");
    rt.block_on(build::build(&engine, &spec, &sink)).unwrap();

    let base = format!("{}:{}-base", app.image_repo, &"e".repeat(12));
    let tags = [format!("{}:overlay-bench", app.image_repo)];
    let ov = overlay::OverlaySpec::for_build(&spec, overlay_dir.join("Dockerfile"));
    let mut overlay_times = Vec::new();
    for i in 1..=RUNS {
        tool(i);
        let t = Instant::now();
        rt.block_on(overlay::build(&engine, &ov, &base, &tags, &sink))
            .unwrap();
        overlay_times.push(t.elapsed());
    }
    let mut full_times: Vec<Duration> = Vec::new();
    spec.no_cache = true;
    spec.overlay = None;
    for _ in 0..RUNS {
        let t = Instant::now();
        rt.block_on(build::build(&engine, &spec, &sink)).unwrap();
        full_times.push(t.elapsed());
    }
    let (ours, theirs) = (median(overlay_times), median(full_times));
    let ratio = theirs.as_secs_f64() / ours.as_secs_f64();
    vec![Row {
        measure: "skill binary edit: overlay rebuild vs full rebuild of the demo image (no cache)",
        ours: ms(ours),
        theirs: ms(theirs),
        ratio: format!("{ratio:.1}× faster"),
        // No target: the gain is the base image's build time, which for the demo image is about
        // a second (a quiet machine measures 1.0×); with OpenClaw's image it is minutes.
        target: "-",
        met: None,
    }]
}
