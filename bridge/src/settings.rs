//! The command line's settings from its surroundings, resolved once in
//! `main` (ripgrep's `HiArgs` is the model): the engine's
//! [`bridge_engine::settings::Settings`] and the conventions of the command
//! line and of GitHub Actions on top (`GITHUB_ACTIONS`, the step's output
//! files, the runner's facts for provenance, also GitLab CI's, the GitHub API's address and
//! headers).
//!
//! They reach the commands in [`GlobalArgs`](crate::commands::GlobalArgs),
//! which every command already takes: they are the resolved half of "what
//! holds for every command", next to the global flags.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::sync::Arc;

use bridge_github::{API_ENV, EXTRA_HEADERS_ENV};

/// The runner's variables an attempt's provenance records, under its keys.
const PROVENANCE_VARS: &[(&str, &str)] = &[
    ("ci_run_id", "GITHUB_RUN_ID"),
    ("ci_run_attempt", "GITHUB_RUN_ATTEMPT"),
    ("ci_job", "GITHUB_JOB"),
    ("commit", "GITHUB_SHA"),
    ("runner_os", "RUNNER_OS"),
    ("runner_arch", "RUNNER_ARCH"),
    ("runner_name", "RUNNER_NAME"),
];

/// The same facts on GitLab CI (`GITLAB_CI=true`; issue 19, item 4): the
/// pipeline, the job (`drain 2/3` for a `parallel:` job), the commit, the
/// runner, and the job's page as the run's address.
const GITLAB_PROVENANCE_VARS: &[(&str, &str)] = &[
    ("ci_run_id", "CI_PIPELINE_ID"),
    ("ci_job", "CI_JOB_NAME"),
    ("commit", "CI_COMMIT_SHA"),
    ("runner_name", "CI_RUNNER_DESCRIPTION"),
    ("ci_run_url", "CI_JOB_URL"),
];

/// The command line's settings (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The engine's, handed to every workspace the commands open.
    pub engine: Arc<bridge_engine::settings::Settings>,
    /// Running as a step of GitHub Actions (`GITHUB_ACTIONS=true`).
    pub github_actions: bool,
    /// Running as a job of GitLab CI (`GITLAB_CI=true`): the log takes
    /// collapsible sections (issue 19, item 4).
    pub gitlab_ci: bool,
    /// `GITHUB_OUTPUT`: the file of the step's outputs.
    pub github_output: Option<String>,
    /// `GITHUB_STEP_SUMMARY`: the file of the job's summary.
    pub github_step_summary: Option<String>,
    /// `BRIDGE_GITHUB_API`: the API's address (GitHub Enterprise Server).
    pub github_api: Option<String>,
    /// `BRIDGE_GITHUB_EXTRA_HEADERS`: headers sent with every API call.
    pub github_extra_headers: Option<String>,
    /// Where an attempt of `bridge run` ran, from the runner's variables
    /// (the run, its job, the commit, the runner, the run's address).
    pub ci_provenance: BTreeMap<String, String>,
    /// `NO_COLOR` is set and not empty (<https://no-color.org>): no ANSI
    /// colour anywhere, not even on a terminal (issue 17, item 8).
    pub no_color: bool,
}

impl Settings {
    /// The settings from this process's environment; `main` calls it once,
    /// before any thread starts and before the secrets are taken out of the
    /// environment.
    pub fn from_env() -> Settings {
        Settings::from_vars(|name| std::env::var_os(name))
    }

    /// The settings from these variables (`var` gives a variable's value).
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Settings {
        // As before, a value that is not UTF-8 counts as unset.
        let text = |name: &str| var(name).and_then(|v| v.into_string().ok());
        let engine = bridge_engine::settings::Settings::from_vars(&var);
        Settings {
            engine: Arc::new(engine),
            github_actions: text("GITHUB_ACTIONS").as_deref() == Some("true"),
            gitlab_ci: text("GITLAB_CI").as_deref() == Some("true"),
            github_output: text("GITHUB_OUTPUT"),
            github_step_summary: text("GITHUB_STEP_SUMMARY"),
            github_api: text(API_ENV),
            github_extra_headers: text(EXTRA_HEADERS_ENV),
            ci_provenance: ci_provenance(|name| text(name).filter(|v| !v.is_empty())),
            // no-color.org: "when present and not an empty string",
            // whatever its value (so `NO_COLOR=0` also turns colour off).
            no_color: var("NO_COLOR").is_some_and(|v| !v.is_empty()),
        }
    }
}

