//! End-to-end tests: they start the real `bridge` binary as separate,
//! hermetic "devices" (each its own workspace folder, HOME and environment)
//! and check what a user would see: exit codes, JSON output, files.
//!
//! Nothing here asserts wall-clock timings; waiting for something (a lease
//! to run out, a worker to pick a task up) is done by polling the CLI a
//! bounded number of times.

mod act;
mod archive;
mod audience;
mod batch_actions;
mod cli;
mod compaction;
mod conventions;
mod crash;
mod devices;
mod errors;
mod examples;
mod exec;
mod failures;
mod github;
mod github_server;
mod gitlab;
mod harness;
mod hybrid_store;
mod isolation;
mod kubernetes;
mod live_output;
mod load;
mod longlived;
mod membership;
mod membership_prop;
mod notify;
mod offline_remote;
mod parallel_input;
mod policy;
mod providers;
mod report;
mod runner;
mod runner_logs;
mod s3_store;
mod sandbox;
mod script_conventions;
mod security;
mod skipped;
mod spawner;
mod store_files;
mod store_size;
mod url_inputs;
mod validation;
mod workers;
