//! VerifyBinaries against the real engine: a busybox image with binaries baked in, one missing,
//! one not executable, one for another CPU, one copied into the running container; skills with
//! valid, anyBins and malformed frontmatter.
use std::{collections::HashMap, path::Path, time::Duration};

use bollard::query_parameters::{
    ListContainersOptionsBuilder, StopContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use clawops_agent::{
    config::{Config, ResolvedApp, VerifyConfig},
    docker::Engine,
    verify::{self, BinaryReport, BinaryStatus, Report, VerifyCache, VerifyError, VerifyOptions},
};
use testkit::{
    cleanup::ProjectGuard,
    container::ServiceContainer,
    image::{self, ImageFile},
    unique,
};

const SERVICE: &str = "gateway";

/// The first 64 bytes of an aarch64 executable: enough for the kernel (and us) to refuse it.
fn aarch64_elf() -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = 2; // 64-bit
    h[5] = 1; // little endian
    h[6] = 1;
    h[16] = 2; // ET_EXEC
    h[18..20].copy_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
    h[20] = 1;
    h[52] = 64;
    h
}

/// `tag` goes into the image so each test's image has its own id (scratch containers are
/// counted per image).
fn fixture_files(tag: &str) -> Vec<ImageFile> {
    vec![
        ImageFile::new("/etc/fixture", tag, 0o644),
        ImageFile::new("/usr/local/bin/gog", "#!/bin/sh\necho 'gog 1.4.2'\n", 0o755),
        ImageFile::new("/usr/local/bin/notexec", "#!/bin/sh\necho hi\n", 0o644),
        ImageFile::new("/usr/local/bin/armtool", aarch64_elf(), 0o755),
        ImageFile::new("/usr/local/bin/needsnode", "#!/bin/env node\n", 0o755),
        ImageFile::new("/usr/local/bin/crashy", "#!/bin/sh\nexit 3\n", 0o755),
        ImageFile::new("/usr/local/bin/slowtool", "#!/bin/sh\nsleep 30\n", 0o755),
        // Only on the PATH that the service's `environment:` sets.
        ImageFile::new(
            "/opt/tools/bin/placer",
            "#!/bin/sh\necho placer 0.3\n",
            0o755,
        ),
    ]
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A repo and a home with skills in all three places OpenClaw reads them from.
fn skills_tree(root: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let repo = root.join("repo");
    let home = root.join("home");
    write(
        &repo.join("skills/gmail/SKILL.md"),
        "---\nname: gmail\ndescription: mail\nmetadata: {\"openclaw\": {\"emoji\": \"📧\", \"requires\": {\"bins\": [\"gog\"]}}}\n---\n# Gmail\n",
    );
    write(
        &repo.join("skills/code/SKILL.md"),
        "---\nname: code\nmetadata: {\"openclaw\": {\"requires\": {\"anyBins\": [\"claude\", \"sh\"]}}}\n---\n",
    );
    write(
        &repo.join("skills/broken/SKILL.md"),
        "---\nname: broken\nmetadata: {\"openclaw\": {\"requires\": {\"bins\": [\"gog\"\n---\n",
    );
    write(
        &home.join(".openclaw/skills/places/SKILL.md"),
        "---\nmetadata:\n  openclaw:\n    requires:\n      bins: [placer]\n---\n",
    );
    write(
        &home.join(".openclaw/workspace/skills/wa/SKILL.md"),
        "---\nname: whatsapp\nmetadata: '{\"openclaw\":{\"requires\":{\"bins\":[\"wacli\"]}}}'\n---\n",
    );
    (repo, home)
}

fn app(project: &str, repo: &Path, home: &Path) -> ResolvedApp {
    ResolvedApp {
        owner: "test".into(),
        uid: 0,
        gid: 0,
        home: home.to_owned(),
        repo: repo.to_owned(),
        project: project.into(),
        state_dirs: vec![home.join(".openclaw")],
    }
}

fn agent_config() -> Config {
    Config {
        verify: VerifyConfig {
            binaries: vec!["notexec".into(), "armtool".into()],
            probes: [(
                "crashy".to_string(),
                vec!["crashy".to_string(), "check".to_string()],
            )]
            .into_iter()
            .collect(),
        },
        ..Config::default()
    }
}

fn options(binaries: &[&str]) -> VerifyOptions {
    VerifyOptions {
        binaries: binaries.iter().map(|s| s.to_string()).collect(),
        service: SERVICE.into(),
        image: None,
        run_probes: true,
        probe_timeout: Duration::from_secs(5),
        fresh: false,
    }
}

fn get<'a>(report: &'a Report, name: &str) -> &'a BinaryReport {
    report
        .binaries
        .iter()
        .find(|b| b.name == name)
        .unwrap_or_else(|| panic!("{name} not in the report: {report:#?}"))
}

