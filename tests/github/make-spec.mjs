#!/usr/bin/env node
// Writes api.subset.json: the part of GitHub's own OpenAPI description
// (npm @octokit/openapi, generated/api.github.com.json) that bridge calls,
// with every component those operations reference, so that the validating
// mock (prism) starts in about a second instead of ~15 s and ~350 MB.
//
// Usage: node make-spec.mjs [OUT]   (run `npm ci` in this folder first)
//
// The operations are kept exactly as GitHub describes them, with two
// additions: examples tests ask for by name (disabled workflows, runs still
// at work, runs that ended, zero timing: below), and the error answers
// GitHub gives but does not describe. GitHub answers 401 "Bad credentials"
// on every endpoint, 404 for a workflow run it does not know, and 422 on a dispatch it cannot start (no workflow_dispatch trigger, unknown ref,
// unexpected inputs), which the description leaves implicit. The script adds
// those responses where they are missing (GitHub's own error schemas, with
// the bodies GitHub sends as examples), so the tests can ask the mock for
// them with a `Prefer: code=…` header.

import { readFileSync, writeFileSync, renameSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const source = join(here, "node_modules/@octokit/openapi/generated/api.github.com.json");
const out = process.argv[2] ?? join(here, "api.subset.json");

/** Every operation bridge makes: [method, path]. Keep in sync with bridge/src/github.rs. */
const OPERATIONS = [
  ["get", "/repos/{owner}/{repo}"],
  ["get", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}"],
  ["put", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/enable"],
  ["post", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches"],
  ["get", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs"],
  ["get", "/repos/{owner}/{repo}/actions/runs/{run_id}"],
  ["get", "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs"],
  ["get", "/repos/{owner}/{repo}/actions/runs/{run_id}/timing"],
  ["get", "/repos/{owner}/{repo}/actions/secrets/public-key"],
  ["put", "/repos/{owner}/{repo}/actions/secrets/{secret_name}"],
  ["get", "/repos/{owner}/{repo}/contents/{path}"],
  ["put", "/repos/{owner}/{repo}/contents/{path}"],
  ["get", "/repos/{owner}/{repo}/releases/tags/{tag}"],
  ["get", "/repos/{owner}/{repo}/commits/{ref}"],
];

/** An error response with GitHub's schema for it and the body GitHub sends. */
function errorResponse(description, schema, example) {
  return {
    description,
    content: {
      "application/json": {
        schema: { $ref: `#/components/schemas/${schema}` },
        examples: { default: { value: example } },
      },
    },
  };
}

const spec = JSON.parse(readFileSync(source, "utf8"));
const paths = {};
for (const [method, path] of OPERATIONS) {
  const op = spec.paths[path]?.[method];
  if (!op) {
    throw new Error(`${method.toUpperCase()} ${path} is not in ${source}`);
  }
  const copy = structuredClone(op);
  copy.responses["401"] ??= errorResponse("Requires authentication", "basic-error", {
    message: "Bad credentials",
    documentation_url: "https://docs.github.com/rest",
    status: "401",
  });
  if (path.endsWith("/actions/runs/{run_id}")) {
    copy.responses["404"] ??= errorResponse("Resource not found", "basic-error", {
      message: "Not Found",
      documentation_url: "https://docs.github.com/rest/actions/workflow-runs#get-a-workflow-run",
      status: "404",
    });
  }
  if (path.endsWith("/dispatches")) {
    copy.responses["422"] ??= errorResponse("Unprocessable", "validation-error-simple", {
      message: "Workflow does not have 'workflow_dispatch' trigger",
      documentation_url:
        "https://docs.github.com/rest/actions/workflows#create-a-workflow-dispatch-event",
    });
  }
  paths[path] ??= {};
  // Path-level parameters apply to every method of the path.
  if (spec.paths[path].parameters) paths[path].parameters = spec.paths[path].parameters;
  paths[path][method] = copy;
}

// Follow every "$ref": "#/components/<kind>/<name>" transitively.
const components = {};
const todo = [paths];
const seen = new Set();
while (todo.length > 0) {
  const node = todo.pop();
  if (Array.isArray(node)) {
    todo.push(...node);
  } else if (node && typeof node === "object") {
    for (const [key, value] of Object.entries(node)) {
      if (key === "$ref" && typeof value === "string" && !seen.has(value)) {
        seen.add(value);
        const [, kind, name] = value.match(/^#\/components\/([^/]+)\/(.+)$/) ?? [];
        if (!kind) throw new Error(`unexpected $ref ${value}`);
        const target = spec.components[kind]?.[name];
        if (target === undefined) throw new Error(`dangling $ref ${value}`);
        (components[kind] ??= {})[name] = target;
        todo.push(target);
      } else {
        todo.push(value);
      }
    }
  }
}

// Repairs of GitHub's *examples* (never of the schemas that validate
// requests): prism --errors also validates the responses it sends, and it
// answers from these examples, so an example that breaks its own schema
// would make every call to that operation fail with a 500.
const examples = components.examples ?? {};
// The example key decodes to 33 bytes; a repository key is a 32-byte X25519
// public key, which is what bridge seals the secret to.
if (examples["actions-public-key"]) {
  examples["actions-public-key"] = structuredClone(examples["actions-public-key"]);
  examples["actions-public-key"].value.key = "hBT5WZEj8ZoOv6TYJsfWq7MxTEQopZO5/IT3ZCVQPzs=";
}
// The example jobs lack `created_at`, which the job schema requires.
if (examples["job-paginated"]) {
  examples["job-paginated"] = structuredClone(examples["job-paginated"]);
  for (const job of examples["job-paginated"].value.jobs ?? []) {
    job.created_at ??= job.started_at;
  }
}
// The example repository (and its `source` and `parent`) lacks `language`,
// which the schema requires (it may be null).
if (examples["full-repository-default-response"]) {
  examples["full-repository-default-response"] = structuredClone(examples["full-repository-default-response"]);
  const repo = examples["full-repository-default-response"].value;
  for (const r of [repo, repo.source, repo.parent]) {
    if (r && typeof r === "object") r.language ??= null;
  }
}
// "Create or update a repository secret" documents its 201 body as an empty
// object, with the example `null`.
const secretPut = paths["/repos/{owner}/{repo}/actions/secrets/{secret_name}"].put;
for (const media of Object.values(secretPut.responses["201"]?.content ?? {})) {
  for (const example of Object.values(media.examples ?? {})) {
    if (example.value === null) example.value = {};
  }
}

// "Get a workflow" has one example, an active workflow. Tests ask for a
// disabled one with `Prefer: example=disabled_inactivity` (or
// disabled_manually): the same example with GitHub's other states.
const getWorkflow = paths["/repos/{owner}/{repo}/actions/workflows/{workflow_id}"].get;
const workflowExamples = getWorkflow.responses["200"].content["application/json"].examples;
const activeWorkflow = spec.components.examples.workflow.value;
for (const state of ["disabled_inactivity", "disabled_manually"]) {
  workflowExamples[state] = { value: { ...activeWorkflow, state } };
}

// "List workflow runs" has one example, a queued run from 2020 (a stale
// record: GitHub cancels a run after 35 days). Tests ask for runners still
// at work with `Prefer: example=active`: one run in progress and one
// queued, created when this file is made (so, minutes before the test).
const listRuns = paths["/repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs"].get;
const runsExamples = listRuns.responses["200"].content["application/json"].examples;
const exampleRun = spec.components.examples["workflow-run"].value;
const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
runsExamples.active = {
  value: {
    total_count: 2,
    workflow_runs: [
      { ...exampleRun, id: 30433651, status: "queued", conclusion: null, event: "workflow_dispatch", created_at: now, updated_at: now, html_url: "https://github.com/octo-org/octo-repo/actions/runs/30433651" },
      { ...exampleRun, id: 30433650, status: "in_progress", conclusion: null, event: "workflow_dispatch", created_at: now, updated_at: now, html_url: "https://github.com/octo-org/octo-repo/actions/runs/30433650" },
    ],
  },
};

// "Get a workflow run" has one example, a queued run. Tests ask for a run
// that ended with `Prefer: example=failure` (or success).
const getRun = paths["/repos/{owner}/{repo}/actions/runs/{run_id}"].get;
const runExamples = getRun.responses["200"].content["application/json"].examples;
for (const conclusion of ["failure", "success"]) {
  runExamples[conclusion] = { value: { ...exampleRun, status: "completed", conclusion } };
}

// "Get workflow run usage" (the timing endpoint, which bridge no longer
// reads): `Prefer: example=zero` is the answer some accounts get, zero
// billable time for a run whose jobs ran for minutes.
const timing = paths["/repos/{owner}/{repo}/actions/runs/{run_id}/timing"].get;
const timingExamples = timing.responses["200"].content["application/json"].examples;
timingExamples.zero = {
  value: {
    billable: { UBUNTU: { total_ms: 0, jobs: 1, job_runs: [{ job_id: 399444496, duration_ms: 0 }] } },
    run_duration_ms: 0,
  },
};

const subset = {
  openapi: spec.openapi,
  info: { ...spec.info, title: `${spec.info.title} (the subset bridge calls)` },
  servers: spec.servers,
  paths,
  components,
};
const tmp = `${out}.tmp-${process.pid}`;
writeFileSync(tmp, JSON.stringify(subset, null, 1));
renameSync(tmp, out);
console.log(
  `wrote ${out}: ${OPERATIONS.length} operations, ${seen.size} components, from @octokit/openapi ${spec.info.version}`,
);
