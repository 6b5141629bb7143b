//! `[worker] sandbox`: the sandbox policy a device asks for, as a value.
//!
//! Always compiled (unlike [`crate::sandbox`], which needs the `worker`
//! feature): reading `bridge.toml` or `.bridge/config.toml` validates the
//! setting the same way whether or not this build can run tasks.

use crate::text::safe;

/// `[worker] sandbox`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SandboxMode {
    /// Sandbox when possible; otherwise run only this device's own tasks.
    #[default]
    Auto,
    /// Refuse to work without a sandbox.
    Required,
    /// Run every task unsandboxed (the user opted in).
    Off,
}

/// A sandbox mode that is none of `auto`, `required`, `off`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{}` is not a sandbox mode; write \"auto\", \"required\" or \"off\"", safe(.given))]
pub struct UnknownSandboxMode {
    /// What was written.
    pub given: String,
}

impl std::str::FromStr for SandboxMode {
    type Err = UnknownSandboxMode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(SandboxMode::Auto),
            "required" => Ok(SandboxMode::Required),
            "off" => Ok(SandboxMode::Off),
            _ => Err(UnknownSandboxMode {
                given: s.to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        assert_eq!("auto".parse(), Ok(SandboxMode::Auto));
        assert_eq!("required".parse(), Ok(SandboxMode::Required));
        assert_eq!("off".parse(), Ok(SandboxMode::Off));
    }

    #[test]
    fn an_unknown_mode_is_named_safely() {
        let e = "on\x1b".parse::<SandboxMode>().unwrap_err();
        assert_eq!(e.given, "on\x1b");
        assert_eq!(
            e.to_string(),
            "`on\\u{1b}` is not a sandbox mode; write \"auto\", \"required\" or \"off\""
        );
    }
}
