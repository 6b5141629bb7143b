//! This device's identity and its pinned workspace roots.
//!
//! The identity (an age X25519 key to read, an ed25519 key to sign) lives in
//! `<config>/identity` with mode 0600, or comes whole from the
//! `BRIDGE_IDENTITY` environment variable (CI runners). `<config>` is
//! `$BRIDGE_CONFIG_DIR`, else `$XDG_CONFIG_HOME/bridge`, else
//! `~/.config/bridge`. `<config>/pins.toml` records, per workspace id, the
//! fingerprint of the roster's root key this device trusts: a `bridge.toml`
//! that later names another root is refused.
//!
//! Key material never reaches a message: errors say which file or variable,
//! never what it held.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, anyhow};
use bridge_crypto::{ExposeSecret, Identity, MemberId};
use serde::{Deserialize, Serialize};

use crate::error::{CliError, CliResult};

/// The environment variable that may hold the whole identity.
pub const IDENTITY_ENV: &str = "BRIDGE_IDENTITY";

/// This device's configuration folder.
pub fn config_dir() -> CliResult<PathBuf> {
    if let Some(d) = std::env::var_os("BRIDGE_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("bridge"));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".config").join("bridge")),
        None => Err(CliError::hint(
            anyhow!("cannot find a configuration folder: HOME is not set"),
            "set BRIDGE_CONFIG_DIR to a folder bridge may write its identity to",
        )),
    }
}

/// The identity file.
pub fn identity_path() -> CliResult<PathBuf> {
    Ok(config_dir()?.join("identity"))
}

/// The largest identity bridge reads, from the file or `BRIDGE_IDENTITY`
/// (an identity is one line of about 200 characters).
pub const IDENTITY_MAX: u64 = 16 * 1024;

/// Loads this device's identity: `BRIDGE_IDENTITY`, else the identity file.
pub fn load_identity() -> CliResult<Identity> {
    if let Some(value) = crate::secrets::identity() {
        if value.len() as u64 > IDENTITY_MAX {
            return Err(CliError::hint(
                anyhow!(
                    "{IDENTITY_ENV} is longer than {IDENTITY_MAX} bytes, so it is not a bridge identity"
                ),
                "set it to the whole line printed by `bridge keygen --print` or `bridge members add-runner`",
            ));
        }
        let Some(text) = value.to_str() else {
            return Err(CliError::hint(
                anyhow!("{IDENTITY_ENV} is not valid UTF-8, so it is not a bridge identity"),
                "set it to the whole line printed by `bridge keygen --print` or `bridge members add-runner`",
            ));
        };
        return Identity::parse(text).map_err(|e| {
            CliError::hint(
                anyhow!("{IDENTITY_ENV} does not hold a bridge identity: {e}"),
                "set it to the whole line printed by `bridge keygen --print` or `bridge members add-runner`",
            )
        });
    }
    let path = identity_path()?;
    let text = read_identity_file(&path)?;
    // The file may carry comment lines; the identity is the one other line.
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or_default();
    Identity::parse(line).map_err(|e| {
        CliError::hint(
            anyhow!("{} does not hold a bridge identity: {e}", path.display()),
            "move it away and create a new one with `bridge keygen` (members must then add the new key)",
        )
    })
}

/// Reads the identity file: a regular file (not a FIFO, which would hang, nor
/// a device like `/dev/zero`, which would eat memory), of bounded size, and
/// readable by this user only, as ssh demands of its keys (issue 12, item
/// 17). A symbolic link is followed; the checks apply to what it leads to.
fn read_identity_file(path: &std::path::Path) -> CliResult<String> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let (file, meta) = match crate::files::open_regular(path) {
        Ok(opened) => opened,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CliError::hint(
                anyhow!(
                    "this device has no identity yet ({} does not exist)",
                    path.display()
                ),
                "create one with `bridge keygen`",
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            return Err(CliError::hint(
                anyhow!("cannot use the identity file: {e}"),
                format!(
                    "the identity must be a regular file: move {} away and restore your identity there (or create a new one with `bridge keygen`)",
                    path.display()
                ),
            ));
        }
        Err(e) => {
            return Err(anyhow!(e)
                .context(format!("cannot read {}", path.display()))
                .into());
        }
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CliError::hint(
            anyhow!(
                "the identity file {} is accessible by other users (mode {mode:03o}); bridge refuses to use a key others may have read",
                path.display()
            ),
            format!(
                "run `chmod 600 {}`; if others may have read it, make a new identity with `bridge keygen --force` and have an admin replace your key",
                path.display()
            ),
        ));
    }
    if meta.len() > IDENTITY_MAX {
        return Err(CliError::hint(
            anyhow!(
                "the identity file {} is larger than {IDENTITY_MAX} bytes, so it is not a bridge identity",
                path.display()
            ),
            "move it away and restore your identity there (or create a new one with `bridge keygen`)",
        ));
    }
    let mut text = String::new();
    file.take(IDENTITY_MAX)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text)
}

/// Writes `identity` to the identity file, readable by this user only.
pub fn save_identity(identity: &Identity, overwrite: bool) -> CliResult<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = identity_path()?;
    let dir = config_dir()?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if path.exists() && !overwrite {
        return Err(CliError::hint(
            anyhow!("{} already exists", path.display()),
            "this device has an identity; `bridge whoami` shows it (--force replaces it, and members must add the new key)",
        ));
    }
    let tmp = dir.join(format!(".identity.tmp-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let secret = identity.to_secret();
    file.write_all(
        format!(
            "# bridge identity: keep it secret\n{}\n",
            secret.expose_secret()
        )
        .as_bytes(),
    )
    .and_then(|()| file.sync_all())
    .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path)
        .with_context(|| format!("cannot move the identity into {}", path.display()))?;
    Ok(path)
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Pins {
    #[serde(default)]
    workspaces: BTreeMap<String, String>,
}

fn pins_path() -> CliResult<PathBuf> {
    Ok(config_dir()?.join("pins.toml"))
}

fn read_pins() -> CliResult<Pins> {
    let path = pins_path()?;
    match crate::files::read_text(&path, crate::files::CONFIG_MAX) {
        Ok(t) => toml::from_str(&t)
            .with_context(|| format!("{} is not valid", path.display()))
            .map_err(Into::into),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Pins::default()),
        Err(e) => Err(anyhow!(e)
            .context(format!("cannot read {}", path.display()))
            .into()),
    }
}

/// Checks `root` against the root this device pinned for `workspace`, and
/// pins it when none is (trust on first use, or the root given to `join`).
pub fn check_pin(workspace: &str, root: &MemberId) -> CliResult<()> {
    let mut pins = read_pins()?;
    match pins.workspaces.get(workspace) {
        Some(pinned) if pinned == root.as_str() => Ok(()),
        Some(pinned) => Err(CliError::hint(
            anyhow!(
                "bridge.toml says the roster root of workspace {workspace} is {root}, but this device pinned {pinned}"
            ),
            "someone changed bridge.toml: restore the root this device trusts, or ask an admin",
        )),
        None => {
            pins.workspaces
                .insert(workspace.to_owned(), root.as_str().to_owned());
            let path = pins_path()?;
            let dir = config_dir()?;
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let text = toml::to_string(&pins).context("cannot encode pins.toml")?;
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(())
        }
    }
}
