//! `[build] overlay` on the real engine: a Dockerfile outside the repository built `FROM` the
//! repository's image. The overlaid image gets the tags, the base keeps `<tag>-base`, both carry
//! our labels and retention prunes them together; the overlay's `.dockerignore` is honoured; a
//! bad overlay path is refused naming the key; and the overlay alone rebuilds in a fraction of
//! a full rebuild (the figures are printed).
mod build_support;

use std::{path::Path, time::Instant};

use build_support::{BASE, Ctx, archive_paths, discard, with_container};
use clawops_agent::build::{
    self, BuildError,
    overlay::{self, LABEL_OVERLAY, LABEL_OVERLAY_BASE},
};

/// One build at a time: each test removes its images when it ends (see build.rs).
static ONE_BUILD_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const OVERLAY: &str = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY himalaya /usr/local/bin/himalaya\n";

/// An overlay folder outside the build context: Dockerfile, one tool, a file it ignores.
fn overlay_dir(version: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), OVERLAY).unwrap();
    write_tool(dir.path(), version);
    std::fs::set_permissions(
        dir.path().join("himalaya"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not for the image").unwrap();
    std::fs::write(dir.path().join(".dockerignore"), "notes.txt\n").unwrap();
    dir
}

fn write_tool(dir: &Path, version: &str) {
    std::fs::write(
        dir.join("himalaya"),
        format!("#!/bin/sh\necho himalaya {version}\n"),
    )
    .unwrap();
}

async fn labels(ctx: &Ctx, image: &str) -> std::collections::HashMap<String, String> {
    ctx.docker
        .inspect_image(image)
        .await
        .unwrap()
        .config
        .unwrap()
        .labels
        .unwrap()
}

#[tokio::test]
async fn the_overlay_gets_the_tags_and_the_base_keeps_its_own() {
    let _serial = ONE_BUILD_AT_A_TIME.lock().await;
    let ctx = Ctx::new(&format!("{BASE}COPY Dockerfile /app/\n"));
    let ov = overlay_dir("1.0");
    let dockerfile = ov.path().join("Dockerfile");
    let sha = "a".repeat(40);
    let mut spec = ctx.spec(Some(&sha));
    spec.overlay = Some(dockerfile.clone());
    let built = build::build(&ctx.engine, &spec, &discard())
        .await
        .unwrap_or_else(|e| panic!("overlay build failed: {e}"));
    let sha_tag = format!("{}:{}", ctx.project, &sha[..12]);
    let base_tag = format!("{sha_tag}-base");
    assert_eq!(
        built.tags,
        [sha_tag.clone(), format!("{}:latest", ctx.project)]
    );
    let base = ctx.docker.inspect_image(&base_tag).await.unwrap();
    let base_id = base.id.unwrap();
    assert_ne!(base_id, built.image_id, "the overlay is its own image");

    let top = labels(&ctx, &sha_tag).await;
    assert_eq!(top["clawops.git-sha"], sha);
    assert_eq!(top["clawops.project"], ctx.project);
    assert_eq!(top[LABEL_OVERLAY_BASE], base_id);
    assert_eq!(
        top[LABEL_OVERLAY],
        overlay::context_hash(&dockerfile).unwrap()
    );
    let below = labels(&ctx, &base_tag).await;
    assert!(!below.contains_key(LABEL_OVERLAY), "{below:?}");

    let paths = with_container(&ctx, &built.image_id, |docker, id| async move {
        archive_paths(&docker, &id, "/usr/local/bin").await
    })
    .await;
    assert!(paths.contains("bin/himalaya"), "{paths:?}");
    let root = with_container(&ctx, &built.image_id, |docker, id| async move {
        archive_paths(&docker, &id, "/app").await
    })
    .await;
    assert!(
        root.contains("app/Dockerfile"),
        "the base is underneath: {root:?}"
    );
}

#[tokio::test]
async fn retention_prunes_the_base_with_its_overlay() {
    let _serial = ONE_BUILD_AT_A_TIME.lock().await;
    let ctx = Ctx::new(BASE);
    let ov = overlay_dir("1.0");
    let shas: Vec<String> = (1..=3).map(|i| format!("{i}").repeat(40)).collect();
    let tag = |i: usize| format!("{}:{}", ctx.project, &shas[i][..12]);
    for sha in &shas {
        let mut spec = ctx.spec(Some(sha));
        spec.keep = 2;
        spec.overlay = Some(ov.path().join("Dockerfile"));
        build::build(&ctx.engine, &spec, &discard()).await.unwrap();
    }
    for (i, exists) in [(0, false), (1, true), (2, true)] {
        for t in [tag(i), format!("{}-base", tag(i))] {
            assert_eq!(ctx.docker.inspect_image(&t).await.is_ok(), exists, "{t}");
        }
    }
}

#[tokio::test]
async fn a_bad_overlay_path_is_refused_naming_the_key() {
    let _serial = ONE_BUILD_AT_A_TIME.lock().await;
    let ctx = Ctx::new(BASE);
    let ov = overlay_dir("1.0");
    let link = ov.path().join("Linked.Dockerfile");
    std::os::unix::fs::symlink(ov.path().join("Dockerfile"), &link).unwrap();
    for (path, want) in [
        (link, "is a symlink"),
        (ov.path().join("Missing"), "create the file"),
        (ov.path().to_owned(), "not a regular file"),
    ] {
        let mut spec = ctx.spec(Some(&"b".repeat(40)));
        spec.overlay = Some(path);
        let err = build::build(&ctx.engine, &spec, &discard())
            .await
            .unwrap_err();
        assert!(matches!(err, BuildError::Overlay(_)), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("[build] overlay") && msg.contains(want),
            "{msg}"
        );
    }
    // The overlay's own Dockerfile failing is a build failure naming its step.
    std::fs::write(
        ov.path().join("Dockerfile"),
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN [\"/bin/sh\", \"-c\", \"echo no gog here; exit 3\"]\n",
    )
    .unwrap();
    let mut spec = ctx.spec(Some(&"b".repeat(40)));
    spec.overlay = Some(ov.path().join("Dockerfile"));
    let err = build::build(&ctx.engine, &spec, &discard())
        .await
        .unwrap_err();
    let failure = err.failure().unwrap_or_else(|| panic!("{err:?}"));
    assert!(
        failure
            .output_tail
            .iter()
            .any(|l| l.contains("no gog here")),
        "{failure:?}"
    );
}

/// What the overlay saves: an edit of the overlay rebuilds only its layer on top of the cached
/// base, where an edit of the repository's Dockerfile rebuilds everything.
#[tokio::test]
async fn the_overlay_alone_rebuilds_in_seconds() {
    let _serial = ONE_BUILD_AT_A_TIME.lock().await;
    let ctx = Ctx::new(&format!("{BASE}COPY Dockerfile /app/\n"));
    let ov = overlay_dir("1.0");
    let mut spec = ctx.spec(Some(&"c".repeat(40)));
    spec.overlay = Some(ov.path().join("Dockerfile"));
    build::build(&ctx.engine, &spec, &discard()).await.unwrap();

    write_tool(ov.path(), "1.1");
    let t = Instant::now();
    let tags = [format!("{}:overlay-only", ctx.project)];
    let base_tag = format!("{}:{}-base", ctx.project, &"c".repeat(12));
    let ov_spec = overlay::OverlaySpec::for_build(&spec, ov.path().join("Dockerfile"));
    let only = overlay::build(&ctx.engine, &ov_spec, &base_tag, &tags, &discard())
        .await
        .unwrap();
    let overlay_ms = t.elapsed().as_millis();
    assert_eq!(
        only.base_image_id,
        ctx.docker
            .inspect_image(&base_tag)
            .await
            .unwrap()
            .id
            .unwrap()
    );

    let mut full = spec.clone();
    full.no_cache = true;
    full.git_sha = Some("d".repeat(40));
    let t = Instant::now();
    build::build(&ctx.engine, &full, &discard()).await.unwrap();
    let full_ms = t.elapsed().as_millis();
    eprintln!(
        "figures: overlay-only rebuild {overlay_ms} ms, full rebuild (no cache) {full_ms} ms"
    );
    assert!(overlay_ms < full_ms, "{overlay_ms} ms vs {full_ms} ms");
}
