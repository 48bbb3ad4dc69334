"""Argument types shared by the ``dtp-stereo`` subcommands and the benchmark scripts."""

import argparse
from typing import Tuple

__all__ = ["SizeError", "parse_size"]


class SizeError(argparse.ArgumentTypeError, ValueError):
    """A size that is not ``HxW`` with positive integers (a ValueError; argparse shows it)."""


def parse_size(text: str) -> Tuple[int, int]:
    """Parse ``"HxW"`` (pixels, e.g. ``"256x512"``) into ``(H, W)``.

    Raises:
        SizeError: not two positive integers separated by ``x``.
    """
    parts = str(text).lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise SizeError(f"size {text!r} must look like HxW in pixels, e.g. 256x512")
    h, w = int(parts[0]), int(parts[1])
    if h <= 0 or w <= 0:
        raise SizeError(f"size {text!r} must be positive")
    return h, w
