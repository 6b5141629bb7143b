//! The commit of bridge's action that `bridge init --github` pins in the
//! workflow it writes, and the workflow text with that pin.
//!
//! The template (workflows/bridge.yml) carries a placeholder pin (forty
//! zeros) for people who copy it by hand. `init --github` resolves a real
//! one through the GitHub API, in bridge's own repository:
//! - the release of this binary's version (`GET …/releases/tags/vX.Y.Z`),
//!   then the commit its tag names (`GET …/commits/vX.Y.Z`): that commit
//!   carries `action/checksums/X.Y.Z.sha256`, so `use: release` downloads
//!   a binary whose digest the pin fixes;
//! - with no release of that version (404, or a draft), the commit of the
//!   default branch (`GET …/commits/HEAD`) with `use: source`: runners
//!   build bridge from that commit once and restore it from the Actions
//!   cache afterwards.
//!
//! Rendering replaces exact lines of the template and fails (an internal
//! error, never a half-written workflow) if one is missing; a unit test
//! keeps the template and this module in step.

use anyhow::anyhow;
use bridge_github::{GitHubError, RepoSlug};

use crate::error::{CliError, CliResult};
use crate::github::{self, ApiError};
use crate::settings::Settings;

/// The repository whose `action/` folder the workflow uses.
pub const ACTION_REPO: &str = "bridge-pool/bridge";

/// The template's pin and the comment above it (workflows/bridge.yml).
const TEMPLATE_PIN: &str =
    "      # Pinned at the commit of a bridge release, which carries the checksums
      # of its binaries. `bridge init --github` writes that commit here (or,
      # before the first release, a commit of bridge with use: source).
      # Copied by hand: put the commit of a release tag here.
      - name: bridge run
        uses: bridge-pool/bridge/action@0000000000000000000000000000000000000000 # v0.1.0
";

/// The template's choice of binary.
const TEMPLATE_USE: &str = "          use: ${{ vars.BRIDGE_USE || 'release' }}\n";

/// Where the runners' bridge comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionPin {
    /// The release of this binary's version: its tag's commit.
    Release {
        /// The tag, `vX.Y.Z`.
        tag: String,
        /// The commit the tag names.
        sha: String,
        /// The release's page.
        url: String,
    },
    /// No release of this version yet: a commit of the default branch,
    /// built by the runners (`use: source`).
    Source {
        /// The tag that has no release.
        tag: String,
        /// The default branch's commit.
        sha: String,
    },
}

impl ActionPin {
    /// The pinned commit.
    pub fn sha(&self) -> &str {
        match self {
            ActionPin::Release { sha, .. } | ActionPin::Source { sha, .. } => sha,
        }
    }
}

/// The tag of this binary's release.
pub fn own_tag() -> String {
    format!("v{}", env!("CARGO_PKG_VERSION"))
}

/// Resolves the pin through the API (see the module docs).
pub fn resolve(settings: &Settings) -> CliResult<ActionPin> {
    let repo: RepoSlug = ACTION_REPO
        .parse()
        .map_err(|e| anyhow!("{ACTION_REPO} is not a repository name: {e}"))?;
    let gh = github::connect(settings, &repo)?;
    let tag = own_tag();
    let hint = |e: GitHubError| {
        let api = ApiError::new(e, gh.token_source);
        CliError::hint(
            anyhow!(api).context(format!(
                "cannot tell which commit of {ACTION_REPO}'s action the workflow should use"
            )),
            format!(
                "bridge reads {ACTION_REPO}'s releases to pin its action; check the network and \
                 the token (any token can read a public repository), or copy workflows/bridge.yml \
                 by hand and pin the commit of a release tag"
            ),
        )
    };
    match gh.release_by_tag(&tag).map_err(hint)? {
        Some(release) => Ok(ActionPin::Release {
            sha: gh.commit_sha(&tag).map_err(hint)?,
            tag,
            url: release.html_url,
        }),
        None => Ok(ActionPin::Source {
            sha: gh.commit_sha("HEAD").map_err(hint)?,
            tag,
        }),
    }
}

