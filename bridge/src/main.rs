//! `bridge`: turn CI runners and your own devices into one local-first task
//! pool. This crate is the command line only: arguments, terminal output and
//! progress, signals, GitHub Actions log conventions, and what to tell the
//! user about each error ([`hints`]). Everything it does is the engine's
//! (`bridge-engine`, over `bridge-vault`, `bridge-store`, `bridge-model`,
//! `bridge-crypto`, `bridge-exec` and `bridge-fetch`) or the GitHub API
//! client's (`bridge-github`); the workspace README draws how they depend on
//! each other.

// Every write to stdout or stderr goes through `output`'s macros, which
// never panic on a closed pipe (issue 12, item 18).
#![deny(clippy::print_stdout, clippy::print_stderr)]
#![warn(clippy::too_many_lines)]

#[macro_use]
mod output;
mod action_pin;
mod commands;
mod downloads;
mod error;
mod github;
mod hints;
mod notify;
mod report;
mod settings;

// The engine's modules, under the names the commands have always used.
use bridge_engine::{
    audience, budget, compact, files, freshness, keys, publish, run_policy, secrets, shard, sync,
    taskfile, vault, worker, workspace,
};

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
        // A worker's task spawner (see `bridge_exec::spawner`), the same.
        if std::env::args_os().nth(1).as_deref()
            == Some(std::ffi::OsStr::new(bridge_exec::spawner::SPAWNER_ARG))
        {
            let code = bridge_exec::spawner::main();
            return ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX));
        }
    }
    // Before any thread starts: hide this process from the tasks it runs,
    // resolve the settings from the environment (the one place it is read),
    // and take the secrets out of it (see `secrets`).
    let hardened = secrets::harden_process();
    let settings = settings::Settings::from_env();
    secrets::remove_from_env();
    output::probe_surroundings(settings.github_actions);
    bridge_engine::clock::set_test_offset(settings.engine.test_hooks.clock_offset_ms);
    // Then, on GitHub Actions, mask the identity before anything (even a
    // usage error) can print.
    mask_identity_on_github(&settings);
    // One TLS crypto provider (ring) for every HTTPS client: downloads and
    // the GitHub API.
    bridge_fetch::install_tls_provider();
    let mut cli = Cli::parse();
    cli.global.settings = settings;
    init_tracing(
        cli.global.verbose,
        cli.global.quiet,
        cli.global.settings.no_color,
    );
    if let Err(e) = hardened {
        tracing::warn!("{e}; tasks run by this process may read its memory");
    }
    let result = commands::run(cli);
    // The tasks' spawner (if `work` or `run` started one) ends with us.
    #[cfg(target_os = "linux")]
    bridge_exec::spawner::shutdown();
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
            let e = e.with_advice();
            errout!("{}", output::safe_lines(&e.to_string()));
            ExitCode::from(if e.code == 0 { EXIT_ERROR } else { e.code })
        }
    }
}

/// On GitHub Actions, asks the runner to mask the identity in every log line
/// before anything else is printed.
fn mask_identity_on_github(settings: &settings::Settings) {
    use std::io::Write;
    if !settings.github_actions {
        return;
    }
    if let Some(secret) = &settings.engine.identity {
        let secret = secret.to_string_lossy();
        let secret = secret.trim();
        if !secret.is_empty() {
            let mut out = std::io::stdout().lock();
            // One mask per line of the value, as the runner masks line by line.
            for line in secret.lines().filter(|l| !l.trim().is_empty()) {
                let _ = writeln!(out, "::add-mask::{}", line.trim());
            }
            let _ = out.flush();
        }
    }
}

/// The log filter unless `BRIDGE_LOG` sets one: warnings by default, INFO
/// with -v, DEBUG with -vv. INFO is for -v only, in every crate: the old
/// default's `bridge=info` also matched `bridge_store`, `bridge_engine`, …
/// (a target matches by prefix), so their INFO lines showed by default
/// (issue 17, item 8).
fn default_log_filter(verbose: u8, quiet: bool) -> &'static str {
    match (quiet, verbose) {
        // octocrab logs each failed request at error level; bridge reports
        // it itself, with the call and a hint.
        (true, _) => "error,automerge=off,octocrab=off",
        (false, 0) => "warn,automerge=off,octocrab=off",
        (false, 1) => "info,automerge=off,octocrab=off",
        (false, _) => "debug",
    }
}

fn init_tracing(verbose: u8, quiet: bool, no_color: bool) {
    use tracing_subscriber::EnvFilter;
    let default = default_log_filter(verbose, quiet);
    let filter = EnvFilter::try_from_env("BRIDGE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // The level's colour is the only ANSI bridge writes itself:
        // never with NO_COLOR (https://no-color.org), nor off a terminal.
        .with_ansi(std::io::stderr().is_terminal() && !no_color)
        .without_time()
        .with_target(false)
        .init();
}
