"""Bruker .bcf hypermaps: REAL files from hyperspy 1.6.5's test data (fetched, never committed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rsciio", reason="optional extra olmap[bcf] (make test installs it)")

from olmap.core.xray import KALPHA_KEV, channel_slices, fwhm_ev
from olmap.errors import InputError
from olmap.io.bruker import read_bcf_element_maps, read_bcf_images
from tests.realdata import bruker_dir


@pytest.fixture(scope="module")
def bruker() -> Path:
    return bruker_dir()


def test_p45_element_maps_are_those_of_a_silicate(bruker: Path) -> None:
    eds = read_bcf_element_maps(bruker / "P45_the_default_job.bcf")
    assert eds.shape == (75, 100)
    assert eds.transform.a == pytest.approx(8.7368, rel=1e-4)  # µm per pixel in the file
    totals = {el: int(m.sum()) for el, m in eds.maps.items()}
    # A silicate: Si has the most counts, then Al; all maps are non-negative counts.
    assert max(totals, key=totals.get) == "Si"
    assert sorted(totals, key=totals.get)[-2] == "Al"
    assert all(m.dtype == np.uint32 for m in eds.maps.values())


def test_energy_axis_puts_the_si_peak_in_its_window(bruker: Path) -> None:
    """The summed spectrum peaks at Si Kα: olmap's channel windows use the file's calibration."""
    from rsciio.bruker import file_reader

    signal = file_reader(str(bruker / "P45_the_default_job.bcf"), select_type="spectrum_image")[0]
    energy = signal["axes"][2]
    spectrum = np.asarray(signal["data"]).sum(axis=(0, 1), dtype=np.int64)
    peak_kev = energy["offset"] + energy["scale"] * int(spectrum.argmax())
    assert abs(peak_kev - KALPHA_KEV["Si"]) < fwhm_ev(KALPHA_KEV["Si"]) / 1000
    # And olmap's Si map equals the cube summed over the Si window.
    (si,) = channel_slices(
        ["Si"], offset_kev=energy["offset"], scale_kev=energy["scale"], n_channels=spectrum.size
    ).values()
    maps = read_bcf_element_maps(bruker / "P45_the_default_job.bcf", elements=["Si"])
    assert int(maps.maps["Si"].sum()) == int(spectrum[si].sum())


def test_downsampling_keeps_counts(bruker: Path) -> None:
    path = bruker / "30x30_instructively_packed_16bit_compressed.bcf"
    full = read_bcf_element_maps(path, elements=["Mg", "Fe"])
    half = read_bcf_element_maps(path, elements=["Mg", "Fe"], downsample=2)
    assert full.shape == (30, 30) and half.shape == (15, 15)
    assert half.transform.a == pytest.approx(2 * full.transform.a)
    for el in ("Mg", "Fe"):
        assert int(half.maps[el].sum()) == int(full.maps[el].sum())
        np.testing.assert_array_equal(
            half.maps[el], full.maps[el].reshape(15, 2, 15, 2).sum(axis=(1, 3))
        )


def test_images_and_bad_files(bruker: Path) -> None:
    images = read_bcf_images(bruker / "P45_the_default_job.bcf")
    assert [im.name for im in images] == ["BSE", "SE"]
    assert images[0].data.shape == (75, 100)
    with pytest.raises(InputError, match=r"not a readable Bruker \.bcf hypermap"):
        read_bcf_element_maps(bruker / "Nope.bcf")
    with pytest.raises(InputError, match="give it with --pixel-size"):
        read_bcf_element_maps(bruker / "Hitachi_TM3030Plus.bcf")
    eds = read_bcf_element_maps(bruker / "Hitachi_TM3030Plus.bcf", pixel_size_um=0.5)
    assert eds.transform.a == 0.5
    with pytest.raises(InputError, match="no Kα line energy for 'U'"):
        read_bcf_element_maps(bruker / "P45_the_default_job.bcf", elements=["U"])


def test_downsampled_bse_matches_the_element_grid(bruker: Path) -> None:
    from olmap.io.bruker import block_mean

    eds = read_bcf_element_maps(bruker / "P45_the_default_job.bcf", downsample=2)
    (bse, _se) = read_bcf_images(bruker / "P45_the_default_job.bcf", downsample=2)
    assert bse.data.shape == eds.shape == (38, 50)
    assert bse.transform.almost_equals(eds.transform)
    full = read_bcf_images(bruker / "P45_the_default_job.bcf")[0].data.astype(float)
    np.testing.assert_allclose(bse.data, np.round(block_mean(full, 2)))
