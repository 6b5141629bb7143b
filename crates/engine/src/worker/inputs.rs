//! A task's working folder and its inputs: blobs of the store, the outputs
//! of the tasks it needs (under `needs/<name>/`), and URL inputs downloaded
//! through the worker's one [`Fetcher`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bridge_model::spec::InputSource;
use bridge_model::view::canonical_result;
use bridge_model::{InputRef, TaskSpec, View};
use bridge_store::BlobId;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::vault::Vault;
use bridge_fetch::{FetchError, Fetcher};

/// Why a task's inputs could not be put in place. Only
/// [`InputError::WorkDir`] (and a [`LocalFault`](super::LocalFault) among
/// the causes) is the machine's fault; the others are the task's `error`.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The working folder could not be created.
    #[error(transparent)]
    WorkDir(#[from] WorkDirError),
    /// An input's path leaves the working folder.
    #[error("input path `{path}` is not a safe relative path")]
    UnsafePath {
        /// The path as stored.
        path: String,
    },
    /// An input names neither a blob nor a URL, or both.
    #[error(transparent)]
    Source(#[from] bridge_model::spec::InputError),
    /// An input's blob id is not one.
    #[error("input {path} names an invalid blob")]
    InvalidBlob {
        /// The input's path.
        path: String,
    },
    /// A blob input could not be copied out of the store.
    #[error("cannot materialise input {path} (`bridge sync` fetches missing ones)")]
    Materialise {
        /// The input's path.
        path: String,
        /// Why.
        #[source]
        source: bridge_vault::BlobError,
    },
    /// Copying the blobs crashed.
    #[error("materialising inputs crashed: {0}")]
    MaterialiseCrashed(tokio::task::JoinError),
    /// A URL input could not be downloaded.
    #[error("cannot fetch input {path}")]
    Fetch {
        /// The input's path.
        path: String,
        /// Why.
        #[source]
        source: FetchError,
    },
    /// A download crashed.
    #[error("fetching inputs crashed: {0}")]
    FetchCrashed(tokio::task::JoinError),
}

/// The working folder of a task could not be created: this machine's
/// fault whatever the cause (see [`LocalFault`](super::LocalFault)).
#[derive(Debug, thiserror::Error)]
#[error("cannot create the working folder {}", path.display())]
pub struct WorkDirError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// Whether a task's working folder is ready.
pub(super) enum Prepared {
    /// Every input is in place.
    Ready,
    /// The worker is stopping: the task did not start.
    Stopped,
}

/// Creates the working folder and materialises the inputs: blobs of the
/// store first (local, quick, and a missing one fails before any download),
/// then URL inputs through the fetcher, all at once, until `stop`.
pub(super) async fn prepare(
    vault: &Arc<Vault>,
    fetcher: &Arc<Fetcher>,
    dir: &Path,
    spec: &TaskSpec,
    need_inputs: &[InputRef],
    stop: &CancellationToken,
) -> Result<Prepared, InputError> {
    if spec.inputs.is_empty() && need_inputs.is_empty() {
        // One quick call (the folder is most often there already: see
        // `super::spares`), not worth a blocking thread's round trip.
        std::fs::create_dir_all(dir).map_err(|source| WorkDirError {
            path: dir.to_path_buf(),
            source,
        })?;
        return Ok(Prepared::Ready);
    }
    let mut blobs: Vec<(String, BlobId, String)> = Vec::new();
    let mut urls: Vec<(String, String, String)> = Vec::new();
    for input in spec.inputs.iter().chain(need_inputs) {
        if input.path.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(InputError::UnsafePath {
                path: input.path.clone(),
            });
        }
        match input.source()? {
            InputSource::Blob(blob) => {
                let blob: BlobId = blob.parse().map_err(|_| InputError::InvalidBlob {
                    path: input.path.clone(),
                })?;
                blobs.push((input.path.clone(), blob, input.sha256.clone()));
            }
            InputSource::Url(url) => {
                urls.push((input.path.clone(), url.to_owned(), input.sha256.clone()));
            }
        }
    }
    let vault = vault.clone();
    let root = dir.to_path_buf();
    tokio::task::spawn_blocking(move || copy_blobs(&vault, &root, &blobs))
        .await
        .map_err(InputError::MaterialiseCrashed)??;
    if urls.is_empty() {
        return Ok(Prepared::Ready);
    }
    let mut fetches = JoinSet::new();
    for (path, url, sha256) in urls {
        let (fetcher, dest) = (fetcher.clone(), dir.join(&path));
        fetches.spawn(async move {
            fetcher
                .materialise(&url, &sha256, &dest)
                .await
                .map_err(|source| InputError::Fetch { path, source })
        });
    }
    loop {
        tokio::select! {
            next = fetches.join_next() => match next {
                None => return Ok(Prepared::Ready),
                Some(Ok(Ok(()))) => {}
                // Dropping the set aborts the other downloads.
                Some(Ok(Err(e))) => return Err(e),
                Some(Err(e)) => return Err(InputError::FetchCrashed(e)),
            },
            _ = stop.cancelled() => return Ok(Prepared::Stopped),
        }
    }
}

/// Creates the working folder `root` and copies the blob inputs into it.
fn copy_blobs(
    vault: &Vault,
    root: &Path,
    blobs: &[(String, BlobId, String)],
) -> Result<(), InputError> {
    std::fs::create_dir_all(root).map_err(|source| WorkDirError {
        path: root.to_path_buf(),
        source,
    })?;
    for (path, blob, sha256) in blobs {
        vault
            .copy_blob_to(blob, &root.join(path), Some(sha256))
            .map_err(|e| InputError::Materialise {
                path: path.clone(),
                source: e,
            })?;
    }
    Ok(())
}

/// The outputs of the canonical results of the tasks `spec` needs, as inputs
/// under `needs/<task name>/` (the name with every character other than
/// letters, digits, `.`, `_` and `-` replaced by `_`).
pub(super) fn need_inputs(view: &View, spec: &TaskSpec) -> Vec<InputRef> {
    let mut out = Vec::new();
    for need in &spec.needs {
        let Some(t) = view.get(need) else { continue };
        let Some(result) = canonical_result(&t.facts) else {
            continue;
        };
        let dir = safe_name(&t.spec.name);
        for (rel, blob) in &result.outputs {
            // Outputs are checked by their store file; needs are part of
            // the identity by task id, not by content.
            out.push(InputRef::from_blob(
                format!("needs/{dir}/{rel}"),
                String::new(),
                blob.clone(),
            ));
        }
    }
    out
}

/// A task name made safe as one folder name.
pub fn safe_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match s.as_str() {
        "" | "." | ".." => "_".to_owned(),
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_names_become_one_safe_folder_name() {
        assert_eq!(safe_name("build x/y"), "build_x_y");
        assert_eq!(safe_name(".."), "_");
        assert_eq!(safe_name(""), "_");
        assert_eq!(safe_name("a.b-c_d"), "a.b-c_d");
    }
}
