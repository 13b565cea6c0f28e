//! `clawops verify` end to end: the CLI binary → gRPC with the token → a real agent process →
//! the real engine.

use testkit::{
    agent::AgentProcess,
    cleanup::ProjectGuard,
    container::ServiceContainer,
    image::{self, ImageFile},
    unique,
};

fn clawops(agent: &AgentProcess, args: &[&str]) -> (i32, String, String) {
    let out = agent.cli(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_table_json_and_exit_codes() {
    let project = unique("vfycli");
    let _guard = ProjectGuard::new(&project);
    let tag = format!("{project}:latest");
    let files = [
        ImageFile::new("/etc/fixture", tag.as_str(), 0o644),
        ImageFile::new("/usr/local/bin/gog", "#!/bin/sh\necho 'gog 1.4.2'\n", 0o755),
    ];
    let img = image::build(&tag, &files, "[\"/bin/sleep\", \"3600\"]").await;
    ServiceContainer::new(&project, "gateway", &img.tag)
        .start()
        .await;
    let repo = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(&format!(
        "[app]\nrepo = {:?}\nproject = {project:?}\nservice = \"gateway\"\n[verify]\nbinaries = [\"gog\"]\n",
        repo.path().display().to_string()
    ));

    let (code, stdout, stderr) = clawops(&agent, &["verify", "sh"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("BINARY"), "{stdout}");
    let gog = stdout
        .lines()
        .find(|l| l.starts_with("gog "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        gog.contains("ok") && gog.contains("gog 1.4.2") && gog.contains("config"),
        "{gog}"
    );
    assert!(stdout.contains("/bin/sh -> /bin/busybox"), "{stdout}");
    assert!(
        stdout.contains("all required binaries are in the image"),
        "{stdout}"
    );

    let (code, stdout, stderr) = clawops(&agent, &["verify", "--no-run", "--json"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["binaries"][0]["status"], "not_run", "{report}");

    let (code, stdout, stderr) = clawops(&agent, &["verify", "nosuchbin", "--json"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["container"]["running"], true);
    let names: Vec<_> = report["binaries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["name"].as_str().unwrap(), b["status"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [("nosuchbin", "missing"), ("gog", "ok")]);
    // gog's probe succeeded a moment ago in this container: reused, and said so.
    assert!(
        report["binaries"][1]["probe_reused_age_secs"].is_u64(),
        "{report}"
    );

    let (code, stdout, stderr) = clawops(&agent, &["verify"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("the version of gog is from a probe") && stdout.contains("--fresh"),
        "{stdout}"
    );
    let (code, stdout, stderr) = clawops(&agent, &["verify", "--fresh", "--json"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        report["binaries"][0]["probe_reused_age_secs"].is_null(),
        "{report}"
    );
    let (code, _, stderr) = clawops(&agent, &["verify", "--fresh", "--no-run"]);
    assert_eq!(code, 2, "--fresh with --no-run is a usage error: {stderr}");

    let (code, _, stderr) = clawops(&agent, &["verify", "bin/gog"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("contains '/'"), "{stderr}");

    let (code, _, stderr) = clawops(&agent, &["verify", "--service", "nope"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("no container of service \"nope\""),
        "{stderr}"
    );
}
