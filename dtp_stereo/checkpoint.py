"""The one checkpoint format of dtp_stereo: atomic save, ``weights_only`` load, model rebuild.

A checkpoint is a ``torch.save``d dict (see docs/design.md, "Checkpoint contract")::

    format: "dtp_stereo.checkpoint"   format_version: 1
    model_name: str                   model_config: dict (JSON-able; widths included)
    state_dict: {str: Tensor}         max_disparity: int (pixels)
    input: {"color": "rgb", "range": [0, 1], "mean": [...], "std": [...]}
    provenance: {command, data, metrics, created, git_commit, parent}
    training_state: optional {stage, epoch, step, optimizer, scheduler, rng, ...}

It never holds pickled Python objects: everything loads with ``torch.load(weights_only=True)``.
"""

import dataclasses
import datetime
import json
import os
import pickle
import random
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from dtp_stereo.files import atomic_path

FORMAT = "dtp_stereo.checkpoint"
FORMAT_VERSION = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
REQUIRED_KEYS = ("model_name", "model_config", "state_dict", "max_disparity")
_MAX_LISTED = 5

PathLike = Union[str, os.PathLike]


class CheckpointError(ValueError):
    """A checkpoint cannot be written, read or turned into a model; the message names the file."""


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        model_name: registered architecture name (``build_model`` key).
        model_config: keyword arguments that rebuild the architecture (widths included).
        state_dict: parameter and buffer tensors on the CPU.
        max_disparity: largest disparity the model predicts, pixels.
        input: input convention (``color``, ``range``, ``mean``, ``std``).
        provenance: how it was made (``command``, ``data``, ``metrics``, ``created``, ...).
        training_state: optimizer/scheduler/RNG state for resuming, or ``None``.
        path: the file it was read from.
    """

    model_name: str
    model_config: Dict[str, Any]
    state_dict: Dict[str, torch.Tensor]
    max_disparity: int
    input: Dict[str, Any]
    provenance: Dict[str, Any]
    training_state: Optional[Dict[str, Any]]
    path: Optional[Path] = None


# ----------------------------------------------------------------------------------------- RNG
def rng_state() -> Dict[str, Any]:
    """Snapshot the torch, CUDA, numpy and Python RNG states in a ``weights_only``-safe form."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: Dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"bit_generator": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore RNG states saved by :func:`rng_state` (missing entries are left alone)."""
    if "torch" in state:
        torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8).cpu())
    if "numpy" in state:
        npst = state["numpy"]
        keys = np.asarray(torch.as_tensor(npst["keys"]).numpy(), dtype=np.uint32)
        np.random.set_state((npst["bit_generator"], keys, int(npst["pos"]),
                             int(npst["has_gauss"]), float(npst["cached_gaussian"])))
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        states = list(state["cuda"])[: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all([torch.as_tensor(s, dtype=torch.uint8) for s in states])


# --------------------------------------------------------------------------------------- save
def _plain(value: Any, where: str) -> Any:
    """Turn ``value`` into types ``torch.load(weights_only=True)`` accepts (numpy -> torch/python).

    Raises:
        TypeError: a value of another type (naming its location ``where``).
    """
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, (torch.dtype, torch.device, torch.Size)):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value), where)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise TypeError(f"{where}: key {key!r} ({type(key).__name__}) is not allowed")
            out[key] = _plain(item, f"{where}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        items = [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
        return tuple(items) if isinstance(value, tuple) else items
    raise TypeError(f"{where}: value of type {type(value).__name__} cannot be stored "
                    "(only tensors, numbers, strings, lists, tuples and dicts load with "
                    "weights_only=True)")


def _git_commit() -> Optional[str]:
    """The git commit of the source tree this package runs from, or ``None``."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def default_provenance() -> Dict[str, Any]:
    """Provenance defaults: the command line, UTC creation time and git commit."""
    return {
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]) if sys.argv else "",
        "data": None,
        "metrics": {},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        "parent": None,
    }


def _model_name(model: nn.Module, model_name: Optional[str]) -> str:
    """The registered name: ``model_name``, ``model.model_name``, or the model's registry entry."""
    name = model_name or getattr(model, "model_name", None)
    if not name:
        from dtp_stereo.models import _registry

        cls = type(model)
        names = [n for n, fn in _registry._MODELS.items() if fn is cls]
        if not names:  # factory functions: the one registered in the model's module
            names = [n for n, fn in _registry._MODELS.items()
                     if getattr(fn, "__module__", None) == cls.__module__]
        name = names[0] if len(names) == 1 else None
    if not isinstance(name, str) or not name:
        raise CheckpointError(f"cannot tell the registered name of {type(model).__name__}: "
                              "pass model_name= or give the model a 'model_name' attribute")
    return name


def checkpoint_dict(model: nn.Module, *, model_name: Optional[str] = None,
                    provenance: Optional[Mapping[str, Any]] = None,
                    training_state: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Build the dict :func:`save_checkpoint` writes (see module docstring).

    Raises:
        CheckpointError: the model lacks ``config``/``max_disparity`` or a value cannot be stored.
    """
    config = getattr(model, "config", None)
    if config is None or not dataclasses.is_dataclass(config):
        raise CheckpointError(f"{type(model).__name__} has no dataclass 'config'; build it with "
                              "dtp_stereo.models.build_model")
    if not isinstance(getattr(model, "max_disparity", None), int):
        raise CheckpointError(f"{type(model).__name__} has no integer 'max_disparity'")
    model_config = dataclasses.asdict(config)
    prov = default_provenance()
    prov.update(provenance or {})
    try:
        json.dumps(model_config)
        json.dumps(prov)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"model_config and provenance must be JSON-able: {exc}") from exc
    mean = getattr(config, "mean", IMAGENET_MEAN)
    std = getattr(config, "std", IMAGENET_STD)
    try:
        state = None if training_state is None else _plain(training_state, "training_state")
    except TypeError as exc:
        raise CheckpointError(str(exc)) from exc
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_name": _model_name(model, model_name),
        "model_config": model_config,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "max_disparity": int(model.max_disparity),
        "input": {"color": "rgb", "range": [0.0, 1.0], "mean": [float(m) for m in mean],
                  "std": [float(s) for s in std]},
        "provenance": prov,
        "training_state": state,
    }


def save_checkpoint(path: PathLike, model: nn.Module, *, model_name: Optional[str] = None,
                    provenance: Optional[Mapping[str, Any]] = None,
                    training_state: Optional[Mapping[str, Any]] = None) -> Path:
    """Write ``model`` as a dtp_stereo checkpoint, atomically (temp file, fsync, ``os.replace``).

    Args:
        path: destination file; parent folders are created.
        model: a model built by ``build_model`` (has ``config`` and ``max_disparity``).
        model_name: registered name; defaults to ``model.model_name``.
        provenance: entries overriding the defaults (command, created, git_commit, ...).
        training_state: resume state (optimizer/scheduler state dicts, ``rng_state()``, ...).

    Returns:
        The path written.

    Raises:
        CheckpointError: the model or a value cannot be stored, or the file cannot be written.
    """
    path = Path(path)
    obj = checkpoint_dict(model, model_name=model_name, provenance=provenance,
                          training_state=training_state)
    try:
        with atomic_path(path) as tmp:
            torch.save(obj, tmp)
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path}: cannot write: {exc}") from exc
    return path


# --------------------------------------------------------------------------------------- load
def read_torch_file(path: PathLike) -> Any:
    """``torch.load`` a file with ``weights_only=True`` onto the CPU, with clear errors.

    Raises:
        CheckpointError: missing file, not a PyTorch file, or a pickle carrying Python code.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path}: file not found")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: not a regular file")
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        if "global" in str(exc).lower():  # weights_only refused a class/function reference
            raise CheckpointError(
                f"checkpoint {path}: the file contains pickled Python objects/code; refusing to "
                "load (only tensors and plain containers are accepted)") from None
        kind = "a zip archive" if zipfile.is_zipfile(path) else "not a zip archive"
        detail = next((line.strip() for line in str(exc).splitlines()
                       if "unsupported" in line.lower()), "unpickling failed")
        raise CheckpointError(
            f"checkpoint {path}: not a readable PyTorch file ({kind}; truncated, corrupt or "
            f"another format): {detail}") from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, AttributeError,
            IndexError, TypeError) as exc:
        kind = "a zip archive" if zipfile.is_zipfile(path) else "not a zip archive"
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise CheckpointError(
            f"checkpoint {path}: not a readable PyTorch file ({kind}; truncated, corrupt or "
            f"another format): {type(exc).__name__}: {detail}") from None