/// Copies an executable into the running container, as `docker cp` or a `RUN`-less
/// `npm i -g` at runtime would.
async fn copy_in(docker: &bollard::Docker, container: &str, dir: &str, name: &str, text: &str) {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(text.len() as u64);
    header.set_mode(0o755);
    header.set_cksum();
    tar.append_data(&mut header, name, text.as_bytes()).unwrap();
    let body = tar.into_inner().unwrap();
    docker
        .upload_to_container(
            container,
            Some(UploadToContainerOptionsBuilder::default().path(dir).build()),
            bollard::body_full(body.into()),
        )
        .await
        .unwrap();
}

/// Throwaway containers made from `image_id` that are still around.
async fn scratch_left(docker: &bollard::Docker, image_id: &str) -> usize {
    let filters = HashMap::from([
        (
            "label".to_string(),
            vec!["clawops.verify-scratch=1".to_string()],
        ),
        ("ancestor".to_string(), vec![image_id.to_string()]),
    ]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    docker.list_containers(Some(options)).await.unwrap().len()
}

#[tokio::test]
async fn running_then_stopped_container() {
    let project = unique("vfy");
    let _guard = ProjectGuard::new(&project);
    let tag = format!("{project}:latest");
    let img = image::build(&tag, &fixture_files(&tag), "[\"/bin/sleep\", \"3600\"]").await;
    let docker = testkit::docker::connect().await;
    let mut svc = ServiceContainer::new(&project, SERVICE, &img.tag);
    svc.env = vec!["PATH=/opt/tools/bin:/usr/local/bin:/bin".into()];
    let id = svc.start().await;
    copy_in(
        &docker,
        &id,
        "/usr/local/bin",
        "wacli",
        "#!/bin/sh\necho wacli 2.0\n",
    )
    .await;

    let tmp = tempfile::tempdir().unwrap();
    let (repo, home) = skills_tree(tmp.path());
    let app = app(&project, &repo, &home);
    let cache = VerifyCache::default();
    let report = verify::verify(
        &Engine::new(docker.clone()),
        &app,
        &agent_config(),
        &cache,
        options(&["gog", "nosuchbin", "crashy", "slowtool", "needsnode"]),
    )
    .await
    .unwrap();

    assert!(report.container.as_ref().unwrap().running);
    assert_eq!(
        report.search_path,
        ["/opt/tools/bin", "/usr/local/bin", "/bin"]
    );
    assert!(!report.ok, "missing binaries must fail the report");

    let gog = get(&report, "gog");
    assert_eq!(gog.status, BinaryStatus::Ok, "{gog:?}");
    assert_eq!(gog.path, "/usr/local/bin/gog");
    assert_eq!(gog.version, "gog 1.4.2");
    assert_eq!(gog.mode, 0o100755);
    assert_eq!(gog.size, "#!/bin/sh\necho 'gog 1.4.2'\n".len() as u64);
    assert_eq!(gog.required_by, ["request", "gmail"]);
    assert!(gog.required);

    // From the service's PATH, not the image's default.
    let placer = get(&report, "placer");
    assert_eq!(placer.status, BinaryStatus::Ok, "{placer:?}");
    assert_eq!(placer.path, "/opt/tools/bin/placer");
    assert_eq!(placer.version, "placer 0.3");

    // busybox --install -s made a symlink; anyBins: sh is enough, claude is optional.
    let sh = get(&report, "sh");
    assert_eq!(sh.status, BinaryStatus::Ok, "{sh:?}");
    assert_eq!(sh.link_target, "/bin/busybox");
    assert!(
        sh.size > 100_000,
        "size of the target, not of the link: {sh:?}"
    );
    assert!(!sh.required);
    let claude = get(&report, "claude");
    assert_eq!(claude.status, BinaryStatus::Missing);
    assert!(!claude.required, "{claude:?}");
    assert_eq!(claude.required_by, ["code (one of claude, sh)"]);

    let missing = get(&report, "nosuchbin");
    assert_eq!(missing.status, BinaryStatus::Missing);
    assert!(missing.required);
    assert!(
        missing
            .detail
            .contains("/opt/tools/bin:/usr/local/bin:/bin"),
        "{missing:?}"
    );

    let notexec = get(&report, "notexec");
    assert_eq!(notexec.status, BinaryStatus::NotExecutable, "{notexec:?}");
    assert_eq!(notexec.mode & 0o777, 0o644);
    assert_eq!(notexec.required_by, ["config"]);

    let arm = get(&report, "armtool");
    assert_eq!(arm.status, BinaryStatus::WrongArch, "{arm:?}");
    assert!(
        arm.detail.contains("wrong CPU architecture for this VM"),
        "{arm:?}"
    );

    let wacli = get(&report, "wacli");
    assert_eq!(wacli.status, BinaryStatus::RuntimeOnly, "{wacli:?}");
    assert!(
        wacli
            .detail
            .contains("installed at runtime, will vanish on restart: add it to the Dockerfile"),
        "{wacli:?}"
    );
    assert_eq!(wacli.version, "wacli 2.0");
    assert_eq!(wacli.required_by, ["whatsapp"]);

    let crashy = get(&report, "crashy");
    assert_eq!(crashy.status, BinaryStatus::Broken, "{crashy:?}");
    assert!(crashy.detail.contains("exited with 3"), "{crashy:?}");

    let slow = get(&report, "slowtool");
    assert_eq!(slow.status, BinaryStatus::Broken, "{slow:?}");
    assert!(
        slow.detail.contains("did not finish within 5000 ms"),
        "{slow:?}"
    );

    let node = get(&report, "needsnode");
    assert_eq!(node.status, BinaryStatus::Broken, "{node:?}");
    assert!(node.detail.contains("node is not on PATH"), "{node:?}");

    assert_eq!(
        report.skill_problems.len(),
        1,
        "{:?}",
        report.skill_problems
    );
    assert!(
        report.skill_problems[0]
            .file
            .ends_with("skills/broken/SKILL.md")
    );
    assert_eq!(scratch_left(&docker, &img.id).await, 0);

    // Again, with the image's lookups remembered: the same answers.
    assert!(cache.image_sides() > 0);
    let warm = verify::verify(
        &Engine::new(docker.clone()),
        &app,
        &agent_config(),
        &cache,
        options(&["gog", "nosuchbin", "crashy", "slowtool", "needsnode"]),
    )
    .await
    .unwrap();
    let statuses = |r: &Report| {
        r.binaries
            .iter()
            .map(|b| (b.name.clone(), b.status, b.path.clone(), b.version.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(statuses(&warm), statuses(&report));
    // gog's successful probe was reused; the failed ones ran again.
    assert!(report.binaries.iter().all(|b| b.probe_reused.is_none()));
    assert!(get(&warm, "gog").probe_reused.is_some());
    for failed in ["crashy", "slowtool"] {
        assert_eq!(get(&warm, failed).probe_reused, None, "{failed}");
    }

    // Look only: nothing runs, the runtime copy is still flagged.
    let mut look = options(&["gog"]);
    look.run_probes = false;
    let report = verify::verify(
        &Engine::new(docker.clone()),
        &app,
        &agent_config(),
        &cache,
        look,
    )
    .await
    .unwrap();
    let gog = get(&report, "gog");
    assert_eq!(gog.status, BinaryStatus::NotRun, "{gog:?}");
    assert!(gog.detail.contains("--no-run"), "{gog:?}");
    assert_eq!(get(&report, "wacli").status, BinaryStatus::RuntimeOnly);

    // Stopped: the image is still checked, nothing runs, the runtime copy is still flagged.
    docker
        .stop_container(
            &id,
            Some(StopContainerOptionsBuilder::default().t(1).build()),
        )
        .await
        .unwrap();
    let report = verify::verify(
        &Engine::new(docker.clone()),
        &app,
        &agent_config(),
        &cache,
        options(&["gog"]),
    )
    .await
    .unwrap();
    assert!(!report.container.as_ref().unwrap().running);
    assert!(
        report.notes.iter().any(|n| n.contains("image checks only")),
        "{:?}",
        report.notes
    );
    let gog = get(&report, "gog");
    assert_eq!(gog.status, BinaryStatus::NotRun, "{gog:?}");
    assert!(gog.detail.contains("is not running"), "{gog:?}");
    assert_eq!(get(&report, "wacli").status, BinaryStatus::RuntimeOnly);
    assert_eq!(scratch_left(&docker, &img.id).await, 0);
}

#[tokio::test]
async fn image_alone_and_no_container() {
    let project = unique("vfy");
    let _guard = ProjectGuard::new(&project);
    let tag = format!("{project}:latest");
    let img = image::build(&tag, &fixture_files(&tag), "[\"/bin/sleep\", \"3600\"]").await;
    let docker = testkit::docker::connect().await;
    let tmp = tempfile::tempdir().unwrap();
    let app = app(&project, &tmp.path().join("repo"), &tmp.path().join("home"));

    let err = verify::verify(
        &Engine::new(docker.clone()),
        &app,
        &Config::default(),
        &VerifyCache::default(),
        options(&["gog"]),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, VerifyError::NoContainer { .. }), "{err}");
    assert!(err.to_string().contains("--image"), "{err}");
    assert!(err.to_string().contains("no compose file"), "{err}");

    // No container, but the compose file names the image and sets PATH.
    write(
        &app.repo.join("docker-compose.yml"),
        &format!(
            "services:\n  {SERVICE}:\n    image: {tag}\n    environment:\n      PATH: /opt/tools/bin:/bin\n"
        ),
    );
    let report = verify::verify(
        &Engine::new(docker.clone()),
        &app,
        &Config::default(),
        &VerifyCache::default(),
        options(&["placer", "gog"]),
    )
    .await
    .unwrap();
    assert!(report.container.is_none());
    assert_eq!(report.search_path, ["/opt/tools/bin", "/bin"]);
    assert_eq!(get(&report, "placer").status, BinaryStatus::NotRun);
    assert_eq!(get(&report, "gog").status, BinaryStatus::Missing);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("from the compose file")),
        "{:?}",
        report.notes
    );
    std::fs::remove_file(app.repo.join("docker-compose.yml")).unwrap();

    let mut opts = options(&["gog", "sh", "armtool"]);
    opts.image = Some(img.tag.clone());
    let report = verify::verify(
        &Engine::new(docker.clone()),
        &app,
        &Config::default(),
        &VerifyCache::default(),
        opts,
    )
    .await
    .unwrap();
    assert!(report.container.is_none());
    // The image sets no PATH: Docker's default applies.
    assert!(report.search_path.contains(&"/usr/local/bin".to_string()));
    assert_eq!(get(&report, "gog").status, BinaryStatus::NotRun);
    assert_eq!(get(&report, "sh").status, BinaryStatus::NotRun);
    assert_eq!(get(&report, "armtool").status, BinaryStatus::WrongArch);
    assert!(!report.ok);

    let mut opts = options(&["gog"]);
    opts.image = Some(format!("{project}-absent:latest"));
    let err = verify::verify(
        &Engine::new(docker.clone()),
        &app,
        &Config::default(),
        &VerifyCache::default(),
        opts,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, VerifyError::ImageNotFound { .. }), "{err}");

    let err = verify::verify(
        &Engine::new(docker.clone()),
        &app,
        &Config::default(),
        &VerifyCache::default(),
        options(&["a/b"]),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, VerifyError::InvalidName { .. }), "{err}");
    assert_eq!(scratch_left(&docker, &img.id).await, 0);
}

