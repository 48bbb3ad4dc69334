"""Torch datasets, splits and augmentation over the ``dtp_stereo.data`` readers.

Submodules: ``datasets`` (``StereoDataset``, ``build_dataset``) and ``augment``
(``StereoAugment``, ``AugmentConfig``).
"""
