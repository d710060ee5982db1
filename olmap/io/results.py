"""Find the rasters and the catalogue of a result folder (``olmap tiles RESULTS_DIR``).

A result folder holds what the pipeline's commands write (shared/CLI.md): the BSE mosaic,
the probability raster of ``olmap predict``, the mg# map of ``olmap mgmap`` and the
catalogue folder of ``olmap crystals``. Each can also be given explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from olmap.errors import InputError, InputFileNotFoundError

#: Names looked for in a result folder, first match wins.
CANDIDATES: dict[str, tuple[str, ...]] = {
    "bse": ("bse.tif", "bse.vrt", "mosaic.vrt", "mosaic.tif", "section/bse.tif"),
    "prob": ("prob.tif", "pred_prob.tif"),
    "mgnum": ("mgnum.tif", "mgmap.tif"),
    "catalogue": (
        "catalogue/crystals.gpkg",
        "catalogue/crystals.parquet",
        "catalogue/crystals.geojson",
    ),
}


def default_outliers_path(mgmap_path: str | Path) -> Path:
    """``OUT.outliers.tif`` beside ``olmap mgmap --out OUT.tif``."""
    p = Path(mgmap_path)
    return p.with_name(p.stem + ".outliers.tif")


@dataclass(frozen=True)
class ResultFiles:
    """Inputs of a viewer site; only ``bse`` is required."""

    bse: Path
    prob: Path | None = None
    mgnum: Path | None = None
    catalogue: Path | None = None

    @property
    def crops(self) -> Path | None:
        """``crops/`` beside the catalogue (``olmap crystals --crops``), if present."""
        if self.catalogue is None:
            return None
        folder = self.catalogue.parent / "crops"
        return folder if folder.is_dir() else None

    def paths(self) -> list[Path]:
        """Every given input file."""
        return [p for p in (self.bse, self.prob, self.mgnum, self.catalogue) if p is not None]


def find_results(
    results_dir: str | Path | None,
    *,
    bse: str | Path | None = None,
    prob: str | Path | None = None,
    mgnum: str | Path | None = None,
    catalogue: str | Path | None = None,
) -> ResultFiles:
    """The inputs of a site: explicit paths first, then :data:`CANDIDATES` in ``results_dir``.

    Raises
    ------
    InputFileNotFoundError
        If ``results_dir`` or an explicit path does not exist.
    InputError
        If no BSE mosaic is found.
    """
    folder = Path(results_dir) if results_dir is not None else None
    if folder is not None and not folder.is_dir():
        raise InputFileNotFoundError(folder, "result folder")
    given = {"bse": bse, "prob": prob, "mgnum": mgnum, "catalogue": catalogue}
    found: dict[str, Path | None] = {}
    for key, path in given.items():
        if path is not None:
            path = Path(path)
            if not path.exists():
                raise InputFileNotFoundError(path, key)
            found[key] = path
        elif folder is not None:
            found[key] = next((folder / n for n in CANDIDATES[key] if (folder / n).exists()), None)
        else:
            found[key] = None
    if found["bse"] is None:
        where = f"{folder}: " if folder is not None else ""
        raise InputError(
            f"{where}no BSE mosaic (looked for {', '.join(CANDIDATES['bse'])}); give --bse"
        )
    return ResultFiles(**found)  # type: ignore[arg-type]
