//! Named targets for laptops and CI: `~/.config/clawops/config.toml`, which agent a command
//! goes to (flags, then environment, then the config's `default`), and where its token comes
//! from. Everything here takes the environment as an [`Env`] value so it can be tested without
//! touching the process environment.
//!
//! ```toml
//! default = "prod"
//!
//! [targets.prod]
//! via = "gcloud://openclaw-gateway?zone=us-central1-a&project=my-proj"
//! token_file = "~/.config/clawops/tokens/prod"   # optional, this is the default
//! agent_port = 18777                             # optional
//! ssh_options = ["IdentityFile=~/.ssh/gcp"]      # optional, ssh -o values
//! ```
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use crate::{ClientError, ConnectOptions, DEFAULT_AGENT_PORT, Target};

/// The config file's format, as written by users: unknown keys are errors.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The target used when no --via, --addr or --target is given.
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub targets: BTreeMap<String, TargetConfig>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// `ssh://[user@]host[:port]` or `gcloud://VM?zone=Z&project=P[&iap=true][&user=U]`.
    pub via: String,
    /// The token file; `~/` is the home directory, a relative path is relative to the config
    /// file. Default: `<config dir>/tokens/<name>`.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub agent_port: Option<u16>,
    /// `ssh -o` values, e.g. `IdentityFile=~/.ssh/vm`.
    #[serde(default)]
    pub ssh_options: Vec<String>,
}

/// The config file as loaded: where it is, whether it exists, and its validated content.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub exists: bool,
    pub config: Config,
}

#[derive(Debug, thiserror::Error)]
pub enum TargetsError {
    #[error(
        "cannot tell where the config file is: set HOME, XDG_CONFIG_HOME or CLAWOPS_CONFIG \
         (or pass --via/--addr)"
    )]
    NoHome,
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{0}")]
    Choice(String),
    #[error("{0}")]
    NoToken(String),
}

impl From<TargetsError> for ClientError {
    fn from(e: TargetsError) -> Self {
        ClientError::Usage(e.to_string())
    }
}

/// The environment variables that choose a target and a token.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub home: Option<PathBuf>,
    pub xdg_config_home: Option<PathBuf>,
    /// `CLAWOPS_CONFIG`: the config file's path.
    pub config: Option<PathBuf>,
    /// `CLAWOPS_ADDR`, `CLAWOPS_VIA`, `CLAWOPS_TARGET`: like the flags, below them.
    pub addr: Option<String>,
    pub via: Option<String>,
    pub target: Option<String>,
    /// `CLAWOPS_TOKEN`: the token itself.
    pub token: Option<String>,
}

impl Env {
    pub fn from_process() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self {
            home: var("HOME").map(PathBuf::from),
            xdg_config_home: var("XDG_CONFIG_HOME").map(PathBuf::from),
            config: var("CLAWOPS_CONFIG").map(PathBuf::from),
            addr: var("CLAWOPS_ADDR"),
            via: var("CLAWOPS_VIA"),
            target: var("CLAWOPS_TARGET"),
            token: std::env::var("CLAWOPS_TOKEN").ok(),
        }
    }

    /// `$XDG_CONFIG_HOME/clawops`, else `~/.config/clawops`. Token files live here even when
    /// CLAWOPS_CONFIG points the config elsewhere.
    pub fn config_dir(&self) -> Result<PathBuf, TargetsError> {
        // The XDG spec says to ignore a relative XDG_CONFIG_HOME.
        match (&self.xdg_config_home, &self.home) {
            (Some(x), _) if x.is_absolute() => Ok(x.join("clawops")),
            (_, Some(home)) => Ok(home.join(".config").join("clawops")),
            _ => Err(TargetsError::NoHome),
        }
    }

    /// `CLAWOPS_CONFIG`, else `<config dir>/config.toml`.
    pub fn config_path(&self) -> Result<PathBuf, TargetsError> {
        match &self.config {
            Some(p) => Ok(p.clone()),
            None => Ok(self.config_dir()?.join("config.toml")),
        }
    }

    /// `<config dir>/tokens/<name>`, where `clawops token fetch -t NAME` writes by default.
    pub fn default_token_path(&self, name: &str) -> Result<PathBuf, TargetsError> {
        Ok(self.config_dir()?.join("tokens").join(name))
    }

    fn expand(&self, path: &Path, base: &Path) -> PathBuf {
        if let (Ok(rest), Some(home)) = (path.strip_prefix("~"), &self.home) {
            return home.join(rest);
        }
        base.join(path)
    }
}

