//! Roster freshness: a device never trusts a roster older than one it has
//! reason to know of.
//!
//! The roster is a signed hash chain, so nobody without an admin key can
//! forge an epoch. But the store is only a set of files: whoever can write
//! to it (a shared folder, a git repository someone may still push to)
//! can *delete* the newest epochs. A member removed in epoch N who deletes
//! the files of epoch N leaves a valid chain that ends at N-1, where they
//! are still a member; a device that only knows the store would accept
//! their tasks and run them. Two anchors close that:
//!
//! - **The pin in bridge.toml** (`[workspace] roster = "N:HASH"`): every
//!   roster change an admin makes (`members add/remove/add-runner/
//!   rotate-runner`, `init --github`) writes the new epoch's number and hash
//!   there. bridge.toml lives in the repository the admin controls, next to
//!   the `root` it already pins; every fresh CI runner and new clone reads
//!   it before it trusts the store. A verified chain that does not hold
//!   epoch N with that hash is refused: it was rolled back (or is not
//!   synced yet, or was forked by a removed admin).
//! - **What this device has seen**: the newest epoch this device verified,
//!   per workspace, in its configuration folder (`roster-seen.toml`, next
//!   to `pins.toml`, so it survives a fresh replica or a re-clone). A chain
//!   that ends before it, or holds another epoch under its number, is
//!   refused the same way.
//!
//! What still holds and what does not: a member who can push to the store
//! but not to the branch bridge.toml is on (a protected default branch)
//! cannot roll the roster back for anyone. One who can also rewrite
//! bridge.toml can roll it back for devices that have never seen the newer
//! epoch (fresh runners and clones), but not for devices that have.
//! A `dir:` workspace has no shared bridge.toml: each device's anchor is the
//! `--roster` given to `bridge join` (printed by `members add`) and what it
//! has seen since.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use bridge_crypto::Roster;
use serde::{Deserialize, Serialize};

use crate::keys;
use crate::workspace::{CONFIG_FILE, ConfigError, Workspace};

/// Why a roster is refused, or the record of what this device has seen
/// cannot be used. The hints are the command line's.
#[derive(Debug, thiserror::Error)]
pub enum FreshnessError {
    /// `roster` under `[workspace]` is not an anchor.
    #[error("`roster` under [workspace] in {}: {reason}", path.display())]
    BadPin {
        /// `bridge.toml`.
        path: PathBuf,
        /// Why.
        reason: BadAnchor,
    },
    /// The store's roster ends before the anchor: rolled back, or not
    /// synced yet.
    #[error(
        "the store's member roster ends at epoch {} ({}), older than epoch {} that {whose} ({}): \
         it was rolled back (someone deleted newer roster files) or is not synced yet; nothing from it is trusted",
        have.number,
        short(&have.hash),
        anchor.number,
        short(&anchor.hash)
    )]
    RolledBack {
        /// The store's latest epoch.
        have: Anchor,
        /// The epoch it must reach.
        anchor: Anchor,
        /// Who requires it ("… pins", "this device has seen (…)").
        whose: String,
    },
    /// The store's roster holds another epoch under the anchor's number.
    #[error(
        "the store's member roster has another epoch {} ({}) than the one {whose} ({}): \
         a forked or replaced roster; nothing from it is trusted",
        anchor.number,
        short(have),
        short(&anchor.hash)
    )]
    Forked {
        /// The store's hash of that epoch.
        have: String,
        /// The epoch expected.
        anchor: Anchor,
        /// Who requires it.
        whose: String,
    },
    /// The record of seen epochs cannot be read.
    #[error("cannot read {}: {reason}", path.display())]
    ReadSeen {
        /// The file.
        path: PathBuf,
        /// Why (in the message, not a cause).
        reason: std::io::Error,
    },
    /// The record of seen epochs does not parse.
    #[error("{} is damaged: {reason}", path.display())]
    DamagedSeen {
        /// The file.
        path: PathBuf,
        /// Why (in the message, not a cause).
        reason: toml::de::Error,
    },
    /// No configuration folder for the record.
    #[error(transparent)]
    Identity(#[from] keys::IdentityError),
    /// `bridge.toml` cannot be read to pin an epoch.
    #[error("cannot read {}", path.display())]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file cannot be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A folder cannot be created.
    #[error("cannot create {}", path.display())]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A path has no parent folder.
    #[error("{} has no folder", path.display())]
    NoFolder {
        /// The path.
        path: PathBuf,
    },
    /// The record cannot be encoded.
    #[error("cannot encode the roster epochs seen")]
    Encode(#[source] toml::ser::Error),
    /// The pinned `bridge.toml` would not parse.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// One roster epoch, by number and hash: `N:HEX-SHA256`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// The epoch number.
    pub number: u64,
    /// The hex sha256 of its canonical bytes.
    pub hash: String,
}

impl Anchor {
    /// The latest epoch of `roster`.
    pub fn latest(roster: &Roster) -> Anchor {
        let latest = roster.latest();
        Anchor {
            number: latest.number,
            hash: latest.hash(),
        }
    }

    /// Whether `roster` holds this epoch: `Ok`, or why not.
    fn check(&self, roster: &Roster) -> Result<(), Stale> {
        match roster.epoch(self.number) {
            None => Err(Stale::Older {
                have: Anchor::latest(roster),
            }),
            Some(e) if e.hash() != self.hash => Err(Stale::Other { have: e.hash() }),
            Some(_) => Ok(()),
        }
    }
}

impl fmt::Display for Anchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.number, self.hash)
    }
}

