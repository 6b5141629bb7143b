"""Answers a question with the documents of the index, best first.

    python3 query.py INDEX_DIR "a slow animal wins a race" [-k 5] [--json]

INDEX_DIR holds index.npy and index.jsonl (`bridge outputs index --to
INDEX_DIR`). The question is embedded with the same model; a document's
score is the cosine similarity of its best passage.
"""

import argparse
import json
import sys
from pathlib import Path

from minilm import MiniLM, np


def search(index_dir: Path, question: str, k: int) -> list[dict]:
    vectors = np.load(index_dir / "index.npy")
    rows = [json.loads(line) for line in (index_dir / "index.jsonl").read_text(encoding="utf-8").splitlines() if line]
    q = MiniLM().embed([question])[0]
    scores = vectors @ q
    best: dict[str, tuple[float, int]] = {}
    for i, s in enumerate(scores.tolist()):
        doc = rows[i]["doc"]
        if doc not in best or s > best[doc][0]:
            best[doc] = (s, i)
    ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0]))[:k]
    return [
        {
            "rank": r + 1,
            "score": round(s, 4),
            "doc": doc,
            "title": rows[i]["title"],
            "passage": rows[i]["text"],
        }
        for r, (doc, (s, i)) in enumerate(ranked)
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("index_dir", type=Path, help="folder holding index.npy and index.jsonl")
    ap.add_argument("question", help="what to look for, in plain words")
    ap.add_argument("-k", type=int, default=5, help="how many documents (default 5)")
    ap.add_argument("--json", action="store_true", help="print the results as a JSON array")
    args = ap.parse_args()
    for f in ("index.npy", "index.jsonl"):
        if not (args.index_dir / f).is_file():
            print(f"query: {args.index_dir / f} is missing (bridge outputs index --to {args.index_dir})", file=sys.stderr)
            return 1
    results = search(args.index_dir, args.question, args.k)
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
        return 0
    for r in results:
        snippet = r["passage"] if len(r["passage"]) <= 100 else r["passage"][:97] + "..."
        print(f"{r['rank']:2}. {r['score']:.3f}  {r['title']}  ({r['doc']})\n       {snippet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
