//! The `pre-receive` hook every repository of the server runs (through
//! `core.hooksPath`): GitHub's per-object size limit and the optional
//! refs-per-push policy, checked while the pushed objects are still in
//! git's quarantine, so a refused push stores nothing.
//!
//! The hook prints GitHub's own lines on stderr, which git relays to the
//! pusher as `remote: error: …` and reports `! [remote rejected] …
//! (pre-receive hook declined)`; and it writes one machine-readable line
//! to `$GHGIT_REFUSAL` for the server's report (see [`Refusal::parse`]).

use std::fmt;
use std::path::Path;

/// The hook, a POSIX shell script run by `git receive-pack` with the
/// server's `GHGIT_*` variables in its environment.
///
/// - the object size text is GitHub's (`GH001: Large files detected`,
///   "File X is 123.45 MB; this exceeds GitHub's file size limit of
///   100.00 MB"), sizes in MiB as GitHub prints them;
/// - GitHub publishes no text for its push policy ("Limit how many branches
///   and tags can be updated in a single push"); the message follows its
///   repository-rule refusals (`GH013`). Every ref update counts, not only
///   branches and tags: the stricter reading, since it is unknown whether
///   GitHub counts refs outside `refs/heads` and `refs/tags`.
const PRE_RECEIVE: &str = r#"#!/bin/sh
# pre-receive hook of bridge's GitHub-shaped test server (bridge-testutil).
max_object=${GHGIT_MAX_OBJECT_BYTES:-104857600}
max_refs=${GHGIT_MAX_REFS:-0}
refusal=${GHGIT_REFUSAL:-/dev/null}
updates=$(cat)
count=$(printf '%s\n' "$updates" | grep -c .)
trace=$(printf '%s' "$updates" | git hash-object --stdin)
if [ "$max_refs" -gt 0 ] && [ "$count" -gt "$max_refs" ]; then
    echo "error: GH013: Repository rule violations found." >&2
    echo "error: Trace: $trace" >&2
    echo "error: - Pushes can not update more than $max_refs branches or tags." >&2
    echo "error:   This push updates $count." >&2
    printf 'too-many-refs\t%s\t%s\n' "$count" "$max_refs" > "$refusal"
    exit 1
fi
# The new tips (deletions have an all-zero new id), on the command line:
# what `--not` negates after `--stdin` has changed between git versions.
tips=$(printf '%s\n' "$updates" | awk '$2 !~ /^0+$/ { print $2 }')
large=
if [ -n "$tips" ]; then
large=$(git rev-list --objects $tips --not --all |
    git cat-file --batch-check='%(objecttype) %(objectsize) %(rest)' |
    awk -v max="$max_object" '$1 == "blob" && $2 + 0 > max + 0 {
        size = $2; sub(/^[^ ]+ [^ ]+ ?/, ""); printf "%s\t%s\n", size, $0 }')
fi
if [ -n "$large" ]; then
    echo "error: Trace: $trace" >&2
    echo "error: See https://gh.io/lfs for more information." >&2
    printf '%s\n' "$large" | awk -F '\t' -v max="$max_object" '{
        printf "error: File %s is %.2f MB; this exceeds GitHub'"'"'s file size limit of %.2f MB\n",
            $2, $1 / 1048576, max / 1048576 }' >&2
    echo "error: GH001: Large files detected. You may want to try Git Large File Storage - https://git-lfs.github.com." >&2
    printf '%s\n' "$large" | sed 's/^/large-object\t/' > "$refusal"
    exit 1
fi
exit 0
"#;

/// Writes the hook into `hooks_dir` (made executable).
pub(super) fn install(hooks_dir: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(hooks_dir).unwrap();
    let path = hooks_dir.join("pre-receive");
    std::fs::write(&path, PRE_RECEIVE).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Why the server refused a push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// GH001: a blob over the object size limit (the first one, of
    /// `count` too large in the push).
    LargeObject {
        path: String,
        size: u64,
        limit: u64,
        count: usize,
    },
    /// The refs-per-push policy: the push updated `refs` refs.
    TooManyRefs { refs: usize, limit: usize },
    /// The pack was over the push size limit (`receive.maxInputSize`).
    PushTooLarge { limit: u64 },
    /// The optional rate limit: `limit` pushes in the last 60 s already.
    RateLimited { limit: usize },
    /// Anything else git reported (`ng <ref> <reason>`, `unpack <error>`).
    Other(String),
}

impl Refusal {
    /// Reads the hook's refusal line(s); `None` if it wrote none.
    pub(super) fn parse(text: &str, object_limit: u64) -> Option<Refusal> {
        let mut lines = text.lines().filter(|l| !l.is_empty());
        let first = lines.next()?;
        let fields: Vec<&str> = first.split('\t').collect();
        match fields.as_slice() {
            ["too-many-refs", refs, limit] => Some(Refusal::TooManyRefs {
                refs: refs.parse().ok()?,
                limit: limit.parse().ok()?,
            }),
            ["large-object", size, path] => Some(Refusal::LargeObject {
                path: (*path).to_owned(),
                size: size.parse().ok()?,
                limit: object_limit,
                count: 1 + lines.count(),
            }),
            _ => Some(Refusal::Other(first.to_owned())),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::LargeObject {
                path,
                size,
                limit,
                count,
            } => {
                write!(
                    f,
                    "GH001: {path} is {size} bytes, over the object limit of {limit} bytes"
                )?;
                if *count > 1 {
                    write!(f, " ({} more objects too large)", count - 1)?;
                }
                Ok(())
            }
            Refusal::TooManyRefs { refs, limit } => write!(
                f,
                "push policy: {refs} refs updated in one push, over the limit of {limit}"
            ),
            Refusal::PushTooLarge { limit } => {
                write!(f, "pack over the push size limit of {limit} bytes")
            }
            Refusal::RateLimited { limit } => {
                write!(f, "rate limit: already {limit} pushes in the last 60 s")
            }
            Refusal::Other(reason) => write!(f, "{reason}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_hooks_refusal_lines() {
        assert_eq!(Refusal::parse("", 10), None);
        assert_eq!(
            Refusal::parse("too-many-refs\t7\t5\n", 10),
            Some(Refusal::TooManyRefs { refs: 7, limit: 5 })
        );
        assert_eq!(
            Refusal::parse("large-object\t20\tblobs/a b\nlarge-object\t30\tc\n", 10),
            Some(Refusal::LargeObject {
                path: "blobs/a b".into(),
                size: 20,
                limit: 10,
                count: 2
            })
        );
        assert_eq!(
            Refusal::parse("what\n", 10),
            Some(Refusal::Other("what".into()))
        );
    }
}
