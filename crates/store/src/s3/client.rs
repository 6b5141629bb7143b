//! The `s3:` remote's client (feature `s3`): `object_store`'s
//! [`AmazonS3`] set up from [`S3Options`], behind the blocking [`Remote`]
//! trait, and its failures as [`RemoteError`]s (see [`super`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig,
};

use super::{S3Options, S3Spec, env_has_credentials, profile_settings};
use crate::names::{self, FORMAT_NAME, StoreName};
use crate::remote::{Remote, RemoteError};

/// Requests one call of the remote has in flight at once (a sync's batch
/// of puts or reads).
const CONCURRENCY: usize = 8;

/// The client's answers to a configuration it cannot use (a malformed
/// endpoint, half a key pair), before any request.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up remote {remote}: {detail}")]
pub struct S3SetupError {
    /// The remote.
    pub remote: String,
    /// What the client said (it never quotes a credential).
    pub detail: String,
}

/// A store under a prefix of an S3 bucket (see the module docs).
pub struct S3Remote {
    spec: S3Spec,
    store: Arc<AmazonS3>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl fmt::Debug for S3Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Remote")
            .field("spec", &self.spec)
            .finish()
    }
}

/// The client's settings, lowest precedence first: the profile's files,
/// then bridge.toml's `[store.s3]`, then the environment.
fn builder(spec: &S3Spec, opts: &S3Options) -> AmazonS3Builder {
    let mut settings: BTreeMap<String, String> = BTreeMap::new();
    let from_env = env_has_credentials(&opts.env);
    for (key, value) in profile_settings(opts) {
        let is_credential = key.starts_with("aws_access")
            || key.starts_with("aws_secret")
            || key.starts_with("aws_session");
        if !(from_env && is_credential) {
            settings.insert(key.to_owned(), value);
        }
    }
    if let Some(endpoint) = &opts.endpoint {
        settings.insert("aws_endpoint".into(), endpoint.clone());
    }
    if let Some(region) = &opts.region {
        settings.insert("aws_region".into(), region.clone());
    }
    for (name, value) in &opts.env {
        let key = name.to_ascii_lowercase();
        // AWS_ENDPOINT_URL is the SDKs' name for what object_store calls
        // aws_endpoint; AWS_DEFAULT_REGION only where AWS_REGION is unset.
        let key = match key.as_str() {
            "aws_endpoint_url" => "aws_endpoint".to_owned(),
            "aws_default_region" if opts.env.contains_key("AWS_REGION") => continue,
            "aws_default_region" => "aws_region".to_owned(),
            "aws_profile" | "aws_shared_credentials_file" | "aws_config_file" => continue,
            _ => key,
        };
        if !value.is_empty() {
            settings.insert(key, value.clone());
        }
    }
    let endpoint = settings
        .get("aws_endpoint_url_s3")
        .or(settings.get("aws_endpoint"))
        .cloned();
    if !settings.contains_key("aws_virtual_hosted_style_request") {
        let path_style = opts.path_style.unwrap_or(endpoint.is_some());
        settings.insert(
            "aws_virtual_hosted_style_request".into(),
            (!path_style).to_string(),
        );
    }
    let mut b = AmazonS3Builder::new()
        .with_bucket_name(&spec.bucket)
        .with_conditional_put(S3ConditionalPut::ETagMatch);
    for (key, value) in settings {
        if let Ok(config_key) = key.parse::<AmazonS3ConfigKey>() {
            b = b.with_config(config_key, value);
        }
    }
    // A virtual-hosted endpoint names the bucket: object_store wants it so.
    let virtual_hosted = b
        .get_config_value(&AmazonS3ConfigKey::VirtualHostedStyleRequest)
        .is_some_and(|v| v == "true");
    if let (Some(endpoint), true) = (&endpoint, virtual_hosted)
        && let Some((scheme, host)) = endpoint.split_once("://")
        && !host.starts_with(&format!("{}.", spec.bucket))
    {
        b = b.with_endpoint(format!("{scheme}://{}.{host}", spec.bucket));
    }
    // An endpoint given as http:// was asked for: allow it.
    let http = endpoint
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"));
    let client = ClientOptions::new()
        .with_allow_http(http)
        .with_connect_timeout(opts.stall_timeout)
        .with_read_timeout(opts.stall_timeout)
        .with_timeout_disabled();
    b.with_client_options(client).with_retry(RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            base: 2.0,
        },
        max_retries: opts.max_retries,
        retry_timeout: opts.retry_timeout,
    })
}

