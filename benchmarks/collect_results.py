"""Collect the eval results of the CPU-scale experiments into one JSON for docs/results.md.

Reads ``<run>/eval/results.json`` (written by ``dtp-train ... --stages ...,eval``) of every run
named below and writes one row per (run, stage) model plus the SGBM baseline on the same test
split. Metrics are per-image averages over the held-out synthetic test split; latency is the
median batch-1 CPU forward time measured by the eval stage.

Usage:
    python benchmarks/collect_results.py --out docs/results/dtp_claims.json
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

# (label, run folder, stage, what the row answers)
ROWS = (
    ("teacher_gwcnet", "runs/dsn_cpu", "teacher", "teacher (GwcNet, 3D), ground truth"),
    ("dtpnet_gt_only", "runs/dtp_gt", "distill", "claim 1: DTPnet on ground truth only"),
    ("dtpnet_teacher_l1", "runs/dtp_cpu", "distill", "claim 1/2: DTPnet from teacher only, L1"),
    ("dtpnet_gt_teacher", "runs/dtp_both", "distill", "claim 1: DTPnet from GT + teacher (L1)"),
    ("dtpnet_teacher_kl", "runs/dtp_kl", "distill", "claim 2: DTPnet from teacher only, KL"),
    ("dtpnet_l1_pruned", "runs/dtp_cpu", "prune", "claim 4: L1 student after pruning (50 %)"),
    ("dtpnet_l1_pruned_finetuned", "runs/dtp_cpu", "finetune",
     "claim 4: L1 student pruned + fine-tuned"),
    ("dtpnet_kl_pruned", "runs/dtp_kl", "prune", "claim 4: KL student after pruning (50 %)"),
    ("dtpnet_kl_pruned_finetuned", "runs/dtp_kl", "finetune",
     "claim 4: KL student pruned + fine-tuned (shipped)"),
    ("gwc_student_feature_kd", "runs/dsn_cpu", "distill",
     "claim 3: aligned 3D student, feature + volume + logits KD"),
    ("gwc_student_logits_kd", "runs/dsn_logits", "distill",
     "claim 3: aligned 3D student, logits KD only"),
    ("gwc_student_gt_only", "runs/dsn_gt", "distill", "claim 3: aligned 3D student, GT only"),
    ("dtpnet_pure_c2d_attempt", "runs/dtp_c2d_attempt", "distill",
     "negative: DTPnet without correlation planes (paper's pure c2d), 450 steps"),
    ("psmnet_teacher_attempt", "runs/psmnet_teacher_attempt", "teacher",
     "negative: narrow PSMNet teacher, stopped at step 450 of 700"),
)
KEYS = ("epe", "d1", "bad_1", "bad_2", "bad_3", "params", "macs", "latency_ms", "n_images")


def _load(path: Path) -> Optional[Dict[str, Any]]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def collect(root: Path, rows: Sequence[tuple] = ROWS) -> Dict[str, Any]:
    """One dict per row (missing runs are listed under ``missing``), plus SGBM."""
    out: Dict[str, Any] = {"rows": [], "missing": [], "sgbm": None, "test_split": None}
    for label, run, stage, question in rows:
        res = _load(root / run / "eval" / "results.json")
        entry = (res or {}).get("models", {}).get(stage)
        if entry is None:
            out["missing"].append(f"{label}: {run}/eval/results.json has no '{stage}' model")
            continue
        row: Dict[str, Any] = {"label": label, "run": run, "stage": stage, "question": question}
        row.update({k: entry.get(k) for k in KEYS})
        row["model_name"] = entry.get("model_name")
        out["rows"].append(row)
        if out["sgbm"] is None and res.get("sgbm"):
            out["sgbm"] = {k: res["sgbm"].get(k) for k in KEYS + ("density",)}
            out["test_split"] = {k: res.get(k) for k in ("dataset", "height", "width", "samples")}
    return out


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=".", help="folder holding runs/ (default: current)")
    p.add_argument("--out", required=True, help="output JSON path")
    args = p.parse_args(argv)
    result = collect(Path(args.root))
    result["command"] = " ".join(["python", "benchmarks/collect_results.py"] + sys.argv[1:])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    for row in result["rows"]:
        print(f"{row['label']:<26} EPE {row['epe']:.3f}  D1 {row['d1']:.2f}  "
              f"bad-2 {row['bad_2']:.2f}  params {row['params']}")
    if result["sgbm"]:
        s = result["sgbm"]
        print(f"{'sgbm':<26} EPE {s['epe']:.3f}  D1 {s['d1']:.2f}  bad-2 {s['bad_2']:.2f}")
    for miss in result["missing"]:
        print("missing:", miss, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
