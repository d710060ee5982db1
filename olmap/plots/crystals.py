"""Per-group statistics of a crystal catalogue: counts, sizes and mg# (seed 002 Figs. 11, 12).

A *group* is one of the paper's five: microlites, microphenocrysts and phenocrysts split by
zoning (normal, reverse, none, complex). User-defined classes become groups of their own.
Tables are plain long-format frames (one row per group and bin) so they plot and diff easily;
the figures are built on :class:`matplotlib.figure.Figure` directly, which keeps them off
pyplot's global figure registry (safe in threads, nothing to close).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from olmap.errors import InputError

__all__ = [
    "GROUP_COLOURS",
    "GROUP_ORDER",
    "class_counts",
    "crystal_group",
    "group_colours",
    "mg_histogram",
    "plot_mg_histogram",
    "plot_size_distribution",
    "size_distribution",
    "write_crystal_statistics",
]

#: The paper's groups, in the order tables and figures list them.
GROUP_ORDER: tuple[str, ...] = (
    "microlite",
    "microphenocryst",
    "phenocryst (normal)",
    "phenocryst (reverse)",
    "phenocryst (none)",
    "phenocryst (complex)",
)

#: Colour of each of the paper's groups (seed 002 Fig. 9B). The paper's yellow and white are
#: invisible on a white background, hence dark gold for normal and grey for no zoning.
GROUP_COLOURS: dict[str, str] = {
    "microlite": "#1f77b4",
    "microphenocryst": "#d020d0",
    "phenocryst (normal)": "#d4a017",
    "phenocryst (reverse)": "#d62728",
    "phenocryst (none)": "#7f7f7f",
    "phenocryst (complex)": "#2ca02c",
}

# tab10 without the blue, red, green and grey the paper's groups already use, so a
# user-defined class never looks like one of them.
_OTHER_COLOURS = ("tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")

_REQUIRED = ("class", "zoning", "area_um2", "mg_mean")

# Seed 002 Fig. 11 spans microlites (>= 100 µm²) to the largest phenocrysts (~1 mm²).
_AREA_DECADES = (2, 6)
_BINS_PER_DECADE = 10
# Olivine mg# of the paper's section lies within this range; a fixed minimum keeps the
# histograms of different sections comparable.
_MG_RANGE = (0.65, 0.95)
# mg# is a fraction; a histogram with more bins than this means percent (Fo) was given.
_MAX_MG_BINS = 10_000

_COUNT_COLUMNS = ["group", "class", "zoning", "count", "area_um2_total", "fraction_of_crystals"]
_SIZE_COLUMNS = ["group", "bin_lo_um2", "bin_hi_um2", "count"]
_MG_COLUMNS = ["group", "bin_lo", "bin_hi", "count"]


def _check(catalogue: pd.DataFrame) -> None:
    missing = [c for c in _REQUIRED if c not in catalogue.columns]
    if missing:
        raise InputError(
            f"crystal catalogue lacks column(s) {', '.join(missing)}; "
            f"it needs {', '.join(_REQUIRED)}"
        )


def _zoning(catalogue: pd.DataFrame) -> pd.Series:
    # A catalogue read back from CSV has NaN where the zoning was written as "".
    return catalogue["zoning"].fillna("").astype(str).str.strip()


def crystal_group(catalogue: pd.DataFrame) -> pd.Series:
    """Group of each crystal: its class, followed by its zoning when it has one.

    Parameters
    ----------
    catalogue : pandas.DataFrame
        One row per crystal with (at least) string columns ``class`` and ``zoning``;
        ``zoning`` is empty (or NaN) for crystals that are not phenocrysts.

    Returns
    -------
    pandas.Series
        Strings such as ``"microlite"`` or ``"phenocryst (reverse)"``, on the catalogue's index.

    Examples
    --------
    >>> cat = pd.DataFrame({"class": ["microlite", "phenocryst"], "zoning": ["", "normal"]})
    >>> crystal_group(cat).tolist()
    ['microlite', 'phenocryst (normal)']
    """
    cls = catalogue["class"].astype(str)
    zoning = _zoning(catalogue)
    return cls.where(zoning == "", cls + " (" + zoning + ")").rename("group")


def _ordered(groups: Iterable[str]) -> list[str]:
    present = set(groups)
    known = [g for g in GROUP_ORDER if g in present]
    return known + sorted(present - set(GROUP_ORDER))


def group_colours(groups: Iterable[str]) -> dict[str, str]:
    """Colour of each group: :data:`GROUP_COLOURS`, then tab10 colours for the others.

    Parameters
    ----------
    groups : iterable of str
        Group names, e.g. the values of :func:`crystal_group`.

    Returns
    -------
    dict of str to str
        Matplotlib colour per group, in the stable group order. Other groups take the tab10
        colours the paper's groups do not use, in alphabetical order (cycling).
    """
    others = 0
    colours = {}
    for g in _ordered(groups):
        if g in GROUP_COLOURS:
            colours[g] = GROUP_COLOURS[g]
        else:
            colours[g] = _OTHER_COLOURS[others % len(_OTHER_COLOURS)]
            others += 1
    return colours


def class_counts(catalogue: pd.DataFrame) -> pd.DataFrame:
    """Number and total area of the crystals of each group.

    Parameters
    ----------
    catalogue : pandas.DataFrame
        Crystal catalogue with columns ``class``, ``zoning``, ``area_um2`` (µm²) and
        ``mg_mean``.

    Returns
    -------
    pandas.DataFrame
        One row per group present, in the order microlite, microphenocryst, phenocryst
        (normal, reverse, none, complex), then other groups alphabetically. Columns:
        ``group``, ``class``, ``zoning`` ("" when none), ``count``, ``area_um2_total``
        (µm², NaN areas skipped) and ``fraction_of_crystals`` (count / all crystals, 0-1).
        No rows for an empty catalogue.
    """
    _check(catalogue)
    frame = pd.DataFrame(
        {
            "group": crystal_group(catalogue),
            "class": catalogue["class"].astype(str),
            "zoning": _zoning(catalogue),
            "area_um2": pd.to_numeric(catalogue["area_um2"], errors="coerce").astype(float),
        }
    )
    if frame.empty:
        return pd.DataFrame(
            {
                "group": pd.Series(dtype=object),
                "class": pd.Series(dtype=object),
                "zoning": pd.Series(dtype=object),
                "count": pd.Series(dtype=np.int64),
                "area_um2_total": pd.Series(dtype=float),
                "fraction_of_crystals": pd.Series(dtype=float),
            }
        )
    by = frame.groupby("group", sort=False)
    counts = pd.DataFrame(
        {
            "class": by["class"].first(),
            "zoning": by["zoning"].first(),
            "count": by.size().astype(np.int64),
            "area_um2_total": by["area_um2"].sum(min_count=0),
        }
    )
    counts = counts.loc[_ordered(counts.index)]
    counts["fraction_of_crystals"] = counts["count"] / len(frame)
    return counts.rename_axis("group").reset_index()[_COUNT_COLUMNS]


def _area_edges(areas: np.ndarray) -> np.ndarray:
    lo, hi = _AREA_DECADES
    if areas.size:
        # Widen by whole tenths of a decade, so the default edges stay on one grid.
        lo = min(lo, np.floor(np.log10(areas.min()) * _BINS_PER_DECADE) / _BINS_PER_DECADE)
        hi = max(hi, np.ceil(np.log10(areas.max()) * _BINS_PER_DECADE) / _BINS_PER_DECADE)
    steps = np.arange(
        round(lo * _BINS_PER_DECADE), round(hi * _BINS_PER_DECADE) + 1, dtype=np.int64
    )
    edges = 10.0 ** (steps / _BINS_PER_DECADE)
    # log10 rounding can leave an extreme value a hair outside; one more step covers it.
    if areas.size and areas.min() < edges[0]:
        edges = np.r_[10.0 ** ((steps[0] - 1) / _BINS_PER_DECADE), edges]
    if areas.size and areas.max() > edges[-1]:
        edges = np.r_[edges, 10.0 ** ((steps[-1] + 1) / _BINS_PER_DECADE)]
    return edges


def _long_histogram(
    groups: pd.Series, values: pd.Series, edges: np.ndarray, columns: list[str]
) -> pd.DataFrame:
    """Histogram of ``values`` per group; every group of ``groups`` gets a row per bin."""
    keep = np.isfinite(values.to_numpy())
    parts = []
    for g in _ordered(groups):
        counts, _ = np.histogram(values[keep & (groups == g).to_numpy()].to_numpy(), bins=edges)
        parts.append(
            pd.DataFrame(
                {
                    columns[0]: g,
                    columns[1]: edges[:-1],
                    columns[2]: edges[1:],
                    columns[3]: counts.astype(np.int64),
                }
            )
        )
    if not parts:
        return _empty_long(columns)
    return pd.concat(parts, ignore_index=True)


def _empty_long(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            columns[0]: pd.Series(dtype=object),
            columns[1]: pd.Series(dtype=float),
            columns[2]: pd.Series(dtype=float),
            columns[3]: pd.Series(dtype=np.int64),
        }
    )


def size_distribution(catalogue: pd.DataFrame, bins: npt.ArrayLike | None = None) -> pd.DataFrame:
    """Histogram of crystal area per group, on log-spaced bins (seed 002 Fig. 11).

    Parameters
    ----------
    catalogue : pandas.DataFrame
        Crystal catalogue with columns ``class``, ``zoning``, ``area_um2`` (µm²) and
        ``mg_mean``.
    bins : array_like of float, optional
        Increasing, positive bin edges in µm². By default 10 bins per decade from 10² to
        10⁶ µm², widened by whole tenths of a decade to cover the smallest and largest
        area. Areas outside explicit edges, and NaN or non-positive areas, are not counted.

    Returns
    -------
    pandas.DataFrame
        Long format, one row per group (stable order, see :func:`class_counts`) and bin:
        ``group``, ``bin_lo_um2``, ``bin_hi_um2`` (µm²) and ``count``. Bins are half-open
        ``[lo, hi)`` except the last, which includes its upper edge. Empty bins are kept.
    """
    _check(catalogue)
    area = pd.to_numeric(catalogue["area_um2"], errors="coerce").astype(float)
    valid = area[np.isfinite(area) & (area > 0)]
    if bins is None:
        edges = _area_edges(valid.to_numpy())
    else:
        edges = np.asarray(bins, dtype=float)
        if edges.ndim != 1 or edges.size < 2 or not np.all(np.diff(edges) > 0):
            raise InputError("size_distribution: bins must be at least 2 increasing edges")
        if edges[0] <= 0 or not np.all(np.isfinite(edges)):
            raise InputError("size_distribution: bin edges must be finite and positive (µm²)")
    # Non-positive areas cannot sit on a log axis; NaN marks them as not counted.
    return _long_histogram(crystal_group(catalogue), area.where(area > 0), edges, _SIZE_COLUMNS)


def _mg_edges(values: np.ndarray, bin_width: float) -> np.ndarray:
    k_lo = min(np.floor(values.min() / bin_width), np.floor(_MG_RANGE[0] / bin_width + 1e-9))
    k_hi = max(np.ceil(values.max() / bin_width), np.ceil(_MG_RANGE[1] / bin_width - 1e-9))
    if k_hi - k_lo > _MAX_MG_BINS:
        raise InputError(
            f"mg_mean spans {values.min():g} to {values.max():g}: more than {_MAX_MG_BINS} "
            f"bins of {bin_width:g}; mg# must be a fraction (0-1), not a percentage"
        )
    # Rounding puts the edges on the decimal multiples (0.65, not 0.6500000000000001),
    # so a value written as a multiple falls in the bin that starts there.
    decimals = max(0, int(np.ceil(-np.log10(bin_width)))) + 6
    edges = np.round(np.arange(k_lo, k_hi + 1) * bin_width, decimals)
    if values.min() < edges[0]:
        edges = np.r_[np.round(edges[0] - bin_width, decimals), edges]
    if values.max() > edges[-1]:
        edges = np.r_[edges, np.round(edges[-1] + bin_width, decimals)]
    return edges


def mg_histogram(catalogue: pd.DataFrame, bin_width: float = 0.005) -> pd.DataFrame:
    """Histogram of the crystals' mean mg# per group (seed 002 Fig. 12).

    Parameters
    ----------
    catalogue : pandas.DataFrame
        Crystal catalogue with columns ``class``, ``zoning``, ``area_um2`` and ``mg_mean``
        (mg# = Mg / (Mg + Fe), a fraction 0-1; NaN where unknown).
    bin_width : float
        Bin width in mg# units. Edges are multiples of it, covering at least 0.65-0.95 and
        all the data.

    Returns
    -------
    pandas.DataFrame
        Long format, one row per group (stable order, see :func:`class_counts`) and bin:
        ``group``, ``bin_lo``, ``bin_hi`` (mg#) and ``count``. Bins are half-open
        ``[lo, hi)`` except the last. NaN (and infinite) mg# are not counted; a group whose
        crystals all lack mg# has zero counts. Empty (with these columns) when no crystal
        has an mg#.

    Raises
    ------
    olmap.errors.InputError
        If ``bin_width`` is not a positive number, or the data would need more than
        10,000 bins (mg# given in percent).
    """
    _check(catalogue)
    if not (np.isfinite(bin_width) and bin_width > 0):
        raise InputError(f"mg_histogram: bin_width must be positive, not {bin_width!r}")
    mg = pd.to_numeric(catalogue["mg_mean"], errors="coerce").astype(float)
    valid = mg[np.isfinite(mg)]
    if valid.empty:
        return _empty_long(_MG_COLUMNS)
    edges = _mg_edges(valid.to_numpy(), float(bin_width))
    # Every group keeps its rows (zeros without mg#), so each gets its panel.
    return _long_histogram(crystal_group(catalogue), mg, edges, _MG_COLUMNS)


def _panels(n: int) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(7, 1.1 + 1.7 * max(1, n)), layout="constrained")
    axes = fig.subplots(max(1, n), 1, sharex=True, squeeze=False)[:, 0]
    for ax in axes:
        # Counts of crystals: 0.25 of a crystal on the axis would mislead.
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return fig, list(axes)


def _no_data(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_yticks([])


def _crystals(n: int) -> str:
    return f"{n} crystal" if n == 1 else f"{n} crystals"


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, format="png")
    return path


def _stairs(ax: Axes, counts: np.ndarray, edges: np.ndarray, colour: str, label: str) -> None:
    """A filled step histogram with its outline (one group's panel)."""
    ax.stairs(counts, edges, fill=True, color=colour, alpha=0.35)
    ax.stairs(counts, edges, color=colour, lw=1.2, label=label)
    ax.set_ylim(bottom=0)


def plot_size_distribution(catalogue: pd.DataFrame, path: str | Path) -> Path:
    """Write the area histogram of each group as a PNG, one panel per group (Fig. 11).

    Parameters
    ----------
    catalogue : pandas.DataFrame
        Crystal catalogue (see :func:`size_distribution`).
    path : path-like
        PNG to write; its folder is created if needed, an existing file is replaced.

    Returns
    -------
    pathlib.Path
        ``path``. An empty catalogue gives one panel saying "no crystals".
    """
    table = size_distribution(catalogue)
    groups = _ordered(table["group"])
    colours = group_colours(groups)
    fig, axes = _panels(len(groups))
    for ax, g in zip(axes, groups, strict=False):
        rows = table[table["group"] == g]
        edges = np.r_[rows["bin_lo_um2"].to_numpy(), rows["bin_hi_um2"].iloc[-1]]
        n = int(rows["count"].sum())
        ax.set_ylabel("crystals")
        ax.grid(alpha=0.3)
        _stairs(ax, rows["count"].to_numpy(), edges, colours[g], f"{g}: {_crystals(n)}")
        ax.legend(fontsize=8, loc="upper right")
    if not groups:
        _no_data(axes[0], "no crystals")
        axes[0].set_xlim(10.0 ** _AREA_DECADES[0], 10.0 ** _AREA_DECADES[1])
    axes[-1].set_xscale("log")
    axes[-1].set_xlabel("area (µm²)")
    fig.suptitle(f"Olivine crystal size distribution ({_crystals(len(catalogue))})")
    return _save(fig, path)


def plot_mg_histogram(catalogue: pd.DataFrame, path: str | Path) -> Path | None:
    """Write the mean-mg# histogram of each group as a PNG, one panel per group (Fig. 12).

    Parameters
    ----------
    catalogue : pandas.DataFrame
        Crystal catalogue (see :func:`mg_histogram`).
    path : path-like
        PNG to write; its folder is created if needed, an existing file is replaced.

    Returns
    -------
    pathlib.Path or None
        ``path``, or None (nothing written) when no crystal has an mg#.
    """
    table = mg_histogram(catalogue)
    if table.empty:
        return None
    groups = _ordered(table["group"])
    colours = group_colours(groups)
    mg = pd.to_numeric(catalogue["mg_mean"], errors="coerce").astype(float)
    by_group = crystal_group(catalogue)
    fig, axes = _panels(len(groups))
    for ax, g in zip(axes, groups, strict=False):
        rows = table[table["group"] == g]
        edges = np.r_[rows["bin_lo"].to_numpy(), rows["bin_hi"].iloc[-1]]
        values = mg[(by_group == g) & np.isfinite(mg)]
        ax.set_ylabel("crystals")
        ax.grid(alpha=0.3)
        if values.empty:
            ax.set_title(g, fontsize=9, loc="left")
            _no_data(ax, "no mg#")
            continue
        label = f"{g}: {_crystals(len(values))}, mean mg# {values.mean():.3f}"
        _stairs(ax, rows["count"].to_numpy(), edges, colours[g], label)
        ax.legend(fontsize=8, loc="upper left")
    axes[-1].set_xlabel("mg#")
    n = int(table["count"].sum())
    fig.suptitle(f"Mean mg# of olivine crystals ({n} with mg#)")
    return _save(fig, path)


def write_crystal_statistics(catalogue: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Write the per-group tables and figures of a crystal catalogue into one folder.

    Parameters
    ----------
    catalogue : pandas.DataFrame
        Crystal catalogue with columns ``class``, ``zoning``, ``area_um2`` (µm²) and
        ``mg_mean`` (mg#, NaN where unknown).
    out_dir : path-like
        Folder, created if needed. Existing files of the same names are replaced: the
        caller is expected to write into a fresh (temporary) folder.

    Returns
    -------
    list of pathlib.Path
        ``counts.csv``, ``size_distribution.csv``, ``size_distribution.png`` and, when some
        crystal has an mg#, ``mg_histogram.csv`` and ``mg_histogram.png``, in that order.
    """
    _check(catalogue)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    class_counts(catalogue).to_csv(out / "counts.csv", index=False)
    written.append(out / "counts.csv")
    size_distribution(catalogue).to_csv(out / "size_distribution.csv", index=False)
    written.append(out / "size_distribution.csv")
    written.append(plot_size_distribution(catalogue, out / "size_distribution.png"))
    mg = mg_histogram(catalogue)
    if not mg.empty:
        mg.to_csv(out / "mg_histogram.csv", index=False)
        written.append(out / "mg_histogram.csv")
        png = plot_mg_histogram(catalogue, out / "mg_histogram.png")
        if png is not None:
            written.append(png)
    return written
