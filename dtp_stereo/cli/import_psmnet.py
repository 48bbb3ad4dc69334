"""``dtp-stereo import-psmnet``: convert a public PSMNet checkpoint to the dtp_stereo format.

The published PSMNet files (e.g. ``pretrained_sceneflow_new.tar``) are ``torch.save``d dicts with
the weights under ``"state_dict"`` (keys prefixed ``module.``). They are read with
``weights_only=True``: a file that carries pickled code is refused.
"""

import argparse
from pathlib import Path

PROG = "dtp-stereo import-psmnet"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dtp-stereo import-psmnet``."""
    parser.add_argument("public", type=Path, help="public PSMNet checkpoint (.tar/.pth)")
    parser.add_argument("output", type=Path, help="dtp_stereo checkpoint to write (.pt)")
    parser.add_argument("--max-disparity", type=int, default=192,
                        help="disparity range the weights were trained for, pixels (default 192)")


def import_psmnet(public: Path, output: Path, max_disparity: int = 192) -> Path:
    """Convert ``public`` into a dtp_stereo checkpoint at ``output``.

    Raises:
        CheckpointError: the public file is unreadable, carries code, or its weights do not fit
            the published PSMNet architecture (the message names the file).
    """
    from dtp_stereo.checkpoint import (CheckpointError, read_torch_file, save_checkpoint,
                                       state_dict_problems)
    from dtp_stereo.models import build_model
    from dtp_stereo.models.psmnet import convert_public_psmnet_state_dict

    obj = read_torch_file(public)
    try:
        state_dict = convert_public_psmnet_state_dict(obj)
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {public}: not a public PSMNet checkpoint: "
                              f"{exc}") from None
    model = build_model("psmnet", max_disparity=int(max_disparity))
    problems = state_dict_problems(model, state_dict)
    if problems:
        raise CheckpointError(f"checkpoint {public}: weights do not fit PSMNet: "
                              f"{'; '.join(problems)}")
    model.load_state_dict(state_dict, strict=True)
    extra = {k: v for k, v in obj.items() if k != "state_dict" and isinstance(v, (int, float))}
    provenance = {"data": "public PSMNet release", "parent": str(public),
                  "metrics": {}, "source_fields": extra}
    return save_checkpoint(output, model, model_name="psmnet", provenance=provenance)


def run(args: argparse.Namespace) -> int:
    """Run ``dtp-stereo import-psmnet``; returns the exit code."""
    from dtp_stereo.checkpoint import CheckpointError
    from dtp_stereo.cli.infer import fail

    if args.max_disparity < 4 or args.max_disparity % 4:
        return fail(PROG, f"--max-disparity must be a positive multiple of 4, "
                          f"got {args.max_disparity}", 2)
    try:
        path = import_psmnet(args.public, args.output, args.max_disparity)
    except CheckpointError as exc:
        return fail(PROG, str(exc))
    print(f"wrote {path} (psmnet, max disparity {args.max_disparity} px)")
    return 0
