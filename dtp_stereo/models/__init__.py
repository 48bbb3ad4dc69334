"""Stereo model zoo: build any registered architecture by name.

Importing this package registers ``dtpnet``, ``psmnet``, ``gwcnet`` and ``gwcnet_student``.
"""

from . import dtpnet, gwcnet, psmnet  # noqa: F401  (registers the architectures)
from ._registry import build_model, list_models, register_model
from .modes import eval_mode
from .output import StereoOutput

__all__ = ["StereoOutput", "build_model", "eval_mode", "list_models", "register_model"]
