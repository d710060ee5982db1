"""GDAL virtual mosaics (VRT) of acquisition tiles, and GeoTIFFs streamed from them.

A VRT is a small XML file that GDAL (and so rasterio, QGIS, olmap) reads as one raster: each
tile is a source with the rectangle it supplies; an optional ``ScaleRatio``/``ScaleOffset``
per source applies a tile's brightness correction on the fly. No pixel is copied.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from rasterio.windows import Window

from olmap.core.windows import block_windows
from olmap.errors import InputError
from olmap.io.outputs import atomic_path, partial_name
from olmap.io.raster import create_raster, micrometre_transform, open_raster
from olmap.mosaic.layout import Placement

_GDAL_TYPES = {
    "uint8": "Byte",
    "uint16": "UInt16",
    "int16": "Int16",
    "uint32": "UInt32",
    "int32": "Int32",
    "float32": "Float32",
    "float64": "Float64",
}


def mosaic_vrt_xml(
    placements: Sequence[Placement],
    *,
    height: int,
    width: int,
    dtype: str,
    pixel_size_um: float,
    relative_to: Path,
    gains: np.ndarray | None = None,
    offsets: np.ndarray | None = None,
    nodata: float | None = None,
    underlay: bool = False,
) -> str:
    """The VRT text of a mosaic; tile paths are written relative to ``relative_to``.

    With ``underlay`` every whole tile is listed first and the kept parts after it: GDAL draws
    sources in order, so the kept parts win and pixels they miss still come from a tile.
    """
    if dtype not in _GDAL_TYPES:
        raise InputError(f"tiles of type {dtype} are not supported")
    t = micrometre_transform(height, pixel_size_um)
    lines = [
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
        f"  <GeoTransform>{t.c!r}, {t.a!r}, {t.b!r}, {t.f!r}, {t.d!r}, {t.e!r}</GeoTransform>",
        '  <Metadata><MDI key="software">olmap mosaic</MDI></Metadata>',
        f'  <VRTRasterBand dataType="{_GDAL_TYPES[dtype]}" band="1">',
        "    <Description>BSE</Description>",
    ]
    if nodata is not None:
        lines.append(f"    <NoDataValue>{nodata!r}</NoDataValue>")
    sources = [(i, (0, 0, p.height, p.width)) for i, p in enumerate(placements)] if underlay else []
    sources += [(i, p.keep) for i, p in enumerate(placements)]
    for i, (top, left, bottom, right) in sources:
        p = placements[i]
        if bottom <= top or right <= left:
            continue
        rel = os.path.relpath(p.path.resolve(), relative_to.resolve())
        scaled = gains is not None and offsets is not None
        kind = "ComplexSource" if scaled or nodata is not None else "SimpleSource"
        lines += [
            f"    <{kind}>",
            f'      <SourceFilename relativeToVRT="1">{escape(rel)}</SourceFilename>',
            "      <SourceBand>1</SourceBand>",
            f'      <SourceProperties RasterXSize="{p.width}" RasterYSize="{p.height}" '
            f'DataType="{_GDAL_TYPES[dtype]}"/>',
            f'      <SrcRect xOff="{left}" yOff="{top}" xSize="{right - left}" '
            f'ySize="{bottom - top}"/>',
            f'      <DstRect xOff="{p.col + left}" yOff="{p.row + top}" '
            f'xSize="{right - left}" ySize="{bottom - top}"/>',
        ]
        if scaled:
            lines += [
                f"      <ScaleOffset>{float(offsets[i])!r}</ScaleOffset>",  # type: ignore[index]
                f"      <ScaleRatio>{float(gains[i])!r}</ScaleRatio>",  # type: ignore[index]
            ]
        lines.append(f"    </{kind}>")
    lines += ["  </VRTRasterBand>", "</VRTDataset>", ""]
    return "\n".join(lines)


def write_mosaic(
    out: str | Path,
    placements: Sequence[Placement],
    *,
    height: int,
    width: int,
    dtype: str,
    pixel_size_um: float,
    gains: np.ndarray | None = None,
    offsets: np.ndarray | None = None,
    nodata: float | None = None,
    underlay: bool = False,
    overwrite: bool = False,
    block: int = 4096,
) -> Path:
    """Write a mosaic as a VRT (``.vrt``) or a tiled GeoTIFF streamed from one (``.tif``).

    The VRT is checked by opening it with GDAL before it is renamed into place.
    """
    out = Path(out)
    vrt_kwargs = {
        "height": height,
        "width": width,
        "dtype": dtype,
        "pixel_size_um": pixel_size_um,
        "gains": gains,
        "offsets": offsets,
        "nodata": nodata,
        "underlay": underlay,
    }
    if out.suffix.lower() == ".vrt":
        with atomic_path(out, overwrite=overwrite) as tmp:
            tmp.write_text(mosaic_vrt_xml(placements, relative_to=out.parent, **vrt_kwargs))
            with open_raster(tmp) as ds:
                ds.read(1, window=Window(0, 0, min(width, 16), min(height, 16)))
        return out
    # GeoTIFF: a VRT beside the output (so relative paths hold) is read in blocks.
    out.parent.mkdir(parents=True, exist_ok=True)
    vrt = partial_name(out).with_suffix(".vrt")
    vrt.write_text(mosaic_vrt_xml(placements, relative_to=vrt.parent, **vrt_kwargs))
    try:
        with (
            open_raster(vrt) as src,
            create_raster(
                out,
                height=height,
                width=width,
                dtype=dtype,
                pixel_size_um=pixel_size_um,
                band_names=["BSE"],
                nodata=nodata,
                tags={"software": "olmap mosaic"},
                overwrite=overwrite,
            ) as dst,
        ):
            for win in block_windows(height, width, block):
                dst.write(src.read(1, window=win), 1, window=win)
    finally:
        vrt.unlink(missing_ok=True)
    return out
