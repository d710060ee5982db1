"""Compare an ``olmap crystals`` catalogue with the truth of a synthetic section.

    .venv/bin/python tools/eval_crystals.py SECTION_DIR CATALOGUE.gpkg|.parquet [--json OUT]

A true crystal (``truth/crystals.csv``, size class not empty, i.e. > 100 µm²) is *matched* when
a catalogue crystal covers its olivine pixels with IoU >= 0.5 (at most one can). Size-class
accuracy is over matched crystals, zoning accuracy over matched true phenocrysts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
from rasterio import features

from olmap.crystals.evaluate import match_instances


def instance_maps(section: Path, catalogue: gpd.GeoDataFrame) -> tuple[np.ndarray, np.ndarray]:
    """True olivine crystal ids and the catalogue's crystal ids on the section's pixel grid."""
    with rasterio.open(section / "truth" / "instances.tif") as src:
        instances = src.read(1)
        transform, shape = src.transform, src.shape
    with rasterio.open(section / "truth" / "olivine.tif") as src:
        true_ids = np.where(src.read(1) == 1, instances, 0)
    pred_ids = features.rasterize(
        zip(catalogue.geometry, catalogue["id"], strict=True),
        out_shape=shape,
        transform=transform,
        fill=0,
        dtype="int32",
    )
    return true_ids, pred_ids


def evaluate(section: Path, catalogue: gpd.GeoDataFrame) -> dict:
    """Matching, size-class and zoning figures of ``catalogue`` against ``section``'s truth."""
    true_ids, pred_ids = instance_maps(section, catalogue)
    truth = pd.read_csv(section / "truth" / "crystals.csv").set_index("id")
    truth = truth[truth["size_class"].notna() & truth.index.isin(np.unique(true_ids))]
    m = match_instances(pred_ids, true_ids).reindex(truth.index)
    truth["iou"] = m["iou"].fillna(0.0)
    truth["pred_id"] = m["pred_id"].fillna(0).astype(np.int64)
    cat = catalogue.set_index("id")
    matched = truth[truth["iou"] >= 0.5].copy()
    matched["pred_class"] = cat.loc[matched["pred_id"], "class"].to_numpy()
    matched["pred_zoning"] = cat.loc[matched["pred_id"], "zoning"].to_numpy()
    pheno = matched[matched["size_class"] == "phenocryst"]
    out = {
        "true_crystals": len(truth),
        "catalogued": len(catalogue),
        "matched": round(float((truth["iou"] >= 0.5).mean()), 4),
        "matched_by_class": {
            c: round(float((g["iou"] >= 0.5).mean()), 4) for c, g in truth.groupby("size_class")
        },
        "size_class_accuracy": round(
            float((matched["pred_class"] == matched["size_class"]).mean()), 4
        ),
        "phenocrysts_matched": len(pheno),
        "zoning_accuracy": round(float((pheno["pred_zoning"] == pheno["zoning"]).mean()), 4)
        if len(pheno)
        else None,
        "zoning_confusion": pd.crosstab(pheno["zoning"], pheno["pred_zoning"]).to_dict()
        if len(pheno)
        else {},
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("section", type=Path)
    ap.add_argument("catalogue", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    cat = (
        gpd.read_parquet(args.catalogue)
        if args.catalogue.suffix == ".parquet"
        else gpd.read_file(args.catalogue, layer="crystals")
    )
    res = evaluate(args.section, cat)
    print(json.dumps(res, indent=2))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
