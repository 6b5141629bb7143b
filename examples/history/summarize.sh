#!/bin/sh
# Summarises every document of this task's chunk (docs/*.automerge in the
# task's working folder) into summaries/<document>.json.
set -eu
if ! command -v automerge-history >/dev/null 2>&1; then
    echo "summarize: automerge-history is not on PATH; install it on this worker with" >&2
    echo "  cargo install --path examples/history/tool    (from a checkout of bridge)" >&2
    exit 127
fi
automerge-history summarize docs/*.automerge -o summaries/