/// A probe's result stands only for the same file in the same run of the container.
#[tokio::test]
async fn probe_results_are_reused_only_for_the_same_file_in_the_same_run() {
    let project = unique("vfy");
    let _guard = ProjectGuard::new(&project);
    let tag = format!("{project}:latest");
    let img = image::build(&tag, &fixture_files(&tag), "[\"/bin/sleep\", \"3600\"]").await;
    let docker = testkit::docker::connect().await;
    let id = ServiceContainer::new(&project, SERVICE, &img.tag)
        .start()
        .await;
    let tmp = tempfile::tempdir().unwrap();
    let app = app(&project, &tmp.path().join("repo"), &tmp.path().join("home"));
    let cache = VerifyCache::default();
    let config = Config::default();
    let engine = Engine::new(docker.clone());
    let gog = |r: &Report| {
        let b = get(r, "gog");
        assert_eq!(b.status, BinaryStatus::Ok, "{b:?}");
        (b.version.clone(), b.probe_reused)
    };
    let check = |fresh: bool| {
        let mut opts = options(&["gog"]);
        opts.fresh = fresh;
        verify::verify(&engine, &app, &config, &cache, opts)
    };

    let (version, reused) = gog(&check(false).await.unwrap());
    assert_eq!((version.as_str(), reused), ("gog 1.4.2", None));
    let (version, reused) = gog(&check(false).await.unwrap());
    assert_eq!(version, "gog 1.4.2");
    assert!(reused.unwrap() < verify::PROBE_REUSE, "{reused:?}");
    assert_eq!(gog(&check(true).await.unwrap()).1, None, "--fresh runs it");

    // Another file under the same name: run again, and its own version reported.
    copy_in(
        &docker,
        &id,
        "/usr/local/bin",
        "gog",
        "#!/bin/sh\necho 'gog 9.9'\n",
    )
    .await;
    let report = check(false).await.unwrap();
    assert_eq!(get(&report, "gog").version, "gog 9.9", "{report:#?}");
    assert_eq!(get(&report, "gog").probe_reused, None);
    assert!(
        get(&check(false).await.unwrap(), "gog")
            .probe_reused
            .is_some()
    );

    // A restart is a new run of the container.
    docker
        .restart_container(
            &id,
            Some(
                bollard::query_parameters::RestartContainerOptionsBuilder::default()
                    .t(1)
                    .build(),
            ),
        )
        .await
        .unwrap();
    let report = check(false).await.unwrap();
    assert_eq!(get(&report, "gog").probe_reused, None, "{report:#?}");
    assert_eq!(scratch_left(&docker, &img.id).await, 0);
}

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A SKILL.md that is a symlink to /dev/zero or a FIFO nobody writes to: verify still answers
/// promptly, reports both as problems and reads neither into memory.
#[test]
fn skill_files_that_never_end_are_refused() {
    let project = unique("vfy");
    let _guard = ProjectGuard::new(&project);
    let tag = format!("{project}:latest");
    let tmp = tempfile::tempdir().unwrap();
    let (repo, home) = skills_tree(tmp.path());
    std::fs::create_dir_all(repo.join("skills/zero")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", repo.join("skills/zero/SKILL.md")).unwrap();
    std::fs::create_dir_all(home.join(".openclaw/skills/fifo")).unwrap();
    nix::unistd::mkfifo(
        &home.join(".openclaw/skills/fifo/SKILL.md"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let app = app(&project, &repo, &home);
    let before = rss_kib("VmRSS:");
    // Its own thread and runtime: on a hang the test fails at the deadline instead of hanging.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let report = rt.block_on(async {
            let img = image::build(&tag, &fixture_files(&tag), "[\"/bin/sleep\", \"3600\"]").await;
            let docker = testkit::docker::connect().await;
            let mut opts = options(&["gog"]);
            opts.image = Some(img.tag.clone());
            let started = std::time::Instant::now();
            let report = verify::verify(
                &Engine::new(docker.clone()),
                &app,
                &Config::default(),
                &VerifyCache::default(),
                opts,
            )
            .await;
            (report, started.elapsed())
        });
        let _ = tx.send(report);
        // Keep the runtime out of Drop: a blocked blocking-pool thread would hold it forever.
        std::mem::forget(rt);
    });
    // The image build comes first; then verify answers within 20 s, having read neither
    // endless file.
    let (report, took) = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("verify did not answer");
    assert!(took < Duration::from_secs(20), "verify took {took:?}");
    let report = report.unwrap();
    let grown_mib = rss_kib("VmHWM:").saturating_sub(before) / 1024;
    assert!(grown_mib < 30, "resident memory grew by {grown_mib} MiB");
    let problems: Vec<String> = report
        .skill_problems
        .iter()
        .map(|p| format!("{p:?}"))
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("zero") && p.contains("symbolic link")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("fifo") && p.contains("not a regular file")),
        "{problems:?}"
    );
}
