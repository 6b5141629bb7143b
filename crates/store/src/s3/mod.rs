//! The `s3:` remote (issue 19, item 1): a store kept as objects under a
//! prefix of a bucket of AWS S3 or of any S3-compatible store (Cloudflare
//! R2, Backblaze B2, MinIO, Garage, Ceph), spec `s3://BUCKET/PREFIX` or
//! `s3://BUCKET`. Owns `S3Remote`, the parsing of its spec
//! ([`S3Spec`]), what it takes from its surroundings ([`S3Options`]) and
//! the mapping of the client's failures onto
//! [`RemoteError`](crate::RemoteError). The spec, the options and the
//! shared files are here (always built); the client, `client.rs`, only
//! with the crate's `s3` feature.
//!
//! Store name `N` is object `PREFIX/N`. Files are immutable and
//! content-addressed, so the object model fits as is:
//!
//! - `put` is create-only on the server: every object is written with
//!   `If-None-Match: *` (the conditional PUT AWS S3, R2, B2 and MinIO
//!   honour), and a `412 Precondition Failed` (the object exists) counts
//!   as done, so two writers can never replace each other's file. Names
//!   and hashes are checked before anything is sent.
//! - `list` is one paginated `ListObjectsV2` of the prefix; objects that
//!   are not store names are ignored, or refused as `NotAStore`
//!   when there is no `FORMAT` (a prefix that holds something else).
//! - `read` checks an object's size against its kind's limit before it
//!   reads the body.
//!
//! The client is the Apache Arrow project's `object_store`: it signs with
//! SigV4, takes credentials from the standard chain (static keys,
//! web identity for CI's OIDC, the container and instance endpoints), and
//! retries with exponential backoff. It is async; [`Remote`] is blocking
//! and may be called from inside a tokio runtime (the worker's), where
//! `block_on` would panic. So each remote owns a small runtime of its own
//! and a call hands its future to it and waits on a channel: the calling
//! thread never enters a runtime.
//!
//! This crate reads no environment ([`RemoteOptions`](crate::RemoteOptions)
//! says why): the CLI passes the `AWS_*` variables ([`ENV_VARS`]) in
//! [`S3Options::env`]. The shared credentials and config files
//! (`~/.aws/credentials`, `~/.aws/config`, `AWS_PROFILE`) are read here,
//! since `object_store` does not. No credential is ever part of a spec, of
//! `describe` or of an error.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

#[cfg(feature = "s3")]
mod client;
#[cfg(feature = "s3")]
pub use client::{S3Remote, S3SetupError};

/// The environment variables an `s3:` remote reads (through
/// [`S3Options::env`]): `object_store`'s own (credentials, region,
/// endpoint, web identity, container credentials) and the shared files'
/// (`AWS_PROFILE`, `AWS_SHARED_CREDENTIALS_FILE`, `AWS_CONFIG_FILE`).
pub const ENV_VARS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT",
    "AWS_ALLOW_HTTP",
    "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_ENDPOINT_URL_STS",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
];

/// Of [`ENV_VARS`], those holding secrets: never logged, never passed on.
pub const SECRET_ENV_VARS: &[&str] = &["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"];

/// How many times a failed request is retried by default (with
/// exponential backoff from 100 ms, at most 15 s apart).
pub const DEFAULT_MAX_RETRIES: usize = 4;
/// How long after its first attempt a request is retried at most, by
/// default.
pub const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(60);