/// Text that is not an [`Anchor`] (`EPOCH:HASH`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{given}` is not EPOCH:HASH (a number, a colon, 64 hex digits)")]
pub struct BadAnchor {
    /// The text as given.
    pub given: String,
}

impl FromStr for Anchor {
    type Err = BadAnchor;

    fn from_str(s: &str) -> Result<Anchor, BadAnchor> {
        let bad = || BadAnchor {
            given: s.to_owned(),
        };
        let (n, h) = s.split_once(':').ok_or_else(bad)?;
        let number = n.parse().map_err(|_| bad())?;
        if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        Ok(Anchor {
            number,
            hash: h.to_ascii_lowercase(),
        })
    }
}

/// How a verified roster misses an anchor.
enum Stale {
    /// The chain ends before the anchor's epoch.
    Older { have: Anchor },
    /// The chain holds another epoch under the anchor's number.
    Other { have: String },
}

/// The roster pinned in `ws`'s bridge.toml, if any.
pub fn pinned(ws: &Workspace) -> Result<Option<Anchor>, FreshnessError> {
    let Some(text) = ws.config.workspace.roster.as_deref() else {
        return Ok(None);
    };
    text.parse()
        .map(Some)
        .map_err(|reason| FreshnessError::BadPin {
            path: ws.root.join(CONFIG_FILE),
            reason,
        })
}

/// Refuses `roster` if it is older than what bridge.toml pins or this
/// device has seen (see the module docs); otherwise remembers its latest
/// epoch as seen.
pub fn check(ws: &Workspace, roster: &Roster) -> Result<(), FreshnessError> {
    let workspace = &ws.config.workspace.id;
    if let Some(pin) = pinned(ws)? {
        pin.check(roster).map_err(|s| {
            refuse(
                s,
                &pin,
                &format!("{} pins", ws.root.join(CONFIG_FILE).display()),
            )
        })?;
    }
    let path = match seen_path(&ws.settings) {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!("no record of the roster this device has seen: {e}");
            return Ok(());
        }
    };
    let mut seen = read_seen(&path)?;
    let now = Anchor::latest(roster);
    if let Some(before) = seen.get(workspace).and_then(|t| t.parse::<Anchor>().ok()) {
        before.check(roster).map_err(|s| {
            refuse(
                s,
                &before,
                &format!("this device has seen ({})", path.display()),
            )
        })?;
        if before.number >= now.number {
            return Ok(());
        }
    }
    seen.insert(workspace.clone(), now.to_string());
    if let Err(e) = write_seen(&path, &seen) {
        tracing::warn!(
            "cannot remember the roster epoch this device verified: {}",
            crate::files::with_causes(&e)
        );
    }
    Ok(())
}

