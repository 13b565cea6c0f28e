//! Named targets: the config file (good, unknown keys, bad URLs), which target a command goes
//! to and where its token comes from, `clawops -t NAME status` through a real sshd, `clawops
//! targets`, and `clawops completions`.
mod cli_home;

use std::{os::unix::fs::PermissionsExt, path::Path};

use clawops::{
    Target,
    targets::{ConfigFile, Env, Selection, TokenSource, TokenState, resolve, resolve_token},
};
use cli_home::{Home, ssh_options_toml};
use testkit::{agent::AgentProcess, sshd::Sshd};

fn env_in(dir: &Path) -> Env {
    Env {
        home: Some(dir.join("home")),
        xdg_config_home: Some(dir.join("xdg")),
        ..Env::default()
    }
}

const GOOD: &str = r#"
default = "prod"

[targets.prod]
via = "gcloud://openclaw-gateway?zone=us-central1-a&project=p1"

[targets.lab]
via = "ssh://me@lab-vm:2222"
token_file = "~/secrets/lab.token"
agent_port = 19000
ssh_options = ["IdentityFile=/keys/lab", "IdentitiesOnly=yes"]

[targets."ci.gw"]
via = "ssh://ci@10.0.0.5"
token_file = "tokens/ci"
"#;

#[test]
fn a_good_config_parses_with_paths_expanded() {
    let dir = tempfile::tempdir().unwrap();
    let env = env_in(dir.path());
    let path = dir.path().join("cfg/config.toml");
    let file = ConfigFile::parse(GOOD, &path, &env).unwrap();
    let c = &file.config;
    assert_eq!(c.default.as_deref(), Some("prod"));
    assert_eq!(c.targets.len(), 3);
    let lab = &c.targets["lab"];
    assert_eq!(lab.agent_port, Some(19000));
    assert_eq!(
        lab.token_file.as_deref(),
        Some(dir.path().join("home/secrets/lab.token").as_path())
    );
    // A relative token_file is relative to the config file; no token_file → tokens/<name>.
    assert_eq!(
        file.token_path("ci.gw", &env).unwrap(),
        dir.path().join("cfg/tokens/ci")
    );
    assert_eq!(
        file.token_path("prod", &env).unwrap(),
        dir.path().join("xdg/clawops/tokens/prod")
    );
}

#[test]
fn unknown_keys_bad_urls_and_bad_names_are_errors_that_say_where() {
    let dir = tempfile::tempdir().unwrap();
    let env = env_in(dir.path());
    let path = dir.path().join("config.toml");
    let err = |text: &str| {
        ConfigFile::parse(text, &path, &env)
            .unwrap_err()
            .to_string()
    };
    let shown = path.display().to_string();

    let e = err("[targets.prod]\nvia = \"ssh://vm\"\ntokenfile = \"/t\"\n");
    assert!(e.contains(&shown) && e.contains("tokenfile"), "{e}");
    let e = err("defualt = \"prod\"\n");
    assert!(e.contains(&shown) && e.contains("defualt"), "{e}");

    let e = err("[targets.prod]\nvia = \"http://vm\"\n");
    assert!(
        e.contains(&shown) && e.contains("[targets.prod] via") && e.contains("ssh://"),
        "{e}"
    );
    let e = err("[targets.prod]\nvia = \"gcloud://vm?zone=a&zome=b\"\n");
    assert!(e.contains("zome"), "{e}");
    let e = err("[targets.prod]\nvia = \"ssh://-oProxyCommand=x\"\n");
    assert!(e.contains("[targets.prod]"), "{e}");
    let e = err("[targets.prod]\ntoken_file = \"/t\"\n");
    assert!(e.contains("via"), "{e}");

    let e = err("default = \"nope\"\n[targets.prod]\nvia = \"ssh://vm\"\n");
    assert!(e.contains("nope") && e.contains("prod"), "{e}");
    let e = err("[targets.\"../x\"]\nvia = \"ssh://vm\"\n");
    assert!(e.contains("target name"), "{e}");
    let e = err("[targets.p]\nvia = \"ssh://vm\"\nssh_options = [\"-oProxyCommand=x\"]\n");
    assert!(e.contains("KEY=VALUE"), "{e}");
    let e = err("[targets.p]\nvia = \"ssh://vm\"\nagent_port = 0\n");
    assert!(e.contains("agent_port"), "{e}");

    // Through the binary: exit 2 and the same words.
    let home = Home::new();
    let cfg = home.write_config("[targets.prod]\nvia = \"ssh://vm\"\nport = 22\n");
    let run = home.run(&["-t", "prod", "status"]).expect(2);
    assert!(
        run.stderr().contains(&cfg.display().to_string()) && run.stderr().contains("`port`"),
        "{}",
        run.stderr()
    );
}

