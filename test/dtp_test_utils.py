"""Helpers shared by the tests (imported as a plain module: pytest puts test/ on sys.path)."""

from typing import Any, Dict


def tiny_dtpnet_config(max_disparity: int = 16, **overrides: Any) -> Dict[str, Any]:
    """A DTPnet config with 8-channel convs (fast on CPU); ``max_disparity`` in pixels."""
    cfg: Dict[str, Any] = dict(max_disparity=max_disparity, stem=(8, 8, 8), layer1_mids=(8,),
                               layer1_out=8, layer2_mids=(8,), layer2_out=8, fuse=(8, 8),
                               c2d=(8, 4), pre=(8,), hourglass=(8, 8, 8, 8), classifier=8)
    cfg.update(overrides)
    return cfg
