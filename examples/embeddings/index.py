"""Merges the embed tasks' outputs into one search index.

    python3 index.py needs

bridge puts the outputs of every task this one needs under
needs/<task name>/: each holds embeddings.npy and passages.jsonl. Writes
index.npy (float32, one unit vector per passage) and index.jsonl (the
passages, same order), sorted by document and passage, so the index is the
same whichever worker embedded which chunk.
"""

import json
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else "needs")
    parts = sorted(root.glob("*/passages.jsonl"))
    if not parts:
        print(f"index: no */passages.jsonl under {root}/", file=sys.stderr)
        return 1
    rows, vectors = [], []
    for p in parts:
        vec = np.load(p.with_name("embeddings.npy"))
        lines = [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line]
        if vec.shape != (len(lines), 384):
            print(f"index: {p.parent}: {len(lines)} passages but vectors of shape {vec.shape}", file=sys.stderr)
            return 1
        rows.extend(lines)
        vectors.append(vec)
    matrix = np.concatenate(vectors).astype(np.float32)
    order = sorted(range(len(rows)), key=lambda i: (rows[i]["doc"], rows[i]["passage"]))
    seen, keep = set(), []
    for i in order:
        key = (rows[i]["doc"], rows[i]["passage"])
        if key in seen:
            print(f"index: {key[0]} passage {key[1]} was embedded twice; keeping one", file=sys.stderr)
            continue
        seen.add(key)
        keep.append(i)
    matrix = matrix[keep]
    norms = np.linalg.norm(matrix, axis=1)
    if len(norms) and not np.allclose(norms, 1.0, atol=1e-3):
        print("index: some vectors are not unit length", file=sys.stderr)
        return 1
    np.save("index.npy", matrix)
    with open("index.jsonl", "w", encoding="utf-8") as out:
        for i in keep:
            out.write(json.dumps(rows[i], ensure_ascii=False) + "\n")
    docs = {rows[i]["doc"] for i in keep}
    print(f"index: {len(docs)} documents, {len(keep)} passages, from {len(parts)} tasks")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
