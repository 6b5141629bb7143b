//! `bridge exec`: one command offloaded to the pool as if it ran here. It
//! is a composition of the other commands, each run as a child `bridge`
//! process (the same binary): `submit` the task, wait for it (`sync`,
//! `show`), run it here with `work --task` when nobody else takes it,
//! `logs -f` to stream its output, `outputs` to bring its files back, and
//! `cancel` on Ctrl-C. Each step is then exactly what a person would type,
//! with the same checks, and this module only decides what to run next.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use clap::{Args, ValueEnum};

use super::GlobalArgs;
use crate::error::{CliError, CliResult, EXIT_INTERRUPTED, HintExt as _};

/// Run one command through the pool, as if it ran here
///
/// Submits CMD as one task, waits for it wherever it runs, streams its
/// output as it lands, copies its output files into the current folder and
/// exits with its exit code: it can stand in for the command in a script or
/// a Makefile (`make CC='bridge exec -- cc'`).
///
/// Inputs are the --input files, else the arguments that name files in
/// this folder; outputs are the --output globs, else the argument after
/// `-o`. An identical task already done is a cache hit: its output and
/// files come back at once. Ctrl-C cancels the task.
///
/// Where it runs (--on): `any` (default) lets another device or a runner
/// take it for --wait, then runs it here (at once when offline);
/// `devices` runs it here at once; `runners` never runs it here (start
/// runners with `bridge dispatch`).
///
/// Examples:
///   bridge exec -- python3 fit.py data.csv
///   bridge exec --wait 30s --output 'plots/*.png' -- ./render scene.json
///   make CC='bridge exec -- cc'
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ExecArgs {
    /// Where the task may run
    #[arg(long, value_enum, default_value_t = On::Any)]
    pub on: On,
    /// How long others may take it before it runs here (with --on any)
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    pub wait: String,
    /// An input file, copied into the task's folder (repeatable; default:
    /// the arguments that name files here)
    #[arg(long = "input", value_name = "PATH")]
    pub inputs: Vec<String>,
    /// A glob of output files to bring back (repeatable; default: the
    /// argument after -o)
    #[arg(long = "output", value_name = "GLOB")]
    pub outputs: Vec<String>,
    /// Do not sync with the remote: run it here
    #[arg(long)]
    pub offline: bool,
    /// The command and its arguments
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Where `bridge exec` lets its task run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum On {
    Any,
    Devices,
    Runners,
}

/// How often the task is looked at while it waits.
const LOOK_EVERY: Duration = Duration::from_millis(500);

pub fn run(g: &GlobalArgs, args: ExecArgs) -> CliResult<u8> {
    let wait = humantime::parse_duration(&args.wait)
        .with_context(|| format!("--wait {} is not a duration", args.wait))
        .hint("write e.g. 30s or 2m")?;
    if args.on == On::Runners && args.offline {
        return Err(CliError::hint(
            anyhow!("--on runners and --offline: no runner could ever see the task"),
            "drop --offline, or run it here with --on devices",
        ));
    }
    let me = Me::new(g)?;
    let (inputs, outputs) = files_of(&args);
    let mut submit: Vec<String> = vec!["submit".into(), "--json".into()];
    if args.offline {
        submit.push("--offline".into());
    }
    for i in &inputs {
        submit.extend(["--input".into(), i.clone()]);
    }
    for o in &outputs {
        submit.extend(["--output".into(), o.clone()]);
    }
    submit.push("--".into());
    submit.extend(args.command.iter().cloned());
    let submitted = me.json(&submit)?;
    let id = submitted["tasks"][0]["id"]
        .as_str()
        .ok_or_else(|| anyhow!("`bridge submit` named no task: {submitted}"))?
        .to_owned();
    // Ctrl-C: cancel the task, then stop.
    let interrupted = on_signal()?;
    let cancel = |me: &Me| -> CliResult<u8> {
        let _ = me.status(&["cancel", "-q", &id]);
        errln!("bridge exec: cancelled task {id}");
        Ok(EXIT_INTERRUPTED)
    };
    let started = Instant::now();
    let mut worker: Option<Child> = None;
    loop {
        if interrupted.load(Ordering::Relaxed) {
            if let Some(mut w) = worker.take() {
                let _ = w.kill();
                let _ = w.wait();
            }
            return cancel(&me);
        }
        let status = me.task_status(&id)?;
        if status != "pending" && status != "blocked" {
            break;
        }
        let here = match args.on {
            On::Runners => false,
            On::Devices => true,
            On::Any => args.offline || started.elapsed() >= wait,
        };
        if here && worker.is_none() {
            let mut work = vec!["work", "-q", "--task", id.as_str()];
            if args.offline {
                work.push("--offline");
            }
            worker = Some(me.spawn(&work)?);
        } else if !args.offline && worker.is_none() {
            // Others may have taken it: their claims come with a sync.
            let _ = me.status(&["sync", "-q"]);
        }
        if let Some(w) = worker.as_mut()
            && w.try_wait().ok().flatten().is_some()
        {
            // It ended before we saw it run (a fast task): nothing to
            // follow, the result is in the replica.
            worker = None;
            break;
        }
        std::thread::sleep(LOOK_EVERY);
    }
    // Its output as it lands (here, or once its device pushes it).
    let logs = me
        .spawn_inherit(&["logs", "-f", "--interval", "2s", &id])?
        .wait()
        .context("cannot wait for `bridge logs -f`")?;
    if let Some(mut w) = worker.take() {
        let _ = w.wait();
    }
    if interrupted.load(Ordering::Relaxed) {
        return cancel(&me);
    }
    if !logs.success() {
        return Err(anyhow!("`bridge logs -f {id}` failed").into());
    }
    finish(&me, &id)
}

/// A flag set on the first Ctrl-C or SIGTERM (a thread of its own waits
/// for them, as the loop here blocks on child processes).
fn on_signal() -> CliResult<Arc<AtomicBool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal watcher")?;
    let (ready, installed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        runtime.block_on(async move {
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                let _ = ready.send(false);
                return;
            };
            let _ = ready.send(true);
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            set.store(true, Ordering::Relaxed);
        });
    });
    // The handlers are in place before any task exists.
    if installed.recv() != Ok(true) {
        return Err(anyhow!("cannot listen for Ctrl-C and SIGTERM").into());
    }
    Ok(flag)
}

