"""Stereo data for the runtime: file formats, dataset folder readers, synthetic pairs.

Submodules (numpy + OpenCV only, no torch):
    ``formats``   PFM, KITTI 16-bit PNG, RGB images, colour-coded disparity, Middlebury calib.
    ``readers``   ``list_dataset(name, root, split)`` and ``load_sample(ref)``.
    ``synthetic`` ``SyntheticStereo``: procedural pairs with exact ground truth.
"""
