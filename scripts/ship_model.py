"""Copy a trained checkpoint into models/ (installed with the package) with its metrics.

Loads the checkpoint (weights_only), re-saves it under ``models/NAME.pt`` with provenance that
names the run, the eval results and the command, and writes ``models/NAME.json`` (config,
parameters, MACs at the eval size, test-split metrics).

Optional card sections: ``--speed`` (a ``benchmarks/sgbm_speed.py`` JSON), ``--stage-dirs``
(the training stage folders this model came through: steps, batch, samples, pixels and crop size
from each stage's config, wall-clock hours from its TensorBoard events; ``--inherit-training``
puts a parent card's stages first; ``--steps-used`` counts a stage's samples to the step whose
weights went on) and ``--real``
(``dtp-stereo eval --with-sgbm`` JSONs on real pairs: this model's EPE / bad-2 per pair next to
SGBM's, same run). ``--refresh`` replaces only the speed / real-pair / training sections of an
existing card (after a re-measurement or a corrected lineage; ``--steps-used`` alone recounts the
card's own stages), leaving the checkpoint as it is.

Usage:
    python scripts/ship_model.py runs/dtp_kl/finetune/best.pt \
        --eval runs/dtp_kl/eval/results.json --stage finetune --name dtpnet_pruned
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from dtp_stereo.checkpoint import load_model, save_checkpoint
from dtp_stereo.complexity import count_macs, count_parameters


def _add_pixels_seen(stage: Dict[str, Any]) -> None:
    """``pixels_seen`` = samples seen × crop height × width, where both are known."""
    if stage.get("samples_seen") and stage.get("crop"):
        h, w = stage["crop"]
        stage["pixels_seen"] = int(stage["samples_seen"]) * int(h) * int(w)


def stage_summary(stage_dir: Path, config: Optional[Path] = None) -> Dict[str, Any]:
    """Steps, batch, samples, pixels, crop and wall-clock hours of one finished (or cut) stage.

    ``stage_dir`` is a run's stage folder (``runs/<run>/<stage>``, config in ``../config.yaml``,
    wall-clock hours from its TensorBoard events) or a committed copy such as
    ``models/stages/real_pruned_s2`` with ``config`` naming its YAML: steps then come from its
    metrics.csv and, without TensorBoard events, the hours are estimated from the logged
    samples/s (``wall_hours_estimated``: the pauses between steps are not in it)."""
    import yaml

    summary: Dict[str, Any] = {"stage_dir": str(stage_dir)}
    cfg_path = config or stage_dir.parent / "config.yaml"
    if cfg_path.exists():
        cfg = yaml.safe_load(cfg_path.read_text())
        name = stage_dir.name if stage_dir.name in cfg else "distill"
        stage = cfg.get(name, {})
        optim = stage.get("optim", {})
        train = cfg.get("data", {}).get("train", {})
        summary.update(config=str(cfg_path), planned_steps=optim.get("steps"),
                       batch_size=optim.get("batch_size"),
                       lr=optim.get("lr"), data={k: train.get(k) for k in
                                                 ("name", "fresh", "height", "width",
                                                  "max_disparity", "seed")},
                       crop=(train.get("augment") or {}).get("crop_size"),
                       supervision=stage.get("loss", {}).get("supervision"))
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        if not (stage_dir / "tb").is_dir():  # a committed copy keeps no events
            raise FileNotFoundError(stage_dir / "tb")
        acc = EventAccumulator(str(stage_dir / "tb"))
        acc.Reload()
        loss = acc.Scalars("train/loss")
        summary["steps_done"] = int(loss[-1].step)
        summary["wall_hours"] = round((loss[-1].wall_time - loss[0].wall_time) / 3600.0, 3)
    except (ImportError, KeyError, IndexError, OSError):
        from training.plots import read_metrics

        series = read_metrics(stage_dir / "metrics.csv") if \
            (stage_dir / "metrics.csv").is_file() else {}
        train = [pt for (split, _), pts in series.items() if split == "train" for pt in pts]
        if train:
            summary["steps_done"] = max(step for step, _ in train)
            rates = sorted(v for _, v in series.get(("train", "samples_per_s"), []))
            if rates and summary.get("batch_size"):
                median = rates[len(rates) // 2]
                summary["wall_hours_estimated"] = round(
                    summary["steps_done"] * int(summary["batch_size"]) / median / 3600.0, 3)
    if summary.get("batch_size") and "steps_done" in summary:
        summary["samples_seen"] = summary["steps_done"] * int(summary["batch_size"])
        _add_pixels_seen(summary)
    return summary


def parse_steps_used(specs: List[str]) -> Dict[str, int]:
    """``STAGE_DIR=STEP`` specs (the stage's ``stage_dir`` as the card names it) -> {dir: step}.

    Raises:
        ValueError: a spec without ``=`` or whose step is not a positive integer.
    """
    out: Dict[str, int] = {}
    for spec in specs:
        folder, sep, step = spec.rpartition("=")
        if not sep or not folder or not step.isdigit() or int(step) < 1:
            raise ValueError(f"--steps-used {spec!r}: expected STAGE_DIR=STEP with STEP >= 1")
        out[folder] = int(step)
    return out


def apply_steps_used(stages: List[Dict[str, Any]], used: Dict[str, int]) -> None:
    """Count samples and pixels of the named stages up to the step whose weights went on (a
    best.pt before the stage's last step, which the next stage or the shipped file continued
    from); ``steps_done`` and the hours keep what the stage ran.

    Raises:
        ValueError: a name that matches no stage, or a step beyond the stage's ``steps_done``.
    """
    by_dir = {str(s.get("stage_dir")): s for s in stages}
    for folder, step in used.items():
        stage = by_dir.get(folder)
        if stage is None:
            raise ValueError(f"--steps-used: no training stage {folder!r} (stages: "
                             f"{', '.join(by_dir)})")
        done = stage.get("steps_done")
        if done is not None and step > int(done):
            raise ValueError(f"--steps-used {folder}={step}: the stage ran {done} steps")
        stage["steps_used"] = step
        if stage.get("batch_size"):
            stage["samples_seen"] = step * int(stage["batch_size"])
        elif done and stage.get("samples_seen"):
            stage["samples_seen"] = int(stage["samples_seen"]) * step // int(done)
        stage.pop("pixels_seen", None)
        _add_pixels_seen(stage)


def training_totals(stages: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The card's training sections for ``stages``: the list, totals of hours (measured or
    estimated), CPU core-hours (2 busy cores) and pixels seen."""
    for s in stages:  # older cards have no pixel counts
        if "pixels_seen" not in s:
            _add_pixels_seen(s)
    hours = sum(s.get("wall_hours") or s.get("wall_hours_estimated") or 0.0 for s in stages)
    return {"training": stages, "training_wall_hours": round(hours, 3),
            "training_cpu_core_hours": round(2 * hours, 3),
            "training_pixels_seen": sum(int(s.get("pixels_seen") or 0) for s in stages)}


def training_summary(specs: List[str], inherit: Optional[str],
                     steps_used: Optional[Dict[str, int]] = None) -> Dict[str, Any]:
    """The card's training sections: the ``inherit`` card's stages (the parent's lineage) then
    one :func:`stage_summary` per spec ``DIR`` or ``DIR=CONFIG.yaml``, with ``steps_used``
    (:func:`apply_steps_used`) applied; see :func:`training_totals`."""
    stages: List[Dict[str, Any]] = []
    if inherit:
        stages += list(json.loads(Path(inherit).read_text()).get("training", []))
    for spec in specs:
        folder, sep, config = spec.rpartition("=")
        if not (sep and config.endswith((".yaml", ".yml"))):
            folder, config = spec, ""
        if not Path(folder).is_dir():
            raise ValueError(f"--stage-dirs {spec!r}: no folder {folder}")
        if config and not Path(config).is_file():
            raise ValueError(f"--stage-dirs {spec!r}: no config {config}")
        stages.append(stage_summary(Path(folder), Path(config) if config else None))
    apply_steps_used(stages, steps_used or {})
    return training_totals(stages)


def real_summary(paths: List[str]) -> List[Dict[str, Any]]:
    """Per-pair EPE / bad-2 of each eval JSON's own model (under its ``label``, ``student``
    unless ``dtp-stereo eval --label`` named it) and of SGBM (raw, filled)."""
    rows = []
    for path in paths:
        rep = json.loads(Path(path).read_text())
        label = rep.get("label", "student")
        methods = {label: rep, **rep.get("comparison", {})}
        for i, pair in enumerate(rep["per_image"]):
            row = {"pair": pair["name"], "scale": rep["dataset"].get("scale"),
                   "size": pair.get("size"), "report": str(path)}
            for name in (label, "sgbm_raw", "sgbm_filled"):
                if name in methods:
                    p = methods[name]["per_image"][i]
                    row[name] = {"epe": p["epe"], "bad_2": p["bad_2"]}
            rows.append(row)
    return rows


def _command(argv: Optional[List[str]]) -> str:
    """The command line that ran this script (for the card's provenance)."""
    return " ".join(["python", "scripts/ship_model.py"] + list(argv or sys.argv[1:]))


def speed_summary(path: str) -> Dict[str, Any]:
    """The card's speed section from a ``benchmarks/sgbm_speed.py`` JSON."""
    sp = json.loads(Path(path).read_text())
    return {"size": sp["size"], "backend": sp["backend"],
            "threads": sp.get("host", {}).get("threads"), "ms_per_frame": sp["student_ms"],
            "sgbm_ms_same_rounds": sp["sgbm_ms"], "ratio_to_sgbm": sp["ratio_student_over_sgbm"],
            "report": path}


def refresh_card(card_path: Path, args: argparse.Namespace, argv: Optional[List[str]]) -> int:
    """Replace the speed / real-pair / training sections of an existing card; record the
    command."""
    if not card_path.is_file():
        print(f"ship_model.py: no card {card_path} to refresh", file=sys.stderr)
        return 2
    if not (args.speed or args.real or args.stage_dirs or args.inherit_training
            or args.steps_used):
        print("ship_model.py: --refresh needs --speed, --real, --stage-dirs, "
              "--inherit-training or --steps-used", file=sys.stderr)
        return 2
    card = json.loads(card_path.read_text())
    if args.speed:
        card["speed"] = speed_summary(args.speed)
    if args.real:
        card["real_pairs"] = real_summary(args.real)
    try:
        used = parse_steps_used(args.steps_used)
        if args.stage_dirs or args.inherit_training:  # a new lineage replaces the old one
            card.update(training_summary(args.stage_dirs, args.inherit_training, used))
        elif used:  # the card's own stages, counted to the steps that went on
            stages = list(card.get("training", []))
            apply_steps_used(stages, used)
            card.update(training_totals(stages))
    except ValueError as exc:
        print(f"ship_model.py: {exc}", file=sys.stderr)
        return 2
    command = _command(argv)
    card.setdefault("refreshed_by", []).append(command)
    card_path.write_text(json.dumps(card, indent=2, default=str))
    print(f"refreshed {card_path}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="trained dtp_stereo checkpoint")
    p.add_argument("--eval", default=None, help="the run's eval/results.json (not with --refresh)")
    p.add_argument("--stage", default=None,
                   help="the entry of results.json for this model (not with --refresh)")
    p.add_argument("--name", required=True, help="file stem under models/")
    p.add_argument("--out-dir", default="models", help="output folder (default models/)")
    p.add_argument("--stage-dirs", nargs="*", default=[],
                   help="training stage folders this model came through (card: training): "
                        "DIR (a run's stage folder) or DIR=CONFIG.yaml (a committed copy)")
    p.add_argument("--steps-used", nargs="*", default=[],
                   help="STAGE_DIR=STEP: the weights that went on from that stage (inherited or "
                        "listed) were step STEP's, a best.pt before its last step; its samples "
                        "and pixels count to there, its hours stay whole")
    p.add_argument("--inherit-training", default=None,
                   help="a card whose training stages come first (the parent's lineage)")
    p.add_argument("--real", nargs="*", default=[],
                   help="dtp-stereo eval --with-sgbm JSONs on real pairs (card: real_pairs)")
    p.add_argument("--speed", default=None,
                   help="benchmarks/sgbm_speed.py JSON of this model (card: speed)")
    p.add_argument("--description", default=None, help="one-line description for the card")
    p.add_argument("--refresh", action="store_true",
                   help="only replace the --speed / --real / training sections of the card "
                        "models/NAME.json (the checkpoint and the rest of the card stay)")
    args = p.parse_args(argv)
    if args.refresh:
        return refresh_card(Path(args.out_dir) / f"{args.name}.json", args, argv)
    if not (args.eval and args.stage):
        p.error("--eval and --stage are required (unless --refresh)")

    model, ckpt = load_model(args.checkpoint)
    results = json.loads(Path(args.eval).read_text())
    metrics = results["models"][args.stage]
    h, w = int(results["height"]), int(results["width"])
    command = _command(argv)
    provenance = dict(ckpt.provenance or {})
    provenance.update(source_checkpoint=str(args.checkpoint), eval_results=str(args.eval),
                      test_metrics={k: metrics.get(k) for k in ("epe", "d1", "bad_2", "bad_3")},
                      test_split=results.get("dataset"), ship_command=command)
    out_dir = Path(args.out_dir)
    out_pt = save_checkpoint(out_dir / f"{args.name}.pt", model, model_name=ckpt.model_name,
                             provenance=provenance)
    card = {
        "name": args.name, "model_name": ckpt.model_name, "model_config": ckpt.model_config,
        "max_disparity": ckpt.max_disparity, "parameters": count_parameters(model),
        "macs_conv_only": count_macs(model, h, w), "macs_size": [h, w],
        "test_metrics": provenance["test_metrics"], "test_split": results.get("dataset"),
        "test_images": results.get("samples"), "sgbm_same_split": results.get("sgbm"),
        "source_checkpoint": str(args.checkpoint), "command": command,
    }
    if args.description:
        card["description"] = args.description
    if args.stage_dirs or args.inherit_training:
        try:
            card.update(training_summary(args.stage_dirs, args.inherit_training,
                                         parse_steps_used(args.steps_used)))
        except ValueError as exc:
            p.error(str(exc))
    if args.real:
        card["real_pairs"] = real_summary(args.real)
    if args.speed:
        card["speed"] = speed_summary(args.speed)
    (out_dir / f"{args.name}.json").write_text(json.dumps(card, indent=2, default=str))
    print(f"wrote {out_pt} and {out_dir / (args.name + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
