//! `bridge man`: man pages from the command line's own definition
//! (clap_mangen), one per command, so they never drift from `--help`
//! (issue 17, item 8).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, CommandFactory};

use super::{Cli, GlobalArgs};
use crate::error::{CliResult, EXIT_OK, HintExt as _};

/// Write man pages
///
/// Without --dir, prints bridge(1) on stdout (`bridge man | man -l -`).
/// With --dir, writes bridge.1 and one page per command (bridge-work.1,
/// bridge-members-add.1, …) into that folder, e.g.
/// `bridge man --dir ~/.local/share/man/man1`, then `man bridge-work`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write every page into this folder (created if missing)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn run(g: &GlobalArgs, args: ManArgs) -> CliResult<u8> {
    let Some(dir) = args.dir else {
        let mut page = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .render(&mut page)
            .context("cannot render the man page")?;
        crate::output::write_stdout_bytes(&page);
        return Ok(EXIT_OK);
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))
        .hint("choose a folder you can write to, e.g. --dir ~/.local/share/man/man1")?;
    clap_mangen::generate_to(Cli::command(), &dir)
        .with_context(|| format!("cannot write the man pages into {}", dir.display()))
        .hint("check that the folder is writable and the disk not full")?;
    if !g.quiet {
        errln!(
            "wrote the man pages into {}; if it is not on MANPATH, read one with `man -l {}`",
            dir.display(),
            dir.join("bridge-work.1").display()
        );
    }
    Ok(EXIT_OK)
}
