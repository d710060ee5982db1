from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from olmap.errors import InputError
from olmap.plots.crystals import (
    GROUP_COLOURS,
    class_counts,
    crystal_group,
    group_colours,
    mg_histogram,
    plot_mg_histogram,
    plot_size_distribution,
    size_distribution,
    write_crystal_statistics,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _catalogue() -> pd.DataFrame:
    """Nine crystals in six groups, rows deliberately not in group order."""
    rows = [
        # class, zoning, area (µm²), mg#
        ("phenocryst", "reverse", 2.0e5, 0.8525),
        ("microlite", "", 150.0, 0.7012),
        ("zircon-like", "", 3000.0, np.nan),
        ("phenocryst", "normal", 5.0e4, 0.8610),
        ("microlite", "", 450.0, np.nan),
        ("microphenocryst", "", 5000.0, 0.7830),
        ("phenocryst", "none", 1.2e5, 0.8420),
        ("microlite", "", 120.0, 0.7030),
        ("phenocryst", "normal", 8.0e4, 0.8680),
    ]
    cat = pd.DataFrame(rows, columns=["class", "zoning", "area_um2", "mg_mean"])
    cat["equivalent_diameter_um"] = np.sqrt(4 * cat["area_um2"] / np.pi)
    return cat


EXPECTED_ORDER = [
    "microlite",
    "microphenocryst",
    "phenocryst (normal)",
    "phenocryst (reverse)",
    "phenocryst (none)",
    "zircon-like",
]


def _is_png(path) -> bool:
    with open(path, "rb") as f:
        ok = f.read(8) == PNG_SIGNATURE
    img = mpimg.imread(path)
    return ok and img.ndim == 3 and min(img.shape[:2]) > 100 and float(img[..., :3].std()) > 0


def _count(table: pd.DataFrame, group: str, lo_col: str, value: float) -> int:
    """Count of the bin of ``group`` that holds ``value``."""
    rows = table[(table["group"] == group) & (table[lo_col] <= value)]
    return int(rows.iloc[-1]["count"])


def test_crystal_group_splits_phenocrysts_by_zoning():
    cat = _catalogue()
    groups = crystal_group(cat)
    assert groups.tolist() == [
        "phenocryst (reverse)",
        "microlite",
        "zircon-like",
        "phenocryst (normal)",
        "microlite",
        "microphenocryst",
        "phenocryst (none)",
        "microlite",
        "phenocryst (normal)",
    ]
    # zoning read back from CSV is NaN, not "": still no suffix
    cat.loc[cat["zoning"] == "", "zoning"] = np.nan
    assert crystal_group(cat).tolist() == groups.tolist()


def test_class_counts_match_hand_counts_in_group_order():
    counts = class_counts(_catalogue())
    assert list(counts.columns) == [
        "group",
        "class",
        "zoning",
        "count",
        "area_um2_total",
        "fraction_of_crystals",
    ]
    assert counts["group"].tolist() == EXPECTED_ORDER
    assert counts["count"].tolist() == [3, 1, 2, 1, 1, 1]
    assert counts["class"].tolist() == [
        "microlite",
        "microphenocryst",
        "phenocryst",
        "phenocryst",
        "phenocryst",
        "zircon-like",
    ]
    assert counts["zoning"].tolist() == ["", "", "normal", "reverse", "none", ""]
    np.testing.assert_allclose(
        counts["area_um2_total"], [720.0, 5000.0, 1.3e5, 2.0e5, 1.2e5, 3000.0]
    )
    np.testing.assert_allclose(counts["fraction_of_crystals"], np.array([3, 1, 2, 1, 1, 1]) / 9)


def test_other_groups_sort_alphabetically_after_the_papers_groups():
    cat = pd.DataFrame(
        {
            "class": ["zeta", "alpha", "phenocryst", "microlite"],
            "zoning": ["", "", "complex", ""],
            "area_um2": [1e3] * 4,
            "mg_mean": [0.8] * 4,
        }
    )
    order = ["microlite", "phenocryst (complex)", "alpha", "zeta"]
    assert class_counts(cat)["group"].tolist() == order
    assert list(dict.fromkeys(size_distribution(cat)["group"])) == order
    colours = group_colours(order)
    assert list(colours) == order
    assert colours["microlite"] == GROUP_COLOURS["microlite"]
    assert colours["phenocryst (complex)"] == GROUP_COLOURS["phenocryst (complex)"]
    # other groups get colours of their own, not one of the paper's
    assert colours["alpha"] != colours["zeta"]
    assert not {colours["alpha"], colours["zeta"]} & set(GROUP_COLOURS.values())


def test_size_distribution_bins_and_totals():
    cat = _catalogue()
    table = size_distribution(cat)
    assert list(table.columns) == ["group", "bin_lo_um2", "bin_hi_um2", "count"]
    assert list(dict.fromkeys(table["group"])) == EXPECTED_ORDER
    assert table["count"].sum() == len(cat)
    per_group = table.groupby("group", sort=False)["count"].sum()
    assert per_group.to_dict() == dict(zip(EXPECTED_ORDER, [3, 1, 2, 1, 1, 1], strict=True))
    # default: 10 bins per decade, 10² to 10⁶ µm², every group on the same edges
    edges = np.r_[table["bin_lo_um2"].iloc[:40], table["bin_hi_um2"].iloc[39]]
    np.testing.assert_allclose(edges, 10.0 ** (np.arange(20, 61) / 10))
    assert (table.groupby("group").size() == 40).all()
    # hand-picked values, bins of 10^0.1: 120, 150 and 450 µm² in three different bins
    micro = table[table["group"] == "microlite"].reset_index(drop=True)
    assert micro.loc[0, "count"] == 1  # 120 in [100, 125.9)
    assert micro.loc[1, "count"] == 1  # 150 in [125.9, 158.5)
    assert micro.loc[6, "count"] == 1  # 450 in [398.1, 501.2)
    assert micro["count"].sum() == 3
    assert _count(table, "phenocryst (normal)", "bin_lo_um2", 5.0e4) == 1
    assert _count(table, "phenocryst (normal)", "bin_lo_um2", 8.0e4) == 1
    assert _count(table, "phenocryst (reverse)", "bin_lo_um2", 2.0e5) == 1


def test_size_distribution_widens_to_cover_the_data():
    cat = _catalogue()
    cat.loc[0, "area_um2"] = 3.0e6  # above 10⁶
    cat.loc[1, "area_um2"] = 50.0  # below 10²
    table = size_distribution(cat)
    lo, hi = table["bin_lo_um2"].min(), table["bin_hi_um2"].max()
    assert lo <= 50.0 < 10**2 and 10**6 < 3.0e6 <= hi
    # widened by tenths of a decade only
    np.testing.assert_allclose([np.log10(lo) * 10, np.log10(hi) * 10], [16, 65])
    assert table["count"].sum() == len(cat)
    assert _count(table, "phenocryst (reverse)", "bin_lo_um2", 3.0e6) == 1
    assert _count(table, "microlite", "bin_lo_um2", 50.0) == 1


def test_size_distribution_explicit_bins():
    table = size_distribution(_catalogue(), bins=[100, 1000, 1e6])
    micro = table[table["group"] == "microlite"]
    assert micro["count"].tolist() == [3, 0]
    assert table["count"].sum() == 9
    with pytest.raises(InputError):
        size_distribution(_catalogue(), bins=[1000, 100])


def test_mg_histogram_bins_and_totals():
    cat = _catalogue()
    table = mg_histogram(cat)
    assert list(table.columns) == ["group", "bin_lo", "bin_hi", "count"]
    assert table["count"].sum() == cat["mg_mean"].notna().sum() == 7
    # default range 0.65-0.95 on multiples of 0.005; groups without mg# keep zero rows
    assert list(dict.fromkeys(table["group"])) == EXPECTED_ORDER
    assert table["bin_lo"].min() == pytest.approx(0.65)
    assert table["bin_hi"].max() == pytest.approx(0.95)
    np.testing.assert_allclose(np.diff(table["bin_lo"].iloc[:60]), 0.005)
    assert (table.groupby("group").size() == 60).all()
    assert table.loc[table["group"] == "zircon-like", "count"].sum() == 0
    micro = table[table["group"] == "microlite"]
    # 0.7012 and 0.7030 both fall in [0.700, 0.705)
    hit = micro[micro["count"] > 0]
    assert hit["count"].tolist() == [2]
    assert hit["bin_lo"].iloc[0] == pytest.approx(0.70)
    assert _count(table, "phenocryst (reverse)", "bin_lo", 0.8525) == 1
    rev = table[(table["group"] == "phenocryst (reverse)") & (table["count"] > 0)]
    assert rev["bin_lo"].tolist() == pytest.approx([0.85])
    norm = table[(table["group"] == "phenocryst (normal)") & (table["count"] > 0)]
    assert norm["bin_lo"].tolist() == pytest.approx([0.86, 0.865])


def test_mg_histogram_widens_and_respects_bin_width():
    cat = _catalogue()
    cat.loc[1, "mg_mean"] = 0.612
    cat.loc[0, "mg_mean"] = 0.981
    table = mg_histogram(cat, bin_width=0.01)
    assert table["bin_lo"].min() == pytest.approx(0.61)
    assert table["bin_hi"].max() == pytest.approx(0.99)
    np.testing.assert_allclose(table["bin_hi"] - table["bin_lo"], 0.01)
    assert table["count"].sum() == 7
    assert _count(table, "microlite", "bin_lo", 0.612) == 1
    with pytest.raises(InputError):
        mg_histogram(cat, bin_width=0)


def test_mg_in_percent_is_refused():
    cat = _catalogue()
    cat["mg_mean"] *= 100
    with pytest.raises(InputError, match="fraction"):
        mg_histogram(cat)


def test_write_crystal_statistics(tmp_path):
    cat = _catalogue()
    out = tmp_path / "stats" / "nested"
    written = write_crystal_statistics(cat, out)
    assert [p.name for p in written] == [
        "counts.csv",
        "size_distribution.csv",
        "size_distribution.png",
        "mg_histogram.csv",
        "mg_histogram.png",
    ]
    assert all(p.parent == out and p.is_file() for p in written)
    assert _is_png(out / "size_distribution.png")
    assert _is_png(out / "mg_histogram.png")
    counts = pd.read_csv(out / "counts.csv", keep_default_na=False)
    assert counts["group"].tolist() == EXPECTED_ORDER
    assert counts["count"].tolist() == [3, 1, 2, 1, 1, 1]
    sizes = pd.read_csv(out / "size_distribution.csv")
    assert sizes["count"].sum() == len(cat)
    mg = pd.read_csv(out / "mg_histogram.csv")
    assert mg["count"].sum() == 7


def test_nan_only_mg_writes_no_mg_histogram(tmp_path):
    cat = _catalogue()
    cat["mg_mean"] = np.nan
    table = mg_histogram(cat)
    assert table.empty and list(table.columns) == ["group", "bin_lo", "bin_hi", "count"]
    assert plot_mg_histogram(cat, tmp_path / "mg.png") is None
    assert not (tmp_path / "mg.png").exists()
    written = write_crystal_statistics(cat, tmp_path / "out")
    assert [p.name for p in written] == [
        "counts.csv",
        "size_distribution.csv",
        "size_distribution.png",
    ]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "counts.csv",
        "size_distribution.csv",
        "size_distribution.png",
    ]