fn refuse(stale: Stale, anchor: &Anchor, whose: &str) -> FreshnessError {
    match stale {
        Stale::Older { have } => FreshnessError::RolledBack {
            have,
            anchor: anchor.clone(),
            whose: whose.to_owned(),
        },
        Stale::Other { have } => FreshnessError::Forked {
            have,
            anchor: anchor.clone(),
            whose: whose.to_owned(),
        },
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

fn seen_path(settings: &crate::settings::Settings) -> Result<PathBuf, FreshnessError> {
    Ok(keys::config_dir(settings)?.join("roster-seen.toml"))
}

#[derive(Default, Serialize, Deserialize)]
struct Seen {
    #[serde(default)]
    workspaces: BTreeMap<String, String>,
}

/// The epochs this device has seen, per workspace. Only a missing file
/// means "none": a file that cannot be read or parsed is refused, since
/// going on would accept an older roster and overwrite every workspace's
/// record (fail closed).
fn read_seen(path: &Path) -> Result<BTreeMap<String, String>, FreshnessError> {
    let text = match crate::files::read_text(path, crate::files::CONFIG_MAX) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(reason) => {
            return Err(FreshnessError::ReadSeen {
                path: path.to_path_buf(),
                reason,
            });
        }
    };
    toml::from_str::<Seen>(&text)
        .map(|s| s.workspaces)
        .map_err(|reason| FreshnessError::DamagedSeen {
            path: path.to_path_buf(),
            reason,
        })
}

fn write_seen(path: &Path, workspaces: &BTreeMap<String, String>) -> Result<(), FreshnessError> {
    let dir = path.parent().ok_or_else(|| FreshnessError::NoFolder {
        path: path.to_path_buf(),
    })?;
    std::fs::create_dir_all(dir).map_err(|source| FreshnessError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let text = toml::to_string(&Seen {
        workspaces: workspaces.clone(),
    })
    .map_err(FreshnessError::Encode)?;
    // Atomic: two commands finishing together leave one whole file.
    bridge_store::replace_file(path, text.as_bytes(), 0o666, false).map_err(|source| {
        FreshnessError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Writes `anchor` as `roster` under `[workspace]` in `root`'s bridge.toml,
/// keeping the rest of the file (and its comments) as it is.
pub fn pin(root: &Path, anchor: &Anchor) -> Result<(), FreshnessError> {
    let path = root.join(CONFIG_FILE);
    let text = crate::files::read_text(&path, crate::files::CONFIG_MAX).map_err(|source| {
        FreshnessError::ReadConfig {
            path: path.clone(),
            source,
        }
    })?;
    let new = with_pin(&text, anchor);
    // What is written must still parse as a workspace file.
    crate::workspace::Config::parse_str(&new, &path)?;
    bridge_store::replace_file(&path, new.as_bytes(), 0o666, false)
        .map_err(|source| FreshnessError::Write { path, source })
}

/// `text` (a bridge.toml) with `roster = "ANCHOR"` in its [workspace]
/// table: the existing line replaced, else one added after the header.
fn with_pin(text: &str, anchor: &Anchor) -> String {
    let line = format!("roster = \"{anchor}\"");
    let mut out: Vec<String> = Vec::new();
    let mut table = String::new();
    let mut done = false;
    let mut header_at = None;
    for l in text.lines() {
        let t = l.trim();
        if t.starts_with('[') {
            table = t.to_owned();
            if t == "[workspace]" {
                header_at = Some(out.len());
            }
        } else if table == "[workspace]"
            && !done
            && t.strip_prefix("roster")
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        {
            out.push(line.clone());
            done = true;
            continue;
        }
        out.push(l.to_owned());
    }
    if !done {
        match header_at {
            Some(at) => out.insert(at + 1, line),
            None => {
                out.push(String::new());
                out.push("[workspace]".to_owned());
                out.push(line);
            }
        }
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_parse_and_print() {
        let h = "ab".repeat(32);
        let a: Anchor = format!("7:{h}").parse().unwrap();
        assert_eq!(a.number, 7);
        assert_eq!(a.to_string(), format!("7:{h}"));
        for bad in [
            "",
            "7",
            ":",
            "x:ab",
            &format!("7:{}", "g".repeat(64)),
            "7:abc",
        ] {
            assert!(bad.parse::<Anchor>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_pin_replaces_or_joins_the_workspace_table() {
        let a: Anchor = format!("3:{}", "0".repeat(64)).parse().unwrap();
        let text = "# keep me\n[workspace]\nid = \"w\"\nroot = \"m\"\n\n[store]\nroster = \"not this one\"\n";
        let once = with_pin(text, &a);
        assert_eq!(
            once,
            format!(
                "# keep me\n[workspace]\nroster = \"{a}\"\nid = \"w\"\nroot = \"m\"\n\n[store]\nroster = \"not this one\"\n"
            )
        );
        let b: Anchor = format!("4:{}", "1".repeat(64)).parse().unwrap();
        let twice = with_pin(&once, &b);
        assert_eq!(twice, once.replace(&a.to_string(), &b.to_string()));
    }

    #[test]
    fn a_bad_anchor_names_the_text() {
        let e = "7:xyz".parse::<Anchor>().unwrap_err();
        assert_eq!(e.given, "7:xyz");
        assert_eq!(
            e.to_string(),
            "`7:xyz` is not EPOCH:HASH (a number, a colon, 64 hex digits)"
        );
    }
}
