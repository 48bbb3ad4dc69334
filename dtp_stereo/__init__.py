"""dtp_stereo: distilled and pruned real-time stereo matching, with a ROS 2 node.

The runtime package (this one) never imports ``training`` or ``torch_pruning``.
"""

__version__ = "0.1.0"
