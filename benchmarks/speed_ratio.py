"""Teacher-vs-student speed-up in interleaved rounds (one process), for the ratio targets.

The side-by-side table (``dtp-stereo bench``) runs each configuration in its own subprocess,
minutes apart; on a shared machine the same configuration can differ by tens of percent between
runs, and so can a ratio of two of them. Here each round times the teacher once and the student
``--per-round`` times, so both see the same machine state; the report is the median ratio over
rounds with its range (:func:`dtp_stereo.tools.bench.interleaved_ratio`).

Usage (repository root)::

    .venv/bin/python benchmarks/speed_ratio.py --reference psmnet --models dtpnet_fast \\
        --size 256x512 --backend torch --rounds 5 [--channels-last --compile] \\
        --output docs/results/speed-ratio-torch.json
"""

import argparse
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    from dtp_stereo.tools.bench import (interleaved_ratio, parse_model_spec, parse_size,
                                        write_report)

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", default="psmnet", help="the teacher (alias or LABEL=PATH)")
    p.add_argument("--models", default="dtpnet_fast",
                   help="comma-separated students (aliases or LABEL=PATH[:head=fast])")
    p.add_argument("--size", default="256x512", help="HxW pixels")
    p.add_argument("--backend", default="torch", choices=("torch", "onnxruntime"))
    p.add_argument("--threads", type=int, default=2, help="CPU threads")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds")
    p.add_argument("--per-round", type=int, default=5, help="student runs per round")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs of each model first")
    p.add_argument("--channels-last", action="store_true", help="torch: channels-last")
    p.add_argument("--compile", action="store_true", help="torch: torch.compile both models")
    p.add_argument("--output", default=None, help="write JSON here")
    args = p.parse_args(argv)
    height, width = parse_size(args.size)
    reference = parse_model_spec(args.reference)
    results = []
    for text in filter(None, (t.strip() for t in args.models.split(","))):
        res = interleaved_ratio(reference, parse_model_spec(text), height, width,
                                backend=args.backend, rounds=args.rounds,
                                per_round=args.per_round, warmup=args.warmup,
                                threads=args.threads, channels_last=args.channels_last,
                                compile=args.compile)
        results.append(res)
        print(f"{res['model']} vs {res['reference']} {res['size']} {res['backend']}: "
              f"{res['ratio']:.1f}x (rounds {res['ratio_min']:.1f}-{res['ratio_max']:.1f}; "
              f"{res['reference_ms']:.0f} ms vs {res['model_ms']:.1f} ms)", flush=True)
    if args.output:
        write_report(args.output, {"results": results}, threads=args.threads,
                     script="benchmarks/speed_ratio.py", argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
