//! `bridge demo`: a complete run on the embedded default, a local folder
//! store, with two simulated devices. It drives real `bridge` processes (this
//! same binary) so what it shows is exactly what a user would type.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, anyhow};
use clap::Args;

use super::GlobalArgs;
use crate::error::{CliResult, EXIT_OK};

/// The demo's task file and books, embedded so the demo runs from anywhere.
const FILES: &[(&str, &str)] = &[
    (
        "tasks.yaml",
        include_str!("../../../examples/demo/tasks.yaml"),
    ),
    (
        "books/alice.txt",
        include_str!("../../../examples/demo/books/alice.txt"),
    ),
    (
        "books/frankenstein.txt",
        include_str!("../../../examples/demo/books/frankenstein.txt"),
    ),
    (
        "books/pride.txt",
        include_str!("../../../examples/demo/books/pride.txt"),
    ),
    (
        "books/time-machine.txt",
        include_str!("../../../examples/demo/books/time-machine.txt"),
    ),
];

/// Run a demo: two devices share tasks through a local folder store
///
/// Creates a temporary folder holding a shared store and two device folders
/// ("laptop" and "desktop"), submits examples/demo/tasks.yaml from the laptop
/// while it is offline, lets the desktop work some tasks and the laptop the
/// rest, syncs, and prints the result. Every step is a real `bridge` command,
/// printed before it runs. No account and no network are needed.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to create the demo (default: a new temporary folder, kept afterwards)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn run(_g: &GlobalArgs, args: DemoArgs) -> CliResult<u8> {
    let root = match args.dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!(
            "bridge-demo-{}",
            hex::encode(crate::workspace::random_bytes::<4>()?)
        )),
    };
    let shared = root.join("shared-store");
    let laptop = root.join("laptop");
    let desktop = root.join("desktop");
    for d in [&shared, &laptop, &desktop] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    for (name, text) in FILES {
        let path = laptop.join("demo").join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let exe = std::env::current_exe().context("cannot find the bridge binary")?;
    let remote = format!("dir:{}", shared.display());
    outln!("bridge demo in {}\n", root.display());

    step("The laptop creates a workspace whose remote is a shared folder (a USB stick, say):");
    bridge(&exe, &laptop, "laptop", &["init", "--remote", &remote])?;
    step("The desktop makes its identity; the laptop, the workspace's admin, adds its public key:");
    bridge(&exe, &desktop, "desktop", &["keygen"])?;
    let desktop_key = whoami(&exe, &desktop, "desktop")?.1;
    let root = whoami(&exe, &laptop, "laptop")?.0;
    bridge(
        &exe,
        &laptop,
        "laptop",
        &[
            "members",
            "add",
            "desktop",
            &desktop_key,
            "--role",
            "submit",
        ],
    )?;
    step("The desktop joins the same store, pinning the laptop's root key:");
    bridge(
        &exe,
        &desktop,
        "desktop",
        &["join", &remote, "--root", &root],
    )?;
    step("The laptop, offline, submits 4 counting tasks and a report that needs them:");
    bridge(
        &exe,
        &laptop,
        "laptop",
        &["submit", "--offline", "demo/tasks.yaml"],
    )?;
    bridge(&exe, &laptop, "laptop", &["status"])?;
    step("Back online, the laptop syncs; the desktop syncs and works two tasks:");
    bridge(&exe, &laptop, "laptop", &["sync"])?;
    bridge(
        &exe,
        &desktop,
        "desktop",
        &["work", "--parallel", "2", "--max-tasks", "2"],
    )?;
    step("The laptop works what is left (it pulls the desktop's results first):");
    bridge(&exe, &laptop, "laptop", &["work", "--parallel", "2"])?;
    step("The desktop syncs: both devices now show the same status.");
    bridge(&exe, &desktop, "desktop", &["sync"])?;
    bridge(&exe, &desktop, "desktop", &["ls"])?;
    step("The report's output, fetched on the desktop:");
    let results = desktop.join("results");
    bridge(
        &exe,
        &desktop,
        "desktop",
        &["outputs", "report", "--to", &results.display().to_string()],
    )?;
    let report = std::fs::read_to_string(results.join("report.txt"))
        .with_context(|| format!("cannot read {}", results.join("report.txt").display()))?;
    outln!("{report}");
    outln!("Try it yourself: cd {} && bridge status", desktop.display());
    Ok(EXIT_OK)
}

fn step(text: &str) {
    outln!("\n## {text}");
}

/// The member id and public key of the device living in `dir`.
fn whoami(exe: &Path, dir: &Path, device: &str) -> CliResult<(String, String)> {
    let out = device_command(exe, dir, device)
        .args(["whoami", "--json"])
        .output()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        anyhow!(
            "`bridge whoami --json` on the {device} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })?;
    match (v["member"].as_str(), v["public_key"].as_str()) {
        (Some(m), Some(k)) => Ok((m.to_owned(), k.to_owned())),
        _ => Err(anyhow!("`bridge whoami --json` on the {device} printed {v}").into()),
    }
}

/// A `bridge` command for the device living in `dir`: its own folder, name
/// and configuration (so its own identity).
fn device_command(exe: &Path, dir: &Path, device: &str) -> Command {
    let mut c = Command::new(exe);
    c.current_dir(dir)
        .env("BRIDGE_DEVICE", device)
        .env("BRIDGE_CONFIG_DIR", dir.join(".config"))
        .env_remove("BRIDGE_WORKSPACE")
        .env_remove("BRIDGE_IDENTITY");
    c
}

/// Runs `bridge ARGS` as the device living in `dir`, showing the command.
fn bridge(exe: &Path, dir: &Path, device: &str, args: &[&str]) -> CliResult<()> {
    outln!("[{device}]$ bridge {}", args.join(" "));
    let status = device_command(exe, dir, device)
        .args(args)
        .status()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    if !status.success() {
        return Err(anyhow!(
            "`bridge {}` on the {device} failed ({status})",
            args.join(" ")
        )
        .into());
    }
    Ok(())
}
