"""Rules on REAL element maps: epmatools' ex1.h5, a metapelite with garnet and no olivine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from olmap.errors import InputError
from olmap.io.eds import open_eds
from olmap.io.raster import read_raster, write_raster
from olmap.masks.rules import load_rules
from olmap.masks.stream import build_label_map
from tests.realdata import epmatools_ex1

h5py = pytest.importorskip("h5py", reason="dev extra (make test installs it)")

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "rules"


@pytest.fixture(scope="module")
def ex1_stack(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """ex1.h5's 13 maps (230 x 270 px, 1 µm) as an olmap EDS stack + the COMPO (BSE) image."""
    with h5py.File(epmatools_ex1()) as f:
        group = f["Demo/maps"]
        maps = {k: group[k][()] for k in group}
        assert f["Demo"].attrs["pixelunit"] == "um"
        px = float(f["Demo"].attrs["pixelsize"])
    folder = tmp_path_factory.mktemp("ex1")
    elements = [k for k in maps if k != "COMPO"]
    stack = folder / "eds.tif"
    write_raster(
        stack,
        np.stack([maps[k] for k in elements]).astype("uint16"),
        pixel_size_um=px,
        band_names=elements,
    )
    write_raster(folder / "bse.tif", maps["COMPO"].astype("uint16"), pixel_size_um=px)
    return stack, maps


def test_olivine_rule_finds_no_olivine_in_a_metapelite(ex1_stack, tmp_path: Path) -> None:
    stack, maps = ex1_stack
    rules = load_rules(CONFIGS / "olivine.yaml").model_copy(update={"ignore": None})
    with pytest.raises(InputError, match=r"no pixel .* matched any class"):
        build_label_map(open_eds([stack]), rules, tmp_path / "ol.tif")
    assert not (tmp_path / "ol.tif").exists()
    # Not for lack of Mg (two thirds of the map has Mg > 30 counts): the ratios exclude it all.
    assert (maps["Mg"] > 30).mean() > 0.5


def test_garnet_rule_finds_the_garnet(ex1_stack, tmp_path: Path) -> None:
    stack, maps = ex1_stack
    result = build_label_map(
        open_eds([stack]), load_rules(CONFIGS / "garnet.yaml"), tmp_path / "grt.tif"
    )
    garnet = read_raster(result.path, bands=1) == 1
    fraction = garnet.mean()
    assert 0.10 < fraction < 0.25  # the fractured porphyroblast in the upper right
    # Garnet carries the Mn and the bright BSE (COMPO) that the sheet silicates and quartz lack.
    assert maps["Mn"][garnet].mean() > 4 * maps["Mn"][~garnet].mean()
    assert np.median(maps["COMPO"][garnet]) > np.percentile(maps["COMPO"], 75)
    # Its pieces are grains, not specks: the five largest hold most of it.
    labels, _ = ndi.label(garnet)
    sizes = np.sort(np.bincount(labels.ravel())[1:])[::-1]
    assert sizes[:5].sum() > 0.5 * garnet.sum()
    rows, cols = np.nonzero(garnet)
    assert rows.mean() < garnet.shape[0] / 2 and cols.mean() > garnet.shape[1] / 2
