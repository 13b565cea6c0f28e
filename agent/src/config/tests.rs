//! Parsing and validating `agent.toml`: defaults, refusals that name the key, path helpers.
use super::*;

#[test]
fn empty_file_gives_openclaw_defaults() {
    let c = Config::parse("", Path::new("agent.toml")).unwrap();
    assert_eq!(c.app.service, "openclaw-gateway");
    assert_eq!(c.listen.port(), DEFAULT_AGENT_PORT);
    assert!(c.listen.ip().is_loopback());
    assert_eq!(c.readiness.timeout_secs, 180);
}

#[test]
fn build_paths_are_checked_at_load_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let df = dir.path().join("Dockerfile");
    std::fs::write(&df, "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n").unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&df, &link).unwrap();
    let load = |build: &str| Config::parse(&format!("[build]\n{build}"), Path::new("a.toml"));
    let ok = load(&format!(
        "overlay = {:?}\ncontext = \"docker/./app\"\ndockerfile = \"docker/app/x/../Dockerfile\"\n",
        df.display()
    ))
    .unwrap();
    assert_eq!(ok.build.overlay.as_deref(), Some(df.as_path()));
    for (build, key, want) in [
        (
            "overlay = \"Dockerfile\"\n".to_owned(),
            "build.overlay",
            "absolute",
        ),
        (
            format!("overlay = {:?}\n", link.display()),
            "build.overlay",
            "symlink",
        ),
        (
            format!("overlay = {:?}\n", dir.path().join("nope").display()),
            "build.overlay",
            "create the file",
        ),
        (
            "context = \"../elsewhere\"\n".to_owned(),
            "build.context",
            "inside",
        ),
        (
            "context = \"a/../../b\"\n".to_owned(),
            "build.context",
            "inside",
        ),
        (
            "context = \"/srv/app\"\n".to_owned(),
            "build.context",
            "relative",
        ),
        (
            "context = \".\"\ndockerfile = \"../Dockerfile\"\n".to_owned(),
            "build.dockerfile",
            "inside",
        ),
        (
            "dockerfile = \"Dockerfile\"\n".to_owned(),
            "build.dockerfile",
            "context",
        ),
    ] {
        let err = load(&build).unwrap_err().to_string();
        assert!(err.starts_with(key) && err.contains(want), "{build}: {err}");
    }
}

/// The error `text` is refused with, as the user sees it.
fn refused(text: &str) -> String {
    Config::parse(text, Path::new("a.toml"))
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_files_are_refused_naming_the_key() {
    for (text, wants) in [
        // An unknown key names itself and the file.
        ("[app]\nservic = \"x\"\n", &["servic", "a.toml"][..]),
        ("[build]\nkeep_images = \"three\"\n", &["keep_images"]),
        ("[app]\nbranch = \"--upload-pack=x\"\n", &["app.branch"]),
        ("listen = \"0.0.0.0:18777\"\n", &["SSH tunnel"]),
        (
            "[verify]\nbinaries = [\"bin/gog\"]\n",
            &["verify.binaries", "'/'"],
        ),
        (
            "[verify.probes]\ngog = []\n",
            &["verify.probes", "empty argv"],
        ),
    ] {
        let err = refused(text);
        assert!(wants.iter().all(|w| err.contains(w)), "{text}: {err}");
    }
    Config::parse(
        "[verify.probes]\ngog = [\"gog\", \"version\"]\n",
        Path::new("a.toml"),
    )
    .unwrap();
}

#[test]
fn project_name_follows_compose() {
    assert_eq!(
        compose_project_name(Path::new("/home/u/OpenClaw")),
        "openclaw"
    );
    assert_eq!(compose_project_name(Path::new("/x/_my.app")), "myapp");
}

#[test]
fn home_expansion() {
    assert_eq!(
        expand_home(Path::new("~/.openclaw"), Path::new("/home/u")),
        PathBuf::from("/home/u/.openclaw")
    );
    assert_eq!(
        expand_home(Path::new("/srv/x"), Path::new("/home/u")),
        PathBuf::from("/srv/x")
    );
}