impl ConfigFile {
    /// Loads the config file the environment points at; a missing file is an empty config.
    pub fn load(env: &Env) -> Result<Self, TargetsError> {
        Self::load_from(&env.config_path()?, env)
    }

    pub fn load_from(path: &Path, env: &Env) -> Result<Self, TargetsError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    path: path.to_owned(),
                    exists: false,
                    config: Config::default(),
                });
            }
            Err(source) => {
                return Err(TargetsError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        Self::parse(&text, path, env)
    }

    /// Parses and validates; `~/` and relative `token_file`s come back as absolute paths.
    pub fn parse(text: &str, path: &Path, env: &Env) -> Result<Self, TargetsError> {
        let invalid = |message: String| TargetsError::Invalid {
            path: path.to_owned(),
            message,
        };
        let mut config: Config =
            toml::from_str(text).map_err(|e| invalid(e.to_string().trim_end().to_owned()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for (name, t) in &mut config.targets {
            check_name(name).map_err(|m| invalid(format!("[targets.{name}]: {m}")))?;
            Target::parse_via(&t.via).map_err(|e| invalid(format!("[targets.{name}] via: {e}")))?;
            if t.agent_port == Some(0) {
                return Err(invalid(format!(
                    "[targets.{name}] agent_port: 0 is not a port (the agent's default is {DEFAULT_AGENT_PORT})"
                )));
            }
            for opt in &t.ssh_options {
                check_ssh_option(opt)
                    .map_err(|m| invalid(format!("[targets.{name}] ssh_options: {m}")))?;
            }
            if let Some(file) = &t.token_file {
                t.token_file = Some(env.expand(file, base));
            }
        }
        if let Some(default) = &config.default
            && !config.targets.contains_key(default)
        {
            return Err(invalid(format!(
                "default = {default:?} names no target (known: {})",
                known(&config)
            )));
        }
        Ok(Self {
            path: path.to_owned(),
            exists: true,
            config,
        })
    }

    /// The file a target's token is read from (and `token fetch` writes to).
    pub fn token_path(&self, name: &str, env: &Env) -> Result<PathBuf, TargetsError> {
        match self
            .config
            .targets
            .get(name)
            .and_then(|t| t.token_file.clone())
        {
            Some(p) => Ok(p),
            None => env.default_token_path(name),
        }
    }
}

/// A target name or an ssh option that cannot be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SyntaxError {
    #[error(
        "a target name is 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit"
    )]
    TargetName,
    #[error("{0:?} is not an ssh option: write KEY=VALUE, e.g. \"IdentityFile=~/.ssh/vm\"")]
    SshOption(String),
}

/// Target names become file names (`tokens/<name>`) and appear in commands users copy.
fn check_name(name: &str) -> Result<(), SyntaxError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(SyntaxError::TargetName)
    }
}

/// `KEY=VALUE` (or `KEY VALUE`), as `ssh -o` takes them.
pub fn check_ssh_option(opt: &str) -> Result<(), SyntaxError> {
    let key = opt.split(['=', ' ']).next().unwrap_or("");
    if key.is_empty() || key.len() == opt.len() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(SyntaxError::SshOption(opt.to_owned()));
    }
    Ok(())
}

fn known(config: &Config) -> String {
    if config.targets.is_empty() {
        "none".into()
    } else {
        config
            .targets
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub addr: Option<String>,
    pub via: Option<String>,
    pub target: Option<String>,
    pub agent_port: Option<u16>,
    pub token_file: Option<PathBuf>,
    pub ssh_options: Vec<String>,
}

/// Where a command goes, with everything needed to connect except the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The target's name when it came from the config file.
    pub name: Option<String>,
    pub target: Target,
    pub agent_port: u16,
    /// Command-line options first: ssh uses the first value it sees for each option.
    pub ssh_options: Vec<String>,
    /// The token file for a named target (configured or default; it may not exist yet).
    pub token_path: Option<PathBuf>,
    /// How the target was chosen, for messages: `--via`, `CLAWOPS_VIA`, `default in FILE`, …
    pub chosen_by: String,
}

