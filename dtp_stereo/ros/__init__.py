"""ROS-facing helpers of the stereo node.

``geometry``, ``conversions``, ``sync`` and ``diagnostics`` are plain numpy/Python and never import
rclpy, so they are tested without ROS; only :mod:`dtp_stereo.node` imports rclpy.
"""
