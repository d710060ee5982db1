"""``olmap demo``: the whole pipeline on a built-in synthetic section."""

from __future__ import annotations

import json
import re
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer

from olmap.cli._console import STATE, progress_bar, stderr, stdout
from olmap.cli._options import Overwrite, Seed, Workers
from olmap.cli.run import print_locations, print_run_summary, run_project
from olmap.cli.synth import print_section_summary, size_option
from olmap.errors import InputError
from olmap.io.outputs import atomic_dir, atomic_path
from olmap.pipeline.config import builtin_configs, load_project
from olmap.pipeline.provenance import RunRecord
from olmap.synth.config import SynthConfig
from olmap.synth.previews import write_section_previews
from olmap.synth.section import generate_section

#: The demo's project file (``configs/demo.yaml``), copied beside the section it runs on.
DEMO_PROJECT = "demo.yaml"


def _section_matches(section_dir: Path, cfg: SynthConfig) -> bool:
    """True when ``section_dir`` holds a finished section of exactly this configuration."""
    try:
        meta = json.loads((section_dir / "section.json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("config") == cfg.model_dump(mode="json")


def with_train_minutes(project_text: str, minutes: float) -> str:
    """The demo's project file with another training budget (its comments kept)."""
    text, n = re.subn(
        r"^(\s+max_minutes:\s*)[0-9.]+", rf"\g<1>{minutes:g}", project_text, flags=re.M
    )
    if n != 1:
        raise InputError(f"{DEMO_PROJECT}: expected one train.max_minutes line, found {n}")
    return text


def _check_demo_folder(out: Path) -> None:
    """Refuse to write the demo into a folder that is not empty and not an olmap demo."""
    if not out.exists() or not any(out.iterdir()):
        return
    # a section (or an unfinished one), or a run of the demo's project
    if not any((out / name).exists() for name in ("section", "section.partial", "run.json")):
        raise InputError(
            f"{out}: folder is not empty and holds no olmap demo; choose another --out"
        )
    try:
        ran = json.loads((out / "run.json").read_text()).get("project")
    except (OSError, ValueError):
        ran = None
    if ran is not None and Path(ran) != (out / "project.yaml").resolve():
        raise InputError(f"{out}: holds the results of {ran}, not of a demo; choose another --out")


def demo(
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("olmap-demo"),
    seed: Seed = 7,
    size: Annotated[str, typer.Option("--size", help="WIDTHxHEIGHT of the section.")] = "4096x4096",
    train_minutes: Annotated[
        float | None,
        typer.Option(
            "--train-minutes",
            min=0.01,
            help="Training budget written into OUT/project.yaml [default: configs/demo.yaml's, 6].",
        ),
    ] = None,
    workers: Workers = 2,
    overwrite: Overwrite = False,
) -> None:
    """Demo on a built-in synthetic section: from EDS and BSE to a report and a web viewer.

    Generates OUT/section (a synthetic section with ground truth) and OUT/previews/*.png,
    copies the demo's project file (configs/demo.yaml) to OUT/project.yaml and runs it
    (olmap run): olivine labels from EDS, training tiles, fine-tuning of olmap's shipped
    model, prediction over the mosaic, scores against the labels and the truth, the BSE ->
    mg# calibration and map, the crystal catalogue, the viewer (OUT/site/) and the report
    (OUT/report.html). Run again, it reuses the section and skips the stages that are up to
    date; --overwrite makes the section and project file anew.

    Example: olmap demo --out olmap-demo
    """
    width, height = size_option(size)
    cfg = SynthConfig(width=width, height=height, seed=seed, sessions=4)
    section_dir, previews_dir = out / "section", out / "previews"
    project_file = out / "project.yaml"
    _check_demo_folder(out)
    if overwrite or not _section_matches(section_dir, cfg):
        if section_dir.exists() and any(section_dir.iterdir()) and not overwrite:
            raise InputError(
                f"{section_dir}: holds another section (not seed {seed}, {size}); "
                "pass --overwrite to make it anew"
            )
        with progress_bar("synthetic section", total=width * height / 1e6, unit="Mpx") as adv:
            summary = generate_section(
                section_dir,
                cfg,
                overwrite=overwrite or section_dir.exists(),
                workers=workers,
                progress=lambda n: adv(n / 1e6),
            )
        print_section_summary(summary)
        quiet = STATE.quiet
        with stderr.status("writing previews", spinner="dots") if not quiet else nullcontext():
            with atomic_dir(previews_dir, overwrite=True) as tmp:
                write_section_previews(section_dir, tmp)
    else:
        stdout.print(f"Reusing the synthetic section in {section_dir} (seed {seed}, {size})")
    stdout.print(f"Previews: {previews_dir}", soft_wrap=True)
    if overwrite or train_minutes is not None or not project_file.exists():
        # the user may have edited an existing project file: only --overwrite discards it
        keep = project_file.exists() and not overwrite
        text = (project_file if keep else builtin_configs() / DEMO_PROJECT).read_text()
        if train_minutes is not None:
            text = with_train_minutes(text, train_minutes)
        with atomic_path(project_file, overwrite=True) as tmp:
            tmp.write_text(text)
    project = load_project(project_file)
    stdout.print(f"Project: {project_file} (edit it and run: olmap run {project_file})")
    layout, statuses = run_project(
        project,
        replace_unrecorded=True,  # the demo's folder is olmap's own (checked above)
        command=f"olmap demo --out {out} --seed {seed} --size {size}",
    )
    print_run_summary(RunRecord.load(layout.run_json), statuses)
    print_locations(layout, statuses)
