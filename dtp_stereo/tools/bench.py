"""Side-by-side benchmark of stereo models and backends (latency, memory, parameters, MACs).

Each configuration (model × input size × backend) is measured in a fresh Python subprocess, so
its peak resident memory (``VmHWM`` from ``/proc/self/status``) is its own and one run cannot warm
or fragment the next. The worker is this module run as
``python -m dtp_stereo.tools.bench --worker``.

Latency is the wall time of one ``StereoBackend.infer`` call (numpy pair in, numpy disparity
out, so host/device copies count), after warm-up, under ``torch.inference_mode`` for torch and
with ``ORT_ENABLE_ALL`` graph optimisation for ONNX Runtime. CUDA timings synchronise the device
(:func:`dtp_stereo.timing.timer`). MACs come from :func:`dtp_stereo.complexity.count_macs`, which
counts convolutions only (see :data:`MACS_COUNTER`).

Torch is imported lazily so the ONNX Runtime worker measures a process without torch in it.
"""

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from dtp_stereo.preprocess import parse_size

__all__ = ["MODEL_ALIASES", "BACKENDS", "MACS_COUNTER", "ModelSpec", "BenchJob",
           "parse_model_spec", "parse_size", "measure", "run_job", "run_benchmark", "add_ratios",
           "interleaved_ratio", "host_info", "write_report", "proc_status_mb"]

# alias -> (registered architecture, config overrides)
MODEL_ALIASES: Dict[str, Tuple[str, Dict[str, Any]]] = {
    "psmnet": ("psmnet", {}),
    "dtpnet": ("dtpnet", {"head": "full"}),
    "dtpnet_fast": ("dtpnet", {"head": "fast"}),
}
BACKENDS = ("torch", "torch-cuda", "onnxruntime", "onnxruntime-cuda", "tensorrt")
MACS_COUNTER = ("conv-only: multiply-accumulates of Conv, ConvTranspose and Linear layers at the "
                "benchmarked input size (dtp_stereo.complexity.count_macs); cost-volume "
                "construction, softmax and regression are not counted")


@dataclass(frozen=True)
class ModelSpec:
    """Which model to benchmark.

    Attributes:
        label: name in the report (unique within a run).
        name: registered architecture built with ``config`` (when ``checkpoint`` is None).
        config: keyword arguments for ``build_model`` (random weights: latency does not
            depend on weight values).
        checkpoint: dtp_stereo checkpoint to load instead (e.g. a pruned student); ``config``
            then holds model_config overrides that keep the weights (e.g. ``{"head": "fast"}``).
    """

    label: str
    name: Optional[str] = None
    config: Dict[str, Any] = field(default_factory=dict)
    checkpoint: Optional[str] = None


@dataclass(frozen=True)
class BenchJob:
    """One configuration to measure (JSON-able through ``dataclasses.asdict``).

    Attributes:
        model: the model.
        height, width: network input size, pixels (multiples of the model's size divisor).
        backend: one of :data:`BACKENDS`.
        threads: CPU intra-op threads.
        repeats: timed runs after warm-up.
        warmup: untimed runs first.
        time_cap_s: time allowed for warm-up plus timed runs; fewer repeats are done (and
            recorded) when one run is slow, and the job is skipped if one run exceeds it.
        channels_last, compile, fuse_bn: torch options (channels-last memory format,
            torch.compile, BatchNorm folded into the convolutions).
        fp16: half precision (torch CUDA autocast, TensorRT FP16); ignored on CPU.
        ort_optimization: ONNX Runtime graph optimisation level (disable, basic, extended, all).
        onnx: exported ONNX file for onnxruntime/tensorrt jobs.
        seed: seed of the random input pair.
    """

    model: ModelSpec
    height: int
    width: int
    backend: str = "torch"
    threads: int = 2
    repeats: int = 10
    warmup: int = 2
    time_cap_s: float = 300.0
    channels_last: bool = False
    compile: bool = False
    fuse_bn: bool = True
    ort_optimization: str = "all"
    fp16: bool = False
    onnx: Optional[str] = None
    seed: int = 0

    def backend_options(self, device: str = "cpu") -> Any:
        """The job's :class:`~dtp_stereo.backends.BackendOptions` (the options object that
        ``create_backend`` and the node use) on ``device``."""
        from dtp_stereo.backends import BackendOptions

        return BackendOptions(device=device, fp16=self.fp16 and device == "cuda",
                              threads=self.threads or None, channels_last=self.channels_last,
                              fuse_bn=self.fuse_bn, compile=self.compile)


