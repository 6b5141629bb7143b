//! The GitHub REST API, as bridge uses it: start the runner workflow
//! (`workflow_dispatch`, enabling it first when GitHub disabled it for
//! inactivity), follow its run and jobs, add up the jobs' minutes for
//! the minutes budget, store the runner identity as a repository secret
//! (sealed to the repository's public key), and commit files through the
//! contents API; read the release and commit the workflow pins the
//! action at.
//!
//! This crate knows nothing of bridge.toml, of where the token comes from,
//! or of what to tell the user: it takes a repository, a token and an
//! [`Endpoint`], and returns typed values and typed errors. Nothing here
//! prints; requests are logged with `tracing` at debug level.
//!
//! Data flow: a caller builds a [`GitHub`] client for one repository
//! ([`GitHub::connect`]: the token, the [`Endpoint`], a Tokio runtime of its
//! own because octocrab's client must be built inside one), calls the
//! blocking methods, and turns a [`GitHubError`] into its user's message
//! (the error names the [`Operation`] and so the token permission it
//! needed).
//!
//! Every call goes through octocrab's raw request methods with response
//! types of our own that hold only the fields bridge reads: octocrab's
//! models require many fields a mock or an older GitHub Enterprise Server
//! may lack, and its dispatch builder cannot ask for the run id
//! (`return_run_details`). The operations are listed in [`Operation`]; the
//! end-to-end tests check each request against GitHub's own OpenAPI
//! description (tests/github/).
//!
//! The modules, by concern:
//! - [`client`]: the connection ([`Endpoint`], [`GitHub`]), sending one
//!   request and classifying its answer ([`GitHubError`]);
//! - [`runs`]: dispatching the workflow and following its runs and jobs;
//! - [`workflows`]: the workflow's state (disabled for inactivity, by a
//!   person, …) and enabling it again before a dispatch;
//! - [`usage`]: runner minutes (jobs, months) and sizing a
//!   dispatch;
//! - [`secrets`]: sealing a secret to the repository's key and storing it;
//! - [`contents`]: reading and committing files;
//! - [`releases`]: a tag's release and a ref's commit (the action's pin);
//! - [`repository`]: the repository's default branch;
//! - [`slug`]: names checked before any request (repository, workflow file).

#![deny(clippy::print_stdout, clippy::print_stderr)]
#![warn(clippy::too_many_lines)]
#![warn(missing_docs)]

pub mod client;
pub mod contents;
pub mod releases;
pub mod repository;
pub mod runs;
pub mod secrets;
pub mod slug;
pub mod usage;
pub mod workflows;

pub use client::{
    API_ENV, Call, ConnectError, DEFAULT_API, EXTRA_HEADERS_ENV, Endpoint, ExtraHeaderError,
    GitHub, GitHubError, Operation, TOKEN_PERMISSIONS,
};
pub use releases::Release;
pub use repository::Repository;
pub use runs::{
    DispatchDetails, Job, RUN_LIFETIME_MS, RunsPage, WorkflowRun, parse_time, pick_dispatched_run,
};
pub use secrets::{RepoPublicKey, SealError, SecretWrite, seal};
pub use slug::{RepoSlug, RepoSlugError, WorkflowNameError, check_workflow};
pub use usage::{Month, MonthError, RunUsage, auto_runners, estimate_minutes, jobs_minutes};
pub use workflows::{DispatchPlan, NotDispatchable, Workflow, WorkflowState, plan_dispatch};

/// Milliseconds since the Unix epoch (the same as `bridge_model::Millis`,
/// not imported so that the API client does not build the document model).
pub type Millis = i64;
