"""The one-budget comparison of configs/real/claims.yaml: one row per finished claims run.

Reads ``models/stages/claims/<row>/eval/results.json`` (synthetic test split, 50 pairs at
256×512), the stage's ``summary.json`` (best validation EPE, steps) and, with ``--real``, the
``dtp-stereo eval --also`` JSONs of the rows' checkpoints on the real pairs (validation data:
they compare design choices, nothing picks a checkpoint on them), and the teacher's own test
metrics (``--teacher-eval``). Prints a markdown table and writes the rows as JSON.

Usage (repository root)::

    .venv/bin/python benchmarks/claims_table.py --teacher-eval docs/results/real-s1-eval.json \\
        --real docs/results/claims-real-x0.25.json docs/results/claims-real-x0.5.json \\
        --output docs/results/claims-real.json
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

# row -> (what it answers, pipeline stage whose model is the row's)
ROWS = {
    "gt": ("pruned teacher, fine-tuned on ground truth only", "distill"),
    "l1": ("pruned teacher, fine-tuned on the teacher only, L1 on the logits' disparities",
           "distill"),
    "kl": ("pruned teacher, fine-tuned on the teacher only, KL on the logits", "distill"),
    "both": ("pruned teacher, fine-tuned on ground truth + L1 on the logits", "distill"),
    "pruned": ("pruned teacher, the default's fine-tuning recipe (GT + L1, lr 5e-4), 800 steps",
               "finetune"),
    "photo": ("as gt, photo-textured scenes (photo_layers)", "distill"),
    "single": ("as gt, stereo pairs from single photos (single_image)", "distill"),
    "mix": ("as gt, 70 % procedural scenes and 30 % pairs from single photos (mix)", "distill"),
    "mix50": ("as gt, 50 % procedural scenes and 50 % pairs from single photos (mix)", "distill"),
    "scratch": ("student from scratch (same widths), ground truth only", "distill"),
    "norm": ("as scratch, correlation of unit-length features", "distill"),
    "corr32": ("as scratch, 32 correlation channels", "distill"),
}


def collect(root: Path, real: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One dict per finished row under ``root`` (``models/stages/claims``)."""
    rows = []
    for name, (what, stage) in ROWS.items():
        results = root / name / "eval" / "results.json"
        if not results.is_file():
            continue
        test = json.loads(results.read_text())["models"][stage]
        folder = root / name if stage == "distill" else root / name / stage
        summary = json.loads((folder / "summary.json").read_text()) \
            if (folder / "summary.json").is_file() else {}
        row = {"row": name, "what": what, "stage": stage,
               "test": {k: test[k] for k in ("epe", "d1", "bad_2")},
               "params": test.get("params"), "best_val_epe": summary.get("best_epe"),
               "steps": summary.get("step"), "checkpoint": str(folder / "best.pt"),
               "real": {}}
        for rep in real:
            labels = {rep.get("label", "student"): rep, **rep.get("comparison", {})}
            if name not in labels:
                continue
            for i, pair in enumerate(rep["per_image"]):
                key = f"{pair['name']}@{rep['dataset']['scale']:g}"
                m = labels[name]["per_image"][i]
                row["real"][key] = {"epe": m["epe"], "bad_2": m["bad_2"]}
        rows.append(row)
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path("models/stages/claims"))
    p.add_argument("--real", nargs="*", default=[], help="dtp-stereo eval --also JSONs")
    p.add_argument("--teacher-eval", type=Path, default=None,
                   help="the teacher's eval results.json (its 'distill' entry)")
    p.add_argument("--output", type=Path, default=None)
    args = p.parse_args(argv)
    real = [json.loads(Path(r).read_text()) for r in args.real]
    rows = collect(args.root, real)
    if not rows:
        print(f"claims_table.py: no finished rows under {args.root}", file=sys.stderr)
        return 2
    teacher = None
    if args.teacher_eval:
        t = json.loads(args.teacher_eval.read_text())["models"]["distill"]
        teacher = {"test": {k: t[k] for k in ("epe", "d1", "bad_2")}, "params": t.get("params")}
    pairs = sorted({k for r in rows for k in r["real"]})
    print("| row | test EPE / D1 / bad-2 | params | best val EPE | "
          + " | ".join(f"{k} EPE / bad-2" for k in pairs) + " |")
    print("|---" * (4 + len(pairs)) + "|")
    if teacher:
        t = teacher["test"]
        print(f"| teacher (real_s1) | {t['epe']:.2f} / {t['d1']:.1f} / {t['bad_2']:.1f} | "
              f"{teacher['params']} | | " + " | ".join("" for _ in pairs) + " |")
    for r in rows:
        t = r["test"]
        cells = [f"{r['real'][k]['epe']:.2f} / {r['real'][k]['bad_2']:.1f}" if k in r["real"]
                 else "" for k in pairs]
        val = f"{r['best_val_epe']:.2f}" if r["best_val_epe"] is not None else ""
        print(f"| {r['row']}: {r['what']} | {t['epe']:.2f} / {t['d1']:.1f} / {t['bad_2']:.1f} | "
              f"{r['params']} | {val} | " + " | ".join(cells) + " |")
    if args.output:
        args.output.write_text(json.dumps({
            "command": " ".join(["python", "benchmarks/claims_table.py"]
                                + list(argv or sys.argv[1:])),
            "budget": "1200 steps x 8 fresh scenes at 128x256 per row (configs/real/claims.yaml)",
            "note": "real pairs are validation data here", "teacher": teacher,
            "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