impl Resolved {
    /// `-t prod`, or the `--via`/`--addr` form, for commands to suggest.
    pub fn flag(&self) -> String {
        match (&self.name, &self.target) {
            (Some(name), _) => format!("-t {name}"),
            (None, Target::Addr(addr)) => format!("--addr {addr}"),
            (None, _) => "--via …".into(),
        }
    }

    /// How to reach this target's agent with `token`.
    pub fn connect_options(&self, token: impl Into<String>) -> ConnectOptions {
        ConnectOptions {
            target: self.target.clone(),
            agent_port: self.agent_port,
            token: token.into(),
            ssh_options: self.ssh_options.clone(),
        }
    }
}

enum Choice {
    Addr(String),
    Via(String),
    Named(String),
}

/// Picks the target: one of --addr/--via/--target, else one of CLAWOPS_ADDR/CLAWOPS_VIA/
/// CLAWOPS_TARGET, else the config's `default`.
pub fn resolve(sel: &Selection, env: &Env) -> Result<Resolved, TargetsError> {
    let (choice, chosen_by) = choose(sel, env)?;
    let mut resolved = Resolved {
        name: None,
        target: Target::Addr(String::new()),
        agent_port: sel.agent_port.unwrap_or(DEFAULT_AGENT_PORT),
        ssh_options: sel.ssh_options.clone(),
        token_path: None,
        chosen_by,
    };
    match choice {
        Choice::Addr(addr) => resolved.target = Target::Addr(addr),
        Choice::Via(via) => {
            resolved.target = Target::parse_via(&via)
                .map_err(|e| TargetsError::Choice(format!("{}: {e}", resolved.chosen_by)))?;
        }
        Choice::Named(name) => {
            let file = ConfigFile::load(env)?;
            let Some(t) = file.config.targets.get(&name) else {
                return Err(unknown_target(&name, &file));
            };
            resolved.target =
                Target::parse_via(&t.via).expect("validated when the config was loaded");
            resolved.agent_port = sel
                .agent_port
                .or(t.agent_port)
                .unwrap_or(DEFAULT_AGENT_PORT);
            resolved.ssh_options.extend(t.ssh_options.iter().cloned());
            resolved.token_path = Some(file.token_path(&name, env)?);
            resolved.name = Some(name);
        }
    }
    Ok(resolved)
}

fn choose(sel: &Selection, env: &Env) -> Result<(Choice, String), TargetsError> {
    let flags = [
        (&sel.addr, "--addr"),
        (&sel.via, "--via"),
        (&sel.target, "--target"),
    ];
    let vars = [
        (&env.addr, "CLAWOPS_ADDR"),
        (&env.via, "CLAWOPS_VIA"),
        (&env.target, "CLAWOPS_TARGET"),
    ];
    for set in [flags, vars] {
        let given: Vec<_> = set.iter().filter(|(v, _)| v.is_some()).collect();
        match given.as_slice() {
            [] => continue,
            [(value, how)] => {
                let value = value.as_deref().unwrap_or_default().to_owned();
                let choice = match *how {
                    "--addr" | "CLAWOPS_ADDR" => Choice::Addr(value),
                    "--via" | "CLAWOPS_VIA" => Choice::Via(value),
                    _ => Choice::Named(value),
                };
                return Ok((choice, (*how).to_owned()));
            }
            many => {
                let names: Vec<&str> = many.iter().map(|(_, how)| *how).collect();
                return Err(TargetsError::Choice(format!(
                    "{} each choose the agent: give only one",
                    names.join(" and ")
                )));
            }
        }
    }
    let file = ConfigFile::load(env)?;
    match &file.config.default {
        Some(name) => Ok((
            Choice::Named(name.clone()),
            format!("default in {}", file.path.display()),
        )),
        None => Err(TargetsError::Choice(format!(
            "where is the agent? Pass -t NAME (a target in {}; `clawops targets` lists them), \
             --via ssh://USER@HOST, --via 'gcloud://VM?zone=ZONE&project=PROJECT', or --addr \
             http://127.0.0.1:PORT, or set `default = \"NAME\"` in that file (on the VM itself: \
             `clawops local …`)",
            file.path.display()
        ))),
    }
}

