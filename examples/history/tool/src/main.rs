//! `automerge-history`: the Automerge side of `examples/history`.
//!
//! - `generate DIR --docs N --actors K --days D` writes N documents edited by
//!   K authors over D days (each author edits an own replica, replicas sync
//!   at the end of every day, so histories have real concurrency), plus
//!   `manifest.json`: what was generated, for checking the summaries.
//! - `summarize FILE.automerge… -o OUT` reads each document's change history
//!   (actor, timestamp, ops of every change) into a JSON summary: authors,
//!   edits per day, size over time.
//!
//! Install it with `cargo install --path examples/history/tool` (the tasks of
//! `examples/history` find it on `PATH`).

mod dates;
mod generate;
mod summarize;

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "automerge-history", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes DIR/doc-NNNN.automerge documents and DIR/manifest.json.
    Generate {
        /// The folder to write (created; existing doc-*.automerge files in it are replaced).
        dir: PathBuf,
        /// How many documents.
        #[arg(long, default_value_t = 20)]
        docs: usize,
        /// How many authors (each one an Automerge actor).
        #[arg(long, default_value_t = 4)]
        actors: usize,
        /// Over how many days.
        #[arg(long, default_value_t = 14)]
        days: u32,
        /// The first day (UTC).
        #[arg(long, default_value = "2025-03-03")]
        start: String,
        /// The random seed: the same arguments make the same documents.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Summarises the edit history of Automerge documents as JSON.
    Summarize {
        /// Saved Automerge documents.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// With one document, a `.json` file; otherwise (or if it ends in `/`)
        /// a folder that gets `<document name>.json` for each.
        #[arg(short, long)]
        output: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Generate {
            dir,
            docs,
            actors,
            days,
            start,
            seed,
        } => {
            if actors == 0 || days == 0 {
                bail!("--actors and --days must be at least 1");
            }
            let start = dates::parse_day(&start)
                .with_context(|| format!("--start `{start}` is not a date like 2025-03-03"))?;
            let manifest = generate::generate(&generate::Params {
                dir: dir.clone(),
                docs,
                actors,
                days,
                start,
                seed,
            })?;
            println!(
                "generated {} documents in {}: {} changes by {} authors over {} days",
                docs,
                dir.display(),
                manifest.totals.changes,
                actors,
                days
            );
        }
        Command::Summarize { files, output } => {
            let single = files.len() == 1
                && output.extension().is_some_and(|e| e == "json")
                && !output.to_string_lossy().ends_with('/');
            if !single {
                std::fs::create_dir_all(&output)
                    .with_context(|| format!("cannot create {}", output.display()))?;
            }
            for file in &files {
                let summary = summarize::summarize_file(file)?;
                let to = if single {
                    output.clone()
                } else {
                    let stem = file
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "document".into());
                    output.join(format!("{stem}.json"))
                };
                let mut text = serde_json::to_string_pretty(&summary)?;
                text.push('\n');
                std::fs::write(&to, text)
                    .with_context(|| format!("cannot write {}", to.display()))?;
            }
            println!("summarised {} documents", files.len());
        }
    }
    Ok(())
}
