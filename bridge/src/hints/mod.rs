//! What the user should do about an error: the binary's side of the
//! engine's typed errors.
//!
//! Library crates return typed errors and never compose hint text or pick
//! exit codes (they cannot know how they are being used). When an error
//! reaches the command line, [`advise`] walks its chain of causes, asks each
//! area's mapping whether it knows the cause's type, and returns the hint and
//! exit code of the first one that does. This is jj's `command_error.rs`
//! split by area, so that one file holds the hints of one part of the engine.

mod config;
mod network;
mod store;
mod vault;
mod worker;

/// The hint and exit code that go with an error.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Advice {
    /// One sentence saying what to do.
    pub hint: Option<String>,
    /// The exit code, when it is not the generic error (1).
    pub code: Option<u8>,
}

impl Advice {
    /// Advice with a hint and the generic exit code.
    pub fn hint(hint: impl Into<String>) -> Advice {
        Advice {
            hint: Some(hint.into()),
            code: None,
        }
    }

    /// Advice with an exit code and no hint.
    pub fn code(code: u8) -> Advice {
        Advice {
            hint: None,
            code: Some(code),
        }
    }
}

/// One area's mapping: `Some` when it knows the type of `cause`.
type Advisor = fn(&(dyn std::error::Error + 'static)) -> Option<Advice>;

const ADVISORS: &[Advisor] = &[
    config::advise,
    vault::advise,
    worker::advise,
    network::advise,
    store::advise,
];

/// The advice for `error`: that of its outermost cause some area knows.
pub fn advise(error: &anyhow::Error) -> Advice {
    error
        .chain()
        .find_map(|cause| ADVISORS.iter().find_map(|advisor| advisor(cause)))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use bridge_engine::worker::{LocalFault, WorkerError};

    use super::*;

    #[test]
    fn an_error_no_area_knows_gets_no_advice() {
        assert_eq!(advise(&anyhow::anyhow!("something")), Advice::default());
    }

    #[test]
    fn a_known_cause_is_found_under_the_contexts_commands_add() {
        let e = anyhow::Error::new(WorkerError::LocalFault(LocalFault("disk full".into())))
            .context("cannot run the tasks")
            .context("bridge work");
        let advice = advise(&e);
        assert_eq!(advice.code, Some(crate::error::EXIT_LOCAL_FAULT));
        assert!(advice.hint.is_some());
    }
}