/// What an `s3:` remote takes beyond its spec: the environment's `AWS_*`
/// variables, the non-secret settings of `[store.s3]` in bridge.toml, and
/// the limits of its requests. The environment wins over bridge.toml,
/// which wins over the profile's config file.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Options {
    /// The variables of [`ENV_VARS`] that are set, by name.
    pub env: BTreeMap<String, String>,
    /// The home folder, where `~/.aws/credentials` and `~/.aws/config`
    /// are; `None`: the shared files are read only where `AWS_*_FILE`
    /// variables name them.
    pub home: Option<PathBuf>,
    /// The endpoint of an S3-compatible store (`https://…`), when the
    /// environment names none; `None`: AWS.
    pub endpoint: Option<String>,
    /// The region, when the environment names none; else the profile's,
    /// else `us-east-1`.
    pub region: Option<String>,
    /// Path-style requests (`ENDPOINT/BUCKET/KEY`) rather than
    /// virtual-hosted ones (`BUCKET.ENDPOINT/KEY`); `None`: path-style
    /// with an endpoint (what S3-compatible stores expect),
    /// virtual-hosted on AWS.
    pub path_style: Option<bool>,
    /// How many times a failed request is retried.
    pub max_retries: usize,
    /// How long after its first attempt a request is retried at most.
    pub retry_timeout: Duration,
    /// How long a connection or a response may make no progress before
    /// the request is abandoned (and retried).
    pub stall_timeout: Duration,
}

impl Default for S3Options {
    fn default() -> S3Options {
        S3Options {
            env: Default::default(),
            home: None,
            endpoint: None,
            region: None,
            path_style: None,
            max_retries: DEFAULT_MAX_RETRIES,
            retry_timeout: DEFAULT_RETRY_TIMEOUT,
            stall_timeout: crate::git::DEFAULT_STALL_TIMEOUT,
        }
    }
}

/// Names the variables, never their values.
impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Options")
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("home", &self.home)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("max_retries", &self.max_retries)
            .field("retry_timeout", &self.retry_timeout)
            .field("stall_timeout", &self.stall_timeout)
            .finish()
    }
}

/// A parsed `s3://BUCKET/PREFIX` spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Spec {
    /// The bucket.
    pub bucket: String,
    /// The prefix the store's objects are under, without a leading or
    /// trailing `/`; empty: the bucket's root.
    pub prefix: String,
}

/// Why an `s3:` spec could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum S3SpecError {
    /// Not `s3://…`.
    #[error("expected s3://BUCKET or s3://BUCKET/PREFIX")]
    NotS3Url,
    /// A bucket name S3 does not allow.
    #[error(
        "bucket name {0:?} is not valid: 3 to 63 characters, lowercase letters, digits, '.' and '-'"
    )]
    BadBucket(String),
    /// A prefix with an empty, `.` or `..` segment, or a character keys
    /// should not hold.
    #[error(
        "prefix {0:?} is not valid: '/'-separated segments of letters, digits and -_.!*'() (no empty, '.' or '..' segment)"
    )]
    BadPrefix(String),
}

