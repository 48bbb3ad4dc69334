"""Offline tools that ship with the package but that the node never uses.

- :mod:`dtp_stereo.tools.bench`: the benchmark harness behind ``dtp-stereo bench`` and the
  scripts in ``benchmarks/``;
- :mod:`dtp_stereo.tools.demo`: ``dtp-stereo demo``, the main job (the shipped student through
  the real node on a sample bag);
- :mod:`dtp_stereo.tools.sample_bag`: the synthetic stereo rosbag2 writer behind
  ``dtp-stereo make-sample-bag``.

The runtime (node, pipeline, backends, messages) never imports this package.
"""
