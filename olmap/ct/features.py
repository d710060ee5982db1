"""Per-voxel features for the random forest, at several scales, in 2D (per slice) or 3D.

The filter bank of ilastik's pixel classifier, as used by seed 000 (section 3.4: Gaussian
multi-scale, edge, texture and neighbourhood features) and seed 001: per scale ``sigma``

- ``gauss``: Gaussian smoothing (intensity at that scale);
- ``gradmag``: Gaussian gradient magnitude (edges);
- ``log``: Laplacian of Gaussian (blobs, thin pores);
- ``std``: local standard deviation, ``sqrt(G(I²) - G(I)²)`` (neighbourhood texture);
- ``hess0..``: eigenvalues of the Hessian, largest first (structure texture: plates, tubes);

plus the voxel's own grey value. Grey values are first mapped to a reference scale
(:func:`grey_reference`: robust percentiles of the volume), so that a forest trained on one
scan reads another scan whose grey levels drifted.

Every filter reaches at most :func:`feature_reach` voxels, so a block computed from a read
padded by that halo equals the same region computed on the whole volume (the tests check it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage as ndi

from olmap.stream.grid import grow_region

#: scipy/scikit-image Gaussian kernels are cut at this many sigmas.
TRUNCATE = 4.0


class FeatureConfig(BaseModel):
    """Which features, at which scales."""

    model_config = ConfigDict(extra="forbid")

    sigmas: tuple[float, ...] = Field(default=(1.0, 2.0, 4.0), min_length=1)
    dims: Literal["2d", "3d"] = "3d"
    texture: bool = True  # Hessian eigenvalues

    def names(self) -> list[str]:
        """Feature names in the order of :func:`compute_features`' output.

        Examples
        --------
        >>> FeatureConfig(sigmas=(1.0,), dims="2d").names()
        ['grey', 'gauss_1', 'gradmag_1', 'log_1', 'std_1', 'hess0_1', 'hess1_1']
        """
        n_eig = 2 if self.dims == "2d" else 3
        out = ["grey"]
        for s in self.sigmas:
            tag = f"{s:g}"
            out += [f"gauss_{tag}", f"gradmag_{tag}", f"log_{tag}", f"std_{tag}"]
            if self.texture:
                out += [f"hess{k}_{tag}" for k in range(n_eig)]
        return out


def feature_reach(config: FeatureConfig) -> int:
    """Voxels a feature at one voxel depends on, on each side (the halo a block needs).

    Examples
    --------
    >>> feature_reach(FeatureConfig(sigmas=(1.0, 4.0)))
    17
    """
    # Gaussian kernels reach int(truncate * sigma + 0.5); +1 spare.
    return int(TRUNCATE * max(config.sigmas) + 0.5) + 1


def grey_reference(sample: np.ndarray, low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """The grey values mapped to 0 and 1: ``low`` and ``high`` percentiles of ``sample``.

    Examples
    --------
    >>> grey_reference(np.arange(1001.0))
    (5.0, 995.0)
    """
    lo, hi = np.percentile(np.asarray(sample, np.float64), [low, high])
    if not hi > lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def compute_features(
    grey: np.ndarray,
    config: FeatureConfig,
    reference: tuple[float, float],
    crop: Sequence[slice] | None = None,
    extra: int = 0,
) -> np.ndarray:
    """Features of the voxels of ``grey[crop]`` (z, y, x), filtered over all of ``grey``:
    array ``(n_features, z, y, x)`` float32.

    With ``dims="2d"`` each z slice is filtered on its own (seed 000's 2D labelling);
    with ``"3d"`` the filters are 3D. Only the cropped features are kept, so memory is one
    filter's output over ``grey`` plus the features of the crop. ``extra`` channels are left
    uninitialised after the features, for a caller's own (auto-context) features.

    Examples
    --------
    >>> vol = np.random.default_rng(0).random((4, 16, 16)).astype(np.float32)
    >>> f = compute_features(vol, FeatureConfig(sigmas=(1.0,)), (0.0, 1.0))
    >>> f.shape, f.dtype
    ((8, 4, 16, 16), dtype('float32'))
    """
    lo, hi = reference
    image = (np.asarray(grey, np.float32) - np.float32(lo)) / np.float32(hi - lo)
    crop = tuple(crop) if crop is not None else tuple(slice(0, n) for n in image.shape)
    names = config.names()
    out = np.empty((len(names) + extra, *(s.stop - s.start for s in crop)), np.float32)
    if config.dims == "2d":
        for k, z in enumerate(range(crop[0].start, crop[0].stop)):
            _bank(image[z], config, out[:, k], crop[1:])
    else:
        _bank(image, config, out, crop)
    return out


def _bank(image: np.ndarray, config: FeatureConfig, out: np.ndarray, crop) -> None:
    """Fill ``out`` (n_features, *crop shape) with the filter bank of ``image`` (2D or 3D).

    Gaussian derivatives are separable: the 1D passes are shared between the smoothing, the
    gradient and the Hessian (whose trace is the Laplacian of Gaussian), and each pass's
    output is cropped to the region before the next axis is filtered (later passes never mix
    positions along an earlier axis), which keeps memory and time to about the region's.
    """
    out[0] = image[crop]
    k = 1
    nd = image.ndim
    for s in config.sigmas:
        d = _derivatives(image, s, crop)
        g = d[(0,) * nd]
        out[k] = g
        grads = [d[tuple(int(i == a) for i in range(nd))] for a in range(nd)]
        out[k + 1] = np.sqrt(sum(x * x for x in grads))
        hess = {
            (a, b): d[tuple(int(i == a) + int(i == b) for i in range(nd))]
            for a in range(nd)
            for b in range(a, nd)
        }
        out[k + 2] = sum(hess[(a, a)] for a in range(nd))
        mean_sq = _derivatives(image * image, s, crop, max_order=0)[(0,) * nd]
        out[k + 3] = np.sqrt(np.maximum(mean_sq - g * g, 0))
        k += 4
        if config.texture:
            out[k : k + nd] = symmetric_eigenvalues(hess, nd)
            k += nd
        del d, hess, grads


def _derivatives(
    image: np.ndarray, sigma: float, crop, max_order: int = 2
) -> dict[tuple[int, ...], np.ndarray]:
    """Gaussian derivatives of total order <= ``max_order`` of ``image`` over ``crop``, keyed
    by the order per axis; each axis's output is cropped along that axis before the next."""
    current = {(): image}
    for axis in range(image.ndim):
        nxt = {}
        cut = (slice(None),) * axis + (crop[axis],)
        for orders, arr in current.items():
            for o in range(max_order + 1 - sum(orders)):
                nxt[(*orders, o)] = ndi.gaussian_filter1d(
                    arr, sigma, axis=axis, order=o, truncate=TRUNCATE
                )[cut]
        current = nxt
    return current


def symmetric_eigenvalues(h: dict[tuple[int, int], np.ndarray], nd: int) -> np.ndarray:
    """Eigenvalues, largest first, of the symmetric 2x2 or 3x3 matrices ``h[(a, b)]``, a <= b.

    Closed form (the trigonometric solution of the characteristic cubic; Smith 1961), one
    vectorised pass: ``numpy.linalg.eigvalsh`` on millions of 3x3 stacks is ~10x slower.

    Examples
    --------
    >>> m = {(0, 0): np.array([2.0]), (0, 1): np.array([0.0]), (1, 1): np.array([5.0])}
    >>> symmetric_eigenvalues(m, 2).ravel().tolist()
    [5.0, 2.0]
    >>> a = np.array([[2.0, 1, 0], [1, 3, 1], [0, 1, 4]])
    >>> m = {(i, j): np.array([a[i, j]]) for i in range(3) for j in range(i, 3)}
    >>> np.allclose(symmetric_eigenvalues(m, 3).ravel(), np.linalg.eigvalsh(a)[::-1])
    True
    """
    shape = h[(0, 0)].shape
    if len(shape) > 1 and shape[0] > 4:  # a few planes at a time: float64 temporaries stay small
        out = np.empty((nd, *shape), np.float32)
        for z0 in range(0, shape[0], 4):
            out[:, z0 : z0 + 4] = symmetric_eigenvalues(
                {k: v[z0 : z0 + 4] for k, v in h.items()}, nd
            )
        return out
    if nd == 2:
        a, b, d = (h[k].astype(np.float64) for k in ((0, 0), (1, 1), (0, 1)))
        mean, rad = (a + b) / 2, np.sqrt(((a - b) / 2) ** 2 + d * d)
        return np.stack([mean + rad, mean - rad]).astype(np.float32)
    a, b, c = (h[(i, i)].astype(np.float64) for i in range(3))
    d, e, f = (h[k].astype(np.float64) for k in ((0, 1), (0, 2), (1, 2)))
    q = (a + b + c) / 3
    p1 = d * d + e * e + f * f
    p = np.sqrt(((a - q) ** 2 + (b - q) ** 2 + (c - q) ** 2 + 2 * p1) / 6)
    safe = np.where(p > 0, p, 1.0)
    aq, bq, cq = (a - q) / safe, (b - q) / safe, (c - q) / safe
    dd, ee, ff = d / safe, e / safe, f / safe
    det = aq * (bq * cq - ff * ff) - dd * (dd * cq - ff * ee) + ee * (dd * ff - bq * ee)
    phi = np.arccos(np.clip(det / 2, -1, 1)) / 3
    e1 = q + 2 * p * np.cos(phi)
    e3 = q + 2 * p * np.cos(phi + 2 * np.pi / 3)
    return np.stack([e1, 3 * q - e1 - e3, e3]).astype(np.float32)


def sample_reference(volume, n_blocks: int = 27, side: int = 48) -> tuple[float, float]:
    """:func:`grey_reference` of :func:`sample_volume` (the same cost for any volume size)."""
    return grey_reference(sample_volume(volume, n_blocks, side))


def sample_volume(volume, n_blocks: int = 27, side: int = 48) -> np.ndarray:
    """Grey values of about ``n_blocks`` blocks of ``side`` voxels spread over a volume (an
    :class:`olmap.io.volume.Volume`), flattened."""
    shape = volume.shape
    per_axis = max(1, round(n_blocks ** (1 / 3)))
    starts = [sorted({round(v) for v in np.linspace(0, max(0, n - side), per_axis)}) for n in shape]
    values = []
    for z0 in starts[0]:
        for y0 in starts[1]:
            for x0 in starts[2]:
                region = tuple(
                    slice(a, min(a + side, n)) for a, n in zip((z0, y0, x0), shape, strict=True)
                )
                values.append(volume.read(region).ravel())
    return np.concatenate(values)


def block_features(
    volume,
    region: Sequence[slice],
    config: FeatureConfig,
    reference: tuple[float, float],
    extra: int = 0,
) -> np.ndarray:
    """Features of ``region`` computed from a read padded by :func:`feature_reach` (clipped to
    the volume; 2D features pad only y and x): array ``(n_features + extra, *region shape)``."""
    reach = feature_reach(config)
    pads = (0 if config.dims == "2d" else reach, reach, reach)
    outer, crop = grow_region(tuple(region), volume.shape, pads)
    return compute_features(volume.read(outer), config, reference, crop, extra)
