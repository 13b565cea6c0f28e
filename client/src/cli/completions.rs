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
