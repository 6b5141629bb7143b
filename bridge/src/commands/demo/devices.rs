//! `bridge demo devices`: two simulated devices, a laptop and a desktop,
//! share tasks through a local folder store (the embedded default).

use anyhow::Context;

use super::{Demo, step};
use crate::error::{CliResult, EXIT_OK};

pub(super) fn run(demo: &Demo) -> CliResult<u8> {
    let shared = demo.folder("shared-store")?;
    let laptop = demo.folder("laptop")?;
    let desktop = demo.folder("desktop")?;
    demo.write_files(&laptop)?;
    let remote = format!("dir:{}", shared.display());
    outln!("bridge demo devices in {}\n", demo.root.display());

    step("The laptop creates a workspace whose remote is a shared folder (a USB stick, say):");
    demo.bridge(&laptop, "laptop", &["init", "--remote", &remote])?;
    step("The desktop makes its identity; the laptop, the workspace's admin, adds its public key:");
    demo.bridge(&desktop, "desktop", &["keygen"])?;
    let desktop_key = demo.whoami(&desktop, "desktop")?.1;
    let root = demo.whoami(&laptop, "laptop")?.0;
    demo.bridge(
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
    demo.bridge(&desktop, "desktop", &["join", &remote, "--root", &root])?;
    step("The laptop, offline, submits 4 counting tasks and a report that needs them:");
    demo.bridge(
        &laptop,
        "laptop",
        &["submit", "--offline", "demo/tasks.yaml"],
    )?;
    demo.bridge(&laptop, "laptop", &["status"])?;
    step("Back online, the laptop syncs; the desktop syncs and works two tasks:");
    demo.bridge(&laptop, "laptop", &["sync"])?;
    demo.bridge(
        &desktop,
        "desktop",
        &["work", "--parallel", "2", "--max-tasks", "2"],
    )?;
    step("The laptop works what is left (it pulls the desktop's results first):");
    demo.bridge(&laptop, "laptop", &["work", "--parallel", "2"])?;
    step("The desktop syncs: both devices now show the same status.");
    demo.bridge(&desktop, "desktop", &["sync"])?;
    demo.bridge(&desktop, "desktop", &["ls"])?;
    step("The report's output, fetched on the desktop:");
    let results = desktop.join("results");
    demo.bridge(
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
