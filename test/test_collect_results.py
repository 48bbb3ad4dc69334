"""benchmarks/collect_results.py on fake eval outputs."""

import json
from pathlib import Path

from benchmarks import collect_results


def _write(root: Path, run: str, models: dict, sgbm=None) -> None:
    path = root / run / "eval" / "results.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"dataset": {"name": "synthetic"}, "height": 8, "width": 16,
                                "samples": 2, "models": models, "sgbm": sgbm}))


def test_collect_rows_sgbm_and_missing(tmp_path):
    metrics = {"epe": 1.5, "d1": 4.0, "bad_1": 9.0, "bad_2": 6.0, "bad_3": 4.0, "params": 10,
               "macs": 100, "latency_ms": 3.0, "n_images": 2, "model_name": "dtpnet"}
    _write(tmp_path, "runs/a", {"distill": metrics, "prune": dict(metrics, params=5)},
           sgbm=dict(metrics, epe=7.0, density=80.0))
    rows = (("x", "runs/a", "distill", "q1"), ("y", "runs/a", "prune", "q2"),
            ("z", "runs/b", "distill", "q3"))
    out = collect_results.collect(tmp_path, rows)
    assert [r["label"] for r in out["rows"]] == ["x", "y"]
    assert out["rows"][1]["params"] == 5 and out["rows"][0]["epe"] == 1.5
    assert out["sgbm"]["epe"] == 7.0 and out["sgbm"]["density"] == 80.0
    assert out["test_split"]["height"] == 8
    assert len(out["missing"]) == 1 and "runs/b" in out["missing"][0]
