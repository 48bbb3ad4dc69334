"""Torch datasets over the runtime readers (``dtp_stereo.data``), with splits and augmentation.

``StereoDataset[i]`` returns tensors:
    ``left``, ``right``: 3×H×W float32 RGB in [0, 1];
    ``disparity``: H×W float32 (pixels, 0 where unknown);
    ``valid``: H×W bool; ``valid_noc``: H×W bool (``valid`` where the dataset has no
    occlusion mask); ``index``: int; ``name``: str.

``build_dataset(spec)`` builds one from a config dict, e.g.
``{"name": "synthetic", "split": "val", "size": 64, "height": 64, "width": 128}``,
``{"name": "single_image", "textures": "data/textures", "fresh": true}``,
``{"name": "mix", "fresh": true, "sources": [{"name": "synthetic", "weight": 0.7},
{"name": "single_image", "weight": 0.3}]}`` or
``{"name": "kitti2015", "root": "/data/kitti15", "split": "val", "val_fraction": 0.2,
"augment": {"crop_size": [256, 512]}}``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Protocol, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from dtp_stereo.data.readers import SampleRef, list_dataset, load_sample
from dtp_stereo.data.synthetic import SyntheticStereo, split_seed
from training.data.augment import StereoAugment

__all__ = ["StereoDataset", "SampleGenerator", "MixedStereo", "build_dataset", "holdout_split",
           "to_tensors", "SPEC_KEYS", "GENERATORS", "SOURCE_KEYS"]

SPEC_KEYS = ("name", "root", "split", "size", "height", "width", "max_disparity", "seed",
             "augment", "augment_seed", "render_pass", "gt_root", "val_fraction", "synthetic",
             "fresh", "textures", "photo_prob", "sources")
SOURCE_KEYS = ("name", "weight", "synthetic", "textures", "photo_prob")  # one ``mix`` source
FRESH_LENGTH = 2 ** 62  # index space of a ``fresh`` synthetic stream (never wraps in practice)
_SYNTHETIC_SIZES = {"train": 1000, "val": 64, "test": 64}
GENERATORS = ("synthetic", "photo_layers", "single_image", "mix")  # generated, not read


class SampleGenerator(Protocol):
    """A stereo sample generator (e.g. :class:`SyntheticStereo`): ``sample(i)`` for any
    ``i >= 0``, deterministic, returning the numpy dict of ``SyntheticStereo.sample``."""

    def sample(self, index: int) -> Dict[str, Any]: ...

    def __len__(self) -> int: ...


def _is_generator(source: Any) -> bool:
    return callable(getattr(source, "sample", None)) and hasattr(source, "__len__")


def to_tensors(sample: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
    """Convert a numpy sample dict into the tensors described in the module docstring."""
    def image(arr: np.ndarray) -> torch.Tensor:
        chw = np.ascontiguousarray(np.asarray(arr).transpose(2, 0, 1))
        return torch.from_numpy(chw).float().div_(255.0)

    valid = np.ascontiguousarray(sample["valid"], dtype=bool)
    noc = sample.get("valid_noc")
    return {
        "left": image(sample["left"]),
        "right": image(sample["right"]),
        "disparity": torch.from_numpy(np.ascontiguousarray(sample["disparity"], np.float32)),
        "valid": torch.from_numpy(valid),
        "valid_noc": torch.from_numpy(
            valid.copy() if noc is None else np.ascontiguousarray(noc, dtype=bool)),
    }


class StereoDataset(Dataset):
    """A torch Dataset over sample refs or a sample generator (:class:`SyntheticStereo`, ...).

    Args:
        source: list of :class:`SampleRef` (from ``list_dataset``) or a generator: any object
            with ``sample(index)`` and ``__len__`` (:class:`SampleGenerator`).
        augment: optional ``(sample, rng) -> sample`` callable on numpy samples (e.g.
            :class:`StereoAugment`).
        seed: augmentation seed. ``None``: each item draws its generator seed from torch's
            global RNG (so the trainer's per-step seeding, or the DataLoader's per-worker seeds,
            decide); an int: item ``i`` uses ``default_rng([seed, epoch, i])``.
        fresh: the source is an unbounded stream (a generator): the trainer reads
            indices 0, 1, 2, ... in order, so every training sample is a scene never seen
            before, instead of shuffled epochs over a fixed set.
    """

    def __init__(self, source: Union[Sequence[SampleRef], SampleGenerator],
                 augment: Optional[Any] = None, seed: Optional[int] = None,
                 fresh: bool = False) -> None:
        is_gen = _is_generator(source)
        if fresh and not is_gen:
            raise ValueError("StereoDataset: fresh=True needs a sample generator as source "
                             f"(an object with sample(index)), got {type(source).__name__}")
        self.fresh = bool(fresh)
        if is_gen:
            self.generator: Optional[SampleGenerator] = source  # type: ignore[assignment]
            self.refs: List[SampleRef] = []
        else:
            self.generator = None
            self.refs = list(source)  # type: ignore[arg-type]
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation stream (only matters with an int ``seed``)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.generator) if self.generator is not None else len(self.refs)

    def raw_sample(self, index: int) -> Dict[str, Any]:
        """The numpy sample dict for ``index`` before augmentation."""
        if not 0 <= index < len(self):
            raise IndexError(f"StereoDataset index {index} out of range 0..{len(self) - 1}")
        if self.generator is not None:
            return self.generator.sample(index)
        return load_sample(self.refs[index])

    def _rng(self, index: int) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng(int(torch.randint(0, 2 ** 62, (1,)).item()))
        return np.random.default_rng([int(self.seed), self.epoch, int(index)])

    def __getitem__(self, index: int) -> Dict[str, Any]:
        index = int(index)
        sample = self.raw_sample(index)
        if self.augment is not None:
            sample = self.augment(sample, self._rng(index))
        out: Dict[str, Any] = to_tensors(sample)
        out["index"] = index
        out["name"] = str(sample.get("meta", {}).get("name", index))
        return out


def holdout_split(refs: Sequence[SampleRef], split: str, val_fraction: float,
                  seed: int = 0) -> List[SampleRef]:
    """Deterministically split refs into ``train`` and ``val`` parts (``val_fraction`` of them).

    The partition depends only on the sorted sample names and ``seed``.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    ordered = sorted(refs, key=lambda r: r.name)
    perm = np.random.default_rng([int(seed), 0xDA7A]).permutation(len(ordered))
    n_val = max(1, int(round(val_fraction * len(ordered)))) if ordered else 0
    chosen = set(perm[:n_val].tolist()) if split == "val" else set(perm[n_val:].tolist())
    return [r for i, r in enumerate(ordered) if i in chosen]


