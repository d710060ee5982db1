"""The stages of ``olmap run`` as data: what each reads, writes and is parameterised by.

:func:`plan_stages` turns a :class:`~olmap.pipeline.config.Project` into a list of
:class:`Stage` records (masks -> dataset -> train -> predict -> evaluate -> calibrate ->
mgmap -> crystals -> tiles -> report). Nothing runs here: ``olmap/cli/run.py`` runs each stage
through its own command, with the parameters written to ``OUT/stage-params/STAGE.yaml``, so that
every stage can also be run alone with the command recorded in ``run.json``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from olmap.composition.calibrate import calibration_outputs
from olmap.pipeline.config import INIT_KEYWORDS, Project
from olmap.segment.config import output_paths

#: Parameters that change how fast a stage runs, never what it writes: left out of the
#: fingerprint, so changing them does not rerun a stage (predict: as its own resume
#: fingerprint, olmap.segment.predict; masks: windows are exact, olmap.masks.stream).
EXECUTION_ONLY = frozenset({"workers"})
PREDICT_EXECUTION_ONLY = frozenset({"workers", "batch_size", "device", "band", "save_every_s"})
MASKS_EXECUTION_ONLY = frozenset({"workers", "window"})


@dataclass(frozen=True)
class RunLayout:
    """Where ``olmap run`` writes, inside the results folder ``out``."""

    out: Path

    @property
    def mask(self) -> Path:
        return self.out / "mask.tif"

    @property
    def mask_report(self) -> Path:
        return self.out / "mask.report.json"

    @property
    def dataset(self) -> Path:
        return self.out / "dataset"

    @property
    def model(self) -> Path:
        return self.out / "model.pt"

    @property
    def prob(self) -> Path:
        return self.out / "prob.tif"

    @property
    def pred_mask(self) -> Path:
        return self.out / "pred_mask.tif"

    @property
    def evaluation(self) -> Path:
        """Scores of the predicted mask against the EDS labels."""
        return self.out / "evaluation.json"

    @property
    def evaluation_reference(self) -> Path:
        """Scores of the predicted mask against the project's independent reference."""
        return self.out / "evaluation.reference.json"

    @property
    def calibration(self) -> Path:
        return self.out / "calibration.json"

    @property
    def mgnum(self) -> Path:
        return self.out / "mgnum.tif"

    @property
    def outliers(self) -> Path:
        return self.out / "mgnum.outliers.tif"

    @property
    def catalogue(self) -> Path:
        return self.out / "catalogue"

    @property
    def site(self) -> Path:
        return self.out / "site"

    @property
    def report(self) -> Path:
        return self.out / "report.html"

    @property
    def run_json(self) -> Path:
        return self.out / "run.json"

    @property
    def params(self) -> Path:
        """Folder of the resolved parameter files of each stage (their ``--config``)."""
        return self.out / "stage-params"

    def param_file(self, stage: str) -> Path:
        return self.params / f"{stage}.yaml"


@dataclass(frozen=True)
class Stage:
    """One stage of a run.

    Attributes
    ----------
    name : str
        ``masks``, ``dataset``, ... (:data:`~olmap.pipeline.config.STAGES`).
    title : str
        What it does, in a few words.
    inputs : dict of str to Path
        Files and folders it reads, by role.
    outputs : tuple of Path
        Files and folders it writes (all exist after it ran).
    params : dict
        Its parameters, JSON-ready (part of the fingerprint, less :data:`EXECUTION_ONLY`).
    param_file : dict or None
        Content of ``OUT/stage-params/NAME.yaml``, the ``--config`` file of its command.
    commands : list of list of str
        The equivalent stand-alone command lines (argv lists; evaluate may have two).
    execution_only : frozenset of str
        Parameter names left out of the fingerprint.
    """

    name: str
    title: str
    inputs: dict[str, Path]
    outputs: tuple[Path, ...]
    params: dict = field(default_factory=dict)
    param_file: dict | None = None
    commands: list[list[str]] = field(default_factory=list)
    execution_only: frozenset[str] = EXECUTION_ONLY

    def fingerprint_params(self) -> dict:
        return _strip(self.params, self.execution_only)

    def command_line(self) -> str:
        """The stand-alone commands as one shell line."""
        return " && ".join(shlex.join(argv) for argv in self.commands)


def _strip(value, names: frozenset[str]):
    if isinstance(value, dict):
        return {k: _strip(v, names) for k, v in value.items() if k not in names}
    return value


def _json(model) -> dict:
    return model.model_dump(mode="json")


