//! Hints and exit codes for the errors of the workspace, `bridge.toml`, the
//! device's settings, identities, the roster's freshness, sessions, task
//! files and audiences.

use bridge_engine::audience::{AudienceError, DEVICES};
use bridge_engine::freshness::FreshnessError;
use bridge_engine::keys::IdentityError;
use bridge_engine::workspace::{CONFIG_FILE, ConfigError, LoadError, WorkspaceError, WriteError};

use super::Advice;

/// The advice for `cause` when it is one of this area's errors.
pub(super) fn advise(cause: &(dyn std::error::Error + 'static)) -> Option<Advice> {
    if let Some(e) = cause.downcast_ref::<ConfigError>() {
        return config(e);
    }
    if let Some(e) = cause.downcast_ref::<WorkspaceError>() {
        return workspace(e);
    }
    if let Some(e) = cause.downcast_ref::<IdentityError>() {
        return identity(e);
    }
    if let Some(e) = cause.downcast_ref::<FreshnessError>() {
        return freshness(e);
    }
    if let Some(e) = cause.downcast_ref::<LoadError>() {
        return load(e);
    }
    if let Some(e) = cause.downcast_ref::<WriteError>() {
        return write(e);
    }
    if let Some(e) = cause.downcast_ref::<AudienceError>() {
        return audience(e);
    }
    None
}

fn config(e: &ConfigError) -> Option<Advice> {
    match e {
        ConfigError::Invalid { .. } => Some(Advice::hint(format!(
            "fix that line of {CONFIG_FILE} (it is shared by every device of the workspace: if it is committed, `git diff {CONFIG_FILE}` shows what changed and `git checkout {CONFIG_FILE}` restores it)"
        ))),
        ConfigError::StallTimeoutEnv { .. } => {
            Some(Advice::hint("write durations like \"10s\" or \"2m\""))
        }
        ConfigError::StallTimeoutTooShort { .. } => Some(Advice::hint(
            "set `stall-timeout` under [store] in bridge.toml (or BRIDGE_STALL_TIMEOUT) to 1s or more",
        )),
        ConfigError::Duration { .. } => Some(Advice::hint(
            "write durations like \"90s\", \"5m\" or \"1h 30m\"",
        )),
        ConfigError::Rate { .. } => Some(Advice::hint(
            "set it under [store] in bridge.toml to a positive number (GitHub recommends at most 6 pushes a minute and 15 reads a second per repository), or 0 for no limit",
        )),
        ConfigError::ReadDevice { .. } => None,
    }
}

fn workspace(e: &WorkspaceError) -> Option<Advice> {
    match e {
        WorkspaceError::NotFound { .. } => Some(Advice::hint(
            "create a workspace here with `bridge init`, join a shared store with `bridge join dir:PATH`, or pass --workspace DIR",
        )),
        WorkspaceError::ReadConfig { .. } => Some(Advice::hint(
            "create a workspace with `bridge init`, or pass --workspace DIR",
        )),
        WorkspaceError::Config(e) => config(e),
        WorkspaceError::OtherWorkspace { .. } => Some(Advice::hint(format!(
            "if `workspace.id` in {CONFIG_FILE} was changed by mistake, restore it (`git checkout {CONFIG_FILE}`); only if this folder really belongs to another workspace now, move .bridge/ away (with any change not synced yet) and run the command again"
        ))),
        WorkspaceError::ConfigExists { .. } => Some(Advice::hint(
            "this folder is a workspace already; use it as it is",
        )),
        WorkspaceError::CurrentDir(_)
        | WorkspaceError::OpenReplica { .. }
        | WorkspaceError::CreateReplica { .. }
        | WorkspaceError::CreateDir { .. }
        | WorkspaceError::Write { .. }
        | WorkspaceError::Encode(_)
        | WorkspaceError::Random(_) => None,
    }
}

fn identity(e: &IdentityError) -> Option<Advice> {
    const SET_ENV: &str = "set it to the whole line printed by `bridge keygen --print` or `bridge members add-runner`";
    match e {
        IdentityError::NoConfigDir => Some(Advice::hint(
            "set BRIDGE_CONFIG_DIR to a folder bridge may write its identity to",
        )),
        IdentityError::EnvTooLong | IdentityError::EnvNotUtf8 | IdentityError::EnvInvalid(_) => {
            Some(Advice::hint(SET_ENV))
        }
        IdentityError::FileInvalid { .. } => Some(Advice::hint(
            "move it away and create a new one with `bridge keygen` (members must then add the new key)",
        )),
        IdentityError::Missing { .. } => Some(Advice::hint("create one with `bridge keygen`")),
        IdentityError::NotRegular { path, .. } => Some(Advice::hint(format!(
            "the identity must be a regular file: move {} away and restore your identity there (or create a new one with `bridge keygen`)",
            path.display()
        ))),
        IdentityError::Exposed { path, .. } => Some(Advice::hint(format!(
            "run `chmod 600 {}`; if others may have read it, make a new identity with `bridge keygen --force` and have an admin replace your key",
            path.display()
        ))),
        IdentityError::FileTooLarge { .. } => Some(Advice::hint(
            "move it away and restore your identity there (or create a new one with `bridge keygen`)",
        )),
        IdentityError::Exists { .. } => Some(Advice::hint(
            "this device has an identity; `bridge whoami` shows it (--force replaces it, and members must add the new key)",
        )),
        IdentityError::PinMismatch { .. } => Some(Advice::hint(
            "someone changed bridge.toml: restore the root this device trusts, or ask an admin",
        )),
        IdentityError::Read { .. }
        | IdentityError::CreateDir { .. }
        | IdentityError::Write { .. }
        | IdentityError::PinsInvalid { .. }
        | IdentityError::EncodePins(_) => None,
    }
}

fn freshness(e: &FreshnessError) -> Option<Advice> {
    match e {
        FreshnessError::BadPin { .. } => Some(Advice::hint(
            "restore bridge.toml from version control; an admin's `bridge members ls` prints the latest epoch",
        )),
        FreshnessError::RolledBack { .. } => Some(Advice::hint(
            "run `bridge sync`; if this device's or runner's key was removed or rotated (an old \
             BRIDGE_IDENTITY), it cannot read the newer roster: use its current identity; otherwise \
             the store was rolled back: `bridge sync` on an admin's device puts the newer epoch back \
             (and check who can write to the store)",
        )),
        FreshnessError::Forked { .. } => Some(Advice::hint(
            "if two admins changed the members at the same time, an admin makes one more change \
             (for example `bridge members add`) and commits bridge.toml; otherwise ask an admin",
        )),
        FreshnessError::ReadSeen { path, .. } | FreshnessError::DamagedSeen { path, .. } => {
            Some(Advice::hint(format!(
                "{} records the newest roster each workspace showed this device; restore it, or delete it to trust the current rosters again",
                path.display()
            )))
        }
        FreshnessError::Identity(e) => identity(e),
        FreshnessError::Config(e) => config(e),
        FreshnessError::ReadConfig { .. }
        | FreshnessError::Write { .. }
        | FreshnessError::CreateDir { .. }
        | FreshnessError::NoFolder { .. }
        | FreshnessError::Encode(_) => None,
    }
}

fn load(e: &LoadError) -> Option<Advice> {
    match e {
        LoadError::BadRoot => Some(Advice::hint("restore bridge.toml from version control")),
        LoadError::Identity(e) => identity(e),
        LoadError::Roster(e) => freshness(e),
        LoadError::Vault(e) => super::vault::advise(e),
        LoadError::Config(e) => config(e),
        LoadError::Write(e) => write(e),
        LoadError::Random(_)
        | LoadError::ListDocs { .. }
        | LoadError::ListDoc { .. }
        | LoadError::ReadDoc { .. }
        | LoadError::ListArchived(_)
        | LoadError::ReadArchived { .. } => None,
    }
}

fn write(e: &WriteError) -> Option<Advice> {
    match e {
        WriteError::Save { .. } => Some(Advice::hint(
            "check that the disk is writable and not full; nothing already stored was changed",
        )),
        WriteError::Seal(e) => super::vault::advise(e),
        WriteError::NotInReplica { .. } | WriteError::Change { .. } => None,
    }
}

fn audience(e: &AudienceError) -> Option<Advice> {
    match e {
        AudienceError::UnknownMember { known, .. } => Some(Advice::hint(format!(
            "the members are: {}; or write `{DEVICES}` for every member that is not a runner",
            known.join(", ")
        ))),
        AudienceError::NotPrivate { .. } => Some(Advice::hint(
            "`bridge audience show BATCH` lists a private batch's audience",
        )),
        AudienceError::NotInAudience { .. } => Some(Advice::hint(
            "ask a member of the audience (`bridge audience show BATCH`) to do it",
        )),
        AudienceError::Vault(_) => None,
        AudienceError::Seal { .. }
        | AudienceError::ReadBack(_)
        | AudienceError::KeysDoNotOpen { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const GOOD: &str = "[workspace]\nid = \"ws-771b66c4f14a873a231db9d9\"\nroot = \"mf5a6ee7bbb99c11ec7b743a2\"\n\n[worker]\nlease = \"60s\"\n";

    /// The hint `main` shows for an engine error.
    fn hint_of(e: impl Into<anyhow::Error>) -> String {
        super::super::advise(&e.into()).hint.unwrap_or_default()
    }

    #[test]
    fn a_damaged_config_gets_one_hint_to_fix_its_line() {
        let text = GOOD.replacen("lease = \"60s\"", "lease = \"forever\"", 1);
        let Err(e) = bridge_engine::workspace::Config::parse_str(&text, Path::new("bridge.toml"))
        else {
            panic!("accepted");
        };
        let hint = hint_of(e);
        assert!(
            hint.starts_with("fix that line of bridge.toml") && !hint.contains("bridge init"),
            "{hint}"
        );
    }

    #[test]
    fn hints_reach_through_transparent_variants() {
        let e = LoadError::Identity(IdentityError::Missing {
            path: "/x/identity".into(),
        });
        assert_eq!(hint_of(e), "create one with `bridge keygen`");
        let e = WorkspaceError::Config(ConfigError::StallTimeoutTooShort {
            timeout: std::time::Duration::from_millis(5),
        });
        assert!(hint_of(e).starts_with("set `stall-timeout` under [store]"));
    }
}
