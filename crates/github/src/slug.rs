//! Names checked before any request: a repository (`OWNER/NAME`) and a
//! workflow file name. Both end up in request paths, so a name that GitHub
//! would not accept is refused here, with a message, instead of becoming a
//! confusing 404.

use std::fmt;
use std::str::FromStr;

/// A repository, `OWNER/NAME`, checked when parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSlug {
    owner: String,
    name: String,
}

impl RepoSlug {
    /// The account that owns the repository.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The repository's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `git:` remote of the repository on github.com.
    pub fn git_remote(&self) -> String {
        format!("git:https://github.com/{self}.git")
    }

    /// The repository's page on github.com.
    pub fn html_url(&self) -> String {
        format!("https://github.com/{self}")
    }
}

impl fmt::Display for RepoSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// Why a repository name was refused.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a GitHub repository: write OWNER/REPO, e.g. octo-org/pool")]
pub struct RepoSlugError(String);

impl RepoSlugError {
    /// The text that was refused.
    pub fn text(&self) -> &str {
        &self.0
    }
}

impl FromStr for RepoSlug {
    type Err = RepoSlugError;

    fn from_str(s: &str) -> Result<RepoSlug, RepoSlugError> {
        let bad = || RepoSlugError(s.to_owned());
        let s = s.trim();
        let s = s
            .strip_prefix("https://github.com/")
            .unwrap_or(s)
            .trim_end_matches('/');
        let s = s.strip_suffix(".git").unwrap_or(s);
        let (owner, name) = s.split_once('/').ok_or_else(bad)?;
        // GitHub's rules: an owner is 1-39 letters, digits and hyphens, not
        // starting with a hyphen; a name is letters, digits, `.`, `-`, `_`.
        let owner_ok = (1..=39).contains(&owner.len())
            && !owner.starts_with('-')
            && owner
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let name_ok = (1..=100).contains(&name.len())
            && name != "."
            && name != ".."
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !owner_ok || !name_ok {
            return Err(bad());
        }
        Ok(RepoSlug {
            owner: owner.to_owned(),
            name: name.to_owned(),
        })
    }
}

/// A workflow name that is not a file name of `.github/workflows/`.
#[derive(Debug, thiserror::Error)]
#[error("`{name}` is not a workflow file name")]
pub struct WorkflowNameError {
    /// The name refused.
    pub name: String,
}

/// Refuses a workflow name that is not a file name of `.github/workflows/`
/// (`NAME.yml` or `NAME.yaml`, no path, not hidden).
pub fn check_workflow(name: &str) -> Result<(), WorkflowNameError> {
    let ok = (name.ends_with(".yml") || name.ends_with(".yaml"))
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(WorkflowNameError {
            name: name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_slugs() {
        let r: RepoSlug = "octo-org/pool.data".parse().unwrap();
        assert_eq!((r.owner(), r.name()), ("octo-org", "pool.data"));
        assert_eq!(
            r.git_remote(),
            "git:https://github.com/octo-org/pool.data.git"
        );
        let r: RepoSlug = "https://github.com/a/b.git".parse().unwrap();
        assert_eq!(r.to_string(), "a/b");
        for bad in [
            "", "a", "a/", "/b", "a/b/c", "-a/b", "a/..", "a b/c", "a/b c",
        ] {
            assert!(bad.parse::<RepoSlug>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_refused_slug_keeps_its_text() {
        let e = "a b/c".parse::<RepoSlug>().unwrap_err();
        assert_eq!(e.text(), "a b/c");
        assert_eq!(
            e.to_string(),
            "`a b/c` is not a GitHub repository: write OWNER/REPO, e.g. octo-org/pool"
        );
    }

    #[test]
    fn workflow_file_names() {
        for ok in ["bridge.yml", "bridge.yaml", "my_flow-2.yml"] {
            assert!(check_workflow(ok).is_ok(), "{ok}");
        }
        for bad in [
            "bridge",
            "bridge.json",
            ".hidden.yml",
            "a/b.yml",
            "../b.yml",
            "a b.yml",
            "",
        ] {
            let e = check_workflow(bad).unwrap_err();
            assert_eq!(e.name, bad);
        }
    }
}
