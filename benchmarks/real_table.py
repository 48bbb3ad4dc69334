"""Markdown table of real-pair results from ``dtp-stereo eval --with-sgbm`` JSONs.

One row per (pair, scale), EPE px / bad-2 % per method, and whether the issue-9 targets hold for
the student against SGBM over the same disparity range: EPE and bad-2 below SGBM as OpenCV
returns it, EPE (and, beyond that, bad-2) below SGBM with its holes filled.

Usage (repository root)::

    .venv/bin/python benchmarks/real_table.py docs/results/real-default-x*.json \\
        [--pairs aloe@0.25 aloe@0.5 motorcycle@1] [--output docs/results/real-targets.json]
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional


def rows_from(paths: List[str]) -> List[Dict[str, Any]]:
    """Per (pair, scale) dict: ``{"pair", "scale", "methods": {label: (epe, bad_2)}}``."""
    rows = []
    for path in paths:
        rep = json.loads(Path(path).read_text())
        methods = {rep.get("label", "student"): rep, **rep.get("comparison", {})}
        for i, pair in enumerate(rep["per_image"]):
            rows.append({"pair": pair["name"], "scale": rep["dataset"]["scale"],
                         "size": pair["size"], "report": str(path),
                         "methods": {k: (v["per_image"][i]["epe"], v["per_image"][i]["bad_2"])
                                     for k, v in methods.items()}})
    return rows


def targets(row: Dict[str, Any], student: str = "student") -> Dict[str, bool]:
    """The issue-9 targets for one row (same-range SGBM rows ``sgbm_raw``/``sgbm_filled``)."""
    s, raw, filled = (row["methods"][k] for k in (student, "sgbm_raw", "sgbm_filled"))
    return {"epe_below_raw": s[0] < raw[0], "bad2_below_raw": s[1] < raw[1],
            "epe_below_filled": s[0] < filled[0], "bad2_below_filled": s[1] < filled[1]}


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("reports", nargs="+")
    p.add_argument("--pairs", nargs="*", default=None, help="keep only NAME@SCALE rows")
    p.add_argument("--output", default=None, help="write rows and targets as JSON")
    args = p.parse_args(argv)
    rows = rows_from(args.reports)
    if args.pairs:
        keep = set(args.pairs)
        rows = [r for r in rows if f"{r['pair']}@{r['scale']:g}" in keep]
    labels: List[str] = []
    for r in rows:
        labels += [k for k in r["methods"] if k not in labels]
    print("| pair | size | " + " | ".join(labels) + " | targets met |")
    print("|---" * (len(labels) + 3) + "|")
    for r in rows:
        t = targets(r)
        r["targets"] = t
        cells = [f"{r['methods'][k][0]:.2f} / {r['methods'][k][1]:.1f}" if k in r["methods"]
                 else "" for k in labels]
        met = sum(t.values())
        print(f"| {r['pair']} ×{r['scale']:g} | {r['size'][0]}×{r['size'][1]} | "
              + " | ".join(cells) + f" | {met}/4 |")
    if args.output:
        Path(args.output).write_text(json.dumps({"command": " ".join(
            ["python", "benchmarks/real_table.py"] + list(argv or sys.argv[1:])),
            "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