def parse_model_spec(text: str) -> ModelSpec:
    """Parse a ``--models`` entry.

    Forms: an alias of :data:`MODEL_ALIASES` or a registered architecture name (default
    config); ``label=path.pt`` (a checkpoint), optionally followed by ``:key=value``
    model_config overrides (``pruned_fast=models/dtpnet_pruned.pt:head=fast``); a bare path to
    an existing ``.pt``/``.pth`` file (label = file stem).
    """
    text = text.strip()
    if "=" in text:
        label, rest = (s.strip() for s in text.split("=", 1))
        path, *items = rest.split(":")
        overrides: Dict[str, Any] = {}
        for item in items:
            key, sep, value = item.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise ValueError(f"model spec {text!r}: override {item!r} must be key=value")
            value = value.strip()
            overrides[key.strip()] = int(value) if value.lstrip("-").isdigit() else value
        if not label or not path:
            raise ValueError(f"model spec {text!r} must be LABEL=CHECKPOINT[:key=value...]")
        if not os.path.isfile(path):
            raise ValueError(f"model spec {text!r}: checkpoint {path!r} does not exist")
        return ModelSpec(label=label, checkpoint=path, config=overrides)
    if text.endswith((".pt", ".pth")) or os.sep in text:
        if not os.path.isfile(text):
            raise ValueError(f"model spec {text!r}: checkpoint file does not exist")
        return ModelSpec(label=os.path.splitext(os.path.basename(text))[0], checkpoint=text)
    name, config = MODEL_ALIASES.get(text, (text, {}))
    return ModelSpec(label=text, name=name, config=dict(config))


def build_spec_model(spec: ModelSpec):
    """Build (random weights) or load the model of ``spec``, eval mode, CPU."""
    if spec.checkpoint is not None:
        from dtp_stereo.checkpoint import load_model

        return load_model(spec.checkpoint, device="cpu", overrides=spec.config or None)[0]
    import dtp_stereo.models  # noqa: F401  (registers the architectures)
    from dtp_stereo.models._registry import build_model

    return build_model(spec.name, **spec.config).eval()


def proc_status_mb(key: str, pid: Union[int, str] = "self") -> Optional[float]:
    """A ``VmRSS``/``VmHWM`` line of ``/proc/<pid>/status`` in MiB (None off Linux or when the
    process is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _input_pair(height: int, width: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """A textured H×W×3 float32 pair in [0, 1]; the right view is the left shifted 8 px."""
    rng = np.random.default_rng(seed)
    left = rng.random((height, width, 3), dtype=np.float32)
    right = np.ascontiguousarray(np.roll(left, -8, axis=1))
    return left, right


def _complexity(model, height: int, width: int) -> Dict[str, Any]:
    from dtp_stereo.complexity import count_macs, count_parameters

    return {"params": int(count_parameters(model)),
            "macs": int(count_macs(model, height, width))}


def _make_backend(job: BenchJob, model) -> Tuple[Any, str]:
    """Create the backend of ``job``; returns it and the device string used for timing."""
    if job.backend in ("torch", "torch-cuda"):
        import torch

        from dtp_stereo.backends.torch_backend import TorchBackend

        device = "cuda" if job.backend == "torch-cuda" else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise _Unavailable("torch has no CUDA device here")
        opts = job.backend_options(device)
        backend = TorchBackend(model, device=opts.device, fp16=opts.fp16,
                               channels_last=opts.channels_last, threads=opts.threads,
                               fuse_bn=opts.fuse_bn, compile=opts.compile)
        return backend, device
    if job.onnx is None:
        raise ValueError(f"{job.backend} job for {job.model.label} has no ONNX file")
    if job.backend in ("onnxruntime", "onnxruntime-cuda"):
        from dtp_stereo.backends.onnx_backend import OnnxRuntimeBackend

        want = "cuda" if job.backend.endswith("cuda") else "cpu"
        backend = OnnxRuntimeBackend(job.onnx, device=want, threads=job.threads,
                                     optimization=job.ort_optimization)
        if backend.device != want:
            raise _Unavailable("onnxruntime has no CUDAExecutionProvider here")
        return backend, "cpu"  # ORT returns host arrays: run() is synchronous
    from dtp_stereo.backends import create_backend
    from dtp_stereo.backends.tensorrt_backend import tensorrt_available

    if not tensorrt_available():
        raise _Unavailable("TensorRT with a CUDA device is not available here")
    backend = create_backend("tensorrt", onnx=job.onnx, device="cuda", fp16=job.fp16,
                             input_size=(job.height, job.width))
    return backend, "cpu"


class _Unavailable(RuntimeError):
    """The job's backend cannot run on this machine (recorded, not an error)."""