#[test]
fn flags_beat_variables_beat_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = env_in(dir.path());
    let cfg = dir.path().join("xdg/clawops/config.toml");
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    std::fs::write(&cfg, GOOD).unwrap();
    let mut sel = Selection::default();

    let r = resolve(&sel, &env).unwrap();
    assert_eq!(r.name.as_deref(), Some("prod"));
    assert!(r.chosen_by.starts_with("default in "), "{}", r.chosen_by);
    assert_eq!(r.agent_port, clawops::DEFAULT_AGENT_PORT);

    env.via = Some("ssh://env-vm".into());
    let r = resolve(&sel, &env).unwrap();
    assert_eq!(r.name, None);
    assert_eq!(r.chosen_by, "CLAWOPS_VIA");
    assert!(matches!(r.target, Target::Ssh { ref host, .. } if host == "env-vm"));

    env.target = Some("lab".into());
    let e = resolve(&sel, &env).unwrap_err().to_string();
    assert!(e.contains("CLAWOPS_VIA and CLAWOPS_TARGET"), "{e}");

    // Any flag beats any variable.
    sel.target = Some("lab".into());
    sel.ssh_options = vec!["IdentityFile=/cli".into()];
    let r = resolve(&sel, &env).unwrap();
    assert_eq!(r.name.as_deref(), Some("lab"));
    assert_eq!(r.chosen_by, "--target");
    assert_eq!(r.agent_port, 19000);
    // The command line's options come first: ssh keeps the first value of an option.
    assert_eq!(
        r.ssh_options,
        [
            "IdentityFile=/cli",
            "IdentityFile=/keys/lab",
            "IdentitiesOnly=yes"
        ]
    );
    sel.agent_port = Some(1234);
    assert_eq!(resolve(&sel, &env).unwrap().agent_port, 1234);

    sel.addr = Some("http://127.0.0.1:1".into());
    let e = resolve(&sel, &env).unwrap_err().to_string();
    assert!(e.contains("--addr and --target"), "{e}");

    sel = Selection {
        target: Some("nope".into()),
        ..Selection::default()
    };
    let e = resolve(&sel, &env).unwrap_err().to_string();
    assert!(
        e.contains("\"nope\"")
            && e.contains("known: ci.gw, lab, prod")
            && e.contains("[targets.nope]"),
        "{e}"
    );

    // No flag, no variable, no default: say every way to choose.
    std::fs::write(&cfg, "[targets.lab]\nvia = \"ssh://vm\"\n").unwrap();
    let e = resolve(&Selection::default(), &env_in(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("-t NAME")
            && e.contains("--via")
            && e.contains("--addr")
            && e.contains("default"),
        "{e}"
    );
    // CLAWOPS_CONFIG moves the config file.
    let other = dir.path().join("other.toml");
    std::fs::write(
        &other,
        "default = \"x\"\n[targets.x]\nvia = \"ssh://other\"\n",
    )
    .unwrap();
    let env = Env {
        config: Some(other),
        ..env_in(dir.path())
    };
    assert_eq!(
        resolve(&Selection::default(), &env)
            .unwrap()
            .name
            .as_deref(),
        Some("x")
    );
}

#[test]
fn token_comes_from_flag_then_variable_then_the_targets_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = env_in(dir.path());
    let cfg = dir.path().join("xdg/clawops/config.toml");
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    std::fs::write(&cfg, GOOD).unwrap();
    let mut sel = Selection {
        target: Some("prod".into()),
        ..Selection::default()
    };
    let resolved = resolve(&sel, &env).unwrap();

    let e = resolve_token(&sel, &env, &resolved)
        .unwrap_err()
        .to_string();
    assert!(e.contains("run `clawops token fetch -t prod`"), "{e}");
    assert!(e.contains("xdg/clawops/tokens/prod"), "{e}");

    let default_file = dir.path().join("xdg/clawops/tokens/prod");
    std::fs::create_dir_all(default_file.parent().unwrap()).unwrap();
    write_private(&default_file, "from-default\n");
    let (t, src) = resolve_token(&sel, &env, &resolved).unwrap();
    assert_eq!(
        (t.as_str(), src),
        ("from-default", TokenSource::File(default_file.clone()))
    );

    env.token = Some(" from-env ".into());
    let (t, src) = resolve_token(&sel, &env, &resolved).unwrap();
    assert_eq!((t.as_str(), src), ("from-env", TokenSource::Env));

    let flag = dir.path().join("flag.token");
    std::fs::write(&flag, "from-flag").unwrap();
    sel.token_file = Some(flag.clone());
    // Readable by others (the umask's 0644): refused, with the fix.
    let e = resolve_token(&sel, &env, &resolved)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("read by group or others")
            && e.contains(&format!("chmod 600 {}", flag.display())),
        "{e}"
    );
    write_private(&flag, "from-flag");
    let (t, src) = resolve_token(&sel, &env, &resolved).unwrap();
    assert_eq!((t.as_str(), src), ("from-flag", TokenSource::Flag(flag)));

    // A configured token_file replaces the default path; empty files say what to do.
    let lab = Selection {
        target: Some("lab".into()),
        ..Selection::default()
    };
    let env = env_in(dir.path());
    let resolved = resolve(&lab, &env).unwrap();
    let lab_file = dir.path().join("home/secrets/lab.token");
    let e = resolve_token(&lab, &env, &resolved)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&lab_file.display().to_string()) && e.contains("-t lab"),
        "{e}"
    );
    std::fs::create_dir_all(lab_file.parent().unwrap()).unwrap();
    write_private(&lab_file, "\n");
    let e = resolve_token(&lab, &env, &resolved)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("empty") && e.contains("token fetch -t lab"),
        "{e}"
    );
    assert_eq!(TokenState::of(&lab_file), TokenState::Empty);

    // An unnamed target has no token file to fall back on.
    let via = Selection {
        via: Some("ssh://vm".into()),
        ..Selection::default()
    };
    let resolved = resolve(&via, &env).unwrap();
    let e = resolve_token(&via, &env, &resolved)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--token-file") && e.contains("CLAWOPS_TOKEN"),
        "{e}"
    );
}

