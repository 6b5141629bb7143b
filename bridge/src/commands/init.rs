//! `bridge init`: create a workspace in the current folder; with `--github`,
//! also set a GitHub repository up so that its Actions runners drain the
//! pool.

use std::path::Path;

use anyhow::{Context, anyhow};
use bridge_crypto::{ExposeSecret, Identity, Roster};
use bridge_github::{RepoSlug, SecretWrite, TOKEN_PERMISSIONS};
use clap::Args;

use super::GlobalArgs;
use super::common::{SyncOutcome, sync_and_report, sync_remote};
use super::members;
use crate::error::{CliError, CliResult, EXIT_OK};
use crate::github::{self, ApiError};
use crate::keys;
use crate::output::print_json;
use crate::vault::Vault;
use crate::workspace::{
    self, CONFIG_FILE, Config, GitHubSection, Session, StoreSection, Workspace, WorkspaceSection,
    now_ms,
};

/// The workflow template `--github` writes (workflows/bridge.yml).
const WORKFLOW_TEMPLATE: &str = include_str!("../../../workflows/bridge.yml");

/// The name of the runner identity `--github` adds to the roster.
const RUNNER_NAME: &str = "github-actions";

/// Create a workspace in the current folder
///
/// Writes bridge.toml (commit it if the folder is a git repository) and
/// creates the local replica in .bridge/. With --remote, the workspace shares
/// its tasks through that store: an empty folder becomes a new store, for
/// example on a USB stick, a Syncthing folder or a network share.
///
/// With --github OWNER/REPO (in a checkout of that repository, or any
/// folder), it also sets the repository up for GitHub Actions runners: the
/// store is the repository itself (git:https://github.com/OWNER/REPO.git,
/// unless --remote says otherwise), a new worker identity is added to the
/// members and stored as the repository secret BRIDGE_IDENTITY (sealed with
/// the repository's public key: it is never printed or saved), and the
/// workflow .github/workflows/bridge.yml and bridge.toml (with a [github]
/// section) are written into this checkout, or committed through the API
/// with --via-api. A folder that is a workspace already keeps its members
/// and gains the [github] section.
///
/// The workflow pins bridge's action (bridge-pool/bridge/action) at the
/// commit of the release of this bridge's version, read through the API;
/// while that version is not released, at the commit of bridge's default
/// branch with `use: source` (runners build bridge once, then restore it
/// from the Actions cache). It says which, and what a release changes.
///
/// --github without OWNER/REPO takes the repository of this folder's git
/// remote `origin` (https or ssh URL; another host than github.com needs
/// BRIDGE_GITHUB_API), as gh does. The workflow runs on --ref, else the
/// repository's default branch, read from the API (it is written to
/// bridge.toml as [github] ref).
///
/// The token (GH_TOKEN, else GITHUB_TOKEN, else `gh auth token`) is a
/// fine-grained personal access token for that repository with:
///   Metadata: read              read the repository and its default branch
///   Secrets: read and write     store the runner identity (BRIDGE_IDENTITY)
///   Actions: read and write     dispatch runs, follow them, add up minutes
///   Contents: read and write    the store's refs; with --via-api the files
///   Workflows: read and write   with --via-api, commit the workflow file
/// init checks Metadata and Secrets before it creates anything (a refusal
/// names the missing permission); the others are checked when first used.
/// A workflow's own GITHUB_TOKEN cannot manage secrets.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct InitArgs {
    /// The shared store to sync with: dir:/mnt/usb/pool, git:URL or
    /// s3://BUCKET/PREFIX (credentials from AWS_* or the AWS profile)
    #[arg(long, value_name = "REMOTE")]
    pub remote: Option<String>,
    /// Keep blobs (task inputs, outputs, logs) in this object store or
    /// folder, s3://BUCKET/PREFIX or dir:PATH, and only the documents in the
    /// remote: a git repository then never holds a large file (written to
    /// bridge.toml as [store] blobs)
    #[arg(long, value_name = "STORE")]
    pub blobs: Option<String>,
    /// Set up GitHub Actions runners of this repository (default: the one of
    /// this folder's git remote origin; see above)
    #[arg(long, value_name = "OWNER/REPO", num_args = 0..=1, default_missing_value = "")]
    pub github: Option<String>,
    /// With --github: commit bridge.toml and the workflow through the GitHub
    /// API instead of writing the workflow into this checkout
    #[arg(long, requires = "github")]
    pub via_api: bool,
    /// With --github: the branch the workflow runs on (and --via-api commits to)
    #[arg(long = "ref", value_name = "BRANCH", requires = "github")]
    pub git_ref: Option<String>,
    /// Print JSON: {"workspace", "root", "member", "remote", "synced"}
    /// ("synced" is false when the remote was not reached); not with --github
    #[arg(long, conflicts_with = "github")]
    pub json: bool,
}

