//! How a [`Fetcher`](crate::Fetcher) behaves: where the cache is, how long
//! it waits, how often it tries. [`FetchConfig::from_vars`] resolves it from
//! the conventional variables, given by a function (the engine resolves it
//! with the rest of its settings, once), so that the choice is tested
//! without touching the process's environment.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// The connect timeout unless `BRIDGE_FETCH_TIMEOUT` says otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a download may go without receiving a byte, unless
/// `BRIDGE_FETCH_TIMEOUT` says otherwise.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How many times a download is tried in all.
pub const DEFAULT_TRIES: u32 = 3;
/// The first backoff between tries; it doubles each time, jittered.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);

/// How a [`Fetcher`](crate::Fetcher) behaves.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// Where downloaded files are kept, one per SHA-256.
    pub cache_dir: PathBuf,
    /// The limit on connecting to the server.
    pub connect_timeout: Duration,
    /// The limit on waiting for the next bytes of a response.
    pub read_timeout: Duration,
    /// How many times a download is tried (at least once).
    pub tries: u32,
    /// The first backoff between tries.
    pub backoff: Duration,
}

/// A configuration that could not be read from the environment.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfigError {
    /// None of the variables that place the cache is set.
    #[error(
        "cannot choose a cache folder for URL inputs: none of BRIDGE_CACHE_DIR, XDG_CACHE_HOME and HOME is set"
    )]
    NoCacheDir,
    /// `BRIDGE_FETCH_TIMEOUT` is not one or two durations.
    #[error("BRIDGE_FETCH_TIMEOUT={value}: {reason}")]
    Timeout {
        /// The variable's value.
        value: String,
        /// What is wrong with it (in the message: one line, as before).
        reason: TimeoutError,
    },
}

/// Why a timeout was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TimeoutError {
    /// Not a duration.
    #[error("`{text}` is not a duration ({cause})")]
    NotADuration {
        /// The text, trimmed.
        text: String,
        /// What humantime said.
        cause: humantime::DurationError,
    },
    /// Zero.
    #[error("a timeout must be longer than zero")]
    Zero,
}

impl FetchConfig {
    /// The configuration from these variables (`var` gives a variable's
    /// value): `BRIDGE_CACHE_DIR`, else `XDG_CACHE_HOME/bridge/inputs`, else
    /// `HOME/.cache/bridge/inputs` (empty means unset), and
    /// `BRIDGE_FETCH_TIMEOUT` (see [`parse_timeouts`]).
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Result<FetchConfig, ConfigError> {
        let set = |k: &str| var(k).filter(|v| !v.is_empty());
        let cache_dir = if let Some(dir) = set("BRIDGE_CACHE_DIR") {
            PathBuf::from(dir)
        } else if let Some(xdg) = set("XDG_CACHE_HOME") {
            PathBuf::from(xdg).join("bridge").join("inputs")
        } else if let Some(home) = set("HOME") {
            PathBuf::from(home)
                .join(".cache")
                .join("bridge")
                .join("inputs")
        } else {
            return Err(ConfigError::NoCacheDir);
        };
        let (connect_timeout, read_timeout) = match set("BRIDGE_FETCH_TIMEOUT") {
            None => (DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT),
            Some(v) => {
                let value = v.to_string_lossy().into_owned();
                parse_timeouts(&value).map_err(|reason| ConfigError::Timeout { value, reason })?
            }
        };
        Ok(FetchConfig {
            cache_dir,
            connect_timeout,
            read_timeout,
            tries: DEFAULT_TRIES,
            backoff: DEFAULT_BACKOFF,
        })
    }
}

/// Parses `BRIDGE_FETCH_TIMEOUT`: one duration for both the connect and
/// the read timeout (`45s`), or `CONNECT,READ` (`10s,2m`).
pub fn parse_timeouts(text: &str) -> Result<(Duration, Duration), TimeoutError> {
    let one = |s: &str| -> Result<Duration, TimeoutError> {
        let d =
            humantime::parse_duration(s.trim()).map_err(|cause| TimeoutError::NotADuration {
                text: s.trim().to_owned(),
                cause,
            })?;
        if d.is_zero() {
            return Err(TimeoutError::Zero);
        }
        Ok(d)
    };
    match text.split_once(',') {
        Some((c, r)) => Ok((one(c)?, one(r)?)),
        None => {
            let d = one(text)?;
            Ok((d, d))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn timeouts_and_cache_folder_from_the_environment() -> anyhow::Result<()> {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let c = FetchConfig::from_vars(vars(&[("HOME", "/h")]))?;
        assert_eq!(c.cache_dir, Path::new("/h/.cache/bridge/inputs"));
        assert_eq!(
            (c.connect_timeout, c.read_timeout),
            (DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT)
        );
        let c = FetchConfig::from_vars(vars(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")]))?;
        assert_eq!(c.cache_dir, Path::new("/x/bridge/inputs"));
        let c = FetchConfig::from_vars(vars(&[
            ("HOME", "/h"),
            ("XDG_CACHE_HOME", "/x"),
            ("BRIDGE_CACHE_DIR", "/c"),
            ("BRIDGE_FETCH_TIMEOUT", "10s, 2m"),
        ]))?;
        assert_eq!(c.cache_dir, Path::new("/c"));
        assert_eq!(
            (c.connect_timeout, c.read_timeout),
            (Duration::from_secs(10), Duration::from_secs(120))
        );
        assert_eq!(
            parse_timeouts("45s"),
            Ok((Duration::from_secs(45), Duration::from_secs(45)))
        );
        assert!(parse_timeouts("soon").is_err());
        assert!(parse_timeouts("0s").is_err());
        let err = FetchConfig::from_vars(vars(&[("HOME", "/h"), ("BRIDGE_FETCH_TIMEOUT", "x")]))
            .map(|_| ())
            .expect_err("a bad timeout");
        assert!(err.to_string().contains("BRIDGE_FETCH_TIMEOUT=x"), "{err}");
        Ok(())
    }

    #[test]
    fn a_bad_timeout_is_named_in_one_line() {
        assert_eq!(parse_timeouts("10s,0s"), Err(TimeoutError::Zero),);
        let e = FetchConfig::from_vars(|k| match k {
            "HOME" => Some(OsString::from("/h")),
            "BRIDGE_FETCH_TIMEOUT" => Some(OsString::from("10s,soon")),
            _ => None,
        })
        .map(|_| ())
        .unwrap_err();
        assert!(
            matches!(&e, ConfigError::Timeout { value, reason: TimeoutError::NotADuration { text, .. } } if value == "10s,soon" && text == "soon"),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with("BRIDGE_FETCH_TIMEOUT=10s,soon: `soon` is not a duration ("),
            "{e}"
        );
        assert!(std::error::Error::source(&e).is_none());
        assert!(matches!(
            FetchConfig::from_vars(|_| None),
            Err(ConfigError::NoCacheDir)
        ));
    }
}
