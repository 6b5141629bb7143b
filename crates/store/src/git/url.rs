//! Remote URLs: which are local paths (made absolute, since git runs in
//! the cache folder), how they are shown (credentials redacted), and the
//! `GIT_CONFIG_*` variables that send a token as an auth header to the
//! right host only.

use std::path::Path;

use base64::Engine as _;

/// True if git takes `url` as a local path: no `scheme://`, and no `:`
/// before the first `/` (that would be scp-like `host:path`).
pub(crate) fn is_local_path(url: &str) -> bool {
    if url.contains("://") {
        return false;
    }
    match (url.find(':'), url.find('/')) {
        (None, _) => true,
        (Some(colon), Some(slash)) => slash < colon,
        (Some(_), None) => false,
    }
}

/// True if `url` reaches a git host (a server with its own limits), not a
/// repository on this machine's disk (a local path or `file://`).
pub fn is_hosted(url: &str) -> bool {
    !is_local_path(url) && !url.starts_with("file://")
}

/// Makes a relative local path absolute (against `base`, or the current
/// folder), since git runs in the cache folder. Other URLs are unchanged.
pub(crate) fn absolute_local_url(url: String, base: Option<&Path>) -> String {
    if !is_local_path(&url) || Path::new(&url).is_absolute() {
        return url;
    }
    let joined = match base {
        Some(base) => base.join(&url),
        None => match std::path::absolute(&url) {
            Ok(path) => path,
            Err(_) => return url,
        },
    };
    joined.display().to_string()
}

/// A remote spec (`git:URL`, `dir:PATH`, or a URL given without `git:` by
/// mistake) as it may be shown in a log: a URL's `user:password@` replaced
/// by `***@` (a runner's log on GitHub Actions is readable by everyone who
/// can read the repository).
pub fn redact_spec(spec: &str) -> String {
    match spec.strip_prefix("git:") {
        Some(url) => format!("git:{}", redact_url(url)),
        None => redact_url(spec),
    }
}

/// `url` with any `user:password@` replaced by `***@`, for messages.
pub(crate) fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..end].rfind('@') {
            return format!("{scheme}://***@{}", &rest[at + 1..]);
        }
    }
    url.to_owned()
}

/// The `GIT_CONFIG_*` variables that send `token` as an
/// `AUTHORIZATION: basic` header to the origin of `url`, when `url` is
/// https on github.com or on `auth_host`. Appended after `config_count`
/// entries the caller's environment already has.
pub(crate) fn auth_env(
    url: &str,
    token: Option<&str>,
    auth_host: Option<&str>,
    config_count: Option<&str>,
) -> Vec<(String, String)> {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Vec::new();
    };
    let Some(rest) = url.strip_prefix("https://") else {
        return Vec::new();
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let host = host_port.split(':').next().unwrap_or(host_port);
    let allowed = host.eq_ignore_ascii_case("github.com")
        || auth_host.is_some_and(|h| !h.is_empty() && h.eq_ignore_ascii_case(host));
    if !allowed {
        return Vec::new();
    }
    let n: usize = config_count
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or(0);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
    vec![
        ("GIT_CONFIG_COUNT".to_owned(), (n + 1).to_string()),
        (
            format!("GIT_CONFIG_KEY_{n}"),
            format!("http.https://{host_port}/.extraheader"),
        ),
        (
            format!("GIT_CONFIG_VALUE_{n}"),
            format!("AUTHORIZATION: basic {basic}"),
        ),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use base64::Engine as _;

    use super::*;

    #[test]
    fn urls() {
        for local in ["/srv/r.git", "r.git", "../r", "./a:b"] {
            assert!(is_local_path(local), "{local}");
        }
        for remote in [
            "file:///srv/r.git",
            "git://127.0.0.1:9418/r",
            "https://github.com/o/r.git",
            "git@github.com:o/r.git",
            "host:r.git",
        ] {
            assert!(!is_local_path(remote), "{remote}");
        }
        assert_eq!(
            absolute_local_url("r.git".into(), Some(Path::new("/base"))),
            "/base/r.git"
        );
        assert_eq!(
            absolute_local_url("git@h:o/r".into(), Some(Path::new("/base"))),
            "git@h:o/r"
        );
        assert_eq!(
            redact_url("https://x-access-token:secret@github.com/o/r.git"),
            "https://***@github.com/o/r.git"
        );
        assert_eq!(
            redact_url("git@github.com:o/r.git"),
            "git@github.com:o/r.git"
        );
        assert_eq!(redact_url("https://h/a@b"), "https://h/a@b");
        assert_eq!(
            redact_spec("git:https://u:tok@github.com/o/r.git"),
            "git:https://***@github.com/o/r.git"
        );
        assert_eq!(redact_spec("dir:/mnt/a@b"), "dir:/mnt/a@b");
        assert_eq!(
            redact_spec("https://u:tok@github.com/o/r.git"),
            "https://***@github.com/o/r.git"
        );
    }

    #[test]
    fn auth_header_only_for_the_right_host() {
        let env = auth_env("https://github.com/o/r.git", Some("tok"), None, None);
        let expected_value = format!(
            "AUTHORIZATION: basic {}",
            base64::engine::general_purpose::STANDARD.encode("x-access-token:tok")
        );
        assert_eq!(
            env,
            vec![
                ("GIT_CONFIG_COUNT".to_owned(), "1".to_owned()),
                (
                    "GIT_CONFIG_KEY_0".to_owned(),
                    "http.https://github.com/.extraheader".to_owned()
                ),
                ("GIT_CONFIG_VALUE_0".to_owned(), expected_value),
            ]
        );
        // Appended after the caller's own GIT_CONFIG_* entries.
        let env = auth_env("https://github.com/o/r.git", Some("tok"), None, Some("2"));
        assert_eq!(env[0], ("GIT_CONFIG_COUNT".to_owned(), "3".to_owned()));
        assert_eq!(env[1].0, "GIT_CONFIG_KEY_2");
        for (url, host) in [
            ("http://github.com/o/r.git", None),
            ("https://gitlab.com/o/r.git", None),
            ("git@github.com:o/r.git", None),
            ("https://github.com.evil.example/o/r.git", None),
            ("https://ghe.example:8443/o/r.git", Some("other.example")),
        ] {
            assert!(auth_env(url, Some("tok"), host, None).is_empty(), "{url}");
        }
        assert!(auth_env("https://github.com/o/r.git", Some(""), None, None).is_empty());
        assert!(auth_env("https://github.com/o/r.git", None, None, None).is_empty());
        let env = auth_env(
            "https://ghe.example:8443/o/r.git",
            Some("tok"),
            Some("ghe.example"),
            None,
        );
        assert_eq!(env[1].1, "http.https://ghe.example:8443/.extraheader");
    }
}