def _timed_runs(job: BenchJob, backend, device: str) -> Dict[str, Any]:
    """Warm up and time ``backend.infer`` within ``job.time_cap_s``."""
    from dtp_stereo.timing import time_calls, timer

    left, right = _input_pair(job.height, job.width, job.seed)
    start = time.perf_counter()
    with timer(device) as first:
        out = backend.infer(left, right)
    if out.disparity.shape != (job.height, job.width):
        raise RuntimeError(f"{job.model.label}: disparity shape {out.disparity.shape} != "
                           f"input {job.height}x{job.width}")
    first_s = first.ms / 1000.0
    if first_s > job.time_cap_s:
        return {"status": "skipped", "first_run_ms": first.ms,
                "reason": f"one run took {first_s:.1f} s > time cap {job.time_cap_s:.0f} s"}
    warmup, repeats, note = max(job.warmup - 1, 0), job.repeats, None
    budget = job.time_cap_s - first_s
    if (warmup + repeats) * first_s > budget:
        warmup = min(warmup, 1)
        repeats = max(1, min(repeats, int(budget // first_s) - warmup))
        note = f"repeats reduced {job.repeats} -> {repeats} by the {job.time_cap_s:.0f} s cap"
    stats = time_calls(lambda: backend.infer(left, right), repeats, warmup, device)
    result: Dict[str, Any] = {
        "status": "ok", "first_run_ms": first.ms, "repeats_done": stats.count,
        "latency_ms": {"median": stats.p50, "p90": stats.p90, "mean": stats.mean,
                       "min": min(stats.samples), "max": stats.max},
        "finite_output": bool(np.isfinite(out.disparity).all()),
        "wall_s": time.perf_counter() - start}
    if note:
        result["note"] = note
    return result


def measure(job: BenchJob, complexity: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Measure one configuration in this process.

    Args:
        job: the configuration.
        complexity: ``{"params", "macs"}`` already counted (ONNX jobs, which build no torch
            model); counted from the torch model when ``None``.

    Returns:
        A JSON-able record: ``model``, ``size`` ("HxW"), ``backend``, ``status``
        ("ok", "skipped", "unavailable" or "error") with ``reason``, ``params``, ``macs``,
        ``latency_ms`` {median, p90, mean, min, max}, ``repeats_done``, ``peak_rss_mb``
        (process peak, MiB), ``peak_above_baseline_mb`` (peak minus the RSS after imports:
        weights + workspace + activations, MiB) and, on CUDA, ``cuda_peak_mb``.
    """
    record: Dict[str, Any] = {"model": job.model.label, "size": f"{job.height}x{job.width}",
                              "backend": job.backend, "threads": job.threads,
                              "fp16": job.fp16, "channels_last": job.channels_last,
                              "compile": job.compile, "fuse_bn": job.fuse_bn,
                              "ort_optimization": job.ort_optimization}
    baseline_mb = proc_status_mb("VmRSS")
    try:
        model = None
        if job.backend.startswith("torch"):
            model = build_spec_model(job.model)
            complexity = complexity or _complexity(model, job.height, job.width)
        record.update(complexity or {})
        backend, device = _make_backend(job, model)
        if device == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats()
        record.update(_timed_runs(job, backend, device))
        if device == "cuda":
            record["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    except _Unavailable as exc:
        record.update(status="unavailable", reason=str(exc))
    except Exception as exc:  # recorded per configuration; the benchmark goes on
        record.update(status="error", reason=f"{type(exc).__name__}: {exc}")
    peak = proc_status_mb("VmHWM")
    record["peak_rss_mb"] = peak
    record["peak_above_baseline_mb"] = (None if peak is None or baseline_mb is None
                                        else peak - baseline_mb)
    return record


def export_for_onnx(spec: ModelSpec, height: int, width: int, out_dir: str) -> Dict[str, Any]:
    """Export ``spec`` at a fixed H×W to ``out_dir``; returns ``{"onnx", "params", "macs"}``.

    An existing file is reused only if it has the same name, which carries the exporter's
    :data:`~dtp_stereo.export.EXPORT_REVISION` and a hash of the spec (a kept ``--onnx-dir`` never
    feeds an older graph or another checkpoint/config to the benchmark).
    """
    import hashlib

    from dtp_stereo.export import EXPORT_REVISION, export_onnx

    model = build_spec_model(spec)
    key = hashlib.sha256(json.dumps(asdict(spec), sort_keys=True).encode()).hexdigest()[:10]
    if spec.checkpoint:
        from dtp_stereo.backends.tensorrt_backend import file_sha256

        key += file_sha256(spec.checkpoint)[:10]
    path = os.path.join(out_dir,
                        f"{spec.label}_{height}x{width}_r{EXPORT_REVISION}_{key}.onnx")
    if not os.path.isfile(path):
        export_onnx(model, path, height, width, dynamic=False)
    return {"onnx": path, **_complexity(model, height, width)}


def _job_from_dict(data: Dict[str, Any]) -> BenchJob:
    data = dict(data)
    data["model"] = ModelSpec(**data["model"])
    return BenchJob(**data)


def _run_worker(task: Dict[str, Any], timeout_s: float) -> Dict[str, Any]:
    """Run one task (``{"kind": "measure"|"export", ...}``) in a fresh interpreter."""
    with tempfile.TemporaryDirectory(prefix="dtp_bench_") as tmp:
        task_path, result_path = os.path.join(tmp, "task.json"), os.path.join(tmp, "out.json")
        with open(task_path, "w", encoding="utf-8") as fh:
            json.dump(task, fh)
        env = dict(os.environ)
        threads = str(task.get("threads", 2))
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        cmd = [sys.executable, "-m", "dtp_stereo.tools.bench", "--worker", task_path, result_path]
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                                  timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            return {"status": "skipped",
                    "reason": f"worker exceeded {timeout_s:.0f} s (time cap plus setup)"}
        if proc.returncode != 0 or not os.path.isfile(result_path):
            tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
            return {"status": "error", "reason": f"worker exit code {proc.returncode}: {tail}"}
        with open(result_path, encoding="utf-8") as fh:
            return json.load(fh)


def run_job(job: BenchJob, *, isolate: bool = True, complexity: Optional[Dict] = None,
            setup_allowance_s: float = 600.0) -> Dict[str, Any]:
    """Measure ``job`` in a fresh subprocess (``isolate``) or in this process."""
    if not isolate:
        result = measure(job, complexity)
        result["isolated"] = False
        return result
    task = {"kind": "measure", "job": asdict(job), "complexity": complexity,
            "threads": job.threads}
    result = _run_worker(task, job.time_cap_s + setup_allowance_s)
    if "model" not in result:  # the worker died or timed out: fill in the identity
        result = {"model": job.model.label, "size": f"{job.height}x{job.width}",
                  "backend": job.backend, "threads": job.threads, **result}
    result["isolated"] = True
    return result


def run_benchmark(specs: Sequence[ModelSpec], sizes: Sequence[Tuple[int, int]],
                  backends: Sequence[str], *, threads: int = 2, repeats: int = 10,
                  warmup: int = 2, time_cap_s: float = 300.0,
                  model_repeats: Optional[Dict[str, int]] = None,
                  reference: Optional[str] = "psmnet", isolate: bool = True,
                  channels_last: bool = False, compile: bool = False, fp16: bool = False,
                  fuse_bn: bool = True, ort_optimization: str = "all",
                  onnx_dir: Optional[str] = None,
                  log=None) -> Dict[str, Any]:
    """Measure every model × size × backend and return the report.

    Args:
        specs: models (labels must be unique).
        sizes: (H, W) input sizes, pixels.
        backends: names from :data:`BACKENDS`.
        threads, repeats, warmup, time_cap_s, channels_last, compile, fp16, fuse_bn,
        ort_optimization: see
            :class:`BenchJob`; ``model_repeats`` overrides ``repeats`` per model label.
        reference: label of the model the ratios compare against (the teacher), measured in
            the same run; ``None`` for no ratios.
        isolate: one subprocess per configuration (default); in-process otherwise.
        onnx_dir: where ONNX exports go (a temporary directory when ``None``).
        log: callable taking a progress line (e.g. ``print``), or ``None``.

    Returns:
        ``{"schema", "host", "settings", "macs_counter", "reference", "results"}`` (JSON-able).
    """
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"model labels must be unique, got {labels}")
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise ValueError(f"unknown backend(s) {unknown}; choose from {', '.join(BACKENDS)}")
    model_repeats = dict(model_repeats or {})
    results: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="dtp_bench_onnx_") as tmp:
        out_dir = onnx_dir or tmp
        os.makedirs(out_dir, exist_ok=True)
        for spec in specs:
            for height, width in sizes:
                exported: Optional[Dict[str, Any]] = None
                for backend in backends:
                    job = BenchJob(model=spec, height=height, width=width, backend=backend,
                                   threads=threads, repeats=model_repeats.get(spec.label, repeats),
                                   warmup=warmup, time_cap_s=time_cap_s,
                                   channels_last=channels_last, compile=compile, fp16=fp16,
                                   fuse_bn=fuse_bn, ort_optimization=ort_optimization)
                    complexity = None
                    if not backend.startswith("torch"):
                        if exported is None:
                            exported = _export(spec, height, width, out_dir, isolate, threads)
                        if "onnx" not in exported:
                            results.append({"model": spec.label, "size": f"{height}x{width}",
                                            "backend": backend, **exported})
                            continue
                        job = BenchJob(**{**asdict(job), "model": spec,
                                          "onnx": exported["onnx"]})
                        complexity = {k: exported[k] for k in ("params", "macs")}
                    result = run_job(job, isolate=isolate, complexity=complexity)
                    results.append(result)
                    if log is not None:
                        med = result.get("latency_ms", {}).get("median", math.nan)
                        log(f"{spec.label} {height}x{width} {backend}: {result['status']} "
                            f"median {med:.1f} ms {result.get('reason', '')}".rstrip())
    add_ratios(results, reference)
    settings = {"threads": threads, "repeats": repeats, "model_repeats": model_repeats,
                "warmup": warmup, "time_cap_s": time_cap_s, "isolated": isolate,
                "channels_last": channels_last, "compile": compile, "fp16": fp16,
                "fuse_bn": fuse_bn, "ort_optimization": ort_optimization,
                "sizes": [f"{h}x{w}" for h, w in sizes], "backends": list(backends),
                "models": [asdict(s) for s in specs]}
    return {"schema": "dtp_stereo.bench/1", "host": host_info(threads), "settings": settings,
            "macs_counter": MACS_COUNTER, "reference": reference, "results": results}


def interleaved_ratio(reference: ModelSpec, model: ModelSpec, height: int, width: int, *,
                      backend: str = "torch", rounds: int = 5, per_round: int = 5,
                      warmup: int = 1, threads: int = 2, channels_last: bool = False,
                      compile: bool = False, fuse_bn: bool = True,
                      ort_optimization: str = "all",
                      onnx_dir: Optional[str] = None) -> Dict[str, Any]:
    """Speed-up of ``model`` over ``reference`` measured in interleaved rounds, one process.

    Each round times the reference once and the model ``per_round`` times (its median), so a
    slow spell of a shared machine hits both alike; the ratio of each round is reference ms /
    model ms. Separate runs of the side-by-side table can differ by tens of percent on a
    shared VM; this is the measurement for a ratio target.

    Args:
        reference, model: the two models (e.g. the PSMNet teacher and a student).
        height, width: input size, pixels.
        backend: ``torch`` or ``onnxruntime`` (CPU), the same for both.
        rounds, per_round, warmup: timed rounds, model runs per round, untimed runs of each
            first (more when ``compile`` is on: compilation happens in the first call).
        threads, channels_last, compile, fuse_bn, ort_optimization: as in :class:`BenchJob`.
        onnx_dir: where the ONNX exports go (a temporary directory when ``None``).

    Returns:
        ``{"reference", "model", "size", "backend", "rounds", "per_round", "ratio" (median over
        rounds), "ratio_min", "ratio_max", "reference_ms" / "model_ms" (medians over rounds),
        "round_ratios", "settings"}``.
    """
    import statistics

    from dtp_stereo.timing import time_calls

    if backend not in ("torch", "onnxruntime"):
        raise ValueError(f"interleaved_ratio runs on torch or onnxruntime, got {backend!r}")
    if rounds < 1 or per_round < 1 or warmup < 0:
        raise ValueError("rounds and per_round must be >= 1, warmup >= 0")
    left, right = _input_pair(height, width, 0)
    with tempfile.TemporaryDirectory(prefix="dtp_ratio_onnx_") as tmp:
        backends = []
        for spec in (reference, model):
            job = BenchJob(model=spec, height=height, width=width, backend=backend,
                           threads=threads, channels_last=channels_last, compile=compile,
                           fuse_bn=fuse_bn, ort_optimization=ort_optimization)
            if backend == "onnxruntime":
                exported = export_for_onnx(spec, height, width, onnx_dir or tmp)
                job = replace(job, onnx=exported["onnx"])
            be, _ = _make_backend(job, build_spec_model(spec))
            for _ in range(warmup + (1 if compile else 0)):
                be.infer(left, right)
            backends.append(be)
        ref_ms, model_ms, ratios = [], [], []
        for _ in range(rounds):
            t_ref = time_calls(lambda: backends[0].infer(left, right), 1).p50
            t_model = time_calls(lambda: backends[1].infer(left, right), per_round).p50
            ref_ms.append(t_ref)
            model_ms.append(t_model)
            ratios.append(t_ref / t_model)
    return {"reference": reference.label, "model": model.label, "size": f"{height}x{width}",
            "backend": backend, "rounds": rounds, "per_round": per_round,
            "ratio": statistics.median(ratios), "ratio_min": min(ratios),
            "ratio_max": max(ratios), "reference_ms": statistics.median(ref_ms),
            "model_ms": statistics.median(model_ms), "round_ratios": ratios,
            "settings": {"threads": threads, "channels_last": channels_last,
                         "compile": compile, "fuse_bn": fuse_bn,
                         "ort_optimization": ort_optimization, "warmup": warmup,
                         "models": [asdict(reference), asdict(model)]}}


def write_report(path: str, payload: Dict[str, Any], *, threads: int, script: str,
                 argv: Optional[Sequence[str]] = None) -> None:
    """Write a benchmark script's JSON: ``host`` (:func:`host_info`), the ``command`` that
    produced it (``python SCRIPT ARGS``; ``argv`` defaults to ``sys.argv[1:]``) and ``payload``.
    Parent folders are created; prints the path."""
    args = list(argv if argv is not None else sys.argv[1:])
    report = {"host": host_info(threads), "command": " ".join(["python", script] + args),
              **payload}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)
    print(f"wrote {path}")


def host_info(threads: int) -> Dict[str, Any]:
    """CPU model, core count, thread setting, library versions and the date of the run."""
    import platform

    info: Dict[str, Any] = {"cpu": platform.processor() or platform.machine(),
                            "logical_cpus": os.cpu_count(), "threads": threads,
                            "python": platform.python_version(), "platform": platform.platform(),
                            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        if names:
            info["cpu"] = names[0]
    except OSError:
        pass
    for module in ("torch", "onnxruntime", "onnx", "tensorrt"):
        try:
            info[f"{module}_version"] = __import__(module).__version__
        except ImportError:
            info[f"{module}_version"] = None
    import torch

    info["cuda_device"] = (torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    return info


def add_ratios(results: List[Dict[str, Any]], reference: Optional[str]) -> None:
    """Add ``vs_reference`` to each ``ok`` result: reference value / this value, in place.

    ``params_x`` and ``macs_x`` are how many times fewer parameters/MACs, ``speedup_x`` how
    many times faster (median latency), ``memory_x`` how many times less peak memory above
    baseline, each against the reference model at the same size and backend in the same run.
    """
    def ratio(ref: Any, val: Any) -> Optional[float]:
        if ref is None or val is None or not val:
            return None
        return float(ref) / float(val)

    refs = {(r["size"], r["backend"]): r for r in results
            if r.get("model") == reference and r.get("status") == "ok"}
    for r in results:
        if r.get("status") != "ok" or reference is None:
            continue
        ref = refs.get((r["size"], r["backend"]))
        if ref is None:
            r["vs_reference"] = {"reference": reference,
                                 "reason": "reference not measured at this size/backend"}
            continue
        r["vs_reference"] = {
            "reference": reference,
            "params_x": ratio(ref.get("params"), r.get("params")),
            "macs_x": ratio(ref.get("macs"), r.get("macs")),
            "speedup_x": ratio(ref["latency_ms"]["median"], r["latency_ms"]["median"]),
            "memory_x": ratio(ref.get("peak_above_baseline_mb"), r.get("peak_above_baseline_mb"))}


def _export(spec: ModelSpec, height: int, width: int, out_dir: str, isolate: bool,
            threads: int) -> Dict[str, Any]:
    """Export for the ONNX backends (in a subprocess when isolating); errors are recorded."""
    if isolate:
        task = {"kind": "export", "model": asdict(spec), "height": height, "width": width,
                "out_dir": out_dir, "threads": threads}
        return _run_worker(task, 1800.0)
    try:
        return export_for_onnx(spec, height, width, out_dir)
    except Exception as exc:  # recorded; the other configurations still run
        return {"status": "error", "reason": f"ONNX export failed: {type(exc).__name__}: {exc}"}


def _worker_main(argv: List[str]) -> int:
    """``python -m dtp_stereo.tools.bench --worker TASK.json RESULT.json``."""
    if len(argv) != 3 or argv[0] != "--worker":
        print("usage: python -m dtp_stereo.tools.bench --worker TASK.json RESULT.json",
              file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as fh:
        task = json.load(fh)
    if task["kind"] == "export":
        try:
            result = export_for_onnx(ModelSpec(**task["model"]), task["height"],
                                     task["width"], task["out_dir"])
        except Exception as exc:  # reported to the parent as a record
            result = {"status": "error",
                      "reason": f"ONNX export failed: {type(exc).__name__}: {exc}"}
    else:
        if task["job"]["backend"].startswith("torch"):
            import torch

            torch.set_num_threads(int(task["threads"]))
        else:  # the runtime's own libraries belong to the baseline, as torch's do
            import onnxruntime  # noqa: F401
        result = measure(_job_from_dict(task["job"]), task.get("complexity"))
    with open(argv[2], "w", encoding="utf-8") as fh:
        json.dump(result, fh)
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
