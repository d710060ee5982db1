"""The 3D CT mode: volumes of a 4D (time-resolved) micro-CT series into phase labels.

- :mod:`~olmap.ct.classes`: class files (codes, names, colours, densities, molar masses).
- :mod:`~olmap.ct.synth`: olmap's synthetic gypsum -> bassanite dehydration series with truth.
- :mod:`~olmap.ct.features`: per-voxel filter features, computed block by block with a halo.
- :mod:`~olmap.ct.forest`: the random forest from sparse scribbles (seed 000, section 3.4).
- :mod:`~olmap.ct.label`: ``olmap ct label``, the forest over whole volumes, out of core.
- :mod:`~olmap.ct.metrics`: Dice, IoU, precision, recall, kappa, volumetric similarity.
"""
