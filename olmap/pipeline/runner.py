"""Run a project's stages in order, skipping those whose inputs and parameters are unchanged.

The runner knows nothing of what a stage does: it is given :class:`~olmap.pipeline.stages.Stage`
records and a function that runs one. For each stage it hashes the inputs, compares the
fingerprint and the outputs with the stage's record in ``run.json``, runs it (measuring wall
time and peak memory) or skips it, and saves the record at once, so an interrupted run
resumes at the stage it was in (which itself resumes where it stopped, if it can).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from olmap import __version__
from olmap.errors import InputError
from olmap.io.resume import RunInterrupted
from olmap.pipeline.provenance import HashCache, RunRecord, fingerprint, measure, now
from olmap.pipeline.stages import Stage

#: Status of a stage in this run.
RAN, SKIPPED, NOT_SELECTED = "ran", "skipped (up to date)", "not selected"


@dataclass(frozen=True)
class StageDecision:
    """Whether a stage must run, and why."""

    run: bool
    reason: str


def _output_hashes(stage: Stage, cache: HashCache, root: Path) -> dict[str, str] | None:
    """Hashes of the stage's outputs by path relative to ``root``; None if one is missing."""
    if not all(p.exists() for p in stage.outputs):
        return None
    return {_rel(p, root): cache.input(p) for p in stage.outputs}


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


def decide(
    previous: dict | None,
    stage_fingerprint: str,
    input_hashes: dict[str, str],
    outputs: dict[str, str] | None,
    *,
    force: bool,
) -> StageDecision:
    """Run or skip: skip only when the last run had the same fingerprint and its outputs are
    all there, unchanged."""
    if force:
        return StageDecision(True, "forced (--force)")
    if previous is None or previous.get("outputs") is None:
        return StageDecision(True, "not run before" if previous is None else "did not finish")
    if outputs is None:
        return StageDecision(True, "outputs missing")
    if previous.get("fingerprint") != stage_fingerprint:
        before = previous.get("input_hashes", {})
        changed = sorted(
            r for r in input_hashes.keys() | before.keys() if before.get(r) != input_hashes.get(r)
        )
        what = f"inputs changed: {', '.join(changed)}" if changed else "parameters changed"
        return StageDecision(True, what)
    if previous.get("outputs") != outputs:
        return StageDecision(True, "outputs changed since it ran")
    return StageDecision(False, "up to date")


def run_stages(
    stages: Sequence[Stage],
    record: RunRecord,
    cache: HashCache,
    execute: Callable[[Stage, bool], None],
    *,
    root: Path,
    force: bool = False,
    replace_unrecorded: bool = False,
    only: Collection[str] | None = None,
    on_stage: Callable[[int, Stage, StageDecision], None] | None = None,
) -> dict[str, str]:
    """Run the stages in order; return each one's status (:data:`RAN`, :data:`SKIPPED`, ...).

    Parameters
    ----------
    stages : sequence of Stage
    record : RunRecord
        ``run.json``; updated and saved after every stage.
    cache : HashCache
        Content hashes (saved with the record).
    execute : callable
        ``execute(stage, overwrite)`` runs one stage; ``overwrite`` is true when some of its
        outputs exist (they are replaced).
    root : Path
        The results folder (outputs are recorded relative to it).
    force : bool
        Rerun every selected stage.
    replace_unrecorded : bool
        Replace outputs that exist without a record of the stage that made them (otherwise
        an error: they may be someone's results).
    only : collection of str, optional
        Run only these stages (the others are neither run nor checked).
    on_stage : callable, optional
        ``on_stage(index, stage, decision)`` before each stage.

    Raises
    ------
    InputError
        A stage's input is missing (a stage it depends on was not run), or its outputs exist
        without a record and ``replace_unrecorded`` is false.
    """
    statuses: dict[str, str] = {}
    for index, stage in enumerate(stages):
        if only is not None and stage.name not in only:
            statuses[stage.name] = NOT_SELECTED
            continue
        missing = [role for role, p in stage.inputs.items() if not p.exists()]
        if missing:
            role = missing[0]
            raise InputError(
                f"stage {stage.name}: its input {role} ({stage.inputs[role]}) does not exist; "
                "run the stages before it first"
            )
        input_hashes = {role: cache.input(p) for role, p in stage.inputs.items()}
        stage_fp = fingerprint(stage.name, stage.fingerprint_params(), input_hashes)
        previous = record.stages.get(stage.name)
        outputs = _output_hashes(stage, cache, root)
        decision = decide(previous, stage_fp, input_hashes, outputs, force=force)
        if on_stage is not None:
            on_stage(index, stage, decision)
        if not decision.run:
            previous["status"] = SKIPPED
            statuses[stage.name] = SKIPPED
            record.save()
            continue
        existing = [p for p in stage.outputs if p.exists()]
        if existing and previous is None and not (force or replace_unrecorded):
            raise InputError(
                f"{existing[0]}: exists, but {record.path} has no record of the {stage.name} "
                "stage that makes it; pass --force to replace it"
            )
        entry = {
            "status": "running",
            "title": stage.title,
            "fingerprint": stage_fp,
            "params": stage.params,
            "inputs": {role: str(p) for role, p in stage.inputs.items()},
            "input_hashes": input_hashes,
            "command": stage.command_line(),
            "olmap": __version__,
            "started_at": now(),
        }
        record.stages[stage.name] = entry
        record.save()
        cache.save()  # the inputs' hashes, even if this stage is interrupted
        try:
            with measure() as usage:
                execute(stage, bool(existing))
        except BaseException as exc:
            # recorded, so the next run knows this stage did not finish (and reruns it)
            stopped = isinstance(exc, KeyboardInterrupt | RunInterrupted)
            entry.update(status="interrupted" if stopped else "failed", stopped_at=now())
            record.save()
            raise
        entry.update(
            status=RAN,
            outputs=_output_hashes(stage, cache, root),
            wall_s=round(usage.seconds, 2),
            peak_rss_mb=None if usage.peak_rss_mb is None else round(usage.peak_rss_mb, 1),
            peak_scope=usage.peak_scope,
            ran_at=now(),
        )
        statuses[stage.name] = RAN
        cache.save()
        record.save()
    cache.save()
    return statuses
