//! `clawops targets`: the named targets of the config file and whether their tokens are there.
use clap::Args;
use clawops::{
    ClientError,
    targets::{ConfigFile, Env, TokenState},
};
use serde_json::json;

use super::output::Output;

/// List the named targets (~/.config/clawops/config.toml, or CLAWOPS_CONFIG): their address,
/// token file and whether the token is in place. `-t NAME` uses one; `default = "NAME"` in the
/// file picks the one used when no target is given.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawops targets
  clawops targets --json

A config file:
  default = \"prod\"

  [targets.prod]
  via = \"gcloud://openclaw-gateway?zone=us-central1-a&project=my-proj\"

  [targets.lab]
  via = \"ssh://me@lab-vm:2222\"
  token_file = \"~/secrets/lab.token\"      # default: ~/.config/clawops/tokens/lab
  agent_port = 18777
  ssh_options = [\"IdentityFile=~/.ssh/lab\"]")]
pub struct TargetsArgs {}

pub fn run(_args: TargetsArgs, out: &Output) -> Result<u8, ClientError> {
    let env = Env::from_process();
    let file = ConfigFile::load(&env)?;
    let mut rows = Vec::new();
    for (name, t) in &file.config.targets {
        let path = file.token_path(name, &env)?;
        let state = TokenState::of(&path);
        rows.push((name, t, path, state));
    }
    if out.json {
        let targets: Vec<_> = rows
            .iter()
            .map(|(name, t, path, state)| {
                json!({
                    "name": name,
                    "via": t.via,
                    "agent_port": t.agent_port,
                    "ssh_options": t.ssh_options,
                    "token_file": path,
                    "token": state.as_str(),
                    "token_error": match state {
                        TokenState::Unreadable(e) => Some(e),
                        _ => None,
                    },
                    "default": file.config.default.as_deref() == Some(name.as_str()),
                })
            })
            .collect();
        out.json_line(&json!({
            "config": file.path,
            "exists": file.exists,
            "default": file.config.default,
            "targets": targets,
        }));
        return Ok(0);
    }
    let path = file.path.display();
    if !file.exists {
        println!(
            "no targets: {path} does not exist. Create it with, for example:\n\n\
             [targets.prod]\n\
             via = \"gcloud://openclaw-gateway?zone=us-central1-a&project=MY_PROJECT\"\n\n\
             then run `clawops token fetch -t prod` and `clawops -t prod status`."
        );
        return Ok(0);
    }
    if rows.is_empty() {
        println!("no targets in {path}: add a [targets.NAME] table with a `via` key");
        return Ok(0);
    }
    println!("targets in {path} (* = default):");
    let name_w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(4);
    let via_w = rows.iter().map(|r| r.1.via.len()).max().unwrap_or(0);
    println!("  {:<name_w$}  {:<via_w$}  TOKEN", "NAME", "VIA");
    for (name, t, token_path, state) in &rows {
        let mark = if file.config.default.as_deref() == Some(name.as_str()) {
            '*'
        } else {
            ' '
        };
        let what = match state {
            TokenState::Readable => String::new(),
            TokenState::Missing | TokenState::Empty => {
                format!(" (run `clawops token fetch -t {name}`)")
            }
            TokenState::Unreadable(e) => format!(" ({e})"),
        };
        println!(
            "{mark} {name:<name_w$}  {:<via_w$}  {:<10} {}{what}",
            t.via,
            state.as_str(),
            token_path.display()
        );
    }
    if env.token.is_some() {
        println!("CLAWOPS_TOKEN is set: it is used instead of these token files");
    }
    Ok(0)
}
