"""Post-training quantization of an exported student ONNX: static INT8 (QDQ) and FP16.

INT8: ``quant_pre_process`` (symbolic shape inference + ORT graph optimisation), then
``quantize_static`` in QDQ format with per-channel int8 weights and int8 activations calibrated
(MinMax by default) on synthetic stereo pairs. By default only convolutions (Conv,
ConvTranspose) are quantized: the softmax over disparities and the soft-argmax regression stay
float32, where int8 would round the sub-pixel disparity. MatMul is left out on purpose: the
soft-argmax is exported as one MatMul of the probabilities with the weights 0..D-1, and
quantizing it raised the EPE from 2.50 (convolutions only) to 2.55 px in a first run.

FP16: ``onnxconverter-common`` is not installed; ONNX Runtime ships the same converter as
``onnxruntime.transformers.float16``, used here with float32 inputs/outputs kept. FP16 ONNX is
for GPU execution providers (ONNX Runtime CPU runs most fp16 operators by casting back).

Both files keep the source's ``dtp_stereo.*`` metadata (plus ``dtp_stereo.precision``), so
:class:`dtp_stereo.backends.onnx_backend.OnnxRuntimeBackend` loads them like any export.
"""

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from dtp_stereo.onnx_metadata import OnnxMetadata, read_onnx_metadata, write_onnx_metadata
from dtp_stereo.preprocess import parse_size
from dtp_stereo.timing import time_calls

__all__ = ["SyntheticCalibrationReader", "onnx_input_size", "quantize_int8", "convert_fp16",
           "compare_onnx_models", "main"]

DEFAULT_OP_TYPES: Tuple[str, ...] = ("Conv", "ConvTranspose")


def onnx_input_size(onnx_path: str) -> Optional[Tuple[int, int]]:
    """Fixed (H, W) pixels of the graph's ``left`` input, else the ``input_size`` metadata."""
    import onnx

    model = onnx.load(onnx_path, load_external_data=False)
    for inp in model.graph.input:
        if inp.name == "left":
            dims = inp.type.tensor_type.shape.dim
            if len(dims) == 4 and all(d.HasField("dim_value") for d in dims[2:]):
                return int(dims[2].dim_value), int(dims[3].dim_value)
    return OnnxMetadata.from_props({p.key: p.value for p in model.metadata_props},
                                   onnx_path).input_size


def _write_metadata(onnx_path: str, meta: OnnxMetadata) -> None:
    import onnx

    onnx.save(write_onnx_metadata(onnx.load(onnx_path), meta), onnx_path)


def _synthetic_pairs(height: int, width: int, max_disparity: int, seed: int, split: str,
                     count: int) -> Iterator[Dict[str, Any]]:
    """Synthetic samples with ``left``/``right`` as 1×3×H×W float32 in [0, 1] added."""
    from dtp_stereo.data.synthetic import SyntheticStereo, split_seed

    data = SyntheticStereo(height, width, max_disparity, seed=split_seed(seed, split),
                           length=max(count, 1))
    for i in range(count):
        sample = data.sample(i)
        for key in ("left", "right"):
            img = sample[key].astype(np.float32) / np.float32(255.0)
            sample[key + "_hwc"] = img
            sample[key + "_nchw"] = np.ascontiguousarray(img.transpose(2, 0, 1)[None])
        yield sample


def _calibration_reader_base() -> type:
    from onnxruntime.quantization import CalibrationDataReader

    return CalibrationDataReader


class SyntheticCalibrationReader:
    """ONNX Runtime calibration reader over synthetic stereo pairs (``train`` split).

    Args:
        height, width: network input size, pixels.
        num_samples: calibration pairs.
        max_disparity: the model's disparity range, pixels (bounds the synthetic disparities).
        seed: base seed.
    """

    def __init__(self, height: int, width: int, num_samples: int, max_disparity: int = 192,
                 seed: int = 0) -> None:
        if num_samples < 1:
            raise ValueError(f"calibration needs at least one sample, got {num_samples}")
        self._feeds = [{"left": s["left_nchw"], "right": s["right_nchw"]}
                       for s in _synthetic_pairs(height, width, max_disparity, seed, "train",
                                                 num_samples)]
        self._index = 0

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        """The next ``{"left", "right"}`` feed, or None when exhausted."""
        if self._index >= len(self._feeds):
            return None
        self._index += 1
        return self._feeds[self._index - 1]

    def rewind(self) -> None:
        """Start again from the first sample."""
        self._index = 0


