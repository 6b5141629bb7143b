//! `bridge completions SHELL`: the shell's completion script, from the
//! command line's own definition (clap_complete), so it never drifts from
//! the flags (issue 17, item 8).

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::{Cli, GlobalArgs};
use crate::error::{CliResult, EXIT_OK};

/// Print a shell completion script
///
/// Load it in the current shell, or install it where your shell looks:
///
///   bash:  source <(bridge completions bash)
///          bridge completions bash > ~/.local/share/bash-completion/completions/bridge
///   zsh:   bridge completions zsh > ~/.zfunc/_bridge   (with fpath+=~/.zfunc before compinit)
///   fish:  bridge completions fish > ~/.config/fish/completions/bridge.fish
///   elvish: eval (bridge completions elvish | slurp)
///   powershell: bridge completions powershell | Out-String | Invoke-Expression
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell
    #[arg(value_name = "SHELL")]
    pub shell: Shell,
}

pub fn run(_g: &GlobalArgs, args: CompletionsArgs) -> CliResult<u8> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "bridge", &mut script);
    crate::output::write_stdout_bytes(&script);
    Ok(EXIT_OK)
}
