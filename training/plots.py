"""Learning curves from ``metrics.csv`` and an EPE-vs-latency Pareto plot (matplotlib, Agg)."""

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_metrics(path: Path) -> Dict[Tuple[str, str], List[Tuple[int, float]]]:
    """``metrics.csv`` as ``{(split, name): [(step, value), ...]}``."""
    series: Dict[Tuple[str, str], List[Tuple[int, float]]] = defaultdict(list)
    with Path(path).open(newline="") as fh:
        for row in csv.DictReader(fh):
            series[(row["split"], row["name"])].append((int(row["step"]), float(row["value"])))
    return dict(series)


def plot_learning_curves(run_dir: Path, out_path: Path,
                         stages: Sequence[str] = ("teacher", "distill", "finetune")
                         ) -> Optional[Path]:
    """Train loss (log scale) and validation EPE per stage, one column per stage.

    Returns:
        ``out_path``, or ``None`` when no stage has a ``metrics.csv``.
    """
    found = [(s, Path(run_dir) / s / "metrics.csv") for s in stages]
    found = [(s, p) for s, p in found if p.exists()]
    if not found:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(2, len(found), figsize=(4 * len(found), 6), squeeze=False)
    for col, (stage, path) in enumerate(found):
        series = read_metrics(path)
        ax = axes[0][col]
        for (split, name), pts in sorted(series.items()):
            if split == "train" and name.startswith("loss"):
                ax.plot([p[0] for p in pts], [max(p[1], 1e-12) for p in pts], label=name)
        ax.set_yscale("log")
        ax.set_title(f"{stage}: training loss")
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
        ax = axes[1][col]
        pts = series.get(("val", "epe"), [])
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o")
        ax.set_title(f"{stage}: validation EPE (px)")
        ax.set_xlabel("step")
    return _save(fig, out_path)


def _save(fig, out_path) -> Path:
    """Lay out, write ``out_path`` as PNG (parents created) and close the figure."""
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=100)
    _pyplot().close(fig)
    return out_path


def pareto_points(results: Sequence[Dict]) -> List[Tuple[str, float, float]]:
    """``(label, latency_ms, epe)`` of every model (and SGBM) in eval ``results.json`` dicts."""
    points = []
    for res in results:
        prefix = res.get("label", "")
        for name, entry in res.get("models", {}).items():
            if entry.get("latency_ms") is not None and entry.get("epe") is not None:
                points.append((f"{prefix}{name}", float(entry["latency_ms"]),
                               float(entry["epe"])))
        sgbm = res.get("sgbm")
        if sgbm and sgbm.get("latency_ms") is not None:
            points.append((f"{prefix}sgbm", float(sgbm["latency_ms"]), float(sgbm["epe"])))
    return points


def pareto_front(points: Sequence[Tuple[str, float, float]]) -> List[Tuple[str, float, float]]:
    """Points not dominated in (lower latency, lower EPE), sorted by latency."""
    front = []
    for p in sorted(points, key=lambda q: (q[1], q[2])):
        if not front or p[2] < front[-1][2]:
            front.append(p)
    return front


def plot_pareto(results: Sequence[Dict], out_path: Path, title: str = "EPE vs latency"
                ) -> Optional[Path]:
    """Scatter of EPE (px) against latency (ms) with the Pareto front; ``None`` if no points."""
    points = pareto_points(results)
    if not points:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for label, lat, epe in points:
        ax.scatter(lat, epe)
        ax.annotate(label, (lat, epe), fontsize=8, xytext=(3, 3), textcoords="offset points")
    front = pareto_front(points)
    ax.plot([p[1] for p in front], [p[2] for p in front], "k--", lw=1, label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("latency per image (ms, log scale)")
    ax.set_ylabel("EPE (px)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, out_path)


def report(run_dirs: Sequence[Path], out_dir: Path) -> Dict[str, str]:
    """Learning curves per run and one Pareto plot over all runs' ``eval/results.json``.

    Returns:
        ``{plot name: path}`` of the PNG files written.
    """
    out_dir = Path(out_dir)
    written: Dict[str, str] = {}
    results = []
    for run in map(Path, run_dirs):
        curve = plot_learning_curves(run, out_dir / f"{run.name}_curves.png")
        if curve:
            written[f"{run.name}_curves"] = str(curve)
        res_path = run / "eval" / "results.json"
        if res_path.exists():
            res = json.loads(res_path.read_text())
            if len(run_dirs) > 1:
                res["label"] = f"{run.name}/"
            results.append(res)
    pareto = plot_pareto(results, out_dir / "pareto.png")
    if pareto:
        written["pareto"] = str(pareto)
    return written
