//! `bridge`: turn CI runners and your own devices into one local-first task
//! pool. This crate is the glue: the command line, the terminal output and
//! the worker loop. The task model, the store and process execution live in
//! the library crates under `crates/`.

// Every write to stdout or stderr goes through `output`'s macros, which
// never panic on a closed pipe (issue 12, item 18).
#![deny(clippy::print_stdout, clippy::print_stderr)]

#[macro_use]
mod output;
mod audience;
mod cache;
mod commands;
mod compact;
mod downloads;
mod error;
mod files;
mod freshness;
mod github;
mod hints;
mod keys;
mod publish;
mod run_policy;
mod sandbox;
mod secrets;
mod shard;
mod snapshot;
mod taskfile;
mod vault;
mod workarea;
mod worker;
mod workspace;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use crate::commands::Cli;
use crate::error::EXIT_ERROR;

fn main() -> ExitCode {
    // A task's supervisor is this executable started again (see
    // `bridge_exec::supervisor`): it does that and nothing else.
    #[cfg(target_os = "linux")]
    {
        let mut args = std::env::args_os();
        if args.nth(1).as_deref()
            == Some(std::ffi::OsStr::new(
                bridge_exec::supervisor::SUPERVISOR_ARG,
            ))
        {
            let code = bridge_exec::supervisor::main(args);
            return ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX));
        }
    }
    // Before any thread starts: hide this process from the tasks it runs,
    // and take the secrets out of the environment (see `secrets`).
    let hardened = secrets::harden_process();
    secrets::take_from_env();
    // Then, on GitHub Actions, mask the identity before anything (even a
    // usage error) can print.
    keys::mask_on_github();
    // One TLS crypto provider (ring) for every HTTPS client: downloads and
    // the GitHub API.
    bridge_fetch::install_tls_provider();
    let cli = Cli::parse();
    init_tracing(cli.global.verbose, cli.global.quiet);
    if let Err(e) = hardened {
        tracing::warn!("{e}; tasks run by this process may read its memory");
    }
    let result = commands::run(cli);
    // A write error on stdout other than a closed pipe (a full disk behind
    // `> file`): the output is incomplete, so the command did not succeed.
    if let Some(e) = output::stdout_error() {
        errout!(
            "Error: cannot write to standard output: {e}\nHint: check the file or pipe it goes to; the output above is incomplete\n"
        );
        if matches!(result, Ok(0)) {
            return ExitCode::from(EXIT_ERROR);
        }
    }
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // A closed pipe (`bridge ls | head`) is not an error.
            if e.error.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::from(0);
            }
            errout!("{}", output::safe_lines(&e.to_string()));
            ExitCode::from(if e.code == 0 { EXIT_ERROR } else { e.code })
        }
    }
}

fn init_tracing(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match (quiet, verbose) {
        // octocrab logs each failed request at error level; bridge reports
        // it itself, with the call and a hint.
        (true, _) => "error,automerge=off,octocrab=off",
        (false, 0) => "warn,bridge=info,automerge=off,octocrab=off",
        (false, 1) => "info,automerge=off,octocrab=off",
        (false, _) => "debug",
    };
    let filter = EnvFilter::try_from_env("BRIDGE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(false)
        .init();
}
