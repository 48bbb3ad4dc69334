"""dtp_stereo offline toolkit: datasets, distillation, pruning and training (``dtp-train``).

Never imported by the runtime package ``dtp_stereo``.
"""
