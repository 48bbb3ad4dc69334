"""Torch datasets, splits and augmentation over the ``dtp_stereo.data`` readers.

Submodules: ``datasets`` (``StereoDataset``, ``build_dataset``), ``augment``
(``StereoAugment``, ``AugmentConfig``), ``textures`` (the photo texture bank: ``TextureBank``,
``build_texture_bank``), ``photo_stereo`` (``PhotoLayeredStereo``, ``SingleImageStereo``) and
their helpers ``segments`` (photo segmentation) and ``forward_warp`` (z-buffer splatting).
"""