def plan_stages(project: Project, layout: RunLayout) -> list[Stage]:
    """The stages of a run of ``project``, in order.

    Without a model to reuse, masks, dataset and train make one; with one, they are left out
    (and masks stays only to score the prediction against the EDS labels, where EDS is
    given). Without EPMA profiles, calibrate and mgmap are left out and the catalogue has
    no mg#.
    """
    cfg, inputs, L = project.config, project.inputs, layout
    stages: list[Stage] = []
    bse = inputs["bse"]
    sessions = inputs.get("sessions")
    if project.eds:
        eds_inputs = {k: v for k, v in inputs.items() if k.startswith("eds")}
        stages.append(
            Stage(
                "masks",
                "olivine labels from EDS (olmap masks)",
                {**eds_inputs, "bse": bse, "rules": project.rules},
                (L.mask, L.mask_report),
                params=_json(cfg.masks),
                execution_only=MASKS_EXECUTION_ONLY,
                commands=[
                    [
                        "olmap",
                        "masks",
                        *(a for e in project.eds for a in ("--eds", e)),
                        "--rules",
                        str(project.rules),
                        "--bse",
                        str(bse),
                        "--out",
                        str(L.mask),
                        "--window",
                        str(cfg.masks.window),
                        "--workers",
                        str(cfg.masks.workers),
                    ]
                ],
            )
        )
    model = project.model
    if model is None:
        assert sessions is not None  # load_project checks it
        ds = cfg.dataset
        stages.append(
            Stage(
                "dataset",
                "training tiles by session (olmap dataset)",
                {"bse": bse, "labels": L.mask, "sessions": sessions},
                (L.dataset,),
                params=_json(ds),
                commands=[
                    [
                        "olmap",
                        "dataset",
                        "--bse",
                        str(bse),
                        "--labels",
                        str(L.mask),
                        "--sessions",
                        str(sessions),
                        "--out",
                        str(L.dataset),
                        "--tile",
                        ds.tile,
                        *(["--stride", ds.stride] if ds.stride else []),
                        "--min-labelled",
                        f"{ds.min_labelled:g}",
                    ]
                ],
            )
        )
        train = cfg.train.model_dump(mode="json", exclude={"model"})
        curves_csv, curves_png, _ = output_paths(L.model)
        stages.append(
            Stage(
                "train",
                "fine-tune DeepLabV3 on BSE tiles (olmap train)",
                # a checkpoint to start from is an input (keywords such as "auto" are
                # resolved when training starts; the checkpoint records the choice)
                {"dataset": L.dataset}
                | ({"init": Path(cfg.train.init)} if cfg.train.init not in INIT_KEYWORDS else {}),
                (L.model, curves_csv, curves_png),
                params=train,
                param_file=train,
                commands=[
                    [
                        "olmap",
                        "train",
                        "--dataset",
                        str(L.dataset),
                        "--config",
                        str(L.param_file("train")),
                        "--out",
                        str(L.model),
                    ]
                ],
            )
        )
        model = L.model
    p = cfg.predict
    stages.append(
        Stage(
            "predict",
            "olivine probability and mask over the mosaic (olmap predict)",
            {"model": model, "bse": bse},
            (L.prob, L.pred_mask),
            params=_json(p),
            execution_only=PREDICT_EXECUTION_ONLY,
            commands=[
                [
                    "olmap",
                    "predict",
                    "--model",
                    str(model),
                    "--bse",
                    str(bse),
                    "--out-prob",
                    str(L.prob),
                    "--out-mask",
                    str(L.pred_mask),
                    "--window",
                    str(p.window),
                    "--stride",
                    str(p.step),
                    *(["--threshold", f"{p.threshold:g}"] if p.threshold is not None else []),
                    "--blend",
                    p.blend,
                    "--batch",
                    str(p.batch_size),
                    "--amp",
                    p.amp,
                    "--device",
                    p.device,
                    *(["--band", str(p.band)] if p.band else []),
                    *(["--flips"] if p.flips else []),
                    *(["--bse-scale", f"{p.bse_scale}"] if p.bse_scale is not None else []),
                    "--save-every",
                    f"{p.save_every_s:g}",
                ]
            ],
        )
    )
    references = {}
    if project.eds:
        references["labels"] = L.mask
    if "reference" in inputs:
        references["reference"] = inputs["reference"]
    if references:
        outputs = tuple(
            L.evaluation if role == "labels" else L.evaluation_reference for role in references
        )
        commands = []
        for role, ref in references.items():
            out = L.evaluation if role == "labels" else L.evaluation_reference
            argv = ["olmap", "evaluate", "--pred", str(L.pred_mask), "--ref", str(ref)]
            argv += ["--sessions", str(sessions)] if sessions else []
            commands.append([*argv, "--json", str(out)])
        stages.append(
            Stage(
                "evaluate",
                "score the predicted mask (olmap evaluate)",
                {"pred_mask": L.pred_mask, **references}
                | ({"sessions": sessions} if sessions else {}),
                outputs,
                commands=commands,
            )
        )
    epma, standards = inputs.get("epma"), inputs.get("standards")
    drift = ["--standards", str(standards), "--sessions", str(sessions)]
    with_drift = standards is not None and sessions is not None
    if epma is not None:
        cal = _json(cfg.calibrate)
        stages.append(
            Stage(
                "calibrate",
                "BSE -> mg# against the EPMA profiles (olmap calibrate)",
                {"bse": bse, "mask": L.pred_mask, "profiles": epma}
                | ({"standards": standards, "sessions": sessions} if with_drift else {}),
                tuple(calibration_outputs(L.calibration).values()),
                params=cal,
                param_file=cal,
                commands=[
                    [
                        "olmap",
                        "calibrate",
                        "--bse",
                        str(bse),
                        "--mask",
                        str(L.pred_mask),
                        "--profiles",
                        str(epma),
                        *(drift if with_drift else []),
                        "--config",
                        str(L.param_file("calibrate")),
                        "--out",
                        str(L.calibration),
                    ]
                ],
            )
        )
        mg = _json(cfg.mgmap)
        stages.append(
            Stage(
                "mgmap",
                "mg# map with LOF outliers removed (olmap mgmap)",
                {"bse": bse, "mask": L.pred_mask, "calibration": L.calibration},
                (L.mgnum, L.outliers),
                params=mg,
                param_file=mg,
                commands=[
                    [
                        "olmap",
                        "mgmap",
                        "--bse",
                        str(bse),
                        "--mask",
                        str(L.pred_mask),
                        "--calibration",
                        str(L.calibration),
                        "--config",
                        str(L.param_file("mgmap")),
                        "--out",
                        str(L.mgnum),
                    ]
                ],
            )
        )
    cr = cfg.crystals
    catalogue = _json(cr.catalogue_config())
    mg_inputs = {"mgmap": L.mgnum, "outliers": L.outliers} if epma is not None else {}
    stages.append(
        Stage(
            "crystals",
            "crystal catalogue (olmap crystals)",
            {"bse": bse, "mask": L.pred_mask, **mg_inputs, "classes": project.classes}
            | ({"sessions": sessions} if sessions else {}),
            (L.catalogue,),
            params=_json(cr),
            param_file=catalogue,
            commands=[
                [
                    "olmap",
                    "crystals",
                    "--bse",
                    str(bse),
                    "--mask",
                    str(L.pred_mask),
                    *(["--mgmap", str(L.mgnum)] if epma is not None else []),
                    *(["--sessions", str(sessions)] if sessions else []),
                    "--classes",
                    str(project.classes),
                    "--config",
                    str(L.param_file("crystals")),
                    *(["--crops"] if cr.crops else []),
                    *(["--qupath"] if cr.qupath else []),
                    "--out",
                    str(L.catalogue),
                ]
            ],
        )
    )
    ti = cfg.tiles
    tiles = _json(ti.tiles_config())
    title = ti.title or project.name
    layers = {"bse": bse, "prob": L.prob, "catalogue": L.catalogue}
    if epma is not None:
        layers["mgnum"] = L.mgnum
    stages.append(
        Stage(
            "tiles",
            "maps and web viewer (olmap tiles)",
            layers,
            (L.site,),
            params=_json(ti) | {"title": title},
            param_file=tiles,
            commands=[
                [
                    "olmap",
                    "tiles",
                    "--bse",
                    str(bse),
                    "--prob",
                    str(L.prob),
                    *(["--mgnum", str(L.mgnum)] if epma is not None else []),
                    "--catalogue",
                    str(L.catalogue / "crystals.gpkg"),
                    "--config",
                    str(L.param_file("tiles")),
                    "--title",
                    title,
                    "--out",
                    str(L.site),
                ]
            ],
        )
    )
    report_inputs: dict[str, Path] = {}
    for stage in stages:
        for out in stage.outputs:
            report_inputs[str(out.relative_to(L.out))] = out
    stages.append(
        Stage(
            "report",
            "HTML report (olmap run)",
            report_inputs,
            (L.report,),
            params={"name": project.name},
        )
    )
    return stages
