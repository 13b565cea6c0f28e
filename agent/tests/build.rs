//! Build on the real engine with busybox scratch images: `.dockerignore` decides what reaches the
//! image (read back through the archive API), escaping symlinks are refused, a failing RUN names
//! its step and output, sha tags are retained N deep (sparing images in use), progress arrives
//! while the build runs, the classic fallback works and warns, and preflight refuses a full
//! disk. Every image carries `clawops.test=1` and a per-test project label, and is removed on
//! drop.
mod build_support;

use std::time::{Duration, Instant};

use build_support::{BASE, Ctx, archive_paths, events, lines, old_api_docker, with_container};
use clawops_agent::{
    build::{self, BuildError, Builder, BuilderChoice, ContextError, PreflightError},
    events::Event,
};

/// The builds here share the engine's cached layers, and each test removes its images when it
/// ends: one at a time, so no cleanup removes a layer another build is using.
static ONE_BUILD_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn dockerignore_decides_what_reaches_the_image() {
    let _serial = ONE_BUILD_AT_A_TIME.lock().await;
    let ctx = Ctx::new(&format!(
        "{BASE}RUN --mount=type=cache,target=/cache echo cached > /cache/x\nCOPY . /app/\n"
    ));
    ctx.write(
        ".dockerignore",
        "# secrets stay home\nsecret.txt\nlogs\n*.md\n!README.md\n/build/**\n!build/keep/\n",
    );
    for f in [
        "secret.txt",
        "logs/a.log",
        "NOTES.md",
        "README.md",
        "keep.txt",
        "build/out.bin",
        "build/keep/k.txt",
        "src/deep/secret.txt",
    ] {
        ctx.write(f, "x");
    }
    let (sink, mut rx) = events();
    let built = build::build(&ctx.engine, &ctx.spec(None), &sink)
        .await
        .unwrap_or_else(|e| panic!("build failed: {e}"));
    assert_eq!(
        built.builder,
        Builder::BuildKit,
        "RUN --mount needs BuildKit"
    );
    assert_eq!(built.tags, [format!("{}:latest", ctx.project)]);
    assert!(
        built.size_bytes > 500_000,
        "busybox is in it: {}",
        built.size_bytes
    );
    let evs = rx.drain();
    assert!(
        lines(&evs)
            .iter()
            .any(|l| l.contains("excluded by .dockerignore")),
        "{evs:#?}"
    );

    let paths = with_container(&ctx, &built.image_id, |docker, id| async move {
        archive_paths(&docker, &id, "/app").await
    })
    .await;
    for present in [
        "app/keep.txt",
        "app/README.md",
        "app/Dockerfile",
        "app/.dockerignore",
        "app/build/keep/k.txt",
        // `secret.txt` is anchored at the context root, like every pattern.
        "app/src/deep/secret.txt",
    ] {
        assert!(paths.contains(present), "{present} missing from {paths:?}");
    }
    for absent in [
        "app/secret.txt",
        "app/NOTES.md",
        "app/logs",
        "app/build/out.bin",
    ] {
        assert!(
            !paths
                .iter()
                .any(|p| p == absent || p.starts_with(&format!("{absent}/"))),
            "{absent} should be excluded: {paths:?}"
        );
    }
}

#[tokio::test]
async fn symlink_escaping_the_context_is_refused() {
    let _serial = ONE_BUILD_AT_A_TIME.lock().await;
    let ctx = Ctx::new(&format!("{BASE}COPY . /app/\n"));
    let outside = tempfile::NamedTempFile::new().unwrap();
    std::os::unix::fs::symlink(outside.path(), ctx.dir.path().join("innocent.txt")).unwrap();
    let err = build::build(&ctx.engine, &ctx.spec(None), &build_support::discard())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BuildError::Context(ContextError::SymlinkEscapes { link, .. }) if link == "innocent.txt"),
        "{err}"
    );
    assert!(
        ctx.docker
            .inspect_image(&format!("{}:latest", ctx.project))
            .await
            .is_err(),
        "nothing was built"
    );
    // Excluding it makes the context acceptable again.
    ctx.write(".dockerignore", "innocent.txt\n");
    build::build(&ctx.engine, &ctx.spec(None), &build_support::discard())
        .await
        .unwrap();
}

