//! `bridge demo`: complete runs on this machine, driving real `bridge`
//! processes (this same binary) so that what it shows is exactly what a
//! user would type. Two demos: CI runners draining a pool kept in a git
//! repository ([`runners`], the default: the product's main job, issue 16
//! item 10), and two devices sharing a folder store ([`devices`]). This
//! module holds what they share: the embedded files, the folders, and how
//! a device's command is made and shown.

mod devices;
mod render;
mod runners;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, anyhow};
use clap::{Args, ValueEnum};

use super::GlobalArgs;
use crate::error::CliResult;

/// The demos' task files and books, embedded so the demo runs from anywhere.
const FILES: &[(&str, &str)] = &[
    (
        "tasks.yaml",
        include_str!("../../../../examples/demo/tasks.yaml"),
    ),
    (
        "runners.yaml",
        include_str!("../../../../examples/demo/runners.yaml"),
    ),
    (
        "books/alice.txt",
        include_str!("../../../../examples/demo/books/alice.txt"),
    ),
    (
        "books/frankenstein.txt",
        include_str!("../../../../examples/demo/books/frankenstein.txt"),
    ),
    (
        "books/pride.txt",
        include_str!("../../../../examples/demo/books/pride.txt"),
    ),
    (
        "books/time-machine.txt",
        include_str!("../../../../examples/demo/books/time-machine.txt"),
    ),
];

/// Run a demo on this machine: CI runners drain a pool, or two devices share one
///
/// `bridge demo` (runners): a laptop submits examples/demo/runners.yaml
/// while offline into a workspace whose store is a local bare git
/// repository (standing in for a GitHub repository); two runner processes
/// (`bridge run --shard 0/2` and `1/2`, with a runner identity and GitHub
/// Actions' environment, so their logs, annotations and job summaries are
/// GitHub's) drain it; the runner of shard 1/2 gets SIGTERM while a task
/// runs, as a cancelled job does. The other runner takes over what it left
/// if it sees it back in the store before its own work is done, else a
/// re-run of the cancelled job finishes it.
/// The laptop syncs and shows every result. Takes about 10 seconds.
///
/// `bridge demo devices`: two devices ("laptop" and "desktop") share tasks
/// through a local folder store: the laptop submits examples/demo/tasks.yaml
/// offline, each works some tasks, both sync and show the report.
///
/// Every step is a real command, printed before it runs, in a new folder
/// kept afterwards. No account and no network are needed (the runners'
/// demo needs git).
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Which demo to run
    #[arg(value_enum, default_value_t = Which::Runners)]
    pub which: Which,
    /// Where to create the demo (default: a new temporary folder, kept afterwards)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// The demos.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Which {
    /// CI runners drain a pool kept in a git repository (GitHub Actions, simulated here)
    Runners,
    /// Two devices share tasks through a folder store
    Devices,
}

pub fn run(_g: &GlobalArgs, args: DemoArgs) -> CliResult<u8> {
    let root = match args.dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!(
            "bridge-demo-{}",
            hex::encode(crate::workspace::random_bytes::<4>()?)
        )),
    };
    let exe = std::env::current_exe().context("cannot find the bridge binary")?;
    let demo = Demo { exe, root };
    match args.which {
        Which::Runners => runners::run(&demo),
        Which::Devices => devices::run(&demo),
    }
}

/// A demo's folder and the binary it runs.
struct Demo {
    exe: PathBuf,
    root: PathBuf,
}

impl Demo {
    /// Creates the folder `name` of the demo.
    fn folder(&self, name: &str) -> CliResult<PathBuf> {
        let d = self.root.join(name);
        std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
        Ok(d)
    }

    /// Writes the embedded task files and books into `dir`/demo.
    fn write_files(&self, dir: &Path) -> CliResult<()> {
        for (name, text) in FILES {
            let path = dir.join("demo").join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }

    /// A `bridge` command for the device living in `dir`: its own folder,
    /// name and configuration (so its own identity), none of the caller's
    /// workspace, identity or CI settings.
    fn device_command(&self, dir: &Path, device: &str) -> Command {
        let mut c = Command::new(&self.exe);
        c.current_dir(dir)
            .env("BRIDGE_DEVICE", device)
            .env("BRIDGE_CONFIG_DIR", dir.join(".config"));
        for (key, _) in std::env::vars_os() {
            let Some(key) = key.to_str() else { continue };
            if matches!(
                key,
                "BRIDGE_WORKSPACE" | "BRIDGE_IDENTITY" | "BRIDGE_SHARD" | "BRIDGE_REMOTE"
            ) || key.starts_with("GITHUB_")
                || key.starts_with("RUNNER_")
            {
                c.env_remove(key);
            }
        }
        c
    }

    /// Runs `bridge ARGS` as the device living in `dir`, showing the command.
    fn bridge(&self, dir: &Path, device: &str, args: &[&str]) -> CliResult<()> {
        outln!("[{device}]$ bridge {}", shown_args(args));
        let status = self
            .device_command(dir, device)
            .args(args)
            .status()
            .with_context(|| format!("cannot start {}", self.exe.display()))?;
        if !status.success() {
            return Err(anyhow!(
                "`bridge {}` on the {device} failed ({status})",
                args.join(" ")
            )
            .into());
        }
        Ok(())
    }

    /// `bridge ARGS --json` as the device living in `dir`: its output.
    fn bridge_json(&self, dir: &Path, device: &str, args: &[&str]) -> CliResult<serde_json::Value> {
        let out = self
            .device_command(dir, device)
            .args(args)
            .arg("--json")
            .output()
            .with_context(|| format!("cannot start {}", self.exe.display()))?;
        serde_json::from_slice(&out.stdout).map_err(|e| {
            anyhow!(
                "`bridge {} --json` on the {device} printed no JSON ({e}): {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )
            .into()
        })
    }

    /// The member id and public key of the device living in `dir`.
    fn whoami(&self, dir: &Path, device: &str) -> CliResult<(String, String)> {
        let v = self.bridge_json(dir, device, &["whoami"])?;
        match (v["member"].as_str(), v["public_key"].as_str()) {
            (Some(m), Some(k)) => Ok((m.to_owned(), k.to_owned())),
            _ => Err(anyhow!("`bridge whoami --json` on the {device} printed {v}").into()),
        }
    }
}

/// A step's heading.
fn step(text: &str) {
    outln!("\n## {text}");
}

/// Arguments as a person would type them in a POSIX shell: quoted where
/// the shell would otherwise read them differently (a task name such as
/// `count[book=alice]` is a glob).
fn shown_args(args: &[&str]) -> String {
    args.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars().all(|c| {
                    c.is_ascii_alphanumeric()
                        || matches!(c, '-' | '_' | '.' | '/' | ':' | '=' | ',' | '@' | '+')
                });
            if plain {
                (*a).to_owned()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::shown_args;

    #[test]
    fn arguments_are_shown_as_a_shell_reads_them() {
        assert_eq!(
            shown_args(&["outputs", "count[book=alice]", "--to", "/tmp/x y"]),
            "outputs 'count[book=alice]' --to '/tmp/x y'"
        );
        assert_eq!(
            shown_args(&["init", "--remote", "git:/tmp/s.git"]),
            "init --remote git:/tmp/s.git"
        );
        assert_eq!(shown_args(&["it's"]), r"'it'\''s'");
    }
}
