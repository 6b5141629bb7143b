//! This device's identity and its pinned workspace roots.
//!
//! The identity (an age X25519 key to read, an ed25519 key to sign) lives in
//! `<config>/identity` with mode 0600, or comes whole from the
//! `BRIDGE_IDENTITY` environment variable (CI runners). `<config>` is
//! `$BRIDGE_CONFIG_DIR`, else `$XDG_CONFIG_HOME/bridge`, else
//! `~/.config/bridge`, as resolved in [`Settings`]. `<config>/pins.toml` records, per workspace id, the
//! fingerprint of the roster's root key this device trusts: a `bridge.toml`
//! that later names another root is refused.
//!
//! Key material never reaches a message: errors say which file or variable,
//! never what it held.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bridge_crypto::{ExposeSecret, Identity, KeyError, MemberId};
use serde::{Deserialize, Serialize};

use crate::settings::Settings;

/// Why this device's identity or its pins cannot be used. Never holds key
/// material. The hints are the command line's.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// No configuration folder: HOME is not set.
    #[error("cannot find a configuration folder: HOME is not set")]
    NoConfigDir,
    /// `BRIDGE_IDENTITY` is too long to be an identity.
    #[error("{IDENTITY_ENV} is longer than {IDENTITY_MAX} bytes, so it is not a bridge identity")]
    EnvTooLong,
    /// `BRIDGE_IDENTITY` is not UTF-8.
    #[error("{IDENTITY_ENV} is not valid UTF-8, so it is not a bridge identity")]
    EnvNotUtf8,
    /// `BRIDGE_IDENTITY` does not parse.
    #[error("{IDENTITY_ENV} does not hold a bridge identity: {0}")]
    EnvInvalid(KeyError),
    /// The identity file does not parse.
    #[error("{} does not hold a bridge identity: {reason}", path.display())]
    FileInvalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: KeyError,
    },
    /// There is no identity file.
    #[error("this device has no identity yet ({} does not exist)", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// The identity file is not a regular file.
    #[error("cannot use the identity file: {reason}")]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What it is (in the message, not a cause).
        reason: std::io::Error,
    },
    /// The identity file may have been read by others.
    #[error(
        "the identity file {} is accessible by other users (mode {mode:03o}); bridge refuses to use a key others may have read",
        path.display()
    )]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The identity file is too large to be an identity.
    #[error("the identity file {} is larger than {IDENTITY_MAX} bytes, so it is not a bridge identity", path.display())]
    FileTooLarge {
        /// The file.
        path: PathBuf,
    },
    /// `bridge keygen` without --force over an identity.
    #[error("{} already exists", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A file cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
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
    /// A file cannot be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `pins.toml` does not parse.
    #[error("{} is not valid", path.display())]
    PinsInvalid {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: toml::de::Error,
    },
    /// `pins.toml` cannot be encoded.
    #[error("cannot encode pins.toml")]
    EncodePins(#[source] toml::ser::Error),
    /// `bridge.toml` names another root than the one this device pinned.
    #[error(
        "bridge.toml says the roster root of workspace {workspace} is {root}, but this device pinned {pinned}"
    )]
    PinMismatch {
        /// The workspace id.
        workspace: String,
        /// The root `bridge.toml` names.
        root: MemberId,
        /// The root this device pinned.
        pinned: String,
    },
}

/// The environment variable that may hold the whole identity.
pub const IDENTITY_ENV: &str = "BRIDGE_IDENTITY";

/// This device's configuration folder (see
/// [`Settings::config_dir`](crate::settings::Settings::config_dir)).
pub fn config_dir(settings: &Settings) -> Result<PathBuf, IdentityError> {
    settings.config_dir()
}

/// The identity file.
pub fn identity_path(settings: &Settings) -> Result<PathBuf, IdentityError> {
    Ok(config_dir(settings)?.join("identity"))
}

/// The largest identity bridge reads, from the file or `BRIDGE_IDENTITY`
/// (an identity is one line of about 200 characters).
pub const IDENTITY_MAX: u64 = 16 * 1024;

