"""Content hashes, fingerprints, memory measurement and the stage runner's decisions."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from olmap.errors import InputError
from olmap.io.raster import write_raster
from olmap.mosaic.layout import Placement
from olmap.mosaic.vrt import write_mosaic
from olmap.pipeline.provenance import (
    HashCache,
    RunRecord,
    fingerprint,
    folder_listing_hash,
    library_versions,
    measure,
)
from olmap.pipeline.runner import NOT_SELECTED, RAN, SKIPPED, run_stages
from olmap.pipeline.stages import Stage


def test_file_hashes_follow_content_and_are_cached_by_size_and_mtime(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("x,y\n1,2\n")
    b.write_text("x,y\n1,2\n")
    cache = HashCache(tmp_path / "cache.json")
    assert cache.file(a) == cache.file(b)  # content, not name
    before = cache.file(a)
    a.write_text("x,y\n1,3\n")  # same size, new mtime: read again
    edited = cache.file(a)
    assert edited != before
    cache.save()
    # A reloaded cache trusts (size, mtime): a same-size edit that keeps the mtime is not
    # read again (what make and rsync assume too).
    mtime = a.stat().st_mtime_ns
    a.write_text("x,y\n9,9\n")
    os.utime(a, ns=(mtime, mtime))
    assert HashCache(tmp_path / "cache.json").file(a) == edited


def test_vrt_hash_covers_its_source_tiles(tmp_path):
    tiles = []
    for i in range(2):
        path = tmp_path / f"t{i}.tif"
        write_raster(path, np.full((32, 32), i, np.uint8), pixel_size_um=1.0)
        tiles.append(path)
    vrt = tmp_path / "mosaic.vrt"
    placements = [
        Placement(t, row=0, col=32 * i, height=32, width=32, keep=(0, 0, 32, 32))
        for i, t in enumerate(tiles)
    ]
    write_mosaic(vrt, placements, height=32, width=64, dtype="uint8", pixel_size_um=1.0)
    cache = HashCache(tmp_path / "c.json")
    before = cache.input(vrt)
    write_raster(tiles[1], np.full((32, 32), 7, np.uint8), pixel_size_um=1.0, overwrite=True)
    assert HashCache(tmp_path / "c.json").input(vrt) != before


def test_folder_hash_changes_when_a_file_is_rewritten(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.txt").write_text("1")
    before = folder_listing_hash(tmp_path / "d")
    assert folder_listing_hash(tmp_path / "d") == before
    (tmp_path / "d" / "x.txt").write_text("22")
    assert folder_listing_hash(tmp_path / "d") != before


def test_fingerprint_depends_on_parameters_and_inputs():
    base = fingerprint("crystals", {"min_area_um2": 100}, {"mask": "aa"})
    assert base == fingerprint("crystals", {"min_area_um2": 100}, {"mask": "aa"})
    assert base != fingerprint("crystals", {"min_area_um2": 50}, {"mask": "aa"})
    assert base != fingerprint("crystals", {"min_area_um2": 100}, {"mask": "ab"})
    assert base != fingerprint("tiles", {"min_area_um2": 100}, {"mask": "aa"})


def test_measure_reports_the_peak_of_the_block():
    with measure() as small:
        np.ones(1000)
    with measure() as big:
        block = np.ones(300 * 2**20 // 8)  # 300 MB, touched
        block[::512] += 1
        del block
    assert big.peak_rss_mb is not None and small.peak_rss_mb is not None
    if big.peak_scope == "stage":  # Linux: the high-water mark is reset per block
        assert big.peak_rss_mb - small.peak_rss_mb > 250
    assert big.seconds >= 0
    versions = library_versions()
    assert versions["olmap"] and versions["torch"] and versions["gdal"]


def _copy_stage(name: str, src: Path, dst: Path, params: dict | None = None) -> Stage:
    return Stage(name, f"copy {src.name}", {"src": src}, (dst,), params=params or {})


def _execute(log: list[str]):
    def execute(stage: Stage, overwrite: bool) -> None:
        log.append(stage.name)
        (dst,) = stage.outputs
        text = stage.inputs["src"].read_text()
        dst.write_text(text + stage.params.get("suffix", ""))

    return execute


def test_runner_skips_unchanged_stages_and_reruns_what_changed(tmp_path):
    src, mid, end = tmp_path / "in.txt", tmp_path / "mid.txt", tmp_path / "end.txt"
    src.write_text("a")

    def stages(suffix=""):
        return [
            _copy_stage("first", src, mid, {"suffix": suffix}),
            _copy_stage("second", mid, end),
        ]

    log: list[str] = []

    def run(**kw):
        record = RunRecord.load(tmp_path / "run.json")
        cache = HashCache(tmp_path / "h.json")
        return run_stages(
            kw.pop("plan", stages()), record, cache, _execute(log), root=tmp_path, **kw
        )

    assert run() == {"first": RAN, "second": RAN} and log == ["first", "second"]
    assert end.read_text() == "a"
    assert run() == {"first": SKIPPED, "second": SKIPPED} and len(log) == 2
    record = RunRecord.load(tmp_path / "run.json").stages
    assert record["first"]["outputs"] == {"mid.txt": HashCache(tmp_path / "x").file(mid)}
    assert record["first"]["wall_s"] >= 0 and record["first"]["peak_rss_mb"] > 0
    # a parameter of the first stage: both rerun (the second's input changed)
    assert run(plan=stages("!")) == {"first": RAN, "second": RAN}
    assert end.read_text() == "a!"
    # an output edited by hand: that stage reruns; its output is the same, so not the next
    mid.write_text("edited")
    assert run(plan=stages("!")) == {"first": RAN, "second": SKIPPED}
    # an input changed
    src.write_text("b")
    assert run(plan=stages("!")) == {"first": RAN, "second": RAN}
    assert end.read_text() == "b!"
    assert run(plan=stages("!"), force=True) == {"first": RAN, "second": RAN}
    assert run(plan=stages("!"), only=["second"]) == {"first": NOT_SELECTED, "second": SKIPPED}
    end.unlink()
    assert run(plan=stages("!")) == {"first": SKIPPED, "second": RAN}


def test_runner_protects_unrecorded_outputs_and_reports_missing_inputs(tmp_path):
    src, dst = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_text("a")
    dst.write_text("someone's result")
    plan = [_copy_stage("copy", src, dst)]
    record, cache = RunRecord.load(tmp_path / "run.json"), HashCache(tmp_path / "h.json")
    with pytest.raises(InputError, match=r"out\.txt: exists, but .*run\.json has no record"):
        run_stages(plan, record, cache, _execute([]), root=tmp_path)
    assert dst.read_text() == "someone's result"
    run_stages(plan, record, cache, _execute([]), root=tmp_path, replace_unrecorded=True)
    assert dst.read_text() == "a"
    plan = [_copy_stage("copy", tmp_path / "absent.txt", dst)]
    with pytest.raises(InputError, match=r"stage copy: its input src .*absent\.txt"):
        run_stages(plan, record, cache, _execute([]), root=tmp_path)


def test_an_interrupted_stage_is_recorded_and_rerun(tmp_path):
    src, dst = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_text("a")
    plan = [_copy_stage("copy", src, dst)]

    def interrupted(stage: Stage, overwrite: bool) -> None:
        dst.write_text("half")
        raise KeyboardInterrupt

    record, cache = RunRecord.load(tmp_path / "run.json"), HashCache(tmp_path / "h.json")
    with pytest.raises(KeyboardInterrupt):
        run_stages(plan, record, cache, interrupted, root=tmp_path)
    entry = RunRecord.load(tmp_path / "run.json").stages["copy"]
    assert entry["status"] == "interrupted" and "outputs" not in entry
    reasons = []
    record = RunRecord.load(tmp_path / "run.json")
    run_stages(
        plan, record, cache, _execute([]), root=tmp_path,
        on_stage=lambda i, s, d: reasons.append(d.reason),
    )  # fmt: skip
    assert reasons == ["did not finish"] and dst.read_text() == "a"