def _as_ort_reader(reader: SyntheticCalibrationReader) -> Any:
    """Wrap ``reader`` in a subclass of ORT's CalibrationDataReader (imported lazily)."""
    base = _calibration_reader_base()

    class _Reader(base):  # type: ignore[misc, valid-type]
        def get_next(self) -> Optional[Dict[str, np.ndarray]]:
            return reader.get_next()

        def rewind(self) -> None:
            reader.rewind()

    return _Reader()


def quantize_int8(onnx_in: str, onnx_out: str, calib_samples: int = 16, *,
                  input_size: Optional[Tuple[int, int]] = None, seed: int = 0,
                  per_channel: bool = True,
                  op_types: Optional[Sequence[str]] = DEFAULT_OP_TYPES,
                  calibrate_method: str = "minmax", preprocess: bool = True) -> str:
    """Static INT8 quantization (QDQ, per-channel weights) of an exported stereo ONNX.

    Args:
        onnx_in: float32 ONNX from ``dtp_stereo.export.export_onnx`` (inputs ``left``/``right``).
        onnx_out: where the int8 QDQ model is written.
        calib_samples: synthetic calibration pairs.
        input_size: (H, W) pixels of the calibration pairs; read from the graph/metadata when
            ``None`` (required for dynamic graphs without ``input_size`` metadata).
        seed: synthetic data seed (calibration uses the ``train`` split).
        per_channel: per-output-channel weight scales.
        op_types: operator types to quantize; ``None`` = every type ONNX Runtime supports.
        calibrate_method: ``"minmax"``, ``"entropy"`` or ``"percentile"``.
        preprocess: run ``quant_pre_process`` first (recommended).

    Returns:
        ``onnx_out``.

    Raises:
        FileNotFoundError: ``onnx_in`` does not exist.
        ValueError: no input size can be determined, or an unknown calibration method.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not os.path.isfile(onnx_in):
        raise FileNotFoundError(f"quantize_int8: ONNX file {onnx_in!r} does not exist")
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if calibrate_method not in methods:
        raise ValueError(f"quantize_int8: calibrate_method must be one of {sorted(methods)}, "
                         f"got {calibrate_method!r}")
    size = input_size or onnx_input_size(onnx_in)
    if size is None:
        raise ValueError(f"quantize_int8: {onnx_in} has a dynamic input size; pass input_size")
    meta = read_onnx_metadata(onnx_in)
    max_disp = int(meta.max_disparity or 192)
    reader = SyntheticCalibrationReader(size[0], size[1], calib_samples, max_disp, seed)
    os.makedirs(os.path.dirname(os.path.abspath(onnx_out)), exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dtp_quant_") as tmp:
        source = onnx_in
        if preprocess:
            source = os.path.join(tmp, "preprocessed.onnx")
            quant_pre_process(onnx_in, source, skip_symbolic_shape=False)
        quantize_static(source, onnx_out, _as_ort_reader(reader), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(op_types) if op_types else None,
                        per_channel=per_channel, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8, calibrate_method=methods[calibrate_method],
                        extra_options={"ActivationSymmetric": False,
                                       "WeightSymmetric": True})
    _write_metadata(onnx_out, dataclasses.replace(meta, precision="int8"))
    return onnx_out


def convert_fp16(onnx_in: str, onnx_out: str, keep_io_types: bool = True) -> str:
    """Cast an ONNX model's float32 weights and compute to float16 (float32 I/O kept).

    Uses ``onnxruntime.transformers.float16.convert_float_to_float16`` (the converter of
    onnxconverter-common, shipped with ONNX Runtime). Returns ``onnx_out``.
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    if not os.path.isfile(onnx_in):
        raise FileNotFoundError(f"convert_fp16: ONNX file {onnx_in!r} does not exist")
    model = convert_float_to_float16(onnx.load(onnx_in), keep_io_types=keep_io_types)
    os.makedirs(os.path.dirname(os.path.abspath(onnx_out)), exist_ok=True)
    onnx.save(model, onnx_out)
    _write_metadata(onnx_out, dataclasses.replace(read_onnx_metadata(onnx_in), precision="fp16"))
    return onnx_out


