"""Argument types shared by the ``dtp-stereo`` subcommands and the benchmark scripts.

The size parser lives with the preprocessing (:mod:`dtp_stereo.preprocess`), where library
code takes it from; it is re-exported here for the command-line modules.
"""

from dtp_stereo.preprocess import SizeError, parse_size

__all__ = ["SizeError", "parse_size"]