impl S3Remote {
    /// A remote for `spec`, not yet contacted.
    pub fn new(spec: S3Spec, opts: &S3Options) -> Result<S3Remote, S3SetupError> {
        // The HTTPS client's TLS provider, if the program set none (the
        // CLI installs ring at start-up; an embedder or a test may not).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let setup = |detail: String| S3SetupError {
            remote: spec.describe(),
            detail,
        };
        let store = builder(&spec, opts)
            .build()
            .map_err(|e| setup(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("bridge-s3")
            .enable_all()
            .build()
            .map_err(|e| setup(format!("cannot start its I/O thread: {e}")))?;
        Ok(S3Remote {
            spec,
            store: Arc::new(store),
            runtime: Some(runtime),
        })
    }

    /// Runs `fut` on this remote's runtime and waits for it without
    /// entering a runtime on the calling thread (see the module docs).
    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, RemoteError>> + Send + 'static,
    ) -> Result<T, RemoteError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        if let Some(runtime) = &self.runtime {
            runtime.spawn(async move {
                let _ = tx.send(fut.await);
            });
        }
        rx.recv().unwrap_or_else(|_| {
            Err(RemoteError::Unreachable {
                remote: self.describe(),
                source: io::Error::other("the S3 client's I/O thread stopped"),
            })
        })
    }

    fn key(&self, name: &str) -> ObjectPath {
        if self.spec.prefix.is_empty() {
            ObjectPath::from(name)
        } else {
            ObjectPath::from(format!("{}/{name}", self.spec.prefix))
        }
    }

    fn invalid_name(&self, name: &str) -> RemoteError {
        RemoteError::InvalidName {
            remote: self.describe(),
            name: name.to_owned(),
        }
    }
}

impl Drop for S3Remote {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside another runtime
        // (a remote dropped by the worker's tasks): let it go instead.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Why a request failed, as the remote's error (pure, for tests): a
/// missing object is `NotFound`; refused credentials and a missing bucket
/// are a misconfigured remote; a connection that failed or stalled (after
/// the client's retries) is `Unreachable`, so the caller goes on offline;
/// anything else is an I/O error on `name`.
fn classify(remote: &str, name: Option<&str>, e: object_store::Error) -> RemoteError {
    let detail = chain(&e);
    let remote = remote.to_owned();
    match (&e, name) {
        (object_store::Error::NotFound { .. }, Some(name)) => {
            return RemoteError::NotFound {
                remote,
                name: name.to_owned(),
            };
        }
        (
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. },
            _,
        ) => return RemoteError::AccessDenied { remote, detail },
        _ => {}
    }
    if detail.contains("NoSuchBucket") || (name.is_none() && detail.contains("404 Not Found")) {
        return RemoteError::BucketNotFound { remote, detail };
    }
    if detail.contains("InvalidAccessKeyId")
        || detail.contains("SignatureDoesNotMatch")
        || detail.contains("AccessDenied")
    {
        return RemoteError::AccessDenied { remote, detail };
    }
    if is_transport(&e) || detail.contains("status code: 5") {
        return RemoteError::Unreachable {
            remote,
            source: io::Error::other(detail),
        };
    }
    RemoteError::Io {
        remote,
        name: name.unwrap_or(".").to_owned(),
        source: io::Error::other(detail),
    }
}

/// Whether a connection failed, stalled or broke (not an answer).
fn is_transport(e: &(dyn std::error::Error + 'static)) -> bool {
    use object_store::client::{HttpError, HttpErrorKind};
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(http) = c.downcast_ref::<HttpError>() {
            return matches!(
                http.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
            );
        }
        cause = c.source();
    }
    false
}

/// An error and its causes on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// What one listed key is: a store name under the prefix, or something
/// else.
fn store_name_of<'a>(prefix: &str, key: &'a str) -> Option<&'a str> {
    let rel = if prefix.is_empty() {
        key
    } else {
        key.strip_prefix(prefix)?.strip_prefix('/')?
    };
    StoreName::parse(rel).map(|_| rel)
}

impl Remote for S3Remote {
    fn describe(&self) -> String {
        self.spec.describe()
    }

    /// One paginated listing of the prefix. Objects that are not store
    /// names are ignored, unless there is no `FORMAT`: then the prefix
    /// holds something else ([`RemoteError::NotAStore`]).
    fn list(&self) -> Result<BTreeSet<String>, RemoteError> {
        let store = Arc::clone(&self.store);
        let prefix = (!self.spec.prefix.is_empty()).then(|| ObjectPath::from(&*self.spec.prefix));
        let remote = self.describe();
        let keys: Vec<String> = self.run(async move {
            store
                .list(prefix.as_ref())
                .map_ok(|meta| meta.location.to_string())
                .try_collect()
                .await
                .map_err(|e| classify(&remote, None, e))
        })?;
        let mut out = BTreeSet::new();
        let mut foreign = false;
        for key in &keys {
            match store_name_of(&self.spec.prefix, key) {
                Some(name) => {
                    out.insert(name.to_owned());
                }
                None => foreign = true,
            }
        }
        if foreign && !out.contains(FORMAT_NAME) {
            return Err(RemoteError::NotAStore {
                remote: self.describe(),
            });
        }
        Ok(out)
    }

