//! Files of the repository through the contents API: the blob sha of a file
//! (needed to replace it) and committing a file to a branch, for setting a
//! repository up without a local checkout.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use http::Method;

use crate::client::{GitHub, GitHubError, Operation, encode};

impl GitHub {
    /// The blob sha of the file at `path` on `git_ref`; `None` when there is
    /// no such file.
    pub fn file_sha(&self, path: &str, git_ref: &str) -> Result<Option<String>, GitHubError> {
        let call = self.call(Operation::GetContent, format!("read {path} on {git_ref}"));
        let answer = match self.send(
            &call,
            Method::GET,
            &format!(
                "{}/contents/{}?ref={}",
                self.repo_path(),
                encode(path),
                encode(git_ref)
            ),
            None::<&()>,
        ) {
            Ok(a) => a,
            Err(GitHubError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let value: serde_json::Value = Self::decode(&call, &answer.body)?;
        Ok(file_sha_of(&value))
    }

    /// Commits `content` as the file `path` on `branch` (replacing the blob
    /// `sha` when the file exists).
    pub fn put_file(
        &self,
        path: &str,
        content: &[u8],
        message: &str,
        branch: &str,
        sha: Option<&str>,
    ) -> Result<(), GitHubError> {
        let call = self.call(Operation::PutContent, format!("commit {path} to {branch}"));
        self.send(
            &call,
            Method::PUT,
            &format!("{}/contents/{}", self.repo_path(), encode(path)),
            Some(&put_file_body(content, message, branch, sha)),
        )?;
        Ok(())
    }
}

/// The sha of a contents answer. A folder answers with a list; only a file
/// has one sha to replace.
fn file_sha_of(value: &serde_json::Value) -> Option<String> {
    value.get("sha").and_then(|s| s.as_str()).map(str::to_owned)
}

/// The body of `PUT …/contents/{path}`.
fn put_file_body(
    content: &[u8],
    message: &str,
    branch: &str,
    sha: Option<&str>,
) -> serde_json::Value {
    let mut body = serde_json::json!({
        "message": message,
        "content": B64.encode(content),
        "branch": branch,
    });
    if let Some(sha) = sha {
        body["sha"] = serde_json::Value::from(sha);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_has_a_sha_a_folder_has_none() {
        let file =
            serde_json::json!({"type": "file", "sha": "3d21ec53a331a6f037a91c368710b99387d012c1"});
        assert_eq!(
            file_sha_of(&file).as_deref(),
            Some("3d21ec53a331a6f037a91c368710b99387d012c1")
        );
        let folder = serde_json::json!([{"type": "file", "sha": "abc"}]);
        assert_eq!(file_sha_of(&folder), None);
    }

    #[test]
    fn a_commit_replaces_a_file_only_with_its_sha() {
        let body = put_file_body(b"hi", "m", "main", None);
        assert_eq!(
            body,
            serde_json::json!({"message": "m", "content": "aGk=", "branch": "main"})
        );
        let body = put_file_body(b"", "m", "dev", Some("abc"));
        assert_eq!(body["sha"], "abc");
        assert_eq!(body["content"], "");
    }
}
