"""The project file of ``olmap run``: one thin section, its inputs and every stage's parameters.

A project file is YAML (``configs/demo.yaml`` is one)::

    name: my section
    out: results                  # results folder (relative paths: to this file's folder)
    inputs:
      bse: bse.tif
      eds: eds.tif                # or a list of ELEMENT=FILE entries, or a Bruker .bcf
      sessions: sessions.csv
      epma: epma.csv
      standards: standards.csv    # optional: session drift from reference standards
      reference: truth.tif        # optional: an independent reference mask for scoring
    train:
      config: cpu-quick           # base: a built-in name (configs/train/) or a YAML path
      max_minutes: 6              # keys here override the base
    predict: {window: 2048, stride: 1024}

Each stage's section is that stage's own parameter model (``TrainConfig``,
``PredictConfig``, ``CalibrateConfig``, ...) with its defaults, the paper's where it gives
one; a ``config:`` key names a base file whose values the section's keys override. Unknown
keys, wrong types, out-of-range values and missing files are reported in one line naming the
project file and the key, before any work starts (:func:`load_project`).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from olmap.composition.config import CalibrateConfig, MgMapConfig
from olmap.crystals.catalogue import check_rule_attributes
from olmap.crystals.classify import load_class_rules
from olmap.crystals.config import CrystalsConfig
from olmap.dataset.build import DEFAULT_TILE
from olmap.errors import InputError
from olmap.io.config import read_yaml, validation_message
from olmap.io.sessions import read_sessions
from olmap.masks.rules import load_rules
from olmap.masks.stream import DEFAULT_WINDOW
from olmap.segment.config import PredictConfig, TrainConfig
from olmap.synth.config import parse_size
from olmap.tiles.config import TilesConfig

#: Stages of ``olmap run`` in the order they run.
STAGES = (
    "masks",
    "dataset",
    "train",
    "predict",
    "evaluate",
    "calibrate",
    "mgmap",
    "crystals",
    "tiles",
    "report",
)


def builtin_configs() -> Path:
    """The parameter files shipped with olmap (``olmap/configs``, linked as ``configs/``)."""
    return Path(str(files("olmap") / "configs"))


def config_reference(value: str, kind: str, base_dir: Path) -> Path:
    """Resolve a parameter file named in a project: a built-in name or a path.

    Parameters
    ----------
    value : str
        ``cpu-quick`` (a built-in file, ``configs/KIND/cpu-quick.yaml``) or a path, relative
        to ``base_dir`` unless absolute (anything with a ``/`` or a ``.yaml``/``.yml`` suffix).
    kind : str
        Sub-folder of the built-in configs: ``rules``, ``train``, ``classes``, ...
    base_dir : path
        Folder of the project file.
    """
    if "/" not in value and "\\" not in value and Path(value).suffix not in (".yaml", ".yml"):
        path = builtin_configs() / kind / f"{value}.yaml"
        if not path.exists():
            names = sorted(p.stem for p in (builtin_configs() / kind).glob("*.yaml"))
            raise InputError(
                f"no built-in {kind} file {value!r} (built-in: {', '.join(names)}; "
                "or give a path to a YAML file)"
            )
        return path
    path = Path(value).expanduser()
    return path if path.is_absolute() else base_dir / path


class InputsConfig(BaseModel):
    """The files a user brings (shared/CLI.md, "Files a user brings")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bse: Path  # BSE mosaic: GeoTIFF, BigTIFF or VRT
    # EDS: one stack with bands named by element, a Bruker .bcf, or ELEMENT=FILE entries.
    # Needed to make training labels (masks) unless a trained model is reused.
    eds: tuple[str, ...] = ()
    sessions: Path | None = None  # session,x0_um,y0_um,x1_um,y1_um,split
    epma: Path | None = None  # microprobe profiles for the BSE -> mg# calibration
    standards: Path | None = None  # session drift from reference standards
    # An independent reference mask to score the prediction against (hand-drawn, or a
    # synthetic section's truth/phases.tif); scores against the EDS labels are always given.
    reference: Path | None = None

    @field_validator("eds", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value


class MasksStage(BaseModel):
    """``olmap masks``: training labels from EDS by element-ratio rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: str = "olivine"  # seed 002 sect. 3.4: Mg/Si and Ca rules (configs/rules/olivine.yaml)
    window: int = Field(DEFAULT_WINDOW, ge=64, le=16384)  # px per window (memory, not result)
    workers: int = Field(2, ge=1, le=256)  # threads (not part of the result)


class DatasetStage(BaseModel):
    """``olmap dataset``: BSE + label tiles per session, split by session."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # WIDTHxHEIGHT: the microscope's frame, 512 x 338 px in seed 002 sect. 3.5
    tile: str = f"{DEFAULT_TILE[1]}x{DEFAULT_TILE[0]}"
    stride: str | None = None  # WIDTHxHEIGHT; None = the tile size (no overlap)
    min_labelled: float = Field(0.5, ge=0, le=1)  # skip tiles with less labelled area

    @field_validator("tile", "stride")
    @classmethod
    def _size(cls, value: str | None) -> str | None:
        if value is not None:
            parse_size(value)
        return value


class TrainStage(TrainConfig):
    """``olmap train`` parameters, plus an optional checkpoint to reuse instead of training."""

    # A trained checkpoint (.pt) to use instead of training (``olmap run --model`` wins).
    model: Path | None = None


class CrystalsStage(CrystalsConfig):
    """``olmap crystals`` parameters, plus the class rules and the optional outputs."""

    classes: str = "olivine"  # seed 002 Table 2 (configs/classes/olivine.yaml)
    crops: bool = True  # a BSE crop per crystal (the viewer's popups show them)
    qupath: bool = False  # also crystals.qupath.geojson in pixel units

    def catalogue_config(self) -> CrystalsConfig:
        """The parameters of the catalogue itself."""
        return CrystalsConfig.model_validate(
            self.model_dump(exclude={"classes", "crops", "qupath"})
        )


class TilesStage(TilesConfig):
    """``olmap tiles`` parameters, plus the viewer's title."""

    title: str | None = None  # default: the project's name

    def tiles_config(self) -> TilesConfig:
        """The parameters of the site itself."""
        return TilesConfig.model_validate(self.model_dump(exclude={"title"}))


class ProjectConfig(BaseModel):
    """A validated project file (paths still as written; see :class:`Project`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "thin section"
    out: Path = Path("results")  # results folder
    inputs: InputsConfig
    masks: MasksStage = MasksStage()
    dataset: DatasetStage = DatasetStage()
    # The paper's recipe by default (ResNet-50, SGD: hours on a CPU); the demo uses cpu-quick.
    train: TrainStage = TrainStage()
    predict: PredictConfig = PredictConfig()
    calibrate: CalibrateConfig = CalibrateConfig()
    mgmap: MgMapConfig = MgMapConfig()
    crystals: CrystalsStage = CrystalsStage()
    tiles: TilesStage = TilesStage()


#: ``train.init`` values that name weights rather than a checkpoint file.
INIT_KEYWORDS = frozenset({"auto", "synthetic", "coco", "imagenet", "none"})

#: Built-in folder of each stage's ``config:`` base files.
BASE_KINDS = {
    "train": "train",
    "calibrate": "composition",
    "mgmap": "composition",
    "crystals": "crystals",
    "tiles": "tiles",
}


def _deep_merge(base: dict, over: dict) -> dict:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class Project:
    """A project file, validated, with every path resolved and every input checked.

    Attributes
    ----------
    path : Path
        The project file.
    config : ProjectConfig
    out : Path
        Absolute results folder.
    inputs : dict of str to Path
        The input files by role (``bse``, ``sessions``, ...; EDS files as ``eds``,
        ``eds:Mg``, ...), absolute.
    eds : list of str
        EDS arguments for ``olmap masks`` (absolute, ``ELEMENT=`` prefixes kept).
    rules, classes : Path
        The rule files of the masks and crystals stages.
    model : Path or None
        A checkpoint to reuse instead of training.
    """

    def __init__(self, path: Path, config: ProjectConfig, model: Path | None = None) -> None:
        self.path = path
        self.config = config
        self.base_dir = path.parent
        self.out = self._resolve(config.out)
        i = config.inputs
        self.inputs: dict[str, Path] = {"bse": self._resolve(i.bse)}
        self.eds: list[str] = []
        for k, entry in enumerate(i.eds):
            element, sep, file = entry.partition("=")
            if not sep:
                element, file = "", entry
            resolved = self._resolve(Path(file))
            self.inputs[f"eds:{element}" if element else f"eds{k or ''}"] = resolved
            self.eds.append(f"{element}={resolved}" if element else str(resolved))
        for role in ("sessions", "epma", "standards", "reference"):
            value = getattr(i, role)
            if value is not None:
                self.inputs[role] = self._resolve(value)
        if config.train.init not in INIT_KEYWORDS:
            # a checkpoint to start from: relative to the project file, like every path
            init = str(self._resolve(Path(config.train.init)))
            self.config = config = config.model_copy(
                update={"train": config.train.model_copy(update={"init": init})}
            )
        chosen = model if model is not None else config.train.model
        self.model = None if chosen is None else self._resolve(chosen)
        self.rules = config_reference(config.masks.rules, "rules", self.base_dir)
        self.classes = config_reference(config.crystals.classes, "classes", self.base_dir)

    def _resolve(self, path: Path) -> Path:
        path = Path(path).expanduser()
        return (path if path.is_absolute() else self.base_dir / path).resolve()

    @property
    def name(self) -> str:
        return self.config.name


def load_project(path: str | Path, *, model: str | Path | None = None) -> Project:
    """Read, validate and check a project file before any work starts.

    Parameters
    ----------
    path : path-like
        The project YAML.
    model : path-like, optional
        A trained checkpoint to use instead of training (``olmap run --model``).

    Raises
    ------
    InputError
        One line naming the project file, the key and the problem: an unknown key, a wrong
        type, an out-of-range value (a threshold outside (0, 1)), a missing input file, a
        sessions table or rule file that cannot be read, or inputs that cannot make a model.
    """
    path = Path(path).expanduser().resolve()
    data = read_yaml(path)
    if "inputs" not in data:
        raise InputError(f"{path}: inputs: missing (at least inputs.bse, the BSE mosaic)")
    for key in STAGES:
        if key in data and data[key] is None:  # a section with every key commented out
            data[key] = {}
    for stage, kind in BASE_KINDS.items():
        section = data.get(stage)
        if isinstance(section, dict) and "config" in section:
            section = dict(section)
            ref = section.pop("config")
            if not isinstance(ref, str):
                raise InputError(f"{path}: {stage}.config: expected a name or a path")
            try:
                base_file = config_reference(ref, kind, path.parent)
            except InputError as exc:
                raise InputError(f"{path}: {stage}.config: {exc}") from exc
            data[stage] = _deep_merge(read_yaml(base_file), section)
    try:
        config = ProjectConfig.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{path}: {validation_message(exc)}") from exc
    try:
        # --model is a command-line path: relative to the current folder (train.model, in
        # the file, is relative to the project file's folder)
        cli_model = None if model is None else Path(model).expanduser().resolve()
        project = Project(path, config, cli_model)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from exc
    _check_inputs(project)
    return project


def _check_inputs(project: Project) -> None:
    """Every named file exists and the small tables and rule files can be read."""
    path = project.path
    for role, file in project.inputs.items():
        if not file.exists():
            key = "inputs.eds" if role.startswith("eds") else f"inputs.{role}"
            raise InputError(f"{path}: {key}: file not found: {file}")
    if "standards" in project.inputs and "sessions" not in project.inputs:
        raise InputError(
            f"{path}: inputs.standards: needs inputs.sessions (which session measured where)"
        )
    if project.model is not None and not project.model.is_file():
        raise InputError(f"{path}: model: checkpoint not found: {project.model}")
    if project.model is None:
        if not project.eds:
            raise InputError(
                f"{path}: inputs.eds: needed to make training labels (or reuse a trained "
                "model with --model or train.model)"
            )
        if "sessions" not in project.inputs:
            raise InputError(
                f"{path}: inputs.sessions: needed to split the training tiles by session "
                "(or reuse a trained model with --model or train.model)"
            )
    init = project.config.train.init
    if project.model is None and init not in INIT_KEYWORDS and not Path(init).is_file():
        raise InputError(f"{path}: train.init: checkpoint not found: {init}")
    for key, file in (("masks.rules", project.rules), ("crystals.classes", project.classes)):
        if not file.exists():
            raise InputError(f"{path}: {key}: file not found: {file}")
    try:
        if project.eds:
            load_rules(project.rules)
        check_rule_attributes(
            load_class_rules(project.classes), project.config.crystals.catalogue_config()
        )
        if "sessions" in project.inputs:
            sessions = read_sessions(project.inputs["sessions"])
            if project.model is None:
                for split in ("train", "val"):
                    if split not in set(sessions["split"]):
                        raise InputError(
                            f"{project.inputs['sessions']}: no {split} session, needed to "
                            "train a model (or reuse one with --model)"
                        )
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from exc