def build_dataset(spec: Mapping[str, Any]) -> StereoDataset:
    """Build a :class:`StereoDataset` from a config dict.

    Keys (only ``name`` is required; unknown keys raise ``ValueError``):
        name: dataset name (``dtp_stereo.data.readers.DATASETS``), a synthetic spec string
            (``synthetic:N:HxW:seed``), or a generator (:data:`GENERATORS`): ``synthetic``
            (procedural scenes, :class:`SyntheticStereo`), ``photo_layers`` (the same scenes
            with photo textures, ``training.data.photo_stereo.PhotoLayeredStereo``),
            ``single_image`` (stereo from single photos, ``SingleImageStereo``) or ``mix``
            (several of these by weight, :class:`MixedStereo`; key ``sources``).
        root: dataset folder ("" for generators).
        split: ``train`` (default), ``val`` or ``test``. Generator splits use different seeds
            (``split_seed``), so they never share scenes; a real dataset's ``val`` is a
            ``val_fraction`` hold-out of its training data.
        size: generators: number of samples (default 1000 train / 64 val, test); real: keep at
            most the first ``size`` samples.
        height, width, max_disparity: generated image size and disparity range (pixels;
            defaults 256, 512, 192).
        seed: generator base seed and hold-out seed (default 0).
        augment: None/False (default), True (defaults) or a dict of ``AugmentConfig`` fields.
        augment_seed: int for a fixed augmentation stream, None (default) to follow torch's RNG.
        render_pass: SceneFlow ``cleanpass`` (default) or ``finalpass``.
        gt_root: ETH3D ground-truth folder.
        val_fraction: hold-out fraction for real-data ``train``/``val`` splits (default 0: none).
        synthetic: dict of extra generator keyword arguments (e.g. ``noise_std``).
        fresh: generators only: an unbounded stream of new scenes (``size`` is ignored); the
            trainer reads it in order, so no scene is ever repeated.
        textures: ``photo_layers``/``single_image``: texture-bank folder written by
            ``dtp-train textures`` (default ``data/textures``, relative to the working folder).
        photo_prob: ``photo_layers``: probability that a surface gets a photo texture rather
            than a procedural one (default 1).
        sources: ``mix`` only: a list of generator specs, each ``{name, weight}`` plus its
            own ``synthetic``, ``textures``, ``photo_prob``. Keys it leaves out come from the
            mix's spec (height, width, max_disparity always do); a source's own ``synthetic``
            replaces the mix's whole, not merged (a ``single_image`` source needs its own when
            the mix's holds procedural-only arguments); a shared ``textures`` / ``photo_prob``
            reaches only the sources that take it. See :class:`MixedStereo`.
    """
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ValueError(f"dataset spec must be a dict with a 'name' key, got {spec!r}")
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise ValueError(f"dataset spec: unknown keys {unknown}; valid keys: {list(SPEC_KEYS)}")
    name = str(spec["name"])
    split = spec.get("split") or "train"
    seed = int(spec.get("seed", 0))
    size = spec.get("size")
    aug_spec = spec.get("augment")
    augment = None
    if aug_spec is True:
        augment = StereoAugment()
    elif aug_spec:
        augment = StereoAugment(aug_spec)
    aug_seed = spec.get("augment_seed")
    aug_seed = None if aug_seed is None else int(aug_seed)

    fresh = bool(spec.get("fresh", False))
    if name.lower() in GENERATORS:
        length = FRESH_LENGTH if fresh else (
            int(size) if size is not None else _SYNTHETIC_SIZES.get(split, 64))
        gen = _build_generator(name.lower(), spec, split_seed(seed, split), length)
        return StereoDataset(gen, augment, aug_seed, fresh=fresh)
    if fresh:
        raise ValueError(f"dataset {name!r}: 'fresh' streams exist only for generated data "
                         f"({', '.join(GENERATORS)})")
    photo_keys = sorted({"textures", "photo_prob"} & set(spec))
    if photo_keys:
        raise ValueError(
            f"dataset {name!r}: {photo_keys} apply to photo_layers/single_image only")

    val_fraction = float(spec.get("val_fraction", 0.0))
    list_split = "train" if split == "val" else split
    if split == "val" and not val_fraction > 0:
        raise ValueError(f"dataset {name!r}: split 'val' needs val_fraction > 0 (hold-out)")
    refs = list_dataset(name, str(spec.get("root", "")), list_split,
                        render_pass=str(spec.get("render_pass", "cleanpass")),
                        gt_root=spec.get("gt_root"))
    if val_fraction > 0 and split in ("train", "val"):
        refs = holdout_split(refs, split, val_fraction, seed)
    if size is not None:
        refs = refs[:int(size)]
    return StereoDataset(refs, augment, aug_seed)


