"""Merges the per-document summaries into one report and a timeline picture.

    python3 report.py needs

Reads every needs/*/summaries/*.json (written by `automerge-history
summarize`, one per document) and writes:

    report.json    totals, per author, per day, the total size over time, and
                   the busiest documents (sorted keys: the same summaries give
                   the same bytes whichever worker made them)
    report.md      the same for people
    timeline.png   edits per day and author (a heat map) above the total size
                   of all documents over time
"""

import json
import sys
from datetime import date, timedelta
from pathlib import Path


def load(root: Path) -> list[dict]:
    files = sorted(root.glob("*/summaries/*.json"))
    docs = {}
    for f in files:
        s = json.loads(f.read_text(encoding="utf-8"))
        docs.setdefault(s["document"], s)  # the same document twice counts once
    return [docs[k] for k in sorted(docs)]


def days_between(first: str, last: str) -> list[str]:
    d0, d1 = date.fromisoformat(first), date.fromisoformat(last)
    return [(d0 + timedelta(days=i)).isoformat() for i in range((d1 - d0).days + 1)]


def aggregate(docs: list[dict]) -> dict:
    all_days = sorted({d for s in docs for d in s["edits_per_day"]})
    days = days_between(all_days[0], all_days[-1]) if all_days else []
    authors: dict[str, dict] = {}
    per_day = {d: 0 for d in days}
    per_day_author: dict[str, dict[str, int]] = {}
    size = {d: 0 for d in days}
    for s in docs:
        for a in s["authors"]:
            t = authors.setdefault(a["author"], {"changes": 0, "ops": 0, "documents": 0, "days": set()})
            t["changes"] += a["changes"]
            t["ops"] += a["ops"]
            t["documents"] += 1
        for d, n in s["edits_per_day"].items():
            per_day[d] += n
        for d, by in s["edits_per_day_by_author"].items():
            for a, n in by.items():
                per_day_author.setdefault(a, {})
                per_day_author[a][d] = per_day_author[a].get(d, 0) + n
                authors[a]["days"].add(d)
        # A document keeps its last known size on days without edits.
        points = {p["day"]: p["chars"] for p in s["size_over_time"]}
        current = 0
        for d in days:
            current = points.get(d, current)
            size[d] += current
    busiest = sorted(docs, key=lambda s: (-s["changes"], s["document"]))[:10]
    return {
        "documents": len(docs),
        "changes": sum(s["changes"] for s in docs),
        "ops": sum(s["ops"] for s in docs),
        "merges": sum(s["merges"] for s in docs),
        "final_chars": sum(s["final_chars"] for s in docs),
        "first_day": days[0] if days else None,
        "last_day": days[-1] if days else None,
        "authors": {
            a: {"changes": t["changes"], "ops": t["ops"], "documents": t["documents"], "days_active": len(t["days"])}
            for a, t in sorted(authors.items())
        },
        "edits_per_day": per_day,
        "edits_per_day_by_author": {a: dict(sorted(v.items())) for a, v in sorted(per_day_author.items())},
        "total_chars_per_day": size,
        "busiest_documents": [
            {"document": s["document"], "title": s["title"], "changes": s["changes"], "authors": len(s["authors"])}
            for s in busiest
        ],
    }


