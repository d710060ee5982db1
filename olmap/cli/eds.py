"""``olmap eds``: element maps (GeoTIFF stack) from a Bruker .bcf hypermap."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from olmap.cli._console import stderr, stdout
from olmap.cli._options import Overwrite
from olmap.errors import InputError
from olmap.io.bruker import DEFAULT_ELEMENTS, read_bcf_element_maps, read_bcf_images
from olmap.io.outputs import atomic_paths
from olmap.io.raster import write_raster
from olmap.masks.xray import FWHM_MN_EV, KALPHA_KEV


def eds(
    hypermap: Annotated[Path, typer.Argument(help="Bruker .bcf hypermap.")],
    out: Annotated[Path, typer.Option("--out", help="Output EDS stack (GeoTIFF).")],
    bse_out: Annotated[
        Path | None,
        typer.Option("--bse-out", help="Also write the BSE image stored in the file."),
    ] = None,
    elements: Annotated[
        str,
        typer.Option("--elements", help="Comma-separated element symbols to map."),
    ] = ",".join(DEFAULT_ELEMENTS),
    downsample: Annotated[
        int,
        typer.Option(
            "--downsample", min=1, max=64, help="Sum n x n pixels while decoding (less memory)."
        ),
    ] = 1,
    fwhm_mn: Annotated[
        float,
        typer.Option("--fwhm-mn", min=40.0, max=400.0, help="Detector FWHM at Mn Kα in eV."),
    ] = FWHM_MN_EV,
    pixel_size: Annotated[
        float | None,
        typer.Option("--pixel-size", min=1e-6, help="Pixel size in µm, if the file lacks it."),
    ] = None,
    overwrite: Overwrite = False,
) -> None:
    """Element count maps from a Bruker .bcf hypermap (needs: pip install 'olmap[bcf]').

    Each map sums the counts within ±1 FWHM of the element's Kα line. Only the channels up to
    the highest line are decoded, which bounds memory (docs/masks.md has measured peaks). With
    --downsample the BSE image is block-averaged onto the same grid.

    Example: olmap eds sample.bcf --out eds.tif --bse-out bse.tif --elements Mg,Ca,Al,Fe,Si
    """
    wanted = [e.strip() for e in elements.split(",") if e.strip()]
    if not wanted:
        raise typer.BadParameter("give at least one element symbol", param_hint="--elements")
    unknown = [e for e in wanted if e not in KALPHA_KEV]
    if unknown:
        raise typer.BadParameter(
            f"no Kα line for {', '.join(unknown)}; known: {', '.join(KALPHA_KEV)}",
            param_hint="--elements",
        )
    outputs = [out] if bse_out is None else [out, bse_out]
    with atomic_paths(outputs, inputs=[hypermap], overwrite=overwrite) as tmps:
        maps = read_bcf_element_maps(
            hypermap,
            elements=wanted,
            downsample=downsample,
            fwhm_mn_ev=fwhm_mn,
            pixel_size_um=pixel_size,
        )
        chosen = None
        if bse_out is not None:
            images = read_bcf_images(hypermap, pixel_size_um=pixel_size, downsample=downsample)
            chosen = next((im for im in images if im.name.upper() == "BSE"), None)
            if chosen is None and images:
                chosen = images[0]
                stderr.print(
                    f"[yellow]note:[/] {hypermap}: no image titled BSE; writing {chosen.name!r}",
                    soft_wrap=True,
                )
            if chosen is None:
                raise InputError(f"{hypermap}: holds no image for --bse-out")
        stack = np.stack([maps.maps[e] for e in wanted])
        dtype = "uint16" if stack.max(initial=0) <= np.iinfo(np.uint16).max else "uint32"
        write_raster(
            tmps[0],
            stack.astype(dtype),
            transform=maps.transform,
            band_names=wanted,
            tags={"units": "counts", "source": str(hypermap), "fwhm_mn_ev": fwhm_mn},
            overwrite=True,
        )
        if chosen is not None:
            write_raster(tmps[1], chosen.data, transform=chosen.transform, overwrite=True)
    h, w = stack.shape[1:]
    stdout.print(
        f"Wrote {out}: {len(wanted)} element maps, {w} x {h} px at {maps.transform.a:g} µm/px"
    )
    stdout.print("total counts: " + ", ".join(f"{e} {int(maps.maps[e].sum()):,}" for e in wanted))
    if bse_out is not None and chosen is not None:
        stdout.print(
            f"Wrote {bse_out}: image {chosen.name!r}, {chosen.data.shape[1]} x "
            f"{chosen.data.shape[0]} px"
        )
