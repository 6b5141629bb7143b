//! Parsers of git's plumbing output: `push --porcelain`, `for-each-ref`,
//! `fast-import`'s marks and `cat-file --batch(-check)`. Pure functions;
//! a malformed answer is an `Err` with what was wrong, never a panic.

use super::{LEGACY_REF_PREFIX, LEGACY_TRACKING_PREFIX, REF_PREFIX, TRACKING_PREFIX};

/// The flag and summary of `git push --porcelain`'s line for `dst`
/// (`<flag>\t<src>:<dst>\t<summary>`).
pub(crate) fn parse_push_porcelain(stdout: &str, dst: &str) -> Option<(char, String)> {
    stdout.lines().find_map(|line| {
        let mut fields = line.splitn(3, '\t');
        let flag = fields.next()?;
        let refs = fields.next()?;
        let summary = fields.next().unwrap_or_default();
        let mut chars = flag.chars();
        let flag = chars.next()?;
        if chars.next().is_some() || refs.rsplit(':').next() != Some(dst) {
            return None;
        }
        Some((flag, summary.to_owned()))
    })
}

/// True for a full object id (sha1 or sha256), lowercase hex.
pub(super) fn is_oid(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `for-each-ref --format='%(objectname) %(refname)'` under the tracking
/// prefixes → (the slot's ref on the remote, commit): `refs/remotes/bridge/a`
/// tracks `refs/bridge/a`, `refs/remotes/bridge-heads/a` the legacy branch
/// `refs/heads/bridge/a`.
pub(crate) fn parse_refs(out: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|line| {
            let (oid, name) = line.split_once(' ')?;
            let (prefix, slot) = match name.strip_prefix(TRACKING_PREFIX) {
                Some(slot) => (REF_PREFIX, slot),
                None => (
                    LEGACY_REF_PREFIX,
                    name.strip_prefix(LEGACY_TRACKING_PREFIX)?,
                ),
            };
            (is_oid(oid) && !slot.is_empty()).then(|| (format!("{prefix}{slot}"), oid.to_owned()))
        })
        .collect()
}

/// `n` object ids, one a line (`fast-import`'s answers to `get-mark`).
pub(crate) fn parse_oid_lines(out: &[u8], n: usize) -> Result<Vec<String>, String> {
    let text = String::from_utf8_lossy(out);
    let ids: Vec<String> = text.lines().map(|l| l.trim().to_owned()).collect();
    if ids.len() != n || !ids.iter().all(|id| is_oid(id)) {
        return Err(format!(
            "expected {n} object ids, got {:?}",
            crate::names::preview(out)
        ));
    }
    Ok(ids)
}

/// `cat-file --batch-check` output for `n` requests: `<oid> SP <type> SP
/// <size> LF` or `<oid> SP missing LF` → each size, in order.
pub(crate) fn parse_batch_check(out: &[u8], n: usize) -> Result<Vec<Option<u64>>, String> {
    let text = String::from_utf8_lossy(out);
    let sizes: Vec<Option<u64>> = text
        .lines()
        .map(
            |line| match line.split(' ').collect::<Vec<_>>().as_slice() {
                [_, "missing"] => Ok(None),
                [_, _, size] => size
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("bad cat-file header {line:?}")),
                _ => Err(format!("bad cat-file header {line:?}")),
            },
        )
        .collect::<Result<_, _>>()?;
    if sizes.len() != n {
        return Err(format!(
            "expected {n} cat-file answers, got {}",
            sizes.len()
        ));
    }
    Ok(sizes)
}