    /// Reads an object within its kind's size limit, checked on the
    /// response's length before the body is read.
    fn read(&self, name: &str) -> Result<Vec<u8>, RemoteError> {
        crate::remote::read_through_many(self, name)
    }

    fn read_many(&self, names: &[String]) -> Result<Vec<(String, Vec<u8>)>, RemoteError> {
        let mut asked = Vec::with_capacity(names.len());
        for name in names {
            let parsed = StoreName::parse(name).ok_or_else(|| self.invalid_name(name))?;
            asked.push((name.clone(), self.key(name), parsed.max_bytes()));
        }
        let store = Arc::clone(&self.store);
        let remote = self.describe();
        let got = self.run(async move {
            futures::stream::iter(asked)
                .map(|(name, key, limit)| {
                    let (store, remote) = (Arc::clone(&store), remote.clone());
                    async move { read_one(&store, &remote, name, key, limit).await }
                })
                .buffered(CONCURRENCY)
                .try_collect::<Vec<_>>()
                .await
        })?;
        Ok(got.into_iter().flatten().collect())
    }

    /// Checks every name and hash, then creates each object with
    /// `If-None-Match: *`; one that exists already is left as it is.
    fn put(&self, files: &[(String, Vec<u8>)]) -> Result<(), RemoteError> {
        let mut puts = Vec::with_capacity(files.len());
        for (name, bytes) in files {
            let parsed = StoreName::parse(name).ok_or_else(|| self.invalid_name(name))?;
            if let Some(hash) = parsed.hash()
                && names::sha256_hex(bytes) != hash
            {
                return Err(RemoteError::HashMismatch {
                    remote: self.describe(),
                    name: name.clone(),
                });
            }
            puts.push((
                name.clone(),
                self.key(name),
                PutPayload::from(bytes.clone()),
            ));
        }
        let store = Arc::clone(&self.store);
        let remote = self.describe();
        self.run(async move {
            futures::stream::iter(puts)
                .map(|(name, key, payload)| {
                    let (store, remote) = (Arc::clone(&store), remote.clone());
                    async move {
                        let opts = PutOptions::from(PutMode::Create);
                        match store.put_opts(&key, payload, opts).await {
                            Ok(_) => Ok(()),
                            // Someone (maybe us, on a retried request) put it.
                            Err(
                                object_store::Error::AlreadyExists { .. }
                                | object_store::Error::Precondition { .. },
                            ) => Ok(()),
                            Err(e) => Err(put_error(&remote, &name, e)),
                        }
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .try_collect::<Vec<()>>()
                .await
                .map(|_| ())
        })
    }

    fn remove(&self, names: &[String]) -> Result<usize, RemoteError> {
        let mut keys = Vec::with_capacity(names.len());
        for name in names {
            match StoreName::parse(name) {
                Some(StoreName::Doc { .. } | StoreName::Blob { .. } | StoreName::Pack { .. }) => {
                    keys.push((name.clone(), self.key(name)));
                }
                _ => return Err(self.invalid_name(name)),
            }
        }
        let store = Arc::clone(&self.store);
        let remote = self.describe();
        self.run(async move {
            futures::stream::iter(keys)
                .map(|(name, key)| {
                    let (store, remote) = (Arc::clone(&store), remote.clone());
                    async move {
                        match store.delete(&key).await {
                            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                            Err(e) => Err(classify(&remote, Some(&name), e)),
                        }
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .try_collect::<Vec<()>>()
                .await
                .map(|_| 0)
        })
    }
}

/// One object, or `None` if it is not there.
async fn read_one(
    store: &AmazonS3,
    remote: &str,
    name: String,
    key: ObjectPath,
    limit: u64,
) -> Result<Option<(String, Vec<u8>)>, RemoteError> {
    let got = match store.get(&key).await {
        Ok(got) => got,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(classify(remote, Some(&name), e)),
    };
    if got.meta.size > limit {
        return Err(RemoteError::TooLarge {
            remote: remote.to_owned(),
            name,
            size: got.meta.size,
            limit,
        });
    }
    let bytes = got
        .bytes()
        .await
        .map_err(|e| classify(remote, Some(&name), e))?;
    Ok(Some((name, bytes.to_vec())))
}

/// A failed put: a full bucket or quota is [`RemoteError::Full`] (the
/// caller goes on offline), else as [`classify`].
fn put_error(remote: &str, name: &str, e: object_store::Error) -> RemoteError {
    let detail = chain(&e);
    if detail.contains("QuotaExceeded") || detail.contains("EntityTooLarge") {
        return RemoteError::Full {
            remote: remote.to_owned(),
            name: name.to_owned(),
            source: io::Error::other(detail),
        };
    }
    classify(remote, Some(name), e)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_gives_credentials_unless_the_environment_has_some() {
        let home = tempfile::tempdir().unwrap();
        let aws = home.path().join(".aws");
        std::fs::create_dir(&aws).unwrap();
        std::fs::write(
            aws.join("credentials"),
            "[default]\naws_access_key_id=DEF\naws_secret_access_key=s1\n[ci]\naws_access_key_id=CI\naws_secret_access_key=s2\n",
        )
        .unwrap();
        std::fs::write(aws.join("config"), "[profile ci]\nregion=eu-west-3\n").unwrap();
        let spec = S3Spec::parse("s3://bucket/p").unwrap();
        let mut opts = S3Options {
            home: Some(home.path().to_owned()),
            ..S3Options::default()
        };
        let key = |o: &S3Options, k| builder(&spec, o).get_config_value(&k);
        assert_eq!(
            key(&opts, AmazonS3ConfigKey::AccessKeyId).as_deref(),
            Some("DEF")
        );
        opts.env.insert("AWS_PROFILE".into(), "ci".into());
        assert_eq!(
            key(&opts, AmazonS3ConfigKey::AccessKeyId).as_deref(),
            Some("CI")
        );
        assert_eq!(
            key(&opts, AmazonS3ConfigKey::Region).as_deref(),
            Some("eu-west-3")
        );
        opts.env.insert("AWS_ACCESS_KEY_ID".into(), "ENV".into());
        opts.env.insert("AWS_SECRET_ACCESS_KEY".into(), "s3".into());
        assert_eq!(
            key(&opts, AmazonS3ConfigKey::AccessKeyId).as_deref(),
            Some("ENV")
        );
        assert_eq!(
            key(&opts, AmazonS3ConfigKey::SecretAccessKey).as_deref(),
            Some("s3")
        );
    }

    #[test]
    fn the_environment_wins_over_bridge_toml_and_an_endpoint_means_path_style() {
        let spec = S3Spec::parse("s3://bucket").unwrap();
        let mut opts = S3Options {
            endpoint: Some("http://127.0.0.1:9000".into()),
            region: Some("garage".into()),
            ..S3Options::default()
        };
        let key = |o: &S3Options, k| builder(&spec, o).get_config_value(&k);
        assert_eq!(
            key(&opts, AmazonS3ConfigKey::Endpoint).as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(
            key(&opts, AmazonS3ConfigKey::VirtualHostedStyleRequest).as_deref(),
            Some("false")
        );
        opts.env
            .insert("AWS_ENDPOINT_URL".into(), "https://r2.example".into());
        opts.env.insert("AWS_DEFAULT_REGION".into(), "auto".into());
        assert_eq!(
            key(&opts, AmazonS3ConfigKey::Endpoint).as_deref(),
            Some("https://r2.example")
        );
        assert_eq!(
            key(&opts, AmazonS3ConfigKey::Region).as_deref(),
            Some("auto")
        );
        let aws = S3Options::default();
        assert_eq!(
            key(&aws, AmazonS3ConfigKey::VirtualHostedStyleRequest).as_deref(),
            Some("true")
        );
    }

    #[test]
    fn listed_keys_are_store_names_under_the_prefix() {
        let h = names::sha256_hex(b"x");
        let blob = format!("p/q/blobs/{h}.blob");
        assert_eq!(store_name_of("p/q", &blob), Some(&blob[4..]));
        assert_eq!(store_name_of("p/q", "p/q/FORMAT"), Some("FORMAT"));
        assert_eq!(store_name_of("p/q", "p/qq/FORMAT"), None);
        assert_eq!(store_name_of("p/q", "p/q/README"), None);
        assert_eq!(store_name_of("", "workspace"), Some("workspace"));
    }

    #[test]
    fn a_remote_is_used_and_dropped_inside_a_tokio_runtime_without_panicking() {
        // The worker calls remotes from its runtime's threads.
        let spec = S3Spec::parse("s3://bucket/p").unwrap();
        let mut opts = S3Options {
            endpoint: Some("http://127.0.0.1:9".into()),
            max_retries: 0,
            ..S3Options::default()
        };
        opts.env.insert("AWS_ACCESS_KEY_ID".into(), "k".into());
        opts.env.insert("AWS_SECRET_ACCESS_KEY".into(), "s".into());
        let outer = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        outer.block_on(async {
            let remote = S3Remote::new(spec, &opts).unwrap();
            // Port 9 (discard) is closed on loopback: refused, so offline.
            assert!(matches!(
                remote.list(),
                Err(RemoteError::Unreachable { .. })
            ));
            drop(remote);
        });
    }
}