pub fn run(g: &GlobalArgs, args: InitArgs) -> CliResult<u8> {
    let root = match &g.workspace {
        Some(d) => d.clone(),
        None => std::env::current_dir().context("cannot read the current folder")?,
    };
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    if let Some(blobs) = &args.blobs {
        // --github makes the repository the remote.
        super::common::check_blobs_arg(args.remote.is_some() || args.github.is_some(), blobs)?;
    }
    if let Some(spec) = &args.remote {
        super::common::open_store(
            &g.settings.engine,
            spec,
            args.blobs.as_deref(),
            &root,
            &crate::worker::safe_name(&g.settings.engine.device_name()),
        )
        .map_err(|e| {
            CliError::hint(
                anyhow::anyhow!(e),
                "a remote looks like dir:PATH, git:URL or s3://BUCKET/PREFIX",
            )
        })?;
        for store in std::iter::once(spec).chain(&args.blobs) {
            if let Some(folder) = bridge_store::dir_remote_path(store, &root) {
                super::common::create_store_folder(&folder)?;
            }
        }
    }
    if let Some(given) = args.github.clone() {
        let repo = github_repo(g, &root, &given)?;
        return init_github(g, &args, &root, &repo);
    }
    let store = StoreSection {
        remote: args.remote.clone(),
        blobs: args.blobs.clone(),
        ..StoreSection::default()
    };
    let (ws, vault) = create(g, &root, store, None)?;
    let mut session = Session::with_vault(ws, vault)?;
    let quiet = g.quiet || args.json;
    let mut synced = false;
    if args.remote.is_some() {
        if let SyncOutcome::Offline(why) = sync_remote(&mut session, false)? {
            errln!("offline: {why}; the workspace works locally and syncs once it is reachable");
        } else {
            synced = true;
            if !quiet {
                outln!(
                    "Shared store: {}",
                    args.remote.as_deref().unwrap_or_default()
                );
            }
        }
    } else {
        sync_and_report(&mut session, g)?;
    }
    if args.json {
        print_json(&serde_json::json!({
            "workspace": session.ws.config.workspace.id, "root": root,
            "member": session.vault.identity().member_id(), "remote": args.remote,
            "synced": synced,
        }))?;
    } else if !g.quiet {
        outln!(
            "Next: `bridge submit tasks.yaml` (or `bridge submit -- CMD ARGS…`), then `bridge work`."
        );
    }
    Ok(EXIT_OK)
}

/// The repository `--github` names, or, when it names none, the one of the
/// git remote origin of `root`.
fn github_repo(g: &GlobalArgs, root: &Path, given: &str) -> CliResult<RepoSlug> {
    if !given.trim().is_empty() {
        return given.parse::<RepoSlug>().map_err(|e| {
            CliError::hint(
                anyhow!(e).context(format!("--github {given}")),
                "write the repository as OWNER/REPO, e.g. --github octo-org/pool",
            )
        });
    }
    let repo = github::origin_repo(root, &g.settings)?.ok_or_else(|| {
        CliError::hint(
            anyhow!(
                "--github names no repository, and {} has no GitHub remote origin",
                root.display()
            ),
            "name it: `bridge init --github OWNER/REPO`",
        )
    })?;
    if !g.quiet {
        errln!("GitHub repository {repo} (the git remote origin of this folder).");
    }
    Ok(repo)
}

