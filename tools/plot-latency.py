#!/usr/bin/env python3
"""Latency against throughput, sync vs async Ready handling, from raft-bench's JSON lines.

    .build/release/raft-bench --sweep --json > sweep.jsonl
    python3 tools/plot-latency.py sweep.jsonl -o docs/latency-throughput.png

Each series is one Ready handling on one cluster size; its points are the client counts of the
sweep (the first line for each count is used, so the --batch-max-entries and --batch-linger-us
tables do not add points). Solid lines are p50, dashed lines p99. Needs matplotlib.
"""
import argparse
import json
import sys


def load(path):
    lines = sys.stdin if path == "-" else open(path, encoding="utf-8")
    rows = []
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            sys.exit(f"{path}:{n}: not a JSON line: {e}")
    return rows


def series(rows):
    """{(ready_handling, nodes): [(clients, entries_per_sec, p50_us, p99_us)]} sorted by clients."""
    out = {}
    for r in rows:
        mode = r.get("ready_handling")
        if mode not in ("sync", "async"):
            continue
        points = out.setdefault((mode, r["nodes"]), {})
        if r["clients"] in points:
            continue
        lat = r["latency_us"]
        points[r["clients"]] = (r["clients"], r["entries_per_sec"], lat["p50"], lat["p99"])
    return {k: sorted(v.values()) for k, v in out.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("jsonl", help="raft-bench --json output ('-' for stdin)")
    ap.add_argument("-o", "--output", default="latency-throughput.png", help="image to write (PNG or SVG)")
    ap.add_argument("--title", default="swift-raft write path: latency vs throughput")
    args = ap.parse_args()

    data = series(load(args.jsonl))
    if not data:
        sys.exit("no sync or async lines in the input (run raft-bench with --json)")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("matplotlib is needed: pip install matplotlib")

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    colors = {"sync": "tab:blue", "async": "tab:orange"}
    for (mode, nodes), points in sorted(data.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        xs = [p[1] / 1000 for p in points]
        style = "-" if nodes == 1 else "-."
        label = f"{mode}, {nodes} node{'s' if nodes != 1 else ''}"
        ax.plot(xs, [p[2] for p in points], style, marker="o", color=colors[mode], label=f"{label} p50")
        ax.plot(xs, [p[3] for p in points], ":", marker=".", color=colors[mode], alpha=0.7, label=f"{label} p99")
        for p, x in zip(points, xs):
            ax.annotate(str(p[0]), (x, p[2]), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xlabel("acknowledged entries/s (thousands)")
    ax.set_ylabel("proposal to acknowledgement (us, log)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(args.title + "\n(numbers at the points: closed-loop clients)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