def test_empty_catalogue(tmp_path):
    cat = _catalogue().iloc[:0]
    counts = class_counts(cat)
    assert counts.empty and list(counts.columns)[:4] == ["group", "class", "zoning", "count"]
    assert size_distribution(cat).empty
    assert mg_histogram(cat).empty
    assert _is_png(plot_size_distribution(cat, tmp_path / "sizes.png"))
    written = write_crystal_statistics(cat, tmp_path / "out")
    assert [p.name for p in written] == [
        "counts.csv",
        "size_distribution.csv",
        "size_distribution.png",
    ]
    assert pd.read_csv(written[0]).empty


def test_missing_column_is_an_input_error():
    with pytest.raises(InputError, match="mg_mean"):
        class_counts(_catalogue().drop(columns="mg_mean"))


def test_mg_on_a_bin_edge_falls_in_the_bin_that_starts_there():
    # 140 * 0.005 is 0.7000000000000001 in floating point: unrounded edges would put an
    # mg# of exactly 0.700 into [0.695, 0.700)
    cat = pd.DataFrame(
        {"class": ["microlite"] * 2, "zoning": [""] * 2, "area_um2": [200.0] * 2}
    ).assign(mg_mean=[0.70, 0.825])
    table = mg_histogram(cat)
    assert table.loc[table["count"] > 0, "bin_lo"].tolist() == [0.70, 0.825]
    assert table["bin_lo"].iloc[0] == 0.65