def _build_generator(name: str, spec: Mapping[str, Any], seed: int,
                     length: int) -> SampleGenerator:
    """The generator named ``name`` (one of :data:`GENERATORS`) for a dataset spec."""
    args = (int(spec.get("height", 256)), int(spec.get("width", 512)),
            int(spec.get("max_disparity", 192)), seed, length)
    extra = dict(spec.get("synthetic") or {})
    if name == "mix":
        return MixedStereo([(weight, _build_generator(src_name, src_spec, seed, length))
                            for weight, src_name, src_spec in _mix_sources(spec)], seed)
    if "sources" in spec:
        raise ValueError(f"dataset {name!r}: 'sources' applies to mix only")
    if name != "photo_layers" and "photo_prob" in spec:
        raise ValueError(f"dataset {name!r}: 'photo_prob' applies to photo_layers only")
    if name == "synthetic":
        if "textures" in spec:
            raise ValueError("dataset 'synthetic': 'textures' applies to photo_layers and "
                             "single_image only")
        return SyntheticStereo(*args, **extra)
    from training.data.photo_stereo import PhotoLayeredStereo, SingleImageStereo
    from training.data.textures import DEFAULT_OUT

    textures = str(spec.get("textures") or DEFAULT_OUT)
    if name == "photo_layers":
        return PhotoLayeredStereo(*args, textures=textures,
                                  photo_prob=float(spec.get("photo_prob", 1.0)), **extra)
    return SingleImageStereo(*args, textures=textures, **extra)