/// Creates the workspace in `root`: bridge.toml, the replica, and a roster
/// whose only admin (and root) is this device.
fn create(
    g: &GlobalArgs,
    root: &Path,
    store: StoreSection,
    github: Option<GitHubSection>,
) -> CliResult<(Workspace, Vault)> {
    let identity = identity_or_new(g)?;
    let config = Config {
        workspace: WorkspaceSection {
            id: workspace::new_workspace_id()?,
            root: identity.member_id().to_string(),
            roster: None,
        },
        store,
        worker: Default::default(),
        github,
        notify: Default::default(),
    };
    workspace::write_config(root, &config)?;
    keys::check_pin(
        &g.settings.engine,
        &config.workspace.id,
        identity.member_id(),
    )?;
    let ws = Workspace::open(root, g.engine())?;
    // The roster starts with this device as its only admin; its key is the
    // root every member pins.
    let (roster, genesis) = Roster::genesis(
        &identity,
        &g.settings.engine.device_name(),
        &config.workspace.id,
        now_ms(),
    )
    .map_err(|e| anyhow::anyhow!(e).context("cannot create the member roster"))?;
    let vault = Vault::new(ws.replica.clone(), identity, roster);
    vault.write_roster_file(&genesis)?;
    crate::freshness::pin(root, &crate::freshness::Anchor::latest(vault.roster()))?;
    if !g.quiet {
        errln!(
            "Created workspace {} in {}",
            config.workspace.id,
            root.display()
        );
    }
    Ok((ws, vault))
}

