"""``olmap ct info`` and ``olmap ct convert``: what a volume is, and the volume as OME-Zarr.

Conversion streams the volume through :func:`olmap.stream.run_blocks` in slabs (whole slices
when a slab fits :data:`SLAB_BYTES`, else chunk-aligned blocks), so peak memory depends on the
slab, never on the volume; an interrupted conversion resumes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from olmap import __version__
from olmap.ct.label import VolumeSpec
from olmap.errors import InputError
from olmap.io.omezarr import DEFAULT_CHUNKS, create_ome_zarr, write_multipage_tiff, write_pyramid
from olmap.io.outputs import MARKER, claim_outputs, commit, partial_name
from olmap.io.resume import progress_path
from olmap.io.volume import VolumeInfo, volume_stamp
from olmap.stream import BlockGrid, BlockJob, ZarrSink, run_blocks

#: Largest slab read at once when converting (bytes).
SLAB_BYTES = 32 * 2**20


@dataclass
class VolumeSummary:
    """:func:`describe_volume`: headers plus grey statistics of a sample."""

    info: VolumeInfo
    percentiles: dict[str, float]
    histogram: tuple[np.ndarray, np.ndarray]
    sampled_voxels: int


def describe_volume(spec: VolumeSpec, bins: int = 16) -> VolumeSummary:
    """Shape, type, voxel size and chunks, and grey percentiles and a histogram of about 27
    blocks spread over the volume (the same cost for any volume size)."""
    with spec.open() as vol:
        info = vol.info
        shape = vol.shape
        side = 48
        per_axis = 3
        values = []
        for z0 in sorted({round(v) for v in np.linspace(0, max(0, shape[0] - side), per_axis)}):
            for y0 in sorted({round(v) for v in np.linspace(0, max(0, shape[1] - side), per_axis)}):
                for x0 in sorted(
                    {round(v) for v in np.linspace(0, max(0, shape[2] - side), per_axis)}
                ):
                    region = (slice(z0, z0 + side), slice(y0, y0 + side), slice(x0, x0 + side))
                    values.append(vol.read(region).ravel())
    sample = np.concatenate(values).astype(np.float64)
    qs = {"min": 0, "p1": 1, "p50": 50, "p99": 99, "max": 100}
    pct = dict(zip(qs, np.percentile(sample, list(qs.values())).tolist(), strict=True))
    pct["mean"] = float(sample.mean())
    hist = np.histogram(sample, bins=bins)
    return VolumeSummary(info, pct, hist, sample.size)


def convert_block(shape, dtype_size: int, chunks=DEFAULT_CHUNKS) -> tuple[int, int, int]:
    """Slabs of whole rows (each row of a slice read once) as tall as :data:`SLAB_BYTES`
    allows in whole chunks, else chunk-sized blocks.

    Examples
    --------
    >>> convert_block((512, 512, 512), 2)
    (64, 512, 512)
    >>> convert_block((1024, 1024, 1024), 2)
    (64, 256, 1024)
    >>> convert_block((100, 8192, 8192), 2)
    (64, 256, 256)
    """
    z, y, x = shape
    cz, cy = min(z, chunks[0]), min(y, chunks[1])
    rows = SLAB_BYTES // (cz * x * dtype_size) // cy * cy
    if rows >= cy:
        return (cz, min(y, rows), x)
    return (cz, cy, min(x, chunks[2]))


class _CopyBlock:
    """``compute`` of the conversion: read one block (picklable for Dask)."""

    def __init__(self, spec: VolumeSpec) -> None:
        self.spec, self._vol = spec, None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_vol": None}

    def __call__(self, block) -> np.ndarray:
        if self._vol is None:
            self._vol = self.spec.open()
        return self._vol.read(block.inner)


def convert_volume(
    spec: VolumeSpec,
    out: str | Path,
    *,
    fmt: str = "zarr",
    chunks: tuple[int, int, int] = DEFAULT_CHUNKS,
    overwrite: bool = False,
    dask: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> VolumeInfo:
    """Write ``spec`` as OME-Zarr (multiscale, chunked, compressed) or a multi-page TIFF.

    Raises
    ------
    InputError
        Unreadable volume or a bad format.
    """
    if fmt not in ("zarr", "tiff"):
        raise InputError(f"--format {fmt}: expected zarr or tiff")
    out = Path(out)
    with spec.open() as vol:
        info = vol.info
    if fmt == "tiff":
        with claim_outputs([out], inputs=[spec.path], overwrite=overwrite), spec.open() as vol:
            tmp = partial_name(out)
            write_multipage_tiff(
                vol,
                tmp,
                voxel_size_um=info.voxel_size_um,
                progress=progress and (lambda n: progress(n * info.shape[1] * info.shape[2])),
            )
            commit([(tmp, out)])
        return info
    block = convert_block(info.shape, info.dtype.itemsize, chunks)
    grid = BlockGrid(info.shape, block)
    with claim_outputs([out], inputs=[spec.path.split(".h5:")[0]], overwrite=overwrite):
        tmp = partial_name(out)
        checkpoint = progress_path(out)
        fingerprint = json.dumps(
            {
                "olmap": __version__,
                "src": [spec.path, *volume_stamp(spec.path)],
                "chunks": chunks,
                "info": str(info),
            },
            sort_keys=True,
        )
        if not checkpoint.exists() or not tmp.exists():
            checkpoint.unlink(missing_ok=True)
            create_ome_zarr(
                tmp,
                info.shape,
                info.dtype,
                voxel_size_um=info.voxel_size_um,
                name=out.stem,
                chunks=chunks,
                extra={"source": spec.path, "software": f"olmap {__version__}"},
            )
            (tmp / MARKER).write_text("written by olmap; `--overwrite` may replace it\n")
        import zarr

        sink = ZarrSink(zarr.open_array(str(tmp / "0"), mode="r+"))

        def finish() -> None:
            write_pyramid(tmp, labels=False)
            commit([(tmp, out)])

        job = BlockJob(grid, _CopyBlock(spec), lambda b, data: sink.write(b.inner, data), str(out))
        run_blocks(
            job,
            checkpoint=checkpoint,
            fingerprint=fingerprint,
            dask=dask,
            progress=progress,
            finish=finish,
        )
    return info