/// Where an attempt ran, from the CI variables `env` gives (set and not
/// empty).
fn ci_provenance(env: impl Fn(&str) -> Option<String>) -> BTreeMap<String, String> {
    let mut p = BTreeMap::new();
    for (key, var) in PROVENANCE_VARS {
        if let Some(v) = env(var) {
            p.insert((*key).to_owned(), v);
        }
    }
    if let (Some(server), Some(repo), Some(run)) = (
        env("GITHUB_SERVER_URL"),
        env("GITHUB_REPOSITORY"),
        env("GITHUB_RUN_ID"),
    ) {
        p.insert(
            "ci_run_url".to_owned(),
            format!("{server}/{repo}/actions/runs/{run}"),
        );
    }
    if env("GITLAB_CI").as_deref() == Some("true") {
        for (key, var) in GITLAB_PROVENANCE_VARS {
            if let Some(v) = env(var) {
                p.entry((*key).to_owned()).or_insert(v);
            }
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let pairs: Vec<(String, OsString)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn github_actions_is_the_value_true_only() {
        assert!(Settings::from_vars(vars(&[("GITHUB_ACTIONS", "true")])).github_actions);
        assert!(!Settings::from_vars(vars(&[("GITHUB_ACTIONS", "false")])).github_actions);
        assert!(!Settings::from_vars(vars(&[])).github_actions);
    }

    #[test]
    fn no_color_is_any_value_but_the_empty_one() {
        assert!(Settings::from_vars(vars(&[("NO_COLOR", "1")])).no_color);
        assert!(Settings::from_vars(vars(&[("NO_COLOR", "0")])).no_color);
        assert!(!Settings::from_vars(vars(&[("NO_COLOR", "")])).no_color);
        assert!(!Settings::from_vars(vars(&[])).no_color);
    }

    #[test]
    fn the_runners_facts_and_the_runs_address() {
        let s = Settings::from_vars(vars(&[
            ("GITHUB_RUN_ID", "7"),
            ("GITHUB_JOB", ""),
            ("RUNNER_OS", "Linux"),
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_REPOSITORY", "o/r"),
            ("GITHUB_OUTPUT", "/tmp/out"),
            (API_ENV, "https://ghe.example/api/v3"),
        ]));
        assert_eq!(
            s.ci_provenance,
            BTreeMap::from([
                ("ci_run_id".to_owned(), "7".to_owned()),
                ("runner_os".to_owned(), "Linux".to_owned()),
                (
                    "ci_run_url".to_owned(),
                    "https://github.com/o/r/actions/runs/7".to_owned()
                ),
            ])
        );
        assert_eq!(s.github_output.as_deref(), Some("/tmp/out"));
        assert_eq!(s.github_step_summary, None);
        assert_eq!(s.github_api.as_deref(), Some("https://ghe.example/api/v3"));
        assert_eq!(s.github_extra_headers, None);
    }

    #[test]
    fn gitlab_ci_jobs_record_their_pipeline_and_job() {
        let gitlab = [
            ("CI_PIPELINE_ID", "41"),
            ("CI_JOB_NAME", "drain 2/3"),
            ("CI_COMMIT_SHA", "abc"),
            ("CI_JOB_URL", "https://gitlab.example/g/p/-/jobs/9"),
        ];
        let on = Settings::from_vars(vars(&[&[("GITLAB_CI", "true")], &gitlab[..]].concat()));
        assert_eq!(
            on.ci_provenance,
            BTreeMap::from([
                ("ci_run_id".to_owned(), "41".to_owned()),
                ("ci_job".to_owned(), "drain 2/3".to_owned()),
                ("commit".to_owned(), "abc".to_owned()),
                (
                    "ci_run_url".to_owned(),
                    "https://gitlab.example/g/p/-/jobs/9".to_owned()
                ),
            ])
        );
        assert!(on.gitlab_ci);
        // Not on GitLab CI: the same names mean nothing.
        let off = Settings::from_vars(vars(&gitlab));
        assert!(off.ci_provenance.is_empty() && !off.gitlab_ci);
    }

    #[test]
    fn the_engines_settings_come_from_the_same_variables() {
        let s = Settings::from_vars(vars(&[
            ("BRIDGE_DEVICE", "runner-1"),
            ("BRIDGE_GIT_AUTH_HOST", "ghe.example"),
        ]));
        assert_eq!(s.engine.device.as_deref(), Some("runner-1"));
        assert_eq!(s.engine.git_auth_host.as_deref(), Some("ghe.example"));
    }
}
