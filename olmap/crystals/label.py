"""Component ids of a crystal mask as a GeoTIFF (labelling: :mod:`olmap.core.components`)."""

from __future__ import annotations

from pathlib import Path

from affine import Affine

from olmap.core.components import Components, MaskReader, Progress, write_component_ids
from olmap.io.raster import create_raster


def label_raster(
    read_mask: MaskReader,
    height: int,
    width: int,
    out_path: str | Path,
    *,
    transform: Affine,
    chunk: int = 2048,
    connectivity: int = 2,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Components:
    """Write the component ids of a mask as a uint32 GeoTIFF (0 = background).

    The ids are those of :func:`olmap.core.components.write_component_ids` (two passes, memory
    bounded by ``chunk``); the file appears at ``out_path`` only when complete.

    Parameters
    ----------
    read_mask : callable
        ``read_mask(window)`` returns the mask over a window (nonzero = foreground), the
        same in both passes.
    height, width : int
        Mosaic shape (px).
    out_path : path-like
        Output GeoTIFF.
    transform : Affine
        Georeference of the mask grid (µm).
    chunk : int
        Chunk side (px).
    connectivity : {1, 2}
        1: 4-neighbour, 2: 8-neighbour.
    overwrite : bool
        Replace an existing ``out_path``.
    progress : callable, optional
        ``progress(n_done, n_total)`` over both passes.

    Raises
    ------
    OutputExistsError
        If ``out_path`` exists and ``overwrite`` is false.
    ValueError
        For a bad connectivity or chunk, or if the mask changed between the passes.
    """
    with create_raster(
        out_path,
        height=height,
        width=width,
        dtype="uint32",
        transform=transform,
        overwrite=overwrite,
    ) as ds:
        comps = write_component_ids(
            read_mask,
            height,
            width,
            lambda window, ids: ds.write(ids, 1, window=window),
            chunk=chunk,
            connectivity=connectivity,
            progress=progress,
        )
        ds.update_tags(components=len(comps), connectivity=connectivity)
        return comps