impl S3Spec {
    /// Parses `s3://BUCKET/PREFIX` (the `s3:` scheme included). Never
    /// takes credentials: `s3://key:secret@bucket` is refused without the
    /// secret in the error.
    pub fn parse(spec: &str) -> Result<S3Spec, S3SpecError> {
        let rest = spec.strip_prefix("s3://").ok_or(S3SpecError::NotS3Url)?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && !bucket.starts_with(['.', '-'])
            && !bucket.ends_with(['.', '-']);
        if !bucket_ok {
            // Never echo what may be credentials (`key:secret@bucket`).
            let shown = match bucket.rsplit_once('@') {
                Some((_, host)) => format!("***@{host}"),
                None => bucket.to_owned(),
            };
            return Err(S3SpecError::BadBucket(shown));
        }
        let prefix = prefix.trim_end_matches('/');
        let segment_ok = |s: &str| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.!*'()".contains(&b))
        };
        if !prefix.is_empty() && !prefix.split('/').all(segment_ok) {
            return Err(S3SpecError::BadPrefix(prefix.to_owned()));
        }
        Ok(S3Spec {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    /// `s3://BUCKET/PREFIX` (or `s3://BUCKET`).
    pub fn describe(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// The `[section]` of an INI file (the AWS shared files' format): its
/// `key = value` lines, keys lowercased. Pure, for tests.
#[cfg(any(feature = "s3", test))]
pub(crate) fn ini_section(text: &str, section: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
            continue;
        }
        if inside && let Some((key, value)) = line.split_once('=') {
            out.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    out
}

/// The settings the shared files give the profile (`AWS_PROFILE`, else
/// `default`), as `object_store` config keys: keys and token from the
/// credentials file, region and endpoint from the config file. Missing
/// files give nothing.
#[cfg(any(feature = "s3", test))]
pub(crate) fn profile_settings(opts: &S3Options) -> BTreeMap<&'static str, String> {
    let var = |name: &str| opts.env.get(name).filter(|v| !v.is_empty()).cloned();
    let file = |var_name: &str, default: &str| {
        var(var_name)
            .map(PathBuf::from)
            .or_else(|| opts.home.as_ref().map(|h| h.join(".aws").join(default)))
            .and_then(|path| std::fs::read_to_string(path).ok())
            .unwrap_or_default()
    };
    let profile = var("AWS_PROFILE").unwrap_or_else(|| "default".to_owned());
    let mut out = BTreeMap::new();
    let credentials = ini_section(
        &file("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
        &profile,
    );
    for (key, config) in [
        ("aws_access_key_id", "aws_access_key_id"),
        ("aws_secret_access_key", "aws_secret_access_key"),
        ("aws_session_token", "aws_session_token"),
    ] {
        if let Some(value) = credentials.get(key) {
            out.insert(config, value.clone());
        }
    }
    let section = if profile == "default" {
        profile.clone()
    } else {
        format!("profile {profile}")
    };
    let config = ini_section(&file("AWS_CONFIG_FILE", "config"), &section);
    for (key, config_key) in [("region", "aws_region"), ("endpoint_url", "aws_endpoint")] {
        if let Some(value) = config.get(key) {
            out.insert(config_key, value.clone());
        }
    }
    out
}

/// Whether the environment names credentials of its own (then the
/// shared credentials file is not read, as the AWS SDKs do).
#[cfg(any(feature = "s3", test))]
pub(crate) fn env_has_credentials(env: &BTreeMap<String, String>) -> bool {
    [
        "AWS_ACCESS_KEY_ID",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ]
    .iter()
    .any(|k| env.get(*k).is_some_and(|v| !v.is_empty()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn specs_name_a_bucket_and_an_optional_prefix() {
        let spec = S3Spec::parse("s3://my-bucket/teams/pool/").unwrap();
        assert_eq!(spec.bucket, "my-bucket");
        assert_eq!(spec.prefix, "teams/pool");
        assert_eq!(spec.describe(), "s3://my-bucket/teams/pool");
        let spec = S3Spec::parse("s3://my.bucket").unwrap();
        assert_eq!(
            (spec.prefix.as_str(), spec.describe()),
            ("", "s3://my.bucket".into())
        );
        assert_eq!(S3Spec::parse("s3://b2b/").unwrap().prefix, "");
        for bad in ["s3:bucket", "s3://", "s3://B", "s3://Upper", "s3://-x-/p"] {
            assert!(S3Spec::parse(bad).is_err(), "{bad}");
        }
        for bad in [
            "s3://bkt/a//b",
            "s3://bkt/../x",
            "s3://bkt/a b",
            "s3://bkt/./x",
        ] {
            assert!(
                matches!(S3Spec::parse(bad), Err(S3SpecError::BadPrefix(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_spec_with_credentials_is_refused_without_quoting_them() {
        let e = S3Spec::parse("s3://AKIA:hunter2@bucket/p").unwrap_err();
        let shown = e.to_string();
        assert!(
            !shown.contains("hunter2") && !shown.contains("AKIA"),
            "{shown}"
        );
    }

    #[test]
    fn ini_sections_are_read_by_name() {
        let text = "[default]\naws_access_key_id = A\n# c\n[profile ci]\nRegion= eu-west-3 \n[other]\nregion=x\n";
        assert_eq!(ini_section(text, "default")["aws_access_key_id"], "A");
        assert_eq!(ini_section(text, "profile ci")["region"], "eu-west-3");
        assert!(ini_section(text, "missing").is_empty());
    }

    #[test]
    fn options_never_show_secret_values() {
        let mut opts = S3Options::default();
        opts.env
            .insert("AWS_SECRET_ACCESS_KEY".into(), "hunter2".into());
        let shown = format!("{opts:?}");
        assert!(shown.contains("AWS_SECRET_ACCESS_KEY") && !shown.contains("hunter2"));
    }
}