def load_checkpoint(path: PathLike, *, expected_model: Optional[str] = None) -> Checkpoint:
    """Read and validate a dtp_stereo checkpoint (``weights_only=True``, CPU tensors).

    Args:
        path: the checkpoint file.
        expected_model: if given, the architecture name the file must hold.

    Raises:
        CheckpointError: any problem; the message names the file and the problem.
    """
    path = Path(path)
    obj = read_torch_file(path)
    if not isinstance(obj, dict) or "format" not in obj:
        found = ", ".join(map(str, list(obj)[:8])) if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(
            f"checkpoint {path}: not a dtp_stereo checkpoint (no 'format' key; found: {found}); "
            "public PSMNet files are converted with 'dtp-stereo import-psmnet'")
    if obj["format"] != FORMAT:
        raise CheckpointError(f"checkpoint {path}: format {obj['format']!r} is not {FORMAT!r}")
    version = obj.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path}: unsupported format_version {version!r} "
                              f"(this dtp_stereo reads version {FORMAT_VERSION})")
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        raise CheckpointError(f"checkpoint {path}: missing keys {', '.join(missing)}")
    if not isinstance(obj["model_config"], dict) or not isinstance(obj["state_dict"], dict):
        raise CheckpointError(f"checkpoint {path}: model_config and state_dict must be dicts")
    if expected_model is not None and obj["model_name"] != expected_model:
        raise CheckpointError(f"checkpoint {path}: holds architecture {obj['model_name']!r} but "
                              f"{expected_model!r} was expected")
    return Checkpoint(
        model_name=str(obj["model_name"]),
        model_config=dict(obj["model_config"]),
        state_dict=dict(obj["state_dict"]),
        max_disparity=int(obj["max_disparity"]),
        input=dict(obj.get("input") or {}),
        provenance=dict(obj.get("provenance") or {}),
        training_state=obj.get("training_state"),
        path=path,
    )


