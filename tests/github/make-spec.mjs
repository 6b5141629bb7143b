#!/usr/bin/env node
// Writes api.subset.json: the part of GitHub's own OpenAPI description
// (npm @octokit/openapi, generated/api.github.com.json) that bridge calls,
// with every component those operations reference, so that the validating
// mock (prism) starts in about a second instead of ~15 s and ~350 MB.
//
// Usage: node make-spec.mjs [OUT]   (run `npm ci` in this folder first)
//
// The operations are kept exactly as GitHub describes them, with two
// additions: examples of disabled workflows (below), and the error answers
// GitHub gives but does not describe. GitHub answers 401 "Bad credentials"
// on every endpoint and 422 on a dispatch it cannot start (no workflow_dispatch trigger, unknown ref,
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