#[test]
fn named_target_status_through_a_real_sshd_and_the_listing() {
    let agent = AgentProcess::start("");
    let sshd = Sshd::start();
    let home = Home::new();
    let cfg = home.write_config(&format!(
        "default = \"vm\"\n\n[targets.vm]\nvia = {via:?}\nagent_port = {port}\n\
         ssh_options = {opts}\n\n[targets.other]\nvia = \"ssh://nobody@127.0.0.1:1\"\n",
        via = sshd.url(),
        port = agent.addr.port(),
        opts = ssh_options_toml(&sshd),
    ));

    // No token yet: exit 2 and the command that fixes it.
    let run = home.run(&["-t", "vm", "status"]).expect(2);
    assert!(
        run.stderr().contains("clawops token fetch -t vm"),
        "{}",
        run.stderr()
    );

    let tokens = home.clawops_dir().join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    std::fs::copy(agent.token_file(), tokens.join("vm")).unwrap();
    for args in [
        &["-t", "vm", "status"][..],
        &["status", "--target", "vm"][..],
        &["status"][..], // the default
    ] {
        let run = home.run(args).expect(0);
        assert!(
            run.stdout().contains("clawops-agent") && run.stdout().contains(&sshd.url()),
            "{args:?}: {}\nsshd: {}",
            run.stdout(),
            sshd.log()
        );
    }
    // --via on the command line beats the default; here it is a dead end (exit 3).
    let run = home
        .command(&["--via", "ssh://nobody@127.0.0.1:1", "status"])
        .env("CLAWOPS_TOKEN", "x")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(3));

    let run = home.run(&["targets"]).expect(0);
    let out = run.stdout();
    assert!(out.contains(&cfg.display().to_string()), "{out}");
    let line = |name: &str| {
        out.lines()
            .find(|l| l.split_whitespace().any(|w| w == name))
            .unwrap_or_else(|| panic!("no {name} in {out}"))
            .to_owned()
    };
    let vm = line("vm");
    assert!(vm.starts_with("* vm ") && vm.contains(&sshd.url()), "{out}");
    assert!(vm.contains(" ok ") && vm.ends_with("tokens/vm"), "{out}");
    let other = line("other");
    assert!(
        other.starts_with("  other ")
            && other.contains(" missing ")
            && other.ends_with("(run `clawops token fetch -t other`)"),
        "{out}"
    );

    let run = home.run(&["targets", "--json"]).expect(0);
    let json: serde_json::Value = serde_json::from_slice(&run.0.stdout).unwrap();
    assert_eq!(json["default"], "vm");
    let vm = &json["targets"].as_array().unwrap()[1];
    assert_eq!(vm["name"], "vm");
    assert_eq!(vm["token"], "ok");
    assert_eq!(vm["default"], true);
    assert_eq!(json["targets"][0]["token"], "missing");

    // A token file nobody can read (root reads anything, so only check the listing's shape).
    let unreadable = tokens.join("vm");
    std::fs::set_permissions(&unreadable, std::fs::Permissions::from_mode(0o000)).unwrap();
    let run = home.run(&["targets", "--json"]).expect(0);
    let json: serde_json::Value = serde_json::from_slice(&run.0.stdout).unwrap();
    let state = json["targets"][1]["token"].as_str().unwrap().to_owned();
    assert!(state == "ok" || state == "unreadable", "{state}");
}

#[test]
fn targets_without_a_config_file_says_how_to_start() {
    let home = Home::new();
    let run = home.run(&["targets"]).expect(0);
    assert!(
        run.stdout().contains("does not exist") && run.stdout().contains("[targets.prod]"),
        "{}",
        run.stdout()
    );
    let run = home.run(&["targets", "--json"]).expect(0);
    let json: serde_json::Value = serde_json::from_slice(&run.0.stdout).unwrap();
    assert_eq!(json["exists"], false);
    assert_eq!(json["targets"], serde_json::json!([]));
}

#[test]
fn completions_for_every_shell() {
    let home = Home::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let run = home.run(&["completions", shell]).expect(0);
        let script = run.stdout();
        assert!(
            script.len() > 1000 && script.contains("clawops") && script.contains("tunnel"),
            "{shell}: {script}"
        );
    }
    let run = home.run(&["completions", "bash"]).expect(0);
    assert!(run.stdout().contains("--target"));
    let run = home.run(&["completions", "tcsh"]).expect(2);
    assert!(run.stderr().contains("bash"), "{}", run.stderr());
}

fn write_private(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}