/// Copies the outputs of done task `id` here and returns its exit code.
fn finish(me: &Me, id: &str) -> CliResult<u8> {
    let task = me.json(&["show", "--json", id])?;
    let status = task["status"].as_str().unwrap_or_default();
    if status == "done" {
        let copied = me.status(&["outputs", "-q", "--to", ".", id])?;
        if !copied.success() {
            return Err(anyhow!("cannot copy the outputs of task {id} here").into());
        }
        return Ok(0);
    }
    // The attempt that decided it: the latest (RFC 3339 times in UTC
    // sort as text).
    let code = task["attempts"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .max_by_key(|a| a["ended_at"].as_str().unwrap_or_default().to_owned())
                .and_then(|a| a["exit_code"].as_i64())
        })
        .and_then(|c| u8::try_from(c).ok())
        .filter(|c| *c != 0)
        .unwrap_or(1);
    if status != "failed" {
        errln!("bridge exec: task {id} is {status}");
    }
    Ok(code)
}

/// The `bridge` binary running this command, and the global flags its
/// children get.
struct Me {
    exe: std::path::PathBuf,
    global: Vec<String>,
}

impl Me {
    fn new(g: &GlobalArgs) -> CliResult<Me> {
        let exe = std::env::current_exe().context("cannot find the bridge binary that runs")?;
        let mut global = Vec::new();
        if let Some(dir) = &g.workspace {
            global.extend(["-C".to_owned(), dir.display().to_string()]);
        }
        Ok(Me { exe, global })
    }

    fn command(&self, args: &[impl AsRef<str>]) -> Command {
        let mut c = Command::new(&self.exe);
        c.args(&self.global).args(args.iter().map(AsRef::as_ref));
        c
    }

    /// Runs `bridge ARGS`, its stdout parsed as JSON (its stderr passed on).
    fn json(&self, args: &[impl AsRef<str>]) -> CliResult<serde_json::Value> {
        let out = self
            .command(args)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .context("cannot run bridge")?;
        if !out.status.success() {
            let code = out
                .status
                .code()
                .and_then(|c| u8::try_from(c).ok())
                .unwrap_or(1);
            return Err(CliError::hint(
                anyhow!(
                    "`bridge {}` failed (above)",
                    args.first().map_or("", AsRef::as_ref)
                ),
                "bridge exec stopped before its task ran to the end",
            )
            .with_code(code));
        }
        Ok(serde_json::from_slice(&out.stdout).context("bridge printed no JSON")?)
    }

    fn task_status(&self, id: &str) -> CliResult<String> {
        let task = self.json(&["show", "--json", id])?;
        Ok(task["status"].as_str().unwrap_or_default().to_owned())
    }

    /// Runs `bridge ARGS` quietly (its stderr passed on).
    fn status(&self, args: &[&str]) -> CliResult<ExitStatus> {
        Ok(self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .context("cannot run bridge")?)
    }

    fn spawn(&self, args: &[&str]) -> CliResult<Child> {
        Ok(self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start bridge")?)
    }

    fn spawn_inherit(&self, args: &[&str]) -> CliResult<Child> {
        Ok(self
            .command(args)
            .stdin(Stdio::null())
            .spawn()
            .context("cannot start bridge")?)
    }
}

/// The inputs and outputs: the flags', else the arguments that name files
/// in this folder (inputs) and the one after `-o` (output).
fn files_of(args: &ExecArgs) -> (Vec<String>, Vec<String>) {
    let words = args.command.get(1..).unwrap_or_default();
    let inputs = if args.inputs.is_empty() {
        words.iter().filter(|w| relative_file(w)).cloned().collect()
    } else {
        args.inputs.clone()
    };
    let outputs = if args.outputs.is_empty() {
        words
            .iter()
            .enumerate()
            .filter_map(|(i, w)| match w.strip_prefix("-o") {
                Some("") => words.get(i + 1).cloned(),
                Some(file) if !w.starts_with("--") => Some(file.to_owned()),
                _ => None,
            })
            .filter(|o| !o.starts_with('/') && !o.split('/').any(|c| c == ".."))
            .collect()
    } else {
        args.outputs.clone()
    };
    (inputs, outputs)
}

/// Whether `word` names a regular file below this folder.
fn relative_file(word: &str) -> bool {
    let p = Path::new(word);
    p.is_relative() && !p.components().any(|c| c.as_os_str() == "..") && p.is_file()
}