/// The workflow template with `pin` in place of its placeholder.
pub fn render(template: &str, pin: &ActionPin) -> CliResult<String> {
    let (comment, uses_comment, use_line) = match pin {
        ActionPin::Release { tag, .. } => (
            format!(
                "      # Pinned at the commit of bridge's release {tag} (`bridge init --github`\n      \
                 # resolved the tag): that commit carries the checksums of its binaries.\n"
            ),
            tag.clone(),
            TEMPLATE_USE.to_owned(),
        ),
        ActionPin::Source { tag, .. } => (
            format!(
                "      # bridge had no release {tag} when `bridge init --github` ran: the\n      \
                 # action is pinned at a commit of bridge's default branch and builds\n      \
                 # bridge from it (use: source; cached after the first run). Once a\n      \
                 # release exists, pin its commit here and write 'release' for\n      \
                 # 'source' below: runners then download a verified binary instead.\n"
            ),
            format!("default branch, no release {tag} yet"),
            TEMPLATE_USE.replace("'release'", "'source'"),
        ),
    };
    let new_pin = format!(
        "{comment}      - name: bridge run\n        uses: {ACTION_REPO}/action@{} # {uses_comment}\n",
        pin.sha()
    );
    let mut out = replace_once(template, TEMPLATE_PIN, &new_pin)?;
    out = replace_once(&out, TEMPLATE_USE, &use_line)?;
    Ok(out)
}

/// `text` with its one `from` replaced, or an internal error.
fn replace_once(text: &str, from: &str, to: &str) -> CliResult<String> {
    if text.matches(from).count() != 1 {
        return Err(anyhow!(
            "internal error: the workflow template does not hold exactly one `{}` to replace",
            from.lines().last().unwrap_or(from).trim()
        )
        .into());
    }
    Ok(text.replacen(from, to, 1))
}

/// What `init --github` tells a person about the pin: the mode, why, and
/// what a release changes.
pub fn explain(pin: &ActionPin) -> String {
    let version = env!("CARGO_PKG_VERSION");
    match pin {
        ActionPin::Release { tag, sha, url } => format!(
            "Action: {ACTION_REPO}/action@{sha} ({tag}), use: release.
  Runners download bridge {version} from the release ({url}) and install it
  only if its SHA-256 is the one that commit of the action carries: a few
  seconds per runner, no Rust toolchain."
        ),
        ActionPin::Source { tag, sha } => format!(
            "Action: {ACTION_REPO}/action@{sha} (the default branch), use: source.
  Why: bridge {version} is not released yet ({ACTION_REPO} has no release {tag}),
  so there is no binary whose checksum the action could check. Runners build
  bridge from that commit instead: the first run compiles for several minutes
  (billed), later runs restore it from the Actions cache in seconds.
  Once {tag} is released: pin the release's commit in the workflow and write
  'release' for 'source' in its `use:` line; runners then download a verified
  binary (about 7 MB) in seconds, without a Rust toolchain."
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = include_str!("../../workflows/bridge.yml");
    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn a_release_pins_its_tags_commit_and_keeps_use_release() {
        let pin = ActionPin::Release {
            tag: "v1.2.3".into(),
            sha: SHA.into(),
            url: "https://github.com/bridge-pool/bridge/releases/tag/v1.2.3".into(),
        };
        let Ok(out) = render(TEMPLATE, &pin) else {
            panic!("the template does not render");
        };
        assert!(out.contains(&format!("uses: bridge-pool/bridge/action@{SHA} # v1.2.3\n")));
        assert!(!out.contains("0000000000000000000000000000000000000000"));
        assert!(out.contains("use: ${{ vars.BRIDGE_USE || 'release' }}"));
        // Only those lines changed.
        assert_eq!(
            out.lines().count() + 2,
            TEMPLATE.lines().count(),
            "a 4-line comment became 2"
        );
    }

    #[test]
    fn no_release_pins_a_real_commit_with_use_source() {
        let pin = ActionPin::Source {
            tag: "v1.2.3".into(),
            sha: SHA.into(),
        };
        let Ok(out) = render(TEMPLATE, &pin) else {
            panic!("the template does not render");
        };
        assert!(out.contains(&format!(
            "uses: bridge-pool/bridge/action@{SHA} # default branch, no release v1.2.3 yet\n"
        )));
        assert!(!out.contains("0000000000000000000000000000000000000000"));
        assert!(out.contains("use: ${{ vars.BRIDGE_USE || 'source' }}"));
        assert!(!out.contains("|| 'release'"));
        assert!(explain(&pin).contains("use: source"));
    }

    #[test]
    fn a_template_without_the_placeholder_is_an_error_not_a_guess() {
        let pin = ActionPin::Source {
            tag: "v1.2.3".into(),
            sha: SHA.into(),
        };
        let edited = TEMPLATE.replace("0000000000000000000000000000000000000000", SHA);
        assert!(render(&edited, &pin).is_err());
    }
}