/// Loads this device's identity: `BRIDGE_IDENTITY`, else the identity file.
pub fn load_identity(settings: &Settings) -> Result<Identity, IdentityError> {
    if let Some(value) = &settings.identity {
        if value.len() as u64 > IDENTITY_MAX {
            return Err(IdentityError::EnvTooLong);
        }
        let Some(text) = value.to_str() else {
            return Err(IdentityError::EnvNotUtf8);
        };
        return Identity::parse(text).map_err(IdentityError::EnvInvalid);
    }
    let path = identity_path(settings)?;
    let text = read_identity_file(&path)?;
    // The file may carry comment lines; the identity is the one other line.
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or_default();
    Identity::parse(line).map_err(|reason| IdentityError::FileInvalid { path, reason })
}

/// Reads the identity file: a regular file (not a FIFO, which would hang, nor
/// a device like `/dev/zero`, which would eat memory), of bounded size, and
/// readable by this user only, as ssh demands of its keys (issue 12, item
/// 17). A symbolic link is followed; the checks apply to what it leads to.
fn read_identity_file(path: &std::path::Path) -> Result<String, IdentityError> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let (file, meta) = match crate::files::open_regular(path) {
        Ok(opened) => opened,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(IdentityError::Missing {
                path: path.to_path_buf(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            return Err(IdentityError::NotRegular {
                path: path.to_path_buf(),
                reason: e,
            });
        }
        Err(e) => {
            return Err(IdentityError::Read {
                path: path.to_path_buf(),
                source: e,
            });
        }
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(IdentityError::Exposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    if meta.len() > IDENTITY_MAX {
        return Err(IdentityError::FileTooLarge {
            path: path.to_path_buf(),
        });
    }
    let mut text = String::new();
    file.take(IDENTITY_MAX)
        .read_to_string(&mut text)
        .map_err(|source| IdentityError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(text)
}

/// Writes `identity` to the identity file, readable by this user only.
pub fn save_identity(
    settings: &Settings,
    identity: &Identity,
    overwrite: bool,
) -> Result<PathBuf, IdentityError> {
    let path = identity_path(settings)?;
    let dir = config_dir(settings)?;
    std::fs::create_dir_all(&dir).map_err(|source| IdentityError::CreateDir {
        path: dir.clone(),
        source,
    })?;
    if path.exists() && !overwrite {
        return Err(IdentityError::Exists { path });
    }
    let secret = identity.to_secret();
    let text = format!(
        "# bridge identity: keep it secret\n{}\n",
        secret.expose_secret()
    );
    // Readable by this user only from its first byte, and durable before
    // anything says it exists.
    bridge_store::replace_file(&path, text.as_bytes(), 0o600, true).map_err(|source| {
        IdentityError::Write {
            path: path.clone(),
            source,
        }
    })?;
    Ok(path)
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Pins {
    #[serde(default)]
    workspaces: BTreeMap<String, String>,
}

fn pins_path(settings: &Settings) -> Result<PathBuf, IdentityError> {
    Ok(config_dir(settings)?.join("pins.toml"))
}

fn read_pins(settings: &Settings) -> Result<Pins, IdentityError> {
    let path = pins_path(settings)?;
    match crate::files::read_text(&path, crate::files::CONFIG_MAX) {
        Ok(t) => toml::from_str(&t).map_err(|source| IdentityError::PinsInvalid { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Pins::default()),
        Err(source) => Err(IdentityError::Read { path, source }),
    }
}

/// Checks `root` against the root this device pinned for `workspace`, and
/// pins it when none is (trust on first use, or the root given to `join`).
pub fn check_pin(
    settings: &Settings,
    workspace: &str,
    root: &MemberId,
) -> Result<(), IdentityError> {
    let mut pins = read_pins(settings)?;
    match pins.workspaces.get(workspace) {
        Some(pinned) if pinned == root.as_str() => Ok(()),
        Some(pinned) => Err(IdentityError::PinMismatch {
            workspace: workspace.to_owned(),
            root: root.clone(),
            pinned: pinned.clone(),
        }),
        None => {
            pins.workspaces
                .insert(workspace.to_owned(), root.as_str().to_owned());
            let path = pins_path(settings)?;
            let dir = config_dir(settings)?;
            std::fs::create_dir_all(&dir).map_err(|source| IdentityError::CreateDir {
                path: dir.clone(),
                source,
            })?;
            let text = toml::to_string(&pins).map_err(IdentityError::EncodePins)?;
            std::fs::write(&path, text).map_err(|source| IdentityError::Write { path, source })?;
            Ok(())
        }
    }
}