def _listed(names: List[str]) -> str:
    more = f" (+{len(names) - _MAX_LISTED} more)" if len(names) > _MAX_LISTED else ""
    return ", ".join(names[:_MAX_LISTED]) + more


def state_dict_problems(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> List[str]:
    """Missing, unexpected and shape-mismatched keys of ``state_dict`` against ``model``."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f"{k} {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
              for k, v in own.items()
              if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_listed(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_listed(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches: {_listed(shapes)}")
    return problems


def build_from_checkpoint(ckpt: Checkpoint,
                          overrides: Optional[Dict[str, Any]] = None) -> nn.Module:
    """Rebuild the architecture of ``ckpt`` and load its weights (train mode, CPU).

    Args:
        ckpt: a loaded checkpoint.
        overrides: model_config entries to replace, for options that do not change the weights
            (e.g. ``{"head": "fast"}`` for DTPnet); one that does fails the state_dict check.

    Raises:
        CheckpointError: unknown model name, rejected config keys, or state_dict mismatches.
    """
    import dtp_stereo.models  # noqa: F401  (registers the architectures)
    from dtp_stereo.models._registry import build_model, list_models

    where = f"checkpoint {ckpt.path}" if ckpt.path is not None else "checkpoint"
    if ckpt.model_name not in list_models():
        raise CheckpointError(f"{where}: unknown model {ckpt.model_name!r}; registered models: "
                              f"{', '.join(list_models())}")
    config = {**ckpt.model_config, **(overrides or {})}
    try:
        # first on the meta device (no memory): a config whose widths disagree with the
        # weights is refused before anything of its size is allocated
        with torch.device("meta"):
            skeleton = build_model(ckpt.model_name, **config)
    except TypeError as exc:
        extra = f"; overrides: {', '.join(overrides)}" if overrides else ""
        raise CheckpointError(f"{where}: model_config is not accepted by {ckpt.model_name!r}: "
                              f"{exc} (config keys: {', '.join(ckpt.model_config)}{extra})"
                              ) from None
    except ValueError as exc:
        raise CheckpointError(f"{where}: invalid model_config for {ckpt.model_name!r}: "
                              f"{exc}") from None
    problems = state_dict_problems(skeleton, ckpt.state_dict)
    if problems:
        raise CheckpointError(f"{where}: state_dict does not match {ckpt.model_name!r} built from "
                              f"its model_config: {'; '.join(problems)}")
    bad = [k for k, v in ckpt.state_dict.items()
           if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{where}: {len(bad)} weight tensors hold NaN or infinite values "
                              f"({_listed(bad)}): the training that wrote it diverged")
    model = build_model(ckpt.model_name, **config)
    model.load_state_dict(ckpt.state_dict, strict=True)
    return model


def load_model(path: PathLike, device: Union[str, torch.device] = "cpu", *,
               expected_model: Optional[str] = None,
               overrides: Optional[Dict[str, Any]] = None) -> Tuple[nn.Module, Checkpoint]:
    """Load a checkpoint and rebuild its model, in eval mode on ``device``.

    ``overrides`` replace model_config entries that leave the weights as they are (see
    :func:`build_from_checkpoint`), e.g. ``{"head": "fast"}``.

    Raises:
        CheckpointError: any problem with the file (see :func:`load_checkpoint`,
            :func:`build_from_checkpoint`).
    """
    ckpt = load_checkpoint(path, expected_model=expected_model)
    model = build_from_checkpoint(ckpt, overrides)
    return model.to(device).eval(), ckpt
