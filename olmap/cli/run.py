"""``olmap run``: the whole pipeline of a thin section from one project file."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.table import Table

from olmap.cli._console import STATE, stdout
from olmap.errors import InputError
from olmap.io.outputs import atomic_path, output_lock
from olmap.pipeline.config import STAGES, Project, load_project
from olmap.pipeline.provenance import HashCache, RunRecord, library_versions, machine, now
from olmap.pipeline.runner import RAN, StageDecision, run_stages
from olmap.pipeline.stages import RunLayout, Stage, plan_stages
from olmap.report.html import build_report


def _write_params(stage: Stage, layout: RunLayout) -> None:
    """``OUT/stage-params/STAGE.yaml``: the stage's parameters, its command's ``--config``."""
    if stage.param_file is None:
        return
    layout.params.mkdir(parents=True, exist_ok=True)
    with atomic_path(layout.param_file(stage.name), overwrite=True) as tmp:
        tmp.write_text(
            f"# {stage.name} parameters written by olmap run: its --config (edit the project "
            "file, not this)\n" + yaml.safe_dump(stage.param_file, sort_keys=False)
        )


def _global_flags() -> list[str]:
    """This invocation's -v/-q/--debug, for the stage commands run inside it."""
    flags = ["--verbose"] * STATE.verbose
    return flags + (["--quiet"] if STATE.quiet else []) + (["--debug"] if STATE.debug else [])


class StageRunner:
    """Runs one stage of a project: its recorded command lines, parsed and run in-process
    by olmap's own CLI, so what runs is exactly what ``run.json`` records (plus
    ``--overwrite`` where the stage's outputs exist and are being replaced)."""

    def __init__(self, project: Project, layout: RunLayout, record: RunRecord) -> None:
        self.project, self.layout, self.record = project, layout, record

    def __call__(self, stage: Stage, overwrite: bool) -> None:
        from olmap.cli.main import app  # main imports this module

        _write_params(stage, self.layout)
        if stage.name == "report":
            self._report(stage)
            return
        for argv in stage.commands:
            assert argv[0] == "olmap", argv
            args = [*_global_flags(), *argv[1:], *(["--overwrite"] if overwrite else [])]
            # Not standalone: errors propagate to olmap's one-line reporting (cli/main.py).
            app(args=args, prog_name="olmap", standalone_mode=False)

    def _report(self, stage: Stage) -> None:
        path = build_report(
            self.layout,
            self.record.data,
            name=self.project.name,
            model=self.project.model,
            outputs=stage.inputs.values(),
            overwrite=True,
        )
        stdout.print(f"Wrote {path}", soft_wrap=True)


def print_run_summary(record: RunRecord, statuses: dict[str, str]) -> None:
    """Per stage: this run's status, and the wall time and peak memory of its last run."""
    table = Table("stage", "this run", "wall time s", "peak memory MB", title="olmap run")
    for name, status in statuses.items():
        entry = record.stages.get(name, {})
        secs, peak = entry.get("wall_s"), entry.get("peak_rss_mb")
        table.add_row(
            name,
            status,
            "-" if secs is None else f"{secs:,.1f}",
            "-" if peak is None else f"{peak:,.0f}",
        )
    stdout.print(table)


