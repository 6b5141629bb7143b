//! Hints and exit codes for the errors of the worker, the publisher, compaction, audiences and run policies.

use bridge_engine::publish::PublishError;
use bridge_engine::run_policy::PolicyError;
use bridge_engine::sandbox::{SANDBOX_ENV, SandboxError};
use bridge_engine::worker::WorkerError;

use super::Advice;
use crate::error::{EXIT_ERROR, EXIT_LOCAL_FAULT, HookFailure};

/// The advice for `cause` when it is one of this area's errors.
pub(super) fn advise(cause: &(dyn std::error::Error + 'static)) -> Option<Advice> {
    if let Some(e) = cause.downcast_ref::<WorkerError>() {
        return worker(e);
    }
    if let Some(e) = cause.downcast_ref::<PublishError>() {
        return publish(e);
    }
    if let Some(e) = cause.downcast_ref::<SandboxError>() {
        return sandbox(e);
    }
    if let Some(e) = cause.downcast_ref::<PolicyError>() {
        return Some(policy(e));
    }
    cause.downcast_ref::<HookFailure>().and_then(chosen)
}

fn worker(e: &WorkerError) -> Option<Advice> {
    match e {
        WorkerError::LocalFault(_) => Some(Advice {
            code: Some(EXIT_LOCAL_FAULT),
            ..Advice::hint(
                "free disk space (or raise the open-file limit, `ulimit -n`), then run the worker again",
            )
        }),
        WorkerError::Sandbox(e) => sandbox(e),
        WorkerError::Publish(e) => publish(e),
        WorkerError::Hook(e) => e.downcast_ref::<HookFailure>().and_then(chosen),
        // The causes of the others are not hidden: the chain goes on.
        WorkerError::FetchConfig(_)
        | WorkerError::Load(_)
        | WorkerError::Write(_)
        | WorkerError::WorkArea(_)
        | WorkerError::RunnerCrashed(_) => None,
    }
}

fn publish(e: &PublishError) -> Option<Advice> {
    match e {
        PublishError::SyncCrashed(_)
        | PublishError::Sync(_)
        | PublishError::Load(_)
        | PublishError::Write(_) => None,
    }
}

fn sandbox(e: &SandboxError) -> Option<Advice> {
    match e {
        SandboxError::Required { .. } => Some(Advice::hint(
            "run the worker on Linux 5.13 or later with Landlock enabled, or set [worker] sandbox = \"auto\" (run only this device's own tasks) or \"off\" (run every member's tasks unsandboxed)",
        )),
        SandboxError::BadEnv { .. } => Some(Advice::hint(format!(
            "unset {SANDBOX_ENV} to use [worker] sandbox from bridge.toml"
        ))),
        SandboxError::BadSetting { .. } => None,
    }
}

fn policy(e: &PolicyError) -> Advice {
    match e {
        PolicyError::BadList { .. } => Advice::hint(
            "write a comma-separated list such as `self,admins`, `members` or `self,alice-laptop`",
        ),
    }
}

/// The hint and exit code a command chose for an error it handed through the
/// worker.
fn chosen(e: &HookFailure) -> Option<Advice> {
    let e = &e.0;
    let code = (e.code != EXIT_ERROR).then_some(e.code);
    match (&e.hint, code) {
        (Some(hint), code) => Some(Advice {
            code,
            ..Advice::hint(hint.clone())
        }),
        (None, Some(code)) => Some(Advice::code(code)),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use bridge_engine::run_policy::ListOrigin;
    use bridge_engine::worker::LocalFault;

    use super::*;
    use crate::error::CliError;

    #[test]
    fn a_local_fault_exits_with_5_and_says_what_to_free() {
        let e = anyhow::Error::new(WorkerError::LocalFault(LocalFault("disk full".into())));
        let advice = super::super::advise(&e);
        assert_eq!(advice.code, Some(EXIT_LOCAL_FAULT));
        assert!(advice.hint.unwrap_or_default().contains("free disk space"));
    }

    #[test]
    fn policy_and_sandbox_errors_say_what_to_write() {
        let e = anyhow::Error::new(PolicyError::BadList {
            origin: ListOrigin::Flag,
            list: "all".into(),
            reason: bridge_engine::run_policy::RunFromError::NearMiss {
                entry: "all".into(),
                meant: "members",
            },
        });
        let advice = super::super::advise(&e);
        assert!(advice.hint.unwrap_or_default().contains("comma-separated"));
        assert_eq!(advice.code, None);
        let e = anyhow::Error::new(WorkerError::Sandbox(SandboxError::Required {
            why_not: "no Landlock",
        }));
        let advice = super::super::advise(&e);
        assert!(advice.hint.unwrap_or_default().contains("Landlock enabled"));
    }

    #[test]
    fn a_hook_keeps_the_hint_and_code_its_command_chose() {
        let chosen =
            CliError::hint(anyhow::anyhow!("cannot sync"), "check the network").with_code(4);
        let e = anyhow::Error::new(WorkerError::Hook(chosen.into()));
        let advice = super::super::advise(&e);
        assert_eq!(advice.hint.as_deref(), Some("check the network"));
        assert_eq!(advice.code, Some(4));
    }
}