/// `bridge init --github OWNER/REPO`.
#[expect(
    clippy::too_many_lines,
    reason = "a command's steps in order; the ratchet (clippy.toml) stops it growing"
)]
fn init_github(g: &GlobalArgs, args: &InitArgs, root: &Path, repo: &RepoSlug) -> CliResult<u8> {
    // Check the token, the repository and the permission before anything is
    // created here: the public key is needed anyway.
    let gh = github::connect(&g.settings, repo)?;
    let key = gh
        .public_key()
        .map_err(|e| ApiError::new(e, gh.token_source))?;
    // The repository itself (Metadata: read): its default branch, unless
    // --ref or bridge.toml names the branch; never an assumed `main`.
    let default_branch = gh
        .repository()
        .map_err(|e| ApiError::new(e, gh.token_source))?
        .default_branch;
    let git_ref = args
        .git_ref
        .clone()
        .unwrap_or_else(|| default_branch.clone());
    // The commit of bridge's action the workflow pins (a release's, or the
    // default branch's with use: source), also before anything is created.
    let pin = crate::action_pin::resolve(&g.settings)?;
    let workflow_text = crate::action_pin::render(WORKFLOW_TEMPLATE, &pin)?;

    // The workspace: made here, or an existing one gaining [github].
    let (ws, mut vault) = if root.join(CONFIG_FILE).is_file() {
        let ws = Workspace::open(root, g.engine())?;
        if let Some(spec) = &args.remote
            && ws.remote_spec() != Some(spec.as_str())
        {
            return Err(CliError::hint(
                anyhow!(
                    "{} is a workspace already, whose store is {}",
                    root.display(),
                    ws.remote_spec().unwrap_or("not set")
                ),
                "leave out --remote, or change [store] remote in bridge.toml",
            ));
        }
        if let Some(blobs) = &args.blobs
            && ws.config.blobs() != Some(blobs.as_str())
        {
            return Err(CliError::hint(
                anyhow!(
                    "{} is a workspace already, whose blobs are kept {}",
                    root.display(),
                    ws.config
                        .blobs()
                        .map_or("with its documents".to_owned(), |b| format!("in {b}"))
                ),
                "leave out --blobs, or change [store] blobs in bridge.toml",
            ));
        }
        // Only an admin may add the runner, and only once: both checked
        // before bridge.toml is touched.
        let vault = members::open_vault(&ws)?;
        members::require_admin(&vault)?;
        if let Some(section) = &ws.config.github
            && section.repository != repo.to_string()
        {
            return Err(CliError::hint(
                anyhow!(
                    "bridge.toml is set up for GitHub repository {} already",
                    section.repository
                ),
                "change [github] repository in bridge.toml, or use another folder",
            ));
        }
        // A second `init --github` would add another runner and replace the
        // secret, leaving the first runner a member nobody holds the key
        // of; removing that one by hand is how results used to get lost.
        if let Some(runner) = vault.roster().latest().members.iter().find(|m| {
            m.role == bridge_crypto::Role::Worker
                && (m.name == RUNNER_NAME || m.name.starts_with(&format!("{RUNNER_NAME}-")))
        }) {
            return Err(CliError::hint(
                anyhow!(
                    "{} is set up for GitHub Actions already: its runner identity is {}",
                    root.display(),
                    runner.name
                ),
                format!(
                    "to issue a new runner identity (and keep every result of the old one), run \
                     `bridge members rotate-runner {} --github`",
                    runner.name
                ),
            ));
        }
        let ws = if ws.config.github.is_some() {
            ws
        } else {
            append_github_section(root, &github_section(repo, &git_ref))?;
            Workspace::open(root, g.engine())?
        };
        (ws, vault)
    } else {
        let remote = args.remote.clone().unwrap_or_else(|| repo.git_remote());
        let store = StoreSection {
            remote: Some(remote),
            blobs: args.blobs.clone(),
            ..StoreSection::default()
        };
        create(g, root, store, Some(github_section(repo, &git_ref)))?
    };
    let section = ws
        .config
        .github
        .clone()
        .unwrap_or_else(|| github_section(repo, &git_ref));
    let workflow = section.workflow().to_owned();
    github::check_workflow(&workflow)?;
    let git_ref = args
        .git_ref
        .clone()
        .or_else(|| section.git_ref.clone())
        .unwrap_or(default_branch);

    // The runner identity: sealed and stored first, then added to the
    // roster, so that a refused secret leaves no orphan member behind.
    members::require_admin(&vault)?;
    let name = members::free_member_name(&vault, RUNNER_NAME);
    let runner: Identity = members::new_runner_identity()?;
    let sealed = bridge_github::seal(&key.key, runner.to_secret().expose_secret().as_bytes())
        .map_err(|e| {
            CliError::hint(
                anyhow!(e).context(format!("cannot seal the runner identity for {repo}")),
                "the answer to GET /repos/{owner}/{repo}/actions/secrets/public-key was not a key",
            )
        })?;
    let wrote = gh
        .put_secret(github::IDENTITY_SECRET, &key.key_id, &sealed)
        .map_err(|e| ApiError::new(e, gh.token_source))?;
    members::add_runner_identity(&ws, &mut vault, &name, &runner)?;
    drop(runner);
    let epoch = vault.roster().latest().number;

    // The workflow and bridge.toml, in this checkout or through the API.
    let workflow_path = format!(".github/workflows/{workflow}");
    let config_text = crate::files::read_text(&root.join(CONFIG_FILE), crate::files::CONFIG_MAX)
        .with_context(|| format!("cannot read {}", root.join(CONFIG_FILE).display()))?;
    let mut notes = Vec::new();
    if args.via_api {
        for (path, text, message) in [
            (
                workflow_path.as_str(),
                workflow_text.as_str(),
                "bridge: the workflow that drains the task pool",
            ),
            (
                CONFIG_FILE,
                config_text.as_str(),
                "bridge: the workspace file (bridge.toml)",
            ),
        ] {
            let sha = gh
                .file_sha(path, &git_ref)
                .map_err(|e| ApiError::new(e, gh.token_source))?;
            gh.put_file(path, text.as_bytes(), message, &git_ref, sha.as_deref())
                .map_err(|e| ApiError::new(e, gh.token_source))?;
        }
    } else {
        let target = root.join(&workflow_path);
        match crate::files::read_text(&target, crate::files::CONFIG_MAX) {
            Ok(existing) if existing == workflow_text => {}
            Ok(_) => notes.push(format!(
                "{workflow_path} exists and differs from bridge's template: it was left as it is \
                 (its bridge action pin included)."
            )),
            // Never write over something that is there but not a readable
            // workflow (a FIFO would block the write).
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(anyhow::anyhow!(e)
                    .context(format!("cannot read {}", target.display()))
                    .into());
            }
            Err(_) => {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("cannot create {}", parent.display()))?;
                }
                std::fs::write(&target, &workflow_text)
                    .with_context(|| format!("cannot write {}", target.display()))?;
            }
        }
    }

    // Push the roster (with the runner) to the store, when it is reachable.
    let mut session = Session::with_vault(ws, vault)?;
    sync_and_report(&mut session, g)?;

    if !g.quiet {
        let verb = match wrote {
            SecretWrite::Created => "Stored",
            SecretWrite::Updated => "Replaced",
        };
        let budget = session
            .ws
            .config
            .github
            .as_ref()
            .and_then(|s| s.minutes_budget)
            .map_or_else(
                || "no minutes-budget".to_owned(),
                |m| format!("minutes-budget = {m}"),
            );
        let secret = github::IDENTITY_SECRET;
        let files = if args.via_api {
            format!("Committed {workflow_path} and {CONFIG_FILE} to {git_ref} of {repo}.")
        } else {
            format!("Wrote {workflow_path}; {CONFIG_FILE} has a [github] section.")
        };
        let notes: String = notes.iter().map(|n| format!("Note: {n}\n")).collect();
        let action = crate::action_pin::explain(&pin);
        out!(
            "\
Added the runner identity {name} (role worker) to the members (epoch {epoch}).
{verb} it as the Actions secret {secret} of {repo}, sealed with the repository's
public key; it is not saved anywhere else.
{files}
{notes}
{action}

Token: a fine-grained personal access token for {repo} with
  {TOKEN_PERMISSIONS}.
  A workflow's own GITHUB_TOKEN cannot manage secrets.

GitHub's terms: GitHub-hosted runners are for work related to the repository's
  software (building, testing, deploying, publishing it); repositories used as
  general-purpose compute have been disabled. For other work, use self-hosted
  runners with the same workflow: `bridge dispatch --input runs-on=self-hosted`
  (a label or a JSON array of labels; or the repository variable BRIDGE_RUNS_ON),
  and the repository variable BRIDGE_USE=path where bridge is installed.

Minutes: each runner bills its own minutes (private repositories: the Free plan
  includes 2,000 a month; public repositories: free). bridge.toml sets
  {budget} a month for bridge's runs; `bridge usage` shows what they used.
"
        );
        outln!();
        outln!("Next:");
        if args.via_api {
            outln!("  git pull                      # the two files are on {git_ref} now");
        } else {
            outln!(
                "  git add {CONFIG_FILE} {workflow_path} && git commit -m \"bridge: runner workflow\" && git push"
            );
        }
        outln!("  bridge submit tasks.yaml && bridge dispatch --watch");
    }
    Ok(EXIT_OK)
}

