"""Relative units, orthopyroxene rejection, legends and truthful notes (issue 22)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from olmap.errors import InputError
from olmap.io.eds import open_eds
from olmap.io.raster import raster_info, read_raster, write_raster
from olmap.masks.rules import RuleSet, load_rules
from olmap.masks.stream import build_label_map

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "rules"
#: A different factor per element, x0.3 to x3 (detector efficiency, current, dwell).
FACTORS = {"Mg": 0.3, "Ca": 2.2, "Al": 3.0, "Fe": 0.55, "Si": 1.7}


@pytest.fixture(scope="module")
def scaled_eds(section_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    info = raster_info(section_dir / "eds.tif")
    stack = read_raster(section_dir / "eds.tif").astype(np.float32)
    for i, el in enumerate(info.band_names):
        stack[i] *= FACTORS[el]
    out = tmp_path_factory.mktemp("scaled") / "eds.tif"
    write_raster(out, stack, transform=info.transform, band_names=list(info.band_names))
    return out


def changed_share(rules: RuleSet, a: Path, b: Path, section_dir: Path, tmp: Path) -> dict:
    """Per class: pixels whose membership differs between the two maps / the class's pixels."""
    kw = {"bse": section_dir / "bse.tif", "workers": 2}
    la = read_raster(build_label_map(open_eds([a]), rules, tmp / "a.tif", **kw).path, bands=1)
    lb = read_raster(build_label_map(open_eds([b]), rules, tmp / "b.tif", **kw).path, bands=1)
    out = {}
    for name, code in rules.codes.items():
        ma, mb = la == code, lb == code
        out[name] = (ma ^ mb).sum() / max(ma.sum(), 1)
    return out


@pytest.mark.parametrize("rules", ["olivine.yaml", "basalt.yaml"])
def test_masks_do_not_depend_on_each_elements_count_scale(
    rules: str, section_dir: Path, scaled_eds: Path, tmp_path: Path
) -> None:
    """Every element scaled by its own factor (x0.3 to x3): no mask changes by > 1 %."""
    share = changed_share(
        load_rules(CONFIGS / rules), section_dir / "eds.tif", scaled_eds, section_dir, tmp_path
    )
    assert max(share.values()) <= 0.01, share


def test_count_rules_do_depend_on_it(section_dir: Path, scaled_eds: Path, tmp_path: Path) -> None:
    """The same scaling moves the paper's count rule a lot: the test above has teeth."""
    rules = load_rules(CONFIGS / "olivine-paper.yaml")
    share = changed_share(rules, section_dir / "eds.tif", scaled_eds, section_dir, tmp_path)
    assert share["olivine"] > 0.2


def test_orthopyroxene_is_rejected_and_counted(section_dir: Path, tmp_path: Path) -> None:
    eds = open_eds([section_dir / "eds.tif"])
    ref = section_dir / "truth" / "phases.tif"
    new = build_label_map(eds, load_rules(CONFIGS / "olivine.yaml"), tmp_path / "n.tif",
                          reference=ref, workers=2)  # fmt: skip
    paper = build_label_map(eds, load_rules(CONFIGS / "olivine-paper.yaml"), tmp_path / "p.tif",
                            reference=ref, workers=2)  # fmt: skip
    opx_new = new.confusion.fractions()["orthopyroxene"]["olivine"]
    opx_paper = paper.confusion.fractions()["orthopyroxene"]["olivine"]
    assert opx_paper > 0.5 and opx_new < 0.03
    assert new.stats.rejected["olivine: orthopyroxene"] > 0
    assert new.confusion.iou()["olivine"] >= paper.confusion.iou()["olivine"] - 0.01
    assert new.references is not None and new.as_dict()["reference_levels"]["levels_counts"]


def eds_stack(tmp_path: Path, **maps: np.ndarray) -> Path:
    path = tmp_path / "eds.tif"
    write_raster(path, np.stack(list(maps.values())).astype(np.float32), pixel_size_um=1.0,
                 band_names=list(maps))  # fmt: skip
    return path


def test_reference_of_any_integer_type_with_a_legend(tmp_path: Path) -> None:
    mg = np.zeros((20, 20), np.float32)
    mg[:, :10] = 100
    eds = eds_stack(tmp_path, Mg=mg, Ca=np.ones_like(mg), Al=np.ones_like(mg))
    rules = load_rules(CONFIGS / "olivine-paper.yaml").model_copy(update={"ignore": None})
    ref = np.full((20, 20), 1000, np.int32)
    ref[:, :12] = -7  # olivine, 2 columns too wide
    ref[0, :] = 5  # not in the legend
    write_raster(tmp_path / "ref.tif", ref, pixel_size_um=1.0)
    legend = tmp_path / "legend.csv"
    legend.write_text("code,name\n-7,ol\n1000,Glass\n")
    result = build_label_map(open_eds([eds]), rules, tmp_path / "m.tif",
                             reference=tmp_path / "ref.tif", legend=legend)  # fmt: skip
    fr = result.confusion.fractions()
    assert fr["ol"]["olivine"] == pytest.approx(190 / 228)
    assert fr["(codes not in the legend)"]["olivine"] == pytest.approx(0.5)
    assert result.confusion.iou()["olivine"] == pytest.approx(190 / 238)  # "ol" is olivine
    # Float maps holding whole codes, with a nodata value that is skipped.
    flt = ref.astype(np.float32)
    flt[1:, 15:] = -3.4e38
    write_raster(tmp_path / "f.tif", flt, pixel_size_um=1.0, nodata=-3.4e38)
    (tmp_path / "l.yaml").write_text("-7: olivine\n1000: glass\n5: x\n")
    result = build_label_map(open_eds([eds]), rules, tmp_path / "m2.tif",
                             reference=tmp_path / "f.tif", legend=tmp_path / "l.yaml")  # fmt: skip
    conf = result.confusion
    assert sum(conf.counts[r].sum() for r in conf.reference_names) == 400 - 19 * 5
    flt[3, 3] = 2.5
    write_raster(tmp_path / "g.tif", flt, pixel_size_um=1.0, nodata=-3.4e38)
    with pytest.raises(InputError, match=r"g.tif: value 2.5 at row 3, col 3 is not an integer"):
        build_label_map(open_eds([eds]), rules, tmp_path / "m3.tif",
                        reference=tmp_path / "g.tif", legend=tmp_path / "l.yaml")  # fmt: skip
    (tmp_path / "bad.yaml").write_text("olivine: 4\n")
    with pytest.raises(InputError, match=r"bad.yaml: 'olivine' is not an integer class code"):
        build_label_map(open_eds([eds]), rules, tmp_path / "m4.tif",
                        reference=tmp_path / "g.tif", legend=tmp_path / "bad.yaml")  # fmt: skip


def test_notes_say_where_matched_pixels_went(tmp_path: Path) -> None:
    mg = np.full((20, 20), 100, np.float32)
    eds = eds_stack(tmp_path, Mg=mg, Ca=np.ones_like(mg))
    rules = RuleSet.model_validate(
        {"classes": [{"name": "a", "rules": ["Mg > 30"]}, {"name": "b", "rules": ["Ca/Mg < 0.1"]}]}
    )
    result = build_label_map(open_eds([eds]), rules, tmp_path / "m.tif")
    assert "class 'b' matched 400 px but kept none: 400 went to earlier classes" in " ".join(
        result.notes
    )
    assert not any("matched no pixel" in n for n in result.notes)
    # 'Mg > 30' passes every pixel of this map: said, naming the rule.
    assert any("rule 'Mg > 30' of class 'a' passes 100 %" in n for n in result.notes)