#[tokio::test]
async fn failing_run_reports_step_and_output_with_both_builders() {
    let _serial = ONE_BUILD_AT_A_TIME.lock().await;
    let ctx = Ctx::new(&format!(
        "{BASE}RUN echo first-line; echo to-stderr >&2; echo last-line; exit 3\n"
    ));
    for choice in [BuilderChoice::Buildkit, BuilderChoice::Classic] {
        let mut spec = ctx.spec(None);
        spec.builder = choice;
        let err = build::build(&ctx.engine, &spec, &build_support::discard())
            .await
            .unwrap_err();
        let f = err
            .failure()
            .unwrap_or_else(|| panic!("{choice:?}: not a step failure: {err}"));
        assert!(f.step.contains("RUN echo first-line"), "{choice:?}: {f:?}");
        // BuildKit numbers the steps after FROM; the classic builder counts FROM and the
        // LABEL steps it appends for the build's labels.
        let count = match choice {
            BuilderChoice::Classic => "[4/",
            _ => "[3/3]",
        };
        assert!(
            f.step.contains(count),
            "{choice:?}: step count in {:?}",
            f.step
        );
        for l in ["first-line", "to-stderr", "last-line"] {
            assert!(
                f.output_tail.iter().any(|t| t.contains(l)),
                "{choice:?}: {l} not in {:?}",
                f.output_tail
            );
        }
        assert!(
            f.message.contains('3'),
            "{choice:?}: exit code in {:?}",
            f.message
        );
        assert!(err.to_string().contains("RUN echo first-line"), "{err}");
    }
    // The classic builder keeps its successful steps as untagged images. A classic build of
    // the same steps adopts them as parents of a labelled image, and the cleanup removes that
    // image together with its untagged parents.
    ctx.write("Dockerfile", BASE);
    let mut spec = ctx.spec(None);
    spec.builder = BuilderChoice::Classic;
    build::build(&ctx.engine, &spec, &build_support::discard())
        .await
        .unwrap();
}

#[tokio::test]
async fn sha_tags_are_kept_n_deep_and_images_in_use_are_spared() {
    let _serial = ONE_BUILD_AT_A_TIME.lock().await;
    let ctx = Ctx::new(BASE);
    let shas: Vec<String> = (1..=4).map(|i| format!("{i}").repeat(40)).collect();
    let tag = |i: usize| format!("{}:{}", ctx.project, &shas[i][..12]);
    let build_sha = |i: usize| {
        let mut spec = ctx.spec(Some(&shas[i]));
        spec.keep = 2;
        let docker = ctx.engine.clone();
        async move { build::build(&docker, &spec, &build_support::discard()).await }
    };
    let first = build_sha(0).await.unwrap();
    assert_eq!(first.tags, [tag(0), format!("{}:latest", ctx.project)]);
    let labels = ctx
        .docker
        .inspect_image(&tag(0))
        .await
        .unwrap()
        .config
        .unwrap()
        .labels
        .unwrap();
    assert_eq!(labels["clawops.git-sha"], shas[0]);
    assert_eq!(labels["clawops.project"], ctx.project);
    assert!(build_sha(1).await.unwrap().removed_tags.is_empty());

    // A container made from the oldest image keeps it alive through the next build.
    let third = with_container(&ctx, &tag(0), |_, _| async { build_sha(2).await.unwrap() }).await;
    assert!(third.removed_tags.is_empty(), "{:?}", third.removed_tags);
    assert!(ctx.docker.inspect_image(&tag(0)).await.is_ok());

    let fourth = build_sha(3).await.unwrap();
    let mut removed = fourth.removed_tags.clone();
    removed.sort();
    assert_eq!(removed, [tag(0), tag(1)]);
    for (i, exists) in [(0, false), (1, false), (2, true), (3, true)] {
        assert_eq!(
            ctx.docker.inspect_image(&tag(i)).await.is_ok(),
            exists,
            "{}",
            tag(i)
        );
    }
    let latest = ctx
        .docker
        .inspect_image(&format!("{}:latest", ctx.project))
        .await
        .unwrap();
    assert_eq!(latest.id.as_deref(), Some(fourth.image_id.as_str()));
}

#[tokio::test]
async fn progress_arrives_while_the_build_runs() {
    let _serial = ONE_BUILD_AT_A_TIME.lock().await;
    let ctx = Ctx::new(&format!(
        "{BASE}RUN echo early-line && sleep 3 && echo late-line\n"
    ));
    let (sink, mut rx) = events();
    let docker = ctx.engine.clone();
    let mut spec = ctx.spec(None);
    // A cached RUN prints nothing; this test is about output that takes time to appear.
    spec.no_cache = true;
    let started = Instant::now();
    let task = tokio::spawn(async move { build::build(&docker, &spec, &sink).await });
    let mut early_at = None;
    let mut late_at = None;
    let mut steps = Vec::new();
    while let Some(e) = rx.rx.recv().await {
        if let Event::Build(b) = &e {
            steps.push((b.step, b.total_steps));
            if b.line == "early-line" {
                early_at = Some(started.elapsed());
            }
            if b.line == "late-line" {
                late_at = Some(started.elapsed());
            }
        }
    }
    let finished = started.elapsed();
    task.await.unwrap().unwrap();
    let (early, late) = (early_at.expect("early line"), late_at.expect("late line"));
    assert!(
        late - early >= Duration::from_secs(2),
        "lines were batched: early {early:?}, late {late:?}, end {finished:?}"
    );
    assert!(steps.contains(&(3, 3)), "step count reported: {steps:?}");
}

