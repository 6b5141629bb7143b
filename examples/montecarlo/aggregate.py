"""Merges every block's samples into percentiles and a histogram.

    python3 aggregate.py needs

Reads needs/*/block.json and samples.bin (one folder per simulate task),
checks that the blocks cover each seed exactly once, and writes:

    report.json    per output: P5, P50, P95, mean, standard deviation, min,
                   max; the probability of a loss; the seeds covered
    report.txt     the same for people
    histogram.png  the distribution of the net present value, with P5, P50
                   and P95 marked and the losses in red

Everything is computed from all samples sorted, with exactly rounded sums
(math.fsum), so the report is byte-identical whichever worker ran which
block, and in whatever order the blocks arrive.
"""

import json
import math
import struct
import sys
from pathlib import Path

PERCENTILES = (5, 50, 95)


def load(root: Path):
    blocks = []
    for meta_file in sorted(root.glob("*/block.json")):
        meta = json.loads(meta_file.read_text())
        raw = (meta_file.parent / "samples.bin").read_bytes()
        width = len(meta["outputs"])
        if len(raw) != 8 * width * meta["scenarios"]:
            sys.exit(f"aggregate: {meta_file.parent}: samples.bin has {len(raw)} bytes, "
                     f"expected {8 * width * meta['scenarios']}")
        values = struct.unpack(f"<{len(raw) // 8}d", raw)
        blocks.append((meta, values))
    if not blocks:
        sys.exit(f"aggregate: no */block.json under {root}/")
    outputs = blocks[0][0]["outputs"]
    # Each seed exactly once: the blocks must tile 0..N-1.
    spans = sorted((m["first_seed"], m["first_seed"] + m["scenarios"]) for m, _ in blocks)
    expect = 0
    for start, end in spans:
        if start != expect:
            sys.exit(f"aggregate: seeds {expect}..{start - 1} are missing or repeated (blocks {spans})")
        expect = end
    columns = {name: [] for name in outputs}
    for meta, values in blocks:
        if meta["outputs"] != outputs:
            sys.exit(f"aggregate: block {meta['block']} has outputs {meta['outputs']}, not {outputs}")
        for k, name in enumerate(outputs):
            columns[name].extend(values[k :: len(outputs)])
    return outputs, columns, len(blocks), expect


def percentile(xs: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); xs sorted."""
    h = (len(xs) - 1) * p / 100
    lo = math.floor(h)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (h - lo) * (xs[hi] - xs[lo])


def stats(xs: list[float]) -> dict:
    xs = sorted(xs)
    n = len(xs)
    mean = math.fsum(xs) / n
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    out = {f"p{p}": percentile(xs, p) for p in PERCENTILES}
    out.update(mean=mean, sd=sd, min=xs[0], max=xs[-1])
    return out


def money(v: float) -> str:
    """120000 as 120k, 1500000 as 1.5M."""
    if abs(v) >= 999_500:
        return f"{v / 1e6:.3g}M"
    if abs(v) >= 500:
        return f"{v / 1000:.0f}k"
    return f"{v:.0f}"


def histogram_png(npv: list[float], s: dict, n: int, path: str) -> None:
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        sys.exit("aggregate: Pillow is missing: python3 -m pip install pillow")
    W, H = 900, 520
    left, right, top, bottom = 70, 30, 80, 80
    pw, ph = W - left - right, H - top - bottom
    lo, hi = percentile(sorted(npv), 0.5), percentile(sorted(npv), 99.5)
    bins = 60
    width = (hi - lo) / bins or 1.0
    counts = [0] * bins
    for x in npv:
        b = int((x - lo) / width)
        if 0 <= b < bins:
            counts[b] += 1
    peak = max(counts) or 1
    img = Image.new("RGB", (W, H), "white")
    g = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=13)
    big = ImageFont.load_default(size=18)
    g.text((left, 16), f"Net present value over five years: {n:,} scenarios", fill="black", font=big)
    loss = sum(1 for x in npv if x < 0) / len(npv)
    g.text(
        (left, 44),
        f"red: a loss (probability {loss:.1%}); lines: P5, P50 (median), P95; "
        "the 0.5 % at either end are off the chart",
        fill=(90, 90, 90),
        font=font,
    )

    def xpix(v: float) -> float:
        return left + pw * (v - lo) / (hi - lo)

    for b, c in enumerate(counts):
        x0 = left + pw * b / bins
        x1 = left + pw * (b + 1) / bins - 1
        h = ph * c / peak
        mid = lo + (b + 0.5) * width
        g.rectangle([x0, top + ph - h, x1, top + ph], fill=(215, 70, 60) if mid < 0 else (70, 130, 200))
    g.line([left, top + ph, left + pw, top + ph], fill="black")
    for p in PERCENTILES:
        v = s[f"p{p}"]
        x = xpix(v)
        g.line([x, top - 6, x, top + ph], fill=(30, 30, 30), width=2)
        g.text((x + 4, top - 8), f"P{p} {money(v)}", fill="black", font=font)
    # Axis ticks in thousands of EUR.
    step = 10 ** math.floor(math.log10((hi - lo) / 5 or 1))
    for mult in (1, 2, 5, 10):
        if (hi - lo) / (step * mult) <= 10:
            step *= mult
            break
    t = math.ceil(lo / step) * step
    while t <= hi:
        x = xpix(t)
        g.line([x, top + ph, x, top + ph + 5], fill="black")
        label = money(t)
        g.text((x - 3 * len(label), top + ph + 8), label, fill=(60, 60, 60), font=font)
        t += step
    g.text((left + pw / 2 - 60, H - 40), "net present value (EUR)", fill="black", font=font)
    img.save(path, optimize=True)


def main(argv: list[str]) -> int:
    outputs, columns, nblocks, n = load(Path(argv[0] if argv else "needs"))
    report = {
        "scenarios": n,
        "blocks": nblocks,
        "seeds": f"0..{n - 1}",
        "outputs": {name: stats(columns[name]) for name in outputs},
        "probability_of_loss": sum(1 for x in columns["npv"] if x < 0) / n,
        "payback_within_horizon": sum(1 for x in columns["payback_month"] if x <= 60) / n,
    }
    Path("report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    lines = [f"{n:,} scenarios in {nblocks} blocks (seeds {report['seeds']})", ""]
    lines.append(f"{'':16}{'P5':>14}{'P50':>14}{'P95':>14}{'mean':>14}")
    for name in outputs:
        s = report["outputs"][name]
        lines.append(f"{name:16}" + "".join(f"{s[k]:>14,.1f}" for k in ("p5", "p50", "p95", "mean")))
    lines += [
        "",
        f"probability of a loss (NPV < 0): {report['probability_of_loss']:.2%}",
        f"paid back within five years:     {report['payback_within_horizon']:.2%}",
    ]
    Path("report.txt").write_text("\n".join(lines) + "\n")
    histogram_png(columns["npv"], report["outputs"]["npv"], n, "histogram.png")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