fn unknown_target(name: &str, file: &ConfigFile) -> TargetsError {
    let add = format!(
        "add it:\n\n[targets.{name}]\nvia = \"gcloud://VM?zone=ZONE&project=PROJECT\"   # or ssh://USER@HOST"
    );
    let path = file.path.display();
    TargetsError::Choice(if file.exists {
        format!(
            "no target named {name:?} in {path} (known: {}); {add}",
            known(&file.config)
        )
    } else {
        format!("no target named {name:?}: {path} does not exist; create it and {add}")
    })
}

/// Where the token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Flag(PathBuf),
    Env,
    File(PathBuf),
}

/// The token: --token-file, CLAWOPS_TOKEN, then the named target's token file.
pub fn resolve_token(
    sel: &Selection,
    env: &Env,
    resolved: &Resolved,
) -> Result<(String, TokenSource), TargetsError> {
    let fetch_hint = match &resolved.name {
        Some(name) => format!("run `clawops token fetch -t {name}`"),
        None => "run `clawops token fetch --via … --output FILE` and pass --token-file FILE, or \
                 name the target in the config file and run `clawops token fetch -t NAME`"
            .into(),
    };
    if let Some(path) = &sel.token_file {
        let what = format!("--token-file {}", path.display());
        let text = std::fs::read_to_string(path)
            .map_err(|e| TargetsError::NoToken(format!("cannot read {what}: {e}")))?;
        private(path, &what)?;
        return Ok((non_empty(text, &what)?, TokenSource::Flag(path.clone())));
    }
    if let Some(token) = &env.token {
        return Ok((non_empty(token.clone(), "CLAWOPS_TOKEN")?, TokenSource::Env));
    }
    if let (Some(name), Some(path)) = (&resolved.name, &resolved.token_path) {
        return match std::fs::read_to_string(path) {
            Ok(text) => {
                let what = format!("{} (the token of target {name})", path.display());
                private(path, &what)?;
                let token = non_empty(text, &what)
                    .map_err(|e| TargetsError::NoToken(format!("{e}: {fetch_hint}")))?;
                Ok((token, TokenSource::File(path.clone())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(TargetsError::NoToken(format!(
                    "no token for target {name}: {fetch_hint} (it writes {}), or pass \
                     --token-file FILE or set CLAWOPS_TOKEN",
                    path.display()
                )))
            }
            Err(e) => Err(TargetsError::NoToken(format!(
                "cannot read {} (the token of target {name}): {e}",
                path.display()
            ))),
        };
    }
    Err(TargetsError::NoToken(format!(
        "no token: pass --token-file FILE or set CLAWOPS_TOKEN (the agent's token is \
         /etc/clawops/token on the VM); or {fetch_hint}"
    )))
}

/// A token file others can read is a leaked token waiting to happen: refused, as the agent
/// refuses its own.
fn private(path: &Path, what: &str) -> Result<(), TargetsError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode())
        .unwrap_or(0);
    if mode & 0o077 != 0 {
        return Err(TargetsError::NoToken(format!(
            "{what} can be read by group or others (mode {:o}): `chmod 600 {}`, and if others \
             could have read it, rotate the token on the VM",
            mode & 0o777,
            path.display()
        )));
    }
    Ok(())
}

fn non_empty(token: String, what: &str) -> Result<String, TargetsError> {
    let token = token.trim().to_owned();
    if token.is_empty() {
        Err(TargetsError::NoToken(format!("{what} is empty")))
    } else {
        Ok(token)
    }
}

/// Whether a token file is there and readable, for `clawops targets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenState {
    Readable,
    Missing,
    Empty,
    Unreadable(String),
}

impl TokenState {
    pub fn of(path: &Path) -> Self {
        match std::fs::read_to_string(path) {
            Ok(t) if t.trim().is_empty() => TokenState::Empty,
            Ok(_) => TokenState::Readable,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => TokenState::Missing,
            Err(e) => TokenState::Unreadable(e.to_string()),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            TokenState::Readable => "ok",
            TokenState::Missing => "missing",
            TokenState::Empty => "empty",
            TokenState::Unreadable(_) => "unreadable",
        }
    }
}
