"""Model checkpoints: one ``.pt`` file with the weights and everything needed to use them.

A checkpoint is a plain dictionary (loadable with ``torch.load(..., weights_only=True)``, so
opening one never runs code)::

    {"format": "olmap-segmenter", "format_version": 1,
     "state_dict": {...tensors...},
     "meta": {"architecture", "classes" [[code, name], ...], "input_mean", "input_std",
              "threshold", "aux_loss", "decoder", "aspp_pooling", "head_classes", "head_groups",
              "init", "train_config", "metrics", "olmap_version"}}
"""

from __future__ import annotations

import math
import pickle
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from olmap import __version__
from olmap.errors import InputError, InputFileNotFoundError, first_line
from olmap.io.outputs import atomic_path
from olmap.segment.model import ARCHITECTURES, Segmenter

CHECKPOINT_FORMAT = "olmap-segmenter"
FORMAT_VERSION = 1


@dataclass
class ModelMeta:
    """What a checkpoint says about its model.

    Attributes
    ----------
    architecture : str
        Key of :data:`olmap.segment.model.ARCHITECTURES`.
    classes : list of (int, str)
        Label code and name of each model class, in output order; the first is the background.
    input_mean, input_std : float
        Grey-value normalisation of the training tiles.
    threshold : float
        Recommended probability threshold of a binary model (the paper's dlth).
    aux_loss : bool
        Whether the model has torchvision's auxiliary head.
    decoder : str
        "none" or "refine" (:class:`olmap.segment.model.RefineDecoder`); files written before
        the decoder existed have none.
    aspp_pooling : int
        The ASPP's image-pooling window in feature cells, 0 = the whole input
        (:class:`olmap.segment.model.Segmenter`); 0 in files written before it existed.
    head_classes, head_groups : optional
        A grouped head (``TrainConfig.head: init``): the head's class names and, per model
        class, the head classes summed into it (:class:`olmap.segment.model.Segmenter`).
        None for an ordinary head (and in files written before grouped heads existed).
    input_dtype : str, optional
        Data type of the training BSE (e.g. "uint16"); None in older files.
    input_percentiles : list of float, optional
        1st, 50th and 99th percentiles of the training tiles' grey values, to check that an
        image is on the same scale (:mod:`olmap.segment.scale`); None in older files.
    """

    architecture: str
    classes: list[tuple[int, str]]
    input_mean: float
    input_std: float
    threshold: float = 0.1
    aux_loss: bool = False
    decoder: str = "none"
    aspp_pooling: int = 0
    head_classes: list[str] | None = None
    head_groups: list[list[int]] | None = None
    init: str = "none"
    train_config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    olmap_version: str = __version__
    input_dtype: str | None = None
    input_percentiles: list[float] | None = None

    @property
    def class_names(self) -> list[str]:
        return [name for _, name in self.classes]


def build_model(meta: ModelMeta) -> Segmenter:
    """An untrained :class:`Segmenter` with the shape ``meta`` describes."""
    return Segmenter(
        meta.architecture,
        len(meta.classes),
        mean=meta.input_mean,
        std=meta.input_std,
        aux_loss=meta.aux_loss,
        decoder=meta.decoder,
        aspp_pooling=meta.aspp_pooling,
        head_classes=meta.head_classes,
        head_groups=meta.head_groups,
    )


