"""Copy a trained checkpoint into models/ (installed with the package) with its metrics.

Loads the checkpoint (weights_only), re-saves it under ``models/NAME.pt`` with provenance that
names the run, the eval results and the command, and writes ``models/NAME.json`` (config,
parameters, MACs at the eval size, test-split metrics).

Usage:
    python scripts/ship_model.py runs/dtp_kl/finetune/best.pt \
        --eval runs/dtp_kl/eval/results.json --stage finetune --name dtpnet_pruned
"""

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

from dtp_stereo.checkpoint import load_model, save_checkpoint
from dtp_stereo.complexity import count_macs, count_parameters


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="trained dtp_stereo checkpoint")
    p.add_argument("--eval", required=True, help="the run's eval/results.json")
    p.add_argument("--stage", required=True, help="the entry of results.json for this model")
    p.add_argument("--name", required=True, help="file stem under models/")
    p.add_argument("--out-dir", default="models", help="output folder (default models/)")
    args = p.parse_args(argv)

    model, ckpt = load_model(args.checkpoint)
    results = json.loads(Path(args.eval).read_text())
    metrics = results["models"][args.stage]
    h, w = int(results["height"]), int(results["width"])
    command = " ".join(["python", "scripts/ship_model.py"] + list(argv or sys.argv[1:]))
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
    (out_dir / f"{args.name}.json").write_text(json.dumps(card, indent=2, default=str))
    print(f"wrote {out_pt} and {out_dir / (args.name + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