# the photo keys each generator takes (a mix's shared photo keys reach only these)
_PHOTO_KEYS = {"synthetic": (), "photo_layers": ("textures", "photo_prob"),
               "single_image": ("textures",)}


def _mix_sources(spec: Mapping[str, Any]) -> List[Any]:
    """``(weight, name, effective spec)`` for each entry of a ``mix`` spec's ``sources``."""
    sources = spec.get("sources")
    if not isinstance(sources, (list, tuple)) or not sources:
        raise ValueError("dataset 'mix': 'sources' must be a non-empty list of "
                         "{name, weight, ...} dicts")
    out = []
    for i, src in enumerate(sources):
        if not isinstance(src, Mapping) or "name" not in src or "weight" not in src:
            raise ValueError(f"dataset 'mix': sources[{i}] must be a dict with 'name' and "
                             f"'weight', got {src!r}")
        unknown = sorted(set(src) - set(SOURCE_KEYS))
        if unknown:
            raise ValueError(f"dataset 'mix': sources[{i}]: unknown keys {unknown}; valid "
                             f"keys: {list(SOURCE_KEYS)}")
        name = str(src["name"]).lower()
        if name not in _PHOTO_KEYS:
            raise ValueError(f"dataset 'mix': sources[{i}]: {src['name']!r} is not one of "
                             f"{list(_PHOTO_KEYS)}")
        shared = ("height", "width", "max_disparity", "synthetic", *_PHOTO_KEYS[name])
        own = {**{k: spec[k] for k in shared if k in spec},
               **{k: v for k, v in src.items() if k not in ("name", "weight")}}
        out.append((float(src["weight"]), name, own))
    return out


class MixedStereo:
    """Draw each sample from one of several generators, chosen per index by weight.

    Sample ``i`` comes from source ``k`` with probability ``weight_k / sum(weights)``, the
    choice fixed by ``(seed, i)``; it is that source's own ``sample(i)``. All sources share
    the mix's seed, so a mix's procedural samples are exactly the scenes a plain
    ``synthetic`` stream with the same seed, size and settings has at those indices (a mix
    at equal budget replaces some scenes of that stream, it does not reorder it). Each
    sample's ``meta["source"]`` names its generator.

    Args:
        sources: ``(weight, generator)`` pairs; weights > 0, generators of equal image size
            (not checked here; ``build_dataset`` gives every source the mix's size).
        seed: the choice stream's seed.
    """

    def __init__(self, sources: Sequence[Any], seed: int = 0) -> None:
        if not sources:
            raise ValueError("MixedStereo: no sources")
        weights = np.array([float(w) for w, _ in sources], dtype=np.float64)
        if not np.all(weights > 0):
            raise ValueError(f"MixedStereo: weights must be > 0, got {weights.tolist()}")
        self.generators = [g for _, g in sources]
        self.cumulative = np.cumsum(weights / weights.sum())
        self.seed = int(seed)
        self.length = min(len(g) for g in self.generators)

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        shares = np.diff(np.concatenate([[0.0], self.cumulative])).round(3).tolist()
        return f"MixedStereo({list(zip(shares, self.generators))!r}, seed={self.seed})"

    def source_of(self, index: int) -> int:
        """Which source sample ``index`` comes from (deterministic in ``(seed, index)``)."""
        u = np.random.default_rng([self.seed, int(index), 0x6D6978]).random()
        return int(min(np.searchsorted(self.cumulative, u, side="right"),
                       len(self.generators) - 1))

    def sample(self, index: int) -> Dict[str, Any]:
        """Sample ``index`` of its chosen source, with ``meta["source"]`` set."""
        k = self.source_of(index)
        sample = self.generators[k].sample(index)
        meta = dict(sample.get("meta", {}))
        meta["source"] = type(self.generators[k]).__name__
        return {**sample, "meta": meta}
