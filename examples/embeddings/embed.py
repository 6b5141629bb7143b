"""Embeds documents for semantic search: one bridge task runs this on its chunk.

    python3 embed.py docs/*.txt

Each document is cut into passages of at most PASSAGE_TOKENS word pieces
(whole paragraphs where they fit, else whole sentences), each passage is
prefixed with the document's title (its first line) and embedded with
all-MiniLM-L6-v2. Writes, in the current folder:

    embeddings.npy    float32, one 384-wide unit vector per passage
    passages.jsonl    one line per passage, same order: doc, title, passage, text
"""

import json
import re
import sys
import time
from pathlib import Path

from minilm import MAX_TOKENS, MiniLM, np

# Room for the title and the [CLS]/[SEP] tokens within MAX_TOKENS.
PASSAGE_TOKENS = 200


def passages(model: MiniLM, text: str) -> tuple[str, list[str]]:
    """The title (first line) and the passages of a document."""
    title, _, body = text.strip().partition("\n")
    title = title.strip()
    body = body.strip() or title
    pieces = []
    for para in re.split(r"\n\s*\n", body):
        para = " ".join(para.split())
        if not para:
            continue
        if model.count_tokens(para) <= PASSAGE_TOKENS:
            pieces.append(para)
        else:
            pieces.extend(s for s in re.split(r"(?<=[.!?;:])\s+", para) if s)
    out, cur = [], ""
    for p in pieces:
        joined = f"{cur} {p}".strip()
        if cur and model.count_tokens(joined) > PASSAGE_TOKENS:
            out.append(cur)
            cur = p
        else:
            cur = joined
    if cur:
        out.append(cur)
    return title, out


def main(argv: list[str]) -> int:
    files = sorted(Path(a) for a in argv)
    if not files:
        print("usage: python3 embed.py FILE...", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    model = MiniLM()
    t_load = time.perf_counter() - t0
    rows, texts = [], []
    for f in files:
        title, parts = passages(model, f.read_text(encoding="utf-8"))
        for k, p in enumerate(parts):
            rows.append({"doc": f.name, "title": title, "passage": k, "text": p})
            texts.append(f"{title}. {p}")
    t1 = time.perf_counter()
    vectors = model.embed(texts) if texts else np.zeros((0, 384), dtype=np.float32)
    t_embed = time.perf_counter() - t1
    np.save("embeddings.npy", vectors)
    with open("passages.jsonl", "w", encoding="utf-8") as out:
        for r in rows:
            out.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(
        f"embedded {len(files)} documents as {len(texts)} passages "
        f"(model loaded in {t_load:.2f}s, embedded in {t_embed:.2f}s; max {MAX_TOKENS} tokens each)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