def save_checkpoint(
    path: str | Path,
    model: Segmenter,
    meta: ModelMeta,
    *,
    half: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` and ``meta`` to ``path`` (atomically).

    ``half`` stores floating-point weights as float16 (half the size; predictions change by
    rounding only). BatchNorm's integer step counters are dropped: inference does not use them.
    """
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        value = value.detach().cpu()
        state[key] = value.half() if half and value.is_floating_point() else value.clone()
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": FORMAT_VERSION,
        "state_dict": state,
        "meta": {**asdict(meta), "classes": [[int(c), str(n)] for c, n in meta.classes]},
    }
    with atomic_path(path, overwrite=overwrite) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], ModelMeta]:
    """The state dict and metadata of an olmap checkpoint, checked.

    Raises
    ------
    InputFileNotFoundError
        If ``path`` does not exist.
    InputError
        If it is not a readable olmap checkpoint (truncated, another program's file, unknown
        architecture or format version).
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileNotFoundError(path, "model checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's own message advises weights_only=False: never (that would run the file's code)
        if "GLOBAL" in str(exc):
            raise InputError(
                f"{path}: not a plain checkpoint: it holds Python objects besides tensors and "
                "plain data, and loading those could run code; olmap does not load it (use a "
                "checkpoint written by olmap train)"
            ) from exc
        raise InputError(f"{path}: not a readable model checkpoint (not a torch file)") from exc
    except Exception as exc:
        raise InputError(f"{path}: not a readable model checkpoint ({first_line(exc)})") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise InputError(
            f"{path}: not an olmap model checkpoint (train one with 'olmap train'; "
            "torchvision weight files go to --weights)"
        )
    if payload.get("format_version") != FORMAT_VERSION:
        raise InputError(
            f"{path}: checkpoint format version {payload.get('format_version')} is not "
            f"supported by olmap {__version__} (expects {FORMAT_VERSION})"
        )
    try:
        raw = dict(payload["meta"])
        raw["classes"] = [(int(c), str(n)) for c, n in raw["classes"]]
        meta = ModelMeta(**raw)
        state = dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: damaged checkpoint metadata ({exc})") from exc
    if meta.architecture not in ARCHITECTURES:
        raise InputError(f"{path}: unknown architecture {meta.architecture!r}")
    _check_meta(path, meta)
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise InputError(
            f"{path}: {len(bad)} weight tensors hold NaN or infinite values (e.g. {bad[0]}): "
            "the training diverged or the file is damaged"
        )
    return state, meta


def _check_meta(path: Path, meta: ModelMeta) -> None:
    """Refuse metadata whose numbers are not numbers (a hand-edited or damaged file)."""
    ranges = {"input_mean": None, "input_std": (0.0, None), "threshold": (0.0, 1.0)}
    for name, bounds in ranges.items():
        value = getattr(meta, name)
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok = ok and math.isfinite(value)
        if ok and bounds is not None:
            low, high = bounds
            ok = value > low and (high is None or value < high)
        if not ok:
            raise InputError(f"{path}: damaged checkpoint metadata ({name} = {value!r})")
    if not meta.classes:
        raise InputError(f"{path}: damaged checkpoint metadata (no classes)")


def load_checkpoint(
    path: str | Path, *, device: str | torch.device = "cpu"
) -> tuple[Segmenter, ModelMeta]:
    """The model of an olmap checkpoint in eval mode on ``device``, with its metadata.

    Raises
    ------
    InputError
        If the file is unreadable or its weights do not match its architecture.
    """
    state, meta = read_checkpoint(path)
    try:
        model = build_model(meta)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from exc
    own = model.state_dict()
    expected = {k for k in own if not k.endswith("num_batches_tracked")}
    missing, unknown = expected - set(state), set(state) - set(own)
    wrong = [k for k in expected & set(state) if own[k].shape != state[k].shape]
    if missing or unknown or wrong:
        example = sorted(missing or unknown or set(wrong))[0]
        raise InputError(
            f"{path}: weights do not match architecture {meta.architecture} with "
            f"{len(meta.classes)} classes"
            + (f" from {len(meta.head_classes)} head classes" if meta.head_classes else "")
            + f" ({len(missing)} missing, {len(unknown)} unexpected, "
            f"{len(wrong)} wrong-shaped tensors, e.g. {example})"
        )
    model.load_state_dict(state, strict=False)  # only num_batches_tracked is absent
    return model.to(device).eval(), meta