/// The [github] section `--github` writes.
fn github_section(repo: &RepoSlug, git_ref: &str) -> GitHubSection {
    GitHubSection {
        repository: repo.to_string(),
        workflow: Some("bridge.yml".to_owned()),
        git_ref: Some(git_ref.to_owned()),
        // The Free plan's included minutes and concurrency: a guard the user
        // raises when their plan allows more.
        minutes_budget: Some(2000),
        max_runners: Some(20),
    }
}

/// Adds a [github] section to an existing bridge.toml, keeping the rest of
/// the file (and its comments) as it is.
fn append_github_section(root: &Path, section: &GitHubSection) -> CliResult<()> {
    #[derive(serde::Serialize)]
    struct Wrapper<'a> {
        github: &'a GitHubSection,
    }
    let path = root.join(CONFIG_FILE);
    let mut text = crate::files::read_text(&path, crate::files::CONFIG_MAX)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let table = toml::to_string(&Wrapper { github: section }).context("cannot encode [github]")?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push('\n');
    text.push_str(&table);
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// This device's identity, created (and said so) when it has none yet.
pub fn identity_or_new(g: &GlobalArgs) -> CliResult<Identity> {
    let path = keys::identity_path(&g.settings.engine)?;
    if g.settings.engine.identity.is_none() && !path.exists() {
        let identity = Identity::generate()
            .map_err(|e| anyhow::anyhow!(e).context("cannot create an identity"))?;
        let path = keys::save_identity(&g.settings.engine, &identity, false)?;
        // On stderr: stdout is for what a script reads (`--json`).
        if !g.quiet {
            errln!(
                "Created this device's identity in {} (keep it secret).",
                path.display()
            );
        }
        return Ok(identity);
    }
    Ok(keys::load_identity(&g.settings.engine)?)
}