#[tokio::test]
async fn classic_fallback_on_an_engine_without_buildkit_warns_and_builds() {
    let _serial = ONE_BUILD_AT_A_TIME.lock().await;
    // API 1.30 predates BuildKit (1.39): the real engine then only offers the classic builder.
    let ctx = Ctx::new(&format!("{BASE}RUN echo classic > /built-by\n"));
    let docker = clawops_agent::docker::Engine::new(old_api_docker());
    let (sink, mut rx) = events();
    let built = build::build(&docker, &ctx.spec(None), &sink).await.unwrap();
    assert_eq!(built.builder, Builder::Classic);
    let warnings: Vec<String> = rx
        .drain()
        .into_iter()
        .filter_map(|e| match e {
            Event::Warning(w) => Some(w),
            _ => None,
        })
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("BuildKit is not available") && w.contains("1.30")),
        "{warnings:?}"
    );

    // A Dockerfile that needs BuildKit fails clearly, and the warning said why beforehand.
    ctx.write(
        "Dockerfile",
        &format!("{BASE}RUN --mount=type=cache,target=/c echo x\n"),
    );
    let (sink, mut rx) = events();
    let err = build::build(&docker, &ctx.spec(None), &sink)
        .await
        .unwrap_err();
    assert!(err.failure().is_some(), "{err}");
    let evs = rx.drain();
    assert!(
        evs.iter()
            .any(|e| matches!(e, Event::Warning(w) if w.contains("`RUN --mount`"))),
        "{evs:#?}"
    );
}

#[tokio::test]
async fn preflight_refuses_low_disk_with_what_to_prune_and_warns_on_low_memory() {
    let _serial = ONE_BUILD_AT_A_TIME.lock().await;
    let ctx = Ctx::new(BASE);
    for sha in ["a".repeat(40), "b".repeat(40)] {
        build::build(
            &ctx.engine,
            &ctx.spec(Some(&sha)),
            &build_support::discard(),
        )
        .await
        .unwrap();
    }
    let mut spec = ctx.spec(Some(&"c".repeat(40)));
    spec.preflight.min_free_disk_mb = u64::MAX / (1024 * 1024);
    let err = build::build(&ctx.engine, &spec, &build_support::discard())
        .await
        .unwrap_err();
    let BuildError::Preflight(PreflightError::LowDisk { prunable, .. }) = &err else {
        panic!("{err}");
    };
    // The newest sha tag stays (rollback target); the older one is offered.
    let old = format!("{}:{}", ctx.project, "a".repeat(12));
    assert_eq!(
        prunable.iter().map(|t| t.tag.as_str()).collect::<Vec<_>>(),
        [old.as_str()]
    );
    let msg = err.to_string();
    assert!(
        msg.contains("Docker's data root") && msg.contains(&old),
        "{msg}"
    );
    assert!(msg.contains("docker builder prune"), "{msg}");
    assert!(
        ctx.docker
            .inspect_image(&format!("{}:{}", ctx.project, "c".repeat(12)))
            .await
            .is_err(),
        "nothing was built"
    );

    let mut spec = ctx.spec(None);
    spec.preflight.min_available_memory_mb = u64::MAX / (1024 * 1024);
    let (sink, mut rx) = events();
    build::build(&ctx.engine, &spec, &sink).await.unwrap();
    assert!(
        rx.drain().iter().any(
            |e| matches!(e, Event::Warning(w) if w.contains("e2-micro") && w.contains("e2-small"))
        ),
        "low-memory warning"
    );
}

#[tokio::test]
async fn a_hung_build_is_cancelled_at_the_timeout_naming_its_step() {
    let _serial = ONE_BUILD_AT_A_TIME.lock().await;
    let ctx = Ctx::new(&format!("{BASE}RUN echo waiting && sleep 60\n"));
    let mut spec = ctx.spec(None);
    // The base steps come from the cache, so the timeout falls in the hung step even on a
    // loaded machine (a step that never finished is never cached).
    spec.timeout = Duration::from_secs(8);
    let started = Instant::now();
    let err = build::build(&ctx.engine, &spec, &build_support::discard())
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "not cancelled in time"
    );
    let f = err.failure().unwrap_or_else(|| panic!("{err}"));
    assert!(f.step.contains("RUN echo waiting"), "{f:?}");
    assert!(f.message.contains("timeout_secs"), "{f:?}");
    assert_eq!(f.output_tail, ["waiting"]);
}
