"""The random forest of seed 000 (section 3.4): sparse scribbles -> a per-voxel classifier.

Scribbles are a few brush strokes per class on a few slices (0 = unlabelled). Their voxels'
features (:mod:`olmap.ct.features`) train a class-balanced, seeded scikit-learn
``RandomForestClassifier``. Before the final fit, about a quarter of each class's strokes are
held out and scored (the forest's own accuracy on voxels it did not see, and the same for a
global grey threshold fitted on the same training strokes: the baseline). The fitted forest is
saved with the versions of olmap and scikit-learn that made it and read back through an
unpickler that may only build a random forest and numpy arrays (never an unchecked pickle;
skops does the same but imports all of scikit-learn, and with it torch: +500 MB RSS).
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage as ndi

from olmap import __version__
from olmap.ct.classes import ClassFile
from olmap.ct.features import (
    TRUNCATE,
    FeatureConfig,
    block_features,
    feature_reach,
    sample_reference,
)
from olmap.ct.metrics import apply_thresholds, confusion, fit_thresholds, scores_from_confusion
from olmap.errors import InputError
from olmap.io.volume import TIFF_SUFFIXES, Volume, natural_key, open_volume

#: Identifies olmap's forest files.
FOREST_KIND = "olmap-ct-forest"
#: Inner tile (y, x) of the scribbled slices whose features are computed at once.
TILE = 512
#: Rows of features the forest classifies at once (bounds the forest's working memory).
PREDICT_ROWS = 1 << 18


class ForestConfig(BaseModel):
    """Random-forest settings (seed 000 used ilastik's defaults: 100 trees)."""

    model_config = ConfigDict(extra="forbid")

    trees: int = Field(default=64, ge=1, le=1000)
    min_samples_leaf: int = Field(default=2, ge=1)
    max_samples_per_class: int = Field(default=20000, ge=10)
    holdout: float = Field(default=0.25, ge=0, lt=1)
    seed: int = 0
    jobs: int = Field(default=-1, description="CPU threads (-1: all)")


@dataclass
class Scribbles:
    """Sparse labels of one volume: the painted voxels' coordinates and codes."""

    z: np.ndarray
    y: np.ndarray
    x: np.ndarray
    code: np.ndarray
    stroke: np.ndarray  # one id per connected stroke (per slice and class)
    source: str

    def __len__(self) -> int:
        return len(self.code)

    @property
    def slices(self) -> list[int]:
        return sorted(set(self.z.tolist()))


def _strokes(labels2d: np.ndarray, first: int) -> tuple[np.ndarray, int]:
    """Stroke ids of the nonzero pixels of one slice (8-connected, per class)."""
    ids = np.zeros(labels2d.shape, np.int64)
    n = first
    for code in np.unique(labels2d[labels2d > 0]):
        lab, k = ndi.label(labels2d == code, structure=np.ones((3, 3), bool))
        ids[lab > 0] = lab[lab > 0] + n
        n += k
    return ids, n


def read_scribbles(spec: str | Path, shape: Sequence[int], classes: ClassFile) -> Scribbles:
    """Scribbles from a folder of slice images named by z (``z0012.tif``) or a label volume.

    Raises
    ------
    InputError
        Another shape than the scan's, a class code not in the class file, a slice index
        outside the volume, or no labelled voxel at all.
    """
    path = Path(spec)
    parts: list[tuple[int, np.ndarray]] = []
    if path.is_dir() and not any((path / n).exists() for n in ("zarr.json", ".zarray", ".zgroup")):
        parts = _slice_images(path, shape)
    else:
        with open_volume(spec, labels=True) as vol:
            if tuple(vol.shape) != tuple(shape):
                raise InputError(
                    f"{spec}: scribbles of shape {'x'.join(map(str, vol.shape))}, the scan is "
                    f"{'x'.join(map(str, shape))}"
                )
            step = max(1, 16_000_000 // (shape[1] * shape[2]))
            for z0 in range(0, shape[0], step):
                slab = vol.read((slice(z0, min(shape[0], z0 + step)), slice(None), slice(None)))
                for k in np.flatnonzero(slab.reshape(len(slab), -1).any(1)):
                    parts.append((z0 + int(k), np.asarray(slab[k])))
    zs, ys, xs, codes, strokes = [], [], [], [], []
    n = 0
    for z, img in parts:
        classes.check_codes(img, f"{spec} (slice z={z})")
        ids, n = _strokes(img, n)
        yy, xx = np.nonzero(img)
        zs.append(np.full(len(yy), z))
        ys.append(yy)
        xs.append(xx)
        codes.append(img[yy, xx].astype(np.int64))
        strokes.append(ids[yy, xx])
    if not codes or sum(len(c) for c in codes) == 0:
        raise InputError(f"{spec}: no labelled voxel (scribbles use class codes, 0 = unlabelled)")
    cat = np.concatenate
    return Scribbles(cat(zs), cat(ys), cat(xs), cat(codes), cat(strokes), str(spec))


def _slice_images(folder: Path, shape: Sequence[int]) -> list[tuple[int, np.ndarray]]:
    import tifffile
    from PIL import Image

    files = [
        p
        for p in folder.iterdir()
        if p.suffix.lower() in (*TIFF_SUFFIXES, ".png") and re.search(r"\d+", p.stem)
    ]
    if not files:
        raise InputError(
            f"{folder}: no scribble slices (images named by their z index, e.g. z0012.tif)"
        )
    out = []
    for p in sorted(files, key=lambda q: natural_key(q.name)):
        z = int(re.findall(r"\d+", p.stem)[-1])
        try:
            img = (
                tifffile.imread(p)
                if p.suffix.lower() in TIFF_SUFFIXES
                else np.asarray(Image.open(p))
            )
        except Exception as exc:
            raise InputError(f"{p}: unreadable scribble image ({exc})") from exc
        if img.ndim != 2 or img.shape != tuple(shape[1:]):
            raise InputError(
                f"{p}: scribble slice of shape {'x'.join(map(str, img.shape))}, the scan's "
                f"slices are {shape[1]}x{shape[2]}"
            )
        if not 0 <= z < shape[0]:
            raise InputError(f"{p}: slice index {z} outside the scan (0-{shape[0] - 1})")
        if np.issubdtype(img.dtype, np.floating) or img.min() < 0:
            raise InputError(f"{p}: scribbles must be non-negative integer class codes")
        out.append((z, img))
    return out


@dataclass
class TrainingSet:
    """Features of scribbled voxels, with their codes, strokes and raw grey values."""

    features: np.ndarray
    codes: np.ndarray
    strokes: np.ndarray
    grey: np.ndarray
    names: list[str]
    sources: list[str] = field(default_factory=list)


def scribble_features(
    volume: Volume,
    scribbles: Scribbles,
    config: FeatureConfig,
    reference: tuple[float, float] | None = None,
    *,
    model: FittedForest | None = None,
    stage1=None,
) -> TrainingSet:
    """Features of every scribbled voxel, computed slice by slice in tiles of :data:`TILE`
    px with the halo of the features (so they equal those of whole-volume inference); with
    ``model`` and ``stage1``, the auto-context features of :func:`region_features`."""
    reference = reference or sample_reference(volume)
    _, height, width = volume.shape
    feats, codes, strokes, grey = [], [], [], []
    for z in scribbles.slices:
        on = scribbles.z == z
        ys, xs = scribbles.y[on], scribbles.x[on]
        for y0 in range(0, height, TILE):
            for x0 in range(0, width, TILE):
                here = (ys >= y0) & (ys < y0 + TILE) & (xs >= x0) & (xs < x0 + TILE)
                if not here.any():
                    continue
                region = (
                    slice(z, z + 1),
                    slice(y0, min(height, y0 + TILE)),
                    slice(x0, min(width, x0 + TILE)),
                )
                if stage1 is not None:
                    f = region_features(volume, region, model, reference, stage1=stage1)
                else:
                    f = block_features(volume, region, config, reference)
                feats.append(f[:, 0, ys[here] - y0, xs[here] - x0].T)
                grey.append(f[0, 0, ys[here] - y0, xs[here] - x0])
                codes.append(scribbles.code[on][here])
                strokes.append(scribbles.stroke[on][here])
    return TrainingSet(
        np.concatenate(feats).astype(np.float32),
        np.concatenate(codes),
        np.concatenate(strokes),
        np.concatenate(grey),
        config.names(),
        [scribbles.source],
    )


def merge(sets: Sequence[TrainingSet]) -> TrainingSet:
    """One training set from several scans (stroke ids kept distinct)."""
    offset, strokes = 0, []
    for s in sets:
        strokes.append(s.strokes + offset)
        offset += int(s.strokes.max(initial=0)) + 1
    return TrainingSet(
        np.concatenate([s.features for s in sets]),
        np.concatenate([s.codes for s in sets]),
        np.concatenate(strokes),
        np.concatenate([s.grey for s in sets]),
        sets[0].names,
        [src for s in sets for src in s.sources],
    )


def holdout_strokes(codes: np.ndarray, strokes: np.ndarray, share: float, seed: int) -> np.ndarray:
    """True on the voxels of about ``share`` of each class's strokes (at least one stroke
    where a class has three or more; none where it has fewer, so it can still be learnt).

    Examples
    --------
    >>> codes = np.array([1, 1, 1, 1, 2, 2]); strokes = np.array([0, 1, 2, 3, 4, 4])
    >>> int(holdout_strokes(codes, strokes, 0.25, 0).sum())
    1
    """
    rng = np.random.default_rng(seed)
    held = np.zeros(len(codes), bool)
    if share <= 0:
        return held
    for code in np.unique(codes):
        ids = np.unique(strokes[codes == code])
        if len(ids) < 3:
            continue
        k = max(1, round(share * len(ids)))
        held |= np.isin(strokes, rng.choice(ids, k, replace=False)) & (codes == code)
    return held


def _balanced_subset(codes: np.ndarray, cap: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    keep = []
    for code in np.unique(codes):
        idx = np.flatnonzero(codes == code)
        keep.append(idx if len(idx) <= cap else rng.choice(idx, cap, replace=False))
    return np.sort(np.concatenate(keep))


def _new_forest(config: ForestConfig):
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(
        n_estimators=config.trees,
        min_samples_leaf=config.min_samples_leaf,
        class_weight="balanced",
        n_jobs=config.jobs,
        random_state=config.seed,
    )


#: Scales (px, in-plane) at which stage-1 probabilities are smoothed for the auto-context stage.
CONTEXT_SIGMAS = (1.0, 3.0)


def context_reach() -> int:
    """In-plane reach (px) of the auto-context features."""
    return int(TRUNCATE * max(CONTEXT_SIGMAS) + 0.5)


@dataclass
class FittedForest:
    """A forest (and its auto-context stage) with what is needed to apply it to any scan.

    Auto-context (as ilastik's autocontext workflow): a second forest sees, beside the
    features, the first forest's class probabilities smoothed in the slice plane at
    :data:`CONTEXT_SIGMAS`. A voxel of intermediate grey on the boundary between a dark and
    a bright phase then reads as that boundary (dark and bright probabilities around it), not
    as a third phase of intermediate grey (clay in sandstone, gypsum between pores and
    bassanite), which the first forest, trained on strokes inside regions, cannot tell apart.
    """

    forest: object
    features: FeatureConfig
    classes: ClassFile
    scores: pd.DataFrame | None = None
    importance: pd.DataFrame | None = None
    trained_on: list[str] = field(default_factory=list)
    context: object | None = None

    @property
    def codes(self) -> np.ndarray:
        return np.asarray(self.forest.classes_)

    @property
    def reach(self) -> tuple[int, int, int]:
        """Halo (z, y, x) of the grey read around a block."""
        f = feature_reach(self.features)
        fz = 0 if self.features.dims == "2d" else f
        c = context_reach() if self.context is not None else 0
        return (fz, f + c, f + c)


def _predict(forest, feats: np.ndarray) -> np.ndarray:
    """Class probabilities ``(k, *shape)`` of features ``(n_features, *shape)`` (a view is
    fine: rows are gathered a few planes at a time, never the whole block at once)."""
    shape = feats.shape[1:]
    prob = np.empty((len(forest.classes_), *shape), np.float32)
    plane = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    step = max(1, PREDICT_ROWS // max(1, plane))
    for z0 in range(0, shape[0], step):
        part = feats[:, z0 : z0 + step]
        p = forest.predict_proba(part.reshape(len(feats), -1).T)
        prob[:, z0 : z0 + step] = p.T.reshape(-1, *part.shape[1:])
    return prob


def region_features(
    volume: Volume,
    region: Sequence[slice],
    model: FittedForest,
    reference: tuple[float, float],
    *,
    stage1=None,
) -> np.ndarray:
    """The features the final forest reads for ``region``: the filter bank, plus with
    auto-context the smoothed probabilities of ``stage1`` (default ``model.forest``).

    With auto-context the features are computed over ``region`` grown in the slice plane by
    :func:`context_reach` (one array, the context channels after the bank's) and the result
    is a view of its crop to ``region``: no copy of the block's features is made.
    """
    if model.context is None and stage1 is None:
        return block_features(volume, region, model.features, reference)
    stage1 = stage1 if stage1 is not None else model.forest
    c = context_reach()
    grown, crop = [region[0]], [slice(0, region[0].stop - region[0].start)]
    for s, n in zip(region[1:], volume.shape[1:], strict=True):
        g0, g1 = max(0, s.start - c), min(n, s.stop + c)
        grown.append(slice(g0, g1))
        crop.append(slice(s.start - g0, s.stop - g0))
    k = len(stage1.classes_)
    nf = len(model.features.names())
    feats = block_features(
        volume, tuple(grown), model.features, reference, extra=k * len(CONTEXT_SIGMAS)
    )
    prob = _predict(stage1, feats[:nf])
    for i, s in enumerate(CONTEXT_SIGMAS):  # smoothed per slice, into the spare channels
        ndi.gaussian_filter(
            prob, (0, 0, s, s), truncate=TRUNCATE, output=feats[nf + i * k : nf + (i + 1) * k]
        )
    return feats[(slice(None), *crop)]


def predict_region(
    volume: Volume,
    region: Sequence[slice],
    model: FittedForest,
    reference: tuple[float, float],
) -> np.ndarray:
    """Class probabilities ``(k, *region shape)`` of the final stage over ``region``."""
    feats = region_features(volume, region, model, reference)
    return _predict(model.context if model.context is not None else model.forest, feats)


def _fit(features: np.ndarray, codes: np.ndarray, config: ForestConfig):
    keep = _balanced_subset(codes, config.max_samples_per_class, config.seed)
    return _new_forest(config).fit(features[keep], codes[keep])


def _context_rows(refs, stage1, shell: FittedForest) -> np.ndarray:
    """Auto-context features (of ``stage1``) of every scribbled voxel, in training order."""
    n_ctx = len(CONTEXT_SIGMAS) * len(stage1.classes_)
    rows = [
        scribble_features(vol, s, shell.features, ref, model=shell, stage1=stage1).features[
            :, -n_ctx:
        ]
        for vol, s, ref in refs
    ]
    return np.concatenate(rows)


def train_forest(
    pairs: Sequence[tuple[Volume, Scribbles]],
    classes: ClassFile,
    features: FeatureConfig,
    config: ForestConfig,
    *,
    autocontext: bool = True,
) -> FittedForest:
    """The forest of scribbles on one or more scans, scored on held-out strokes first.

    The scores table compares, on strokes held out of every fit: the final model
    (``forest``), the first stage alone when auto-context is on (``forest-1-stage``) and the
    global grey threshold fitted on the same training strokes (``threshold``).

    Raises
    ------
    InputError
        If fewer than two classes are scribbled.
    """
    refs = [(vol, s, sample_reference(vol)) for vol, s in pairs]
    data = merge([scribble_features(v, s, features, r) for v, s, r in refs])
    present = np.unique(data.codes)
    if len(present) < 2:
        raise InputError("scribbles name fewer than two classes; paint at least two")
    names = [classes.classes[classes.codes.index(int(c))].name for c in present]
    shell = FittedForest(None, features, classes)
    held = holdout_strokes(data.codes, data.strokes, config.holdout, config.seed)
    scores = None
    if held.any() and len(np.unique(data.codes[~held])) == len(present):
        train = ~held
        rf1 = _fit(data.features[train], data.codes[train], config)
        preds = {}
        if autocontext:
            x2 = np.hstack([data.features, _context_rows(refs, rf1, shell)])
            preds["forest"] = _fit(x2[train], data.codes[train], config).predict(x2[held])
            preds["forest-1-stage"] = rf1.predict(data.features[held])
        else:
            preds["forest"] = rf1.predict(data.features[held])
        order, cuts = fit_thresholds(data.grey[train], data.codes[train], present)
        preds["threshold"] = apply_thresholds(data.grey[held], order, cuts)
        scores = pd.concat(
            {
                k: scores_from_confusion(confusion(data.codes[held], p, present), names)
                for k, p in preds.items()
            },
            names=["method", "class"],
        )
    rf1 = _fit(data.features, data.codes, config)
    feature_names, final, context = list(data.names), rf1, None
    if autocontext:
        x2 = np.hstack([data.features, _context_rows(refs, rf1, shell)])
        context = final = _fit(x2, data.codes, config)
        feature_names += [
            f"context_{classes.classes[classes.codes.index(int(c))].name}_{s:g}"
            for s in CONTEXT_SIGMAS
            for c in rf1.classes_
        ]
    importance = (
        pd.DataFrame({"feature": feature_names, "importance": final.feature_importances_})
        .sort_values("importance", ascending=False)
        .reset_index(drop=True)
    )
    return FittedForest(rf1, features, classes, scores, importance, list(data.sources), context)


#: First line of a forest file.
FOREST_MAGIC = b"OLMAP-CT-FOREST\n"
#: The only classes a forest file may name (module, name); anything else is refused unread.
ALLOWED_GLOBALS = frozenset(
    {
        ("numpy", "dtype"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("sklearn.ensemble._forest", "RandomForestClassifier"),
        ("sklearn.tree._classes", "DecisionTreeClassifier"),
        ("sklearn.tree._tree", "Tree"),
    }
)


class _ForestUnpickler(pickle.Unpickler):
    """Unpickles only :data:`ALLOWED_GLOBALS` (Python's "restricting globals" recipe)."""

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of an olmap forest")
        return super().find_class(module, name)


def save_forest(model: FittedForest, path: str | Path) -> None:
    """Write ``model`` atomically: a header line, a JSON line (kind, versions, features,
    classes) and the two forests pickled; :func:`load_forest` reads only forests back."""
    import json

    import sklearn

    from olmap.io.outputs import atomic_path

    header = {
        "kind": FOREST_KIND,
        "olmap": __version__,
        "sklearn": sklearn.__version__,
        "features": model.features.model_dump(mode="json"),
        "classes": model.classes.model_dump(mode="json"),
        "trained_on": list(model.trained_on),
    }
    with atomic_path(path, overwrite=True) as tmp, open(tmp, "wb") as f:
        f.write(FOREST_MAGIC)
        f.write(json.dumps(header).encode() + b"\n")
        pickle.dump({"forest": model.forest, "context": model.context}, f, protocol=5)


def load_forest(path: str | Path) -> FittedForest:
    """Read a forest written by :func:`save_forest`.

    The header is checked before anything is unpickled, and unpickling may only build
    :data:`ALLOWED_GLOBALS` (a random forest and numpy arrays): a pickle from elsewhere is
    refused, never run.

    Raises
    ------
    InputError
        Not an olmap forest file, a file naming other classes, or one made by another
        major.minor scikit-learn version (its trees may not load the same way).
    """
    import json

    import sklearn

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such forest file")
    with open(path, "rb") as f:
        if f.read(len(FOREST_MAGIC)) != FOREST_MAGIC:
            raise InputError(f"{path}: not an olmap forest file (olmap ct label --save-model)")
        try:
            header = json.loads(f.readline())
        except ValueError as exc:
            raise InputError(f"{path}: damaged forest file header ({exc})") from exc
        made, here = str(header.get("sklearn", "?")), sklearn.__version__
        if header.get("kind") != FOREST_KIND:
            raise InputError(f"{path}: not an olmap forest file")
        if made.split(".")[:2] != here.split(".")[:2]:
            raise InputError(
                f"{path}: made with scikit-learn {made}, this is {here}; retrain it here "
                "(olmap ct label --save-model)"
            )
        try:
            payload = _ForestUnpickler(f).load()
        except pickle.UnpicklingError as exc:
            raise InputError(f"{path}: refused: {exc}") from exc
        except (EOFError, ValueError, TypeError, AttributeError) as exc:
            raise InputError(f"{path}: damaged forest file ({exc})") from exc
    return FittedForest(
        payload["forest"],
        FeatureConfig.model_validate(header["features"]),
        ClassFile.model_validate(header["classes"]),
        trained_on=list(header.get("trained_on", [])),
        context=payload.get("context"),
    )


def adjust_priors(posteriors: np.ndarray, max_iter: int = 200, tol: float = 1e-7) -> np.ndarray:
    """Class weights that move a balanced classifier's posteriors to the volume's own class
    proportions, by expectation-maximisation (Saerens, Latinne & Decaestecker 2002).

    The forest is trained class-balanced (people paint about as much of a 3 % phase as of a
    50 % one), so its posteriors assume equal priors and over-call rare phases. EM estimates
    the priors ``pi`` of the unlabelled voxels: ``pi <- mean(p w / sum(p w))`` with
    ``w = pi / pi_train``; the returned ``w`` multiplies the posteriors of every voxel.

    Parameters
    ----------
    posteriors : ndarray (n, k)
        Forest posteriors of a sample of the volume's voxels (trained with equal priors).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> truth = rng.random(20000) < 0.1                      # 10 % of class 1
    >>> p1 = np.where(truth, rng.uniform(0.5, 1, 20000), rng.uniform(0.0, 0.6, 20000))
    >>> w = adjust_priors(np.column_stack([1 - p1, p1]))
    >>> bool(w[1] < w[0])                                  # the rare class is weighed down
    True
    """
    p = np.asarray(posteriors, np.float64)
    k = p.shape[1]
    train = np.full(k, 1.0 / k)
    prior = train.copy()
    for _ in range(max_iter):
        w = prior / train
        q = p * w
        q /= np.maximum(q.sum(1, keepdims=True), 1e-12)
        new = q.mean(0)
        if np.abs(new - prior).max() < tol:
            prior = new
            break
        prior = new
    return prior / train


def sample_posteriors(
    volume: Volume, model: FittedForest, reference: tuple[float, float], regions: int = 32
) -> np.ndarray:
    """Forest posteriors of ``regions`` blocks of 16 x 64 x 64 voxels spread over the volume
    (for :func:`adjust_priors`; the same cost for any volume size)."""
    shape = volume.shape
    side = (min(16, shape[0]), min(64, shape[1]), min(64, shape[2]))
    rng = np.random.default_rng(0)
    out = []
    for _ in range(regions):
        start = [int(rng.integers(0, n - s + 1)) for n, s in zip(shape, side, strict=True)]
        region = tuple(slice(a, a + s) for a, s in zip(start, side, strict=True))
        prob = predict_region(volume, region, model, reference)
        out.append(prob.reshape(len(prob), -1).T)
    return np.concatenate(out)