/// `cat-file --batch` output for `n` requests: `<oid> SP <type> SP <size>
/// LF <content> LF`, or `<oid> SP missing LF` → the content of each, in
/// order (`None`: missing).
pub(crate) fn parse_cat_file_batch(out: &[u8], n: usize) -> Result<Vec<Option<Vec<u8>>>, String> {
    let mut pos = 0;
    let mut contents = Vec::with_capacity(n);
    for _ in 0..n {
        let rest = &out[pos.min(out.len())..];
        let eol = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| format!("truncated cat-file output after {} objects", contents.len()))?;
        let header = String::from_utf8_lossy(&rest[..eol]);
        pos += eol + 1;
        let fields: Vec<&str> = header.split(' ').collect();
        match fields.as_slice() {
            [_, "missing"] => contents.push(None),
            [_, _, size] => {
                let size: usize = size
                    .parse()
                    .map_err(|_| format!("bad cat-file header {header:?}"))?;
                let end = pos + size;
                if out.len() < end + 1 || out[end] != b'\n' {
                    return Err(format!("truncated cat-file object {header:?}"));
                }
                contents.push(Some(out[pos..end].to_vec()));
                pos = end + 1;
            }
            _ => return Err(format!("bad cat-file header {header:?}")),
        }
    }
    Ok(contents)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::classify::is_stale_rejection;
    use super::*;

    #[test]
    fn push_porcelain_lines() {
        let dst = "refs/heads/bridge/a";
        let new = "To /tmp/gs/p.git\n*\t661dc9aa2bab6b63677599b69f5964a8660d9704:refs/heads/bridge/a\t[new branch]\nDone\n";
        assert_eq!(
            parse_push_porcelain(new, dst),
            Some(('*', "[new branch]".to_owned()))
        );
        let ff = "To /tmp/gs/p.git\n \tca2940b57bffa900e2fdba52716f3775111f8c70:refs/heads/bridge/a\t661dc9a..ca2940b\nDone\n";
        assert_eq!(parse_push_porcelain(ff, dst).map(|l| l.0), Some(' '));
        let stale = "To /tmp/gs/p.git\n!\tca2940b57bffa900e2fdba52716f3775111f8c70:refs/heads/bridge/a\t[rejected] (stale info)\nDone\n";
        let (flag, summary) = parse_push_porcelain(stale, dst).unwrap();
        assert_eq!(flag, '!');
        assert!(is_stale_rejection(&summary));
        let hook = "To /tmp/gs/p.git\n!\t3e84e14c2d8d04f479026562e1fa418855063b78:refs/heads/bridge/a\t[remote rejected] (pre-receive hook declined)\nDone\n";
        let (_, summary) = parse_push_porcelain(hook, dst).unwrap();
        assert!(!is_stale_rejection(&summary));
        assert!(is_stale_rejection(
            "[remote rejected] (cannot lock ref 'refs/heads/bridge/a': reference already exists)"
        ));
        assert_eq!(parse_push_porcelain(stale, "refs/heads/bridge/b"), None);
        assert_eq!(parse_push_porcelain("", dst), None);
    }

    #[test]
    fn output_parsers() {
        let a = "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391";
        let refs = format!(
            "{a} refs/remotes/bridge/laptop\n{a} refs/remotes/other/x\n{a} refs/remotes/bridge-heads/old\n"
        );
        assert_eq!(
            parse_refs(refs.as_bytes()),
            vec![
                ("refs/bridge/laptop".to_owned(), a.to_owned()),
                ("refs/heads/bridge/old".to_owned(), a.to_owned())
            ]
        );

        assert_eq!(
            parse_oid_lines(format!("{a}\n{a}\n").as_bytes(), 2).unwrap(),
            vec![a.to_owned(), a.to_owned()]
        );
        assert!(parse_oid_lines(format!("{a}\n").as_bytes(), 2).is_err());

        let batch = format!("{a} blob 5\nhello\n{a} missing\n{a} blob 0\n\n");
        assert_eq!(
            parse_cat_file_batch(batch.as_bytes(), 3).unwrap(),
            vec![Some(b"hello".to_vec()), None, Some(Vec::new())]
        );
        // Contents may hold newlines and spaces.
        let batch = format!("{a} blob 3\na\nb\n");
        assert_eq!(
            parse_cat_file_batch(batch.as_bytes(), 1).unwrap(),
            vec![Some(b"a\nb".to_vec())]
        );
        assert!(parse_cat_file_batch(format!("{a} blob 9\nhello\n").as_bytes(), 1).is_err());
        assert!(parse_cat_file_batch(b"", 1).is_err());
    }

    #[test]
    fn batch_check_lines() {
        let oid = "a".repeat(40);
        let out = format!("{oid} blob 12\n{oid} missing\n{oid} tree 2147483648\n");
        assert_eq!(
            parse_batch_check(out.as_bytes(), 3),
            Ok(vec![Some(12), None, Some(2_147_483_648)])
        );
        assert!(parse_batch_check(out.as_bytes(), 2).is_err());
        assert!(parse_batch_check(format!("{oid} blob x\n").as_bytes(), 1).is_err());
    }
}
