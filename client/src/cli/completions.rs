//! `clawops completions`: shell completion scripts, generated from the CLI definition.
use clap::{Args, CommandFactory};
use clap_complete::Shell;
use clawops::ClientError;

use super::Cli;

/// Print the completion script for a shell on stdout.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawops completions bash > ~/.local/share/bash-completion/completions/clawops
  clawops completions zsh > ~/.zfunc/_clawops     # with fpath+=(~/.zfunc) in ~/.zshrc
  clawops completions fish > ~/.config/fish/completions/clawops.fish")]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn run(args: CompletionsArgs) -> Result<u8, ClientError> {
    let mut command = Cli::command();
    clap_complete::generate(args.shell, &mut command, "clawops", &mut std::io::stdout());
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// `--help` of every command, at every depth, ends with an example.
    #[test]
    fn every_command_has_an_example() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for sub in cmd.get_subcommands() {
                let path = format!("{path} {}", sub.get_name());
                let help = sub
                    .get_after_help()
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                if !help.contains("clawops ") {
                    missing.push(path.clone());
                }
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "clawops", &mut missing);
        assert!(missing.is_empty(), "no example in --help of: {missing:?}");
    }
}
