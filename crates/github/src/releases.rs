//! Releases and commits of a repository, read to pin a workflow's action:
//! the release of a tag (none, or a draft, when the version is not
//! released) and the commit a ref names, so that a workflow can say
//! `uses: OWNER/REPO/action@<40-hex sha> # vX.Y.Z`.

use http::Method;
use serde::Deserialize;

use crate::client::{GitHub, GitHubError, Operation, encode};

/// A published release, as bridge reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct Release {
    /// Its tag, e.g. `v0.1.0`.
    pub tag_name: String,
    /// Its page.
    pub html_url: String,
    /// A draft is not a release yet (only people with push access see it).
    #[serde(default)]
    pub draft: bool,
}

#[derive(Deserialize)]
struct Commit {
    sha: String,
}

impl GitHub {
    /// The published release tagged `tag`; `None` when there is none (404)
    /// or it is a draft.
    pub fn release_by_tag(&self, tag: &str) -> Result<Option<Release>, GitHubError> {
        let call = self.call(Operation::GetReleaseByTag, format!("read release {tag}"));
        let answer = match self.send(
            &call,
            Method::GET,
            &format!("{}/releases/tags/{}", self.repo_path(), encode(tag)),
            None::<&()>,
        ) {
            Ok(a) => a,
            Err(GitHubError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let release: Release = Self::decode(&call, &answer.body)?;
        Ok((!release.draft).then_some(release))
    }

    /// The full sha of the commit `git_ref` names (a tag, a branch, `HEAD`
    /// for the default branch, or a sha).
    pub fn commit_sha(&self, git_ref: &str) -> Result<String, GitHubError> {
        let call = self.call(Operation::GetCommit, format!("read commit {git_ref}"));
        let answer = self.send(
            &call,
            Method::GET,
            &format!("{}/commits/{}", self.repo_path(), encode(git_ref)),
            None::<&()>,
        )?;
        let commit: Commit = Self::decode(&call, &answer.body)?;
        if commit.sha.len() == 40 && commit.sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(commit.sha.to_ascii_lowercase())
        } else {
            Err(GitHubError::Decode {
                call,
                detail: format!("the commit's sha `{}` is not 40 hex digits", commit.sha),
            })
        }
    }
}