def run_project(
    project: Project,
    *,
    force: bool = False,
    replace_unrecorded: bool = False,
    only: list[str] | None = None,
    command: str = "",
) -> tuple[RunLayout, dict[str, str]]:
    """Run (or bring up to date) every stage of a project; return the layout and statuses."""
    layout = RunLayout(project.out)
    stages = plan_stages(project, layout)
    names = [s.name for s in stages]
    if only:
        unknown = [s for s in only if s not in STAGES]
        if unknown:
            raise InputError(f"--stage {unknown[0]}: unknown stage (stages: {', '.join(STAGES)})")
        absent = [s for s in only if s not in names]
        if absent:
            raise InputError(
                f"--stage {absent[0]}: not part of this project's run "
                f"({', '.join(names)}; a reused model leaves out dataset and train)"
            )
    # One run per results folder: a second stops at once (OUT.lock beside it).
    with output_lock(layout.out):
        record = RunRecord.load(layout.run_json)
        other = record.data.get("project")
        if other is not None and Path(other) != project.path and not force:
            raise InputError(
                f"{layout.run_json}: these are the results of another project file ({other}); "
                "give this one another out folder, or pass --force to replace them"
            )
        layout.out.mkdir(parents=True, exist_ok=True)
        cache = HashCache(layout.out / ".olmap" / "hashes.json")
        record.data.update(
            {
                "format": "olmap-run",
                "version": 1,
                "project": str(project.path),
                "project_hash": cache.file(project.path),
                "command": command,
                "started_at": now(),
                "versions": library_versions(),
                "machine": machine(),
                "config": project.config.model_dump(mode="json"),
                "model": None if project.model is None else str(project.model),
                "inputs": {
                    role: {"path": str(p), "blake2b": cache.input(p)}
                    for role, p in project.inputs.items()
                },
                "stage_order": names,
            }
        )
        for key in ("finished_at", "last_run"):  # set when this run ends
            record.data.pop(key, None)
        record.save()
        total = len(stages)

        def on_stage(index: int, stage: Stage, decision: StageDecision) -> None:
            if STATE.quiet:
                return
            if decision.run:
                stdout.rule(f"[bold][{index + 1}/{total}] {stage.name}[/]: {stage.title}")
                stdout.print(f"[dim]{decision.reason}[/]")
            else:
                stdout.print(f"[{index + 1}/{total}] {stage.name}: up to date, skipped")

        statuses = run_stages(
            stages,
            record,
            cache,
            StageRunner(project, layout, record),
            root=layout.out,
            force=force,
            replace_unrecorded=replace_unrecorded,
            only=only,
            on_stage=on_stage,
        )
        record.data["finished_at"] = now()
        record.data["last_run"] = statuses
        record.save()
    return layout, statuses


def run(
    project: Annotated[
        Path,
        typer.Argument(
            help="Project file (YAML), e.g. olmap-demo/project.yaml.", show_default=False
        ),
    ],
    model: Annotated[
        Path | None,
        typer.Option(
            "--model", help="Trained checkpoint to use instead of training (no dataset, no train)."
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Rerun every stage, even those up to date.")
    ] = False,
    stage: Annotated[
        list[str] | None,
        typer.Option(
            "--stage",
            help=f"Run only this stage (repeat for several): {', '.join(STAGES)}.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the whole pipeline of a thin section described in a project file.

    masks -> dataset -> train -> predict -> evaluate -> calibrate -> mgmap -> crystals ->
    tiles -> report, each through its own command, into the project's results folder. A
    stage whose inputs and parameters are unchanged since it last ran (content hashes in
    OUT/run.json) is skipped; --force reruns. --model reuses a trained checkpoint instead of
    training. OUT/run.json records versions, inputs, parameters, the equivalent command of
    each stage, its wall time and peak memory; OUT/report.html shows the results. Interrupted,
    the same command resumes at the stage it was in.

    Example: olmap run project.yaml --model olmap-demo/model.pt
    """
    loaded = load_project(project, model=model)
    argv = ["olmap", "run", str(project)]
    argv += ["--model", str(model)] if model else []
    argv += ["--force"] if force else []
    for s in stage or []:
        argv += ["--stage", s]
    layout, statuses = run_project(loaded, force=force, only=stage, command=shlex.join(argv))
    print_run_summary(RunRecord.load(layout.run_json), statuses)
    print_locations(layout, statuses)


def print_locations(layout: RunLayout, statuses: dict[str, str]) -> None:
    """Where the report and the viewer are (the last lines of a run)."""
    if not any(s == RAN for s in statuses.values()):
        stdout.print("Nothing to do: every stage is up to date.")
    if layout.report.exists():
        stdout.print(f"Report: {layout.report}", soft_wrap=True)
    if (layout.site / "index.html").exists():
        stdout.print(f"Viewer: {layout.site / 'index.html'}", soft_wrap=True)
        stdout.print(f"Serve it with: olmap serve {layout.site}", soft_wrap=True)
