"""A result folder of a small synthetic section (BSE, probability, mg#, catalogue with crops)
and its viewer site, made once."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from olmap.crystals.catalogue import crystal_catalogue, write_crystals
from olmap.io.raster import PROBABILITY_SCALE_TAG, raster_info, read_raster, write_raster
from olmap.io.results import find_results
from olmap.tiles.config import TilesConfig
from olmap.tiles.site import build_site


@pytest.fixture(scope="session")
def results_dir(section_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``bse.tif``, ``prob.tif``, ``mgnum.tif`` and ``catalogue/`` as the pipeline names them.

    The probability raster is the true olivine mask, blurred, stored as ``olmap predict``
    stores it (uint8, p x 255, band ``p_olivine``); the mg# map and the catalogue come from
    the truth too. The tiler treats them as any other such files.
    """
    out = tmp_path_factory.mktemp("results") / "results"
    out.mkdir()
    shutil.copy(section_dir / "bse.tif", out / "bse.tif")
    shutil.copy(section_dir / "truth" / "mgnum.tif", out / "mgnum.tif")
    info = raster_info(section_dir / "bse.tif")
    olivine = read_raster(section_dir / "truth" / "olivine.tif")[0] == 1
    p = ndi.gaussian_filter(olivine.astype(np.float32), 1.5)
    write_raster(
        out / "prob.tif",
        (p * 255).round().astype(np.uint8),
        transform=info.transform,
        band_names=["p_olivine"],
        tags={PROBABILITY_SCALE_TAG: repr(1 / 255)},
    )
    result = crystal_catalogue(
        out / "bse.tif",
        section_dir / "truth" / "olivine.tif",
        mgmap_path=out / "mgnum.tif",
        sessions_path=section_dir / "sessions.csv",
    )
    write_crystals(
        result, out / "catalogue", bse_path=out / "bse.tif", transform=info.transform, crops=True
    )
    return out


@pytest.fixture(scope="session")
def site_dir(results_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The viewer site of :func:`results_dir` (default settings: the vips engine)."""
    out = tmp_path_factory.mktemp("site") / "site"
    build_site(find_results(results_dir), out, TilesConfig(), title="test section")
    return out


@pytest.fixture()
def served(site_dir: Path) -> Iterator[str]:
    """``olmap serve SITE --port 0`` running; yields the URL it printed."""
    cmd = [sys.executable, "-m", "olmap", "serve", str(site_dir), "--port", "0"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        try:
            line = proc.stdout.readline()
            match = re.search(r"http://127\.0\.0\.1:\d+/", line)
            assert match, line
            yield match.group(0)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
