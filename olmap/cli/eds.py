"""``olmap eds``: element maps (GeoTIFF stack) from a Bruker .bcf hypermap or from a folder of
per-element maps as labs export them (text/CSV count matrices, TIFF/PNG images)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from olmap.cli._console import stderr, stdout
from olmap.cli._options import Overwrite
from olmap.core.xray import FWHM_MN_EV, KALPHA_KEV
from olmap.errors import InputError
from olmap.io.bruker import DEFAULT_ELEMENTS, read_bcf_element_maps, read_bcf_images
from olmap.io.eds import open_element_folder
from olmap.io.element_maps import element_map_files, element_symbol
from olmap.io.outputs import atomic_paths
from olmap.io.raster import write_raster


def eds(
    hypermap: Annotated[
        Path,
        typer.Argument(
            help="Bruker .bcf hypermap, or a folder of per-element maps (Mg.txt, "
            "'Mg K series.csv', Mg.tif, ...)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output EDS stack (GeoTIFF).")],
    bse_out: Annotated[
        Path | None,
        typer.Option("--bse-out", help="Also write the BSE image stored in the file."),
    ] = None,
    elements: Annotated[
        str | None,
        typer.Option(
            "--elements",
            help="Comma-separated element symbols to map [default: Mg,Ca,Al,Fe,Si for a .bcf, "
            "every element map of a folder].",
        ),
    ] = None,
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
        typer.Option(
            "--pixel-size", min=1e-6, help="Pixel size in µm, if the files lack it (text maps)."
        ),
    ] = None,
    overwrite: Overwrite = False,
) -> None:
    """Element count maps from a folder of per-element maps or a Bruker .bcf hypermap.

    Writes one GeoTIFF stack with bands named by element. A .bcf needs: pip install
    'olmap[bcf]'.

    A folder holds one map per element, named by it in any vendor spelling (Mg.txt,
    'Mg K series.csv' from AZtec, MgKa.tif, mg.png); text maps are count matrices (tabs,
    commas, semicolons or spaces; a separator ending each row is fine). Text maps carry no pixel
    size: give --pixel-size, or the stack is written in pixels (said in one line).

    Of a .bcf, each map sums the counts within ±1 FWHM of the element's Kα line. Only the
    channels up to the highest line are decoded, which bounds memory (docs/masks.md has
    measured peaks). With --downsample the BSE image is block-averaged onto the same grid.

    Example: olmap eds SK392D/ --out eds.tif --pixel-size 2.5

    Example: olmap eds sample.bcf --out eds.tif --bse-out bse.tif --elements Mg,Ca,Al,Fe,Si
    """
    if hypermap.is_dir():
        _folder_to_stack(hypermap, out, elements, pixel_size, bse_out, overwrite)
        return
    elements = elements or ",".join(DEFAULT_ELEMENTS)
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


def _folder_to_stack(
    folder: Path,
    out: Path,
    elements: str | None,
    pixel_size: float | None,
    bse_out: Path | None,
    overwrite: bool,
) -> None:
    """``olmap eds FOLDER``: the folder's element maps as one georeferenced stack."""
    if bse_out is not None:
        raise typer.BadParameter(
            "a folder of element maps holds no BSE image to extract; give the BSE file "
            "itself to later commands",
            param_hint="--bse-out",
        )
    wanted = None
    if elements:
        wanted = [element_symbol(e) or e.strip() for e in elements.split(",") if e.strip()]
    inputs = element_map_files(folder)
    with atomic_paths([out], inputs=inputs, overwrite=overwrite) as tmps:
        maps = open_element_folder(folder, elements=wanted, pixel_size_um=pixel_size)
        names = list(maps.maps)
        stack = np.stack([maps.maps[e] for e in names])
        whole = bool(np.all(stack == np.round(stack))) and stack.min(initial=0) >= 0
        top = stack.max(initial=0)
        dtype = "float32"
        if whole:
            dtype = "uint16" if top <= np.iinfo(np.uint16).max else "uint32"
        tags = {"units": "counts", "source": str(folder)}
        if maps.notes:
            tags["pixel_size"] = "unknown (1 px written as 1 µm)"
        write_raster(
            tmps[0],
            stack.astype(dtype),
            transform=maps.transform,
            band_names=names,
            tags=tags,
            overwrite=True,
        )
    h, w = stack.shape[1:]
    size = "pixel size unknown" if maps.notes else f"{maps.transform.a:g} µm/px"
    stdout.print(
        f"Wrote {out}: {len(names)} element maps ({', '.join(names)}), {w} x {h} px, {size}"
    )
    stdout.print(
        "total counts: "
        + ", ".join(f"{e} {maps.maps[e].sum(dtype=np.float64):,.0f}" for e in names)
    )
    for note in maps.notes:
        stderr.print(f"[yellow]note:[/] {note}", soft_wrap=True)
