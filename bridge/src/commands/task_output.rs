//! Tasks' own output while `bridge work` runs them, as GNU parallel shows
//! it: each line tagged with the task's name and a tab (`parallel --tag`),
//! stdout to stdout and stderr to stderr, either grouped (a task's whole
//! output when it ends, never mixed with another's: the default, as
//! `parallel --group`) or line by line as it is written
//! (`--line-buffer`, read from the files the task writes to while it runs).
//!
//! The tagging is pure ([`tag_lines`]); the follower is a thread that reads
//! the running tasks' log files every [`FOLLOW_EVERY`] and hands the rest
//! to [`TaskOutput::finished`], which prints what the follower had not,
//! from the whole logs the worker read back: nothing is printed twice or
//! lost, whatever the timing.

use std::collections::HashMap;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bridge_model::TaskId;

/// How often the follower reads the running tasks' logs.
const FOLLOW_EVERY: Duration = Duration::from_millis(100);

/// How tasks' output is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Not at all (`-q`, `--json`).
    Off,
    /// Each task's whole output when it ends.
    Grouped,
    /// Each line as the task writes it.
    Lines,
}

/// The complete lines of `bytes`, each prefixed with `tag` and a tab; with
/// `last`, an unterminated last line too (given a newline). Returns the
/// text and how many bytes of `bytes` it used (the rest is an unfinished
/// line to read again with more).
pub fn tag_lines(tag: &str, bytes: &[u8], last: bool) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(bytes.len() + 16);
    let mut used = 0;
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        let complete = line.ends_with(b"\n");
        if !complete && !last {
            break;
        }
        out.extend_from_slice(tag.as_bytes());
        out.push(b'\t');
        out.extend_from_slice(line);
        if !complete {
            out.push(b'\n');
        }
        used += line.len();
    }
    (out, used)
}

/// One running task as the follower reads it.
struct Followed {
    tag: String,
    files: (PathBuf, PathBuf),
    /// Bytes of stdout and stderr already printed.
    printed: (usize, usize),
}

/// What the worker's hooks and the follower share.
#[derive(Default)]
struct Shared {
    tasks: HashMap<TaskId, Followed>,
}

/// Shows tasks' output (see the module docs).
pub struct TaskOutput {
    mode: Mode,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    follower: Option<std::thread::JoinHandle<()>>,
    bar: Option<indicatif::ProgressBar>,
}

impl TaskOutput {
    /// Output in `mode`, printed around `bar` when there is one.
    pub fn new(mode: Mode, bar: Option<indicatif::ProgressBar>) -> TaskOutput {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let follower = (mode == Mode::Lines).then(|| {
            let (shared, stop, bar) = (shared.clone(), stop.clone(), bar.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(FOLLOW_EVERY);
                    let mut shared = shared.lock().unwrap_or_else(PoisonError::into_inner);
                    for task in shared.tasks.values_mut() {
                        follow(task, bar.as_ref());
                    }
                }
            })
        });
        TaskOutput {
            mode,
            shared,
            stop,
            follower,
            bar,
        }
    }

    /// Whether the worker should read each task's whole logs back.
    pub fn wants_logs(&self) -> bool {
        self.mode != Mode::Off
    }

    /// Task `id`, named `name`, started writing to `files`.
    pub fn started(&self, id: &TaskId, name: &str, files: (PathBuf, PathBuf)) {
        if self.mode != Mode::Lines {
            return;
        }
        let tag = crate::output::safe(name).into_owned();
        self.lock().tasks.insert(
            id.clone(),
            Followed {
                tag,
                files,
                printed: (0, 0),
            },
        );
    }

    /// Task `id` ended with these whole logs: prints what was not printed.
    pub fn finished(&self, id: &TaskId, name: &str, logs: Option<&(Vec<u8>, Vec<u8>)>) {
        if self.mode == Mode::Off {
            return;
        }
        // Removed under the lock: the follower prints nothing of it after.
        let followed = self.lock().tasks.remove(id);
        let Some((stdout, stderr)) = logs else {
            return;
        };
        let (tag, printed) = match followed {
            Some(f) => (f.tag, f.printed),
            None => (crate::output::safe(name).into_owned(), (0, 0)),
        };
        let rest = |log: &[u8], from: usize| log.get(from..).unwrap_or_default().to_vec();
        let out = tag_lines(&tag, &rest(stdout, printed.0), true).0;
        let err = tag_lines(&tag, &rest(stderr, printed.1), true).0;
        print(self.bar.as_ref(), &out, &err);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for TaskOutput {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(f) = self.follower.take() {
            let _ = f.join();
        }
    }
}

/// Prints the new complete lines of a running task's logs.
fn follow(task: &mut Followed, bar: Option<&indicatif::ProgressBar>) {
    let read_new = |path: &PathBuf, printed: &mut usize| -> Vec<u8> {
        // A file not there yet (or gone: the task ended) has nothing new.
        let Ok(mut file) = std::fs::File::open(path) else {
            return Vec::new();
        };
        let mut new = Vec::new();
        if file.seek(SeekFrom::Start(*printed as u64)).is_err()
            || file.read_to_end(&mut new).is_err()
        {
            return Vec::new();
        }
        let (text, used) = tag_lines(&task.tag, &new, false);
        *printed += used;
        text
    };
    let out = read_new(&task.files.0, &mut task.printed.0);
    let err = read_new(&task.files.1, &mut task.printed.1);
    print(bar, &out, &err);
}

fn print(bar: Option<&indicatif::ProgressBar>, out: &[u8], err: &[u8]) {
    if out.is_empty() && err.is_empty() {
        return;
    }
    let write = || {
        crate::output::write_stdout_bytes(out);
        crate::output::write_stderr_bytes(err);
    };
    match bar {
        Some(b) => b.suspend(write),
        None => write(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_tagged_and_an_unfinished_one_waits() {
        let (text, used) = tag_lines("count[n=1]", b"one\ntwo\nthr", false);
        assert_eq!(text, b"count[n=1]\tone\ncount[n=1]\ttwo\n");
        assert_eq!(used, 8);
        // At the end, the unfinished line is printed with a newline.
        let (text, used) = tag_lines("t", b"thr", true);
        assert_eq!((text.as_slice(), used), (b"t\tthr\n".as_slice(), 3));
        // Nothing, and an empty line, stay what they are.
        assert_eq!(tag_lines("t", b"", true), (Vec::new(), 0));
        assert_eq!(tag_lines("t", b"\n", false), (b"t\t\n".to_vec(), 1));
    }
}