def markdown(r: dict) -> str:
    out = [
        "# Edit history report",
        "",
        f"{r['documents']} documents, {r['changes']} changes ({r['ops']} operations, "
        f"{r['merges']} made after merging concurrent work) from {r['first_day']} to {r['last_day']}; "
        f"{r['final_chars']} characters of text now.",
        "",
        "| author | changes | operations | documents | days active |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for a, t in sorted(r["authors"].items(), key=lambda kv: (-kv[1]["changes"], kv[0])):
        out.append(f"| {a} | {t['changes']} | {t['ops']} | {t['documents']} | {t['days_active']} |")
    out += ["", "| day | changes | total characters |", "| --- | ---: | ---: |"]
    for d, n in r["edits_per_day"].items():
        out.append(f"| {d} | {n} | {r['total_chars_per_day'][d]} |")
    out += ["", "Busiest documents:", ""]
    for b in r["busiest_documents"]:
        out.append(f"- {b['document']} ({b['title']}): {b['changes']} changes by {b['authors']} authors")
    return "\n".join(out) + "\n"


def timeline_png(r: dict, path: str) -> None:
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        sys.exit("report: Pillow is missing: python3 -m pip install pillow")
    days = list(r["edits_per_day"])
    authors = sorted(r["authors"], key=lambda a: (-r["authors"][a]["changes"], a))
    cell_w = max(6, min(28, 1100 // max(1, len(days))))
    cell_h = 22
    left, top = 110, 70
    width = left + cell_w * len(days) + 40
    width = max(width, 640)
    heat_h = cell_h * len(authors)
    chart_top = top + heat_h + 60
    chart_h = 200
    height = chart_top + chart_h + 60
    img = Image.new("RGB", (width, height), "white")
    g = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=13)
    big = ImageFont.load_default(size=17)
    g.text(
        (left, 14),
        f"Edits per day and author: {r['documents']:,} documents, {r['changes']:,} changes",
        fill="black",
        font=big,
    )
    g.text((left, 38), "darker = more changes that day", fill=(90, 90, 90), font=font)
    per_author = r["edits_per_day_by_author"]
    peak = max([n for a in per_author.values() for n in a.values()] or [1])
    for row, a in enumerate(authors):
        y = top + row * cell_h
        g.text((10, y + 4), a, fill="black", font=font)
        for col, d in enumerate(days):
            n = per_author.get(a, {}).get(d, 0)
            x = left + col * cell_w
            if n:
                t = 0.15 + 0.85 * n / peak
                color = (int(255 - t * 225), int(255 - t * 160), int(255 - t * 40))
            else:
                color = (245, 245, 245)
            g.rectangle([x, y, x + cell_w - 2, y + cell_h - 3], fill=color)
    # Date labels (MM-DD), as many as fit without overlapping.
    step = max(1, -(-48 // cell_w))
    for col in range(0, len(days), step):
        g.text((left + col * cell_w, top + heat_h + 4), days[col][5:], fill=(60, 60, 60), font=font)
    # Total size over time: an area chart.
    sizes = [r["total_chars_per_day"][d] for d in days]
    smax = max(sizes or [1]) or 1
    g.text((left, chart_top - 26), f"Total size of all documents (characters), up to {smax:,}", fill="black", font=big)
    base = chart_top + chart_h
    g.line([left, base, left + cell_w * len(days), base], fill=(120, 120, 120))
    pts = [(left + col * cell_w + cell_w / 2, base - chart_h * s / smax) for col, s in enumerate(sizes)]
    if pts:
        g.polygon([(pts[0][0], base)] + pts + [(pts[-1][0], base)], fill=(200, 225, 245))
    edits = [r["edits_per_day"][d] for d in days]
    emax = max(edits or [1]) or 1
    for col, n in enumerate(edits):
        x = left + col * cell_w
        h = 0.35 * chart_h * n / emax
        g.rectangle([x + 1, base - h, x + cell_w - 3, base], fill=(245, 170, 90))
    for col in range(0, len(days), step):
        g.text((left + col * cell_w, base + 6), days[col][5:], fill=(60, 60, 60), font=font)
    if pts:
        g.line(pts, fill=(30, 90, 170), width=3)
    g.text((left, base + 28), f"orange bars: changes per day (up to {emax:,})", fill=(200, 100, 30), font=font)
    img.save(path, optimize=True)


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else "needs")
    docs = load(root)
    if not docs:
        print(f"report: no */summaries/*.json under {root}/", file=sys.stderr)
        return 1
    r = aggregate(docs)
    Path("report.json").write_text(json.dumps(r, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    Path("report.md").write_text(markdown(r), encoding="utf-8")
    timeline_png(r, "timeline.png")
    print(f"report: {r['documents']} documents, {r['changes']} changes by {len(r['authors'])} authors, "
          f"{r['first_day']} to {r['last_day']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
