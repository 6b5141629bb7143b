//! The command line: one module per subcommand, each an `Args` struct whose
//! doc comment is its help text and one `run` function.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::error::CliResult;

mod archive;
mod arglines;
mod audience;
mod cancel;
mod common;
mod compact;
mod completions;
mod demo;
mod dispatch;
mod exec;
mod gc;
mod init;
mod joblog;
mod join;
mod keygen;
mod logs;
mod ls;
mod man;
mod members;
mod outputs;
mod report;
mod retry;
mod run;
mod run_log;
mod show;
mod status;
mod submit;
mod sync;
mod task_output;
mod usage;
mod watch;
mod whoami;
mod work;

const AFTER_HELP: &str = "\
A workspace is a folder with a bridge.toml; its tasks live in a local replica
(.bridge/store) and, when a remote is set, in a shared store that devices and
runners sync with. Every command works offline on the replica.

Start here:
  bridge init --remote dir:/mnt/shared/pool   create a workspace (the remote is optional)
  bridge submit tasks.yaml                    submit the tasks of a file
  bridge work --parallel 4                    run runnable tasks on this device
  bridge exec -- CMD ARGS                     run one command through the pool, as if here
  bridge status                               see where things stand
  bridge report                               write an HTML page of the pool
  bridge sync                                 exchange tasks and results with the remote
  bridge init --github OWNER/REPO             let that repository's Actions runners drain the pool
  bridge dispatch --watch                     start runners for the pending work and follow them

Exit codes: 0 ok, 1 error, 2 bad command line, 3 a task failed (work, watch),
4 remote unreachable (sync), 5 this machine cannot run tasks, 6 a watched run
ended with tasks left or failed, 7 remote misconfigured (local writes kept),
130 stopped by Ctrl-C/SIGTERM.
Set BRIDGE_LOG=debug for detailed logs.";

/// Turn CI runners and your own devices into one local-first task pool
#[derive(Debug, Parser)]
#[command(name = "bridge", version, after_help = AFTER_HELP, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Use the workspace in this folder instead of searching upwards for bridge.toml
    #[arg(
        long,
        short = 'C',
        global = true,
        env = "BRIDGE_WORKSPACE",
        value_name = "DIR"
    )]
    pub workspace: Option<PathBuf>,
    /// Say more (-v: info, -vv: debug)
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Print only errors
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// The settings from the environment, resolved once in `main` (see
    /// [`crate::settings`]); not a flag.
    #[arg(skip)]
    pub settings: crate::settings::Settings,
}

impl GlobalArgs {
    /// The engine's settings, for a workspace to open.
    pub fn engine(&self) -> std::sync::Arc<bridge_engine::settings::Settings> {
        self.settings.engine.clone()
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Init(init::InitArgs),
    Join(join::JoinArgs),
    Submit(submit::SubmitArgs),
    Exec(exec::ExecArgs),
    Status(status::StatusArgs),
    Ls(ls::LsArgs),
    Show(show::ShowArgs),
    Logs(logs::LogsArgs),
    Outputs(outputs::OutputsArgs),
    Report(report::ReportArgs),
    Cancel(cancel::CancelArgs),
    Retry(retry::RetryArgs),
    Work(work::WorkArgs),
    Run(run::RunArgs),
    Dispatch(dispatch::DispatchArgs),
    Watch(watch::WatchArgs),
    Usage(usage::UsageArgs),
    Sync(sync::SyncArgs),
    Compact(compact::CompactArgs),
    Archive(archive::ArchiveArgs),
    Gc(gc::GcArgs),
    Demo(demo::DemoArgs),
    Keygen(keygen::KeygenArgs),
    Whoami(whoami::WhoamiArgs),
    Members(members::MembersArgs),
    Audience(audience::AudienceArgs),
    Completions(completions::CompletionsArgs),
    Man(man::ManArgs),
}

/// Runs the command; returns the process exit code.
pub fn run(cli: Cli) -> CliResult<u8> {
    let g = &cli.global;
    match cli.command {
        Command::Init(a) => init::run(g, a),
        Command::Join(a) => join::run(g, a),
        Command::Submit(a) => submit::run(g, a),
        Command::Exec(a) => exec::run(g, a),
        Command::Audience(a) => audience::run(g, a),
        Command::Status(a) => status::run(g, a),
        Command::Ls(a) => ls::run(g, a),
        Command::Show(a) => show::run(g, a),
        Command::Logs(a) => logs::run(g, a),
        Command::Outputs(a) => outputs::run(g, a),
        Command::Report(a) => report::run(g, a),
        Command::Cancel(a) => cancel::run(g, a),
        Command::Retry(a) => retry::run(g, a),
        Command::Work(a) => work::run(g, a),
        Command::Run(a) => run::run(g, a),
        Command::Dispatch(a) => dispatch::run(g, a),
        Command::Watch(a) => watch::run(g, a),
        Command::Usage(a) => usage::run(g, a),
        Command::Sync(a) => sync::run(g, a),
        Command::Compact(a) => compact::run(g, a),
        Command::Archive(a) => archive::run(g, a),
        Command::Gc(a) => gc::run(g, a),
        Command::Demo(a) => demo::run(g, a),
        Command::Keygen(a) => keygen::run(g, a),
        Command::Whoami(a) => whoami::run(g, a),
        Command::Members(a) => members::run(g, a),
        Command::Completions(a) => completions::run(g, a),
        Command::Man(a) => man::run(g, a),
    }
}
