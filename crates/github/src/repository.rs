//! The repository itself (`GET /repos/{owner}/{repo}`): its default branch,
//! so that nothing assumes `main` (issue 16, item 8). Any token that can
//! see the repository may read it (Metadata: read), so it is also the first
//! probe of a token.

use http::Method;
use serde::Deserialize;

use crate::client::{GitHub, GitHubError, Operation};

/// A repository: the fields bridge reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Repository {
    /// `OWNER/REPO`.
    pub full_name: String,
    /// The branch a dispatch runs on unless bridge.toml names one.
    pub default_branch: String,
}

impl GitHub {
    /// The repository this client is for.
    pub fn repository(&self) -> Result<Repository, GitHubError> {
        let call = self.call(Operation::GetRepo, "read the repository");
        let answer = self.send(&call, Method::GET, &self.repo_path(), None::<&()>)?;
        Self::decode(&call, &answer.body)
    }
}