def compare_onnx_models(models: Dict[str, str], *, num_samples: int = 4, seed: int = 0,
                        threads: int = 2, repeats: int = 5, warmup: int = 1,
                        input_size: Optional[Tuple[int, int]] = None) -> Dict[str, Any]:
    """EPE/D1 on synthetic ``test`` pairs and ONNX Runtime CPU latency of each model.

    Args:
        models: label -> ONNX path (e.g. ``{"fp32": ..., "int8": ...}``); the first is the
            reference for ``max_abs_diff_px``.
        num_samples: synthetic test pairs (split ``test``, disjoint from calibration).
        seed: synthetic data seed.
        threads: ONNX Runtime intra-op threads.
        repeats, warmup: latency runs on the first test pair.
        input_size: (H, W) pixels; read from the first model when ``None``.

    Returns:
        ``{"input_size", "samples", "models": {label: {"epe", "d1", "latency_ms": {median,
        p90, mean, count}, "size_mb", "finite", "max_abs_diff_px", "mean_abs_diff_px"}}}``.

    Raises:
        ValueError: no models, ``repeats`` < 1, or no input size can be determined.
    """
    from dtp_stereo.backends.onnx_backend import OnnxRuntimeBackend
    from dtp_stereo.metrics import MetricAccumulator, valid_mask

    labels = list(models)
    if not labels:
        raise ValueError("compare_onnx_models: no models given")
    if repeats < 1:
        raise ValueError(f"compare_onnx_models: repeats must be >= 1, got {repeats}")
    size = input_size or onnx_input_size(models[labels[0]])
    if size is None:
        raise ValueError("compare_onnx_models: dynamic graph; pass input_size")
    backends = {k: OnnxRuntimeBackend(p, threads=threads) for k, p in models.items()}
    max_disp = backends[labels[0]].max_disparity
    samples = list(_synthetic_pairs(size[0], size[1], max_disp, seed, "test", num_samples))
    report: Dict[str, Any] = {"input_size": f"{size[0]}x{size[1]}", "samples": num_samples,
                              "threads": threads, "models": {}}
    preds: Dict[str, List[np.ndarray]] = {}
    for label, backend in backends.items():
        acc = MetricAccumulator()
        preds[label] = []
        for s in samples:
            disp = backend.infer(s["left_hwc"], s["right_hwc"]).disparity
            preds[label].append(disp)
            acc.update(disp, s["disparity"],
                       valid_mask(s["disparity"], max_disp, s.get("valid_noc")))
        metrics = acc.compute()
        first = samples[0]
        stats = time_calls(lambda b=backend: b.infer(first["left_hwc"], first["right_hwc"]),
                           repeats, warmup)
        diffs = [np.abs(p.astype(np.float64) - r)
                 for p, r in zip(preds[label], preds[labels[0]])]
        report["models"][label] = {
            "onnx": models[label], "size_mb": os.path.getsize(models[label]) / 2**20,
            "epe": metrics.get("epe"), "d1": metrics.get("d1"),
            "latency_ms": {"median": stats.p50, "p90": stats.p90, "mean": stats.mean,
                           "count": stats.count},
            "finite": bool(all(np.isfinite(p).all() for p in preds[label])),
            "max_abs_diff_px": float(max(d.max() for d in diffs)),
            "mean_abs_diff_px": float(np.mean([d.mean() for d in diffs]))}
    return report


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dtp-train quantize",
                                     description=__doc__.splitlines()[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--onnx", help="float32 ONNX exported by dtp-stereo export")
    src.add_argument("--checkpoint", help="dtp_stereo checkpoint; exported first (fixed size)")
    parser.add_argument("--size", type=parse_size, default=(256, 512),
                        help="HxW pixels for the export and calibration of dynamic graphs "
                             "(default 256x512; a fixed-size ONNX uses its own size)")
    parser.add_argument("--output", required=True, help="int8 ONNX file to write")
    parser.add_argument("--fp16-output", default=None, help="also write an fp16 ONNX here")
    parser.add_argument("--calib-samples", type=int, default=32,
                        help="synthetic calibration pairs (default 32)")
    parser.add_argument("--calibrate-method", default="minmax",
                        choices=("minmax", "entropy", "percentile"))
    parser.add_argument("--no-per-channel", action="store_true", help="per-tensor weight scales")
    parser.add_argument("--all-ops", action="store_true",
                        help="quantize every supported op "
                             "(default: Conv/ConvTranspose)")
    parser.add_argument("--seed", type=int, default=0, help="synthetic data seed")
    parser.add_argument("--compare", type=int, nargs="?", const=8, default=0, metavar="N",
                        help="compare fp32/int8(/fp16) EPE, D1, latency on N synthetic test "
                             "pairs (N default 8)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per model")
    parser.add_argument("--threads", type=int, default=2, help="ORT threads for the comparison")
    parser.add_argument("--json", default=None, metavar="OUT.json",
                        help="write the outputs (and the comparison) as JSON here")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``dtp-train quantize``: INT8 (and optionally FP16) from an ONNX file or a checkpoint.

    Returns the exit code: 0 on success, 1 when an input file is missing or unusable.
    """
    args = _parser().parse_args(argv)
    if args.calib_samples < 1:
        print("dtp-train quantize: --calib-samples must be >= 1", file=sys.stderr)
        return 2
    try:
        summary = _run(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"dtp-train quantize: {exc}", file=sys.stderr)
        return 1
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=2)
        print(f"wrote {args.json}")
    return 0


def _run(args: argparse.Namespace) -> Dict[str, Any]:
    """Quantize (and compare) as ``args`` says; returns the JSON summary."""
    if args.onnx and not os.path.isfile(args.onnx):
        raise FileNotFoundError(f"ONNX file {args.onnx!r} does not exist")
    with tempfile.TemporaryDirectory(prefix="dtp_quant_export_") as tmp:
        fp32 = args.onnx
        if args.checkpoint:
            from dtp_stereo.checkpoint import load_model
            from dtp_stereo.export import export_onnx

            model, _ = load_model(args.checkpoint)
            fp32 = export_onnx(model, os.path.join(tmp, "fp32.onnx"), *args.size)
        size = onnx_input_size(fp32) or args.size
        quantize_int8(fp32, args.output, args.calib_samples, input_size=size, seed=args.seed,
                      per_channel=not args.no_per_channel,
                      op_types=None if args.all_ops else DEFAULT_OP_TYPES,
                      calibrate_method=args.calibrate_method)
        print(f"wrote {args.output}")
        summary: Dict[str, Any] = {
            "source": args.onnx or args.checkpoint, "int8": args.output,
            "fp16": args.fp16_output, "input_size": f"{size[0]}x{size[1]}",
            "calib_samples": args.calib_samples, "calibrate_method": args.calibrate_method,
            "per_channel": not args.no_per_channel, "all_ops": args.all_ops,
            "comparison": None}
        models = {"fp32": fp32, "int8": args.output}
        if args.fp16_output:
            convert_fp16(fp32, args.fp16_output)
            models["fp16"] = args.fp16_output
            print(f"wrote {args.fp16_output}")
        if args.compare > 0:
            report = compare_onnx_models(models, num_samples=args.compare, seed=args.seed,
                                         threads=args.threads, repeats=args.repeats,
                                         input_size=size)
            if args.checkpoint:  # the temporary export does not outlive this call
                report["models"]["fp32"]["onnx"] = None
            for label, r in report["models"].items():
                print(f"{label}: EPE {r['epe']:.3f} px, D1 {r['d1']:.2f} %, ORT CPU median "
                      f"{r['latency_ms']['median']:.1f} ms, {r['size_mb']:.2f} MB, max |diff| "
                      f"vs fp32 {r['max_abs_diff_px']:.2f} px")
            summary["comparison"] = report
    return summary
