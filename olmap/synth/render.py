"""Render any window of a synthetic section: the noise-free truth, then what the SEM records.

Both are pure functions of the model and the window: a window rendered alone equals the same
pixels of a whole-section render (tested), so sections of any size are written window by
window in bounded memory and in parallel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window
from scipy import ndimage

from olmap.core.windows import halo_window
from olmap.synth.geometry import segment_distance
from olmap.synth.grains import N_BANDS, Canvas, plagioclase_colour
from olmap.synth.model import SectionModel
from olmap.synth.noise import (
    hash_normal,
    hash_uniform,
    pixel_noise,
    stream_key,
    tile_rng,
    value_noise,
)
from olmap.synth.phases import EDS_BACKGROUND, PHASE_TABLE, Phase, clinopyroxene_oxides, eds_counts

#: Side of the fixed tiles on which sensor noise and Poisson counts are drawn (px). Observed
#: windows must be aligned to this grid so that noise does not depend on the windowing.
NOISE_TILE = 256

# Random streams (fixed numbers: changing one changes every section of every seed).
_S_GLASS_LOW, _S_GLASS_FINE, _S_MICROLITE, _S_TILE, _S_NOISE = 11, 12, 13, 14, 15
_S_CHARGING, _S_SCAN = 16, 17

# Groundmass microlites (cell-hashed): cell side and per-slot presence probabilities.
_CELL_UM = 20.0
_SLOT_P = (0.95, 0.7, 0.35)
# type: (probability, length range µm, width range µm)
_MICROLITE_TYPES = {
    Phase.PLAGIOCLASE: (0.7, (6.0, 24.0), (1.2, 3.5)),
    Phase.CLINOPYROXENE: (0.2, (1.0, 6.0), (1.5, 4.0)),
    Phase.OXIDE: (0.1, (0.0, 1.0), (0.8, 2.5)),
}
_GM_CPX = clinopyroxene_oxides(0.72, 19.0)  # groundmass pyroxene is Fe-richer than phenocrysts
_GM_CPX_GREY = PHASE_TABLE.composition_grey(_GM_CPX)
_GM_CPX_EDS = eds_counts(_GM_CPX)


def _keys(seed: int) -> dict[int, int]:
    return {s: stream_key(seed, s) for s in (_S_GLASS_LOW, _S_GLASS_FINE, _S_MICROLITE, _S_TILE)}


def _paint_glass(canvas: Canvas, model: SectionModel, keys: dict[int, int]) -> None:
    """Groundmass glass: slow compositional variation plus a fine mottled texture."""
    cfg = model.config
    r0, c0, h, w = canvas.row0, canvas.col0, canvas.height, canvas.width
    low = value_noise(keys[_S_GLASS_LOW], r0, c0, h, w, cfg.um(150.0))
    halo = 4  # the fine texture filter (sigma 1 px, truncated at 4 sigma) needs 4 px around
    fine = pixel_noise(keys[_S_GLASS_FINE], r0 - halo, c0 - halo, h + 2 * halo, w + 2 * halo)
    fine = ndimage.gaussian_filter(fine, 1.0)[halo:-halo, halo:-halo]
    canvas.grey += 4.0 * low + 40.0 * fine
    canvas.eds *= 1.0 + 0.06 * low[None]


def _paint_microlites(canvas: Canvas, model: SectionModel, key: int) -> None:
    """Groundmass microlites: plagioclase laths, pyroxene grains and oxide specks.

    They are far too many to list, so each cell of a fixed grid draws its own microlites from
    hashes of its coordinates; a window renders the cells within reach of its pixels.
    """
    cfg = model.config
    cell = max(4.0, cfg.um(_CELL_UM))
    # A microlite can reach this far from its cell: half its longest length plus its width.
    longest = max(t[1][1] for t in _MICROLITE_TYPES.values())
    widest = max(t[2][1] for t in _MICROLITE_TYPES.values())
    reach = int(np.ceil(cfg.um(longest) / 2 + cfg.um(widest))) + 1
    r0, c0, h, w = canvas.row0, canvas.col0, canvas.height, canvas.width
    cys = np.arange(np.floor((r0 - reach) / cell), np.floor((r0 + h + reach) / cell) + 1)
    cxs = np.arange(np.floor((c0 - reach) / cell), np.floor((c0 + w + reach) / cell) + 1)
    cy, cx = cys.astype(np.int64)[:, None], cxs.astype(np.int64)[None, :]
    cy_grid, cx_grid = np.broadcast_arrays(cy, cx)
    params, cell_y, cell_x = [], [], []
    for slot, p in enumerate(_SLOT_P):
        u = np.stack([hash_uniform(key, cy, cx, slot, f) for f in range(8)])
        keep = u[0] < p
        params.append(u[1:, keep])
        cell_y.append(cy_grid[keep])
        cell_x.append(cx_grid[keep])
    u1, u2, u3, u4, u5, u6, u7 = np.concatenate(params, axis=1)
    cyy, cxx = np.concatenate(cell_y), np.concatenate(cell_x)
    x_c, y_c, angle = (cxx + u1) * cell, (cyy + u2) * cell, u3 * np.pi

    pix_all, prio_all, kind_all, val_all = [], [], [], []
    edges = np.cumsum([t[0] for t in _MICROLITE_TYPES.values()])
    kinds = np.searchsorted(edges, u6, side="right").clip(0, len(edges) - 1)
    for k, (_, (l0, l1), (w0, w1)) in enumerate(_MICROLITE_TYPES.values()):
        sel = np.nonzero(kinds == k)[0]
        if sel.size == 0:
            continue
        half = cfg.um(l0 + (l1 - l0) * u4[sel]) / 2
        width = np.maximum(0.8, cfg.um(w0 + (w1 - w0) * u5[sel]))
        rad = int(np.ceil(cfg.um(l1) / 2 + cfg.um(w1) / 2)) + 1
        off = np.arange(-rad, rad + 1)
        oy, ox = np.meshgrid(off, off, indexing="ij")
        oy, ox = oy.ravel()[None, :], ox.ravel()[None, :]
        for start in range(0, sel.size, 1024):  # chunks bound the (n, offsets) temporaries
            s = sel[start : start + 1024]
            hs, ws = half[start : start + 1024, None], width[start : start + 1024, None]
            rows = np.floor(y_c[s])[:, None].astype(np.int64) + oy
            cols = np.floor(x_c[s])[:, None].astype(np.int64) + ox
            dx, dy = np.cos(angle[s])[:, None] * hs, np.sin(angle[s])[:, None] * hs
            px, py = cols + 0.5 - x_c[s, None], rows + 0.5 - y_c[s, None]
            # Distance to the lath's axis segment, in the lath's frame.
            len2 = np.maximum(dx * dx + dy * dy, 1e-12)
            t = np.clip((px * dx + py * dy) / len2, -1.0, 1.0)
            dist = np.hypot(px - t * dx, py - t * dy)
            hit = (dist < ws / 2) & (rows >= r0) & (rows < r0 + h) & (cols >= c0) & (cols < c0 + w)
            i_lath, _ = np.nonzero(hit)
            pix_all.append((rows[hit] - r0) * w + (cols[hit] - c0))
            prio_all.append(u7[s][i_lath])
            kind_all.append(np.full(i_lath.size, k))
            val_all.append(u4[s][i_lath])  # reused as anorthite variation for plagioclase
    if not pix_all:
        return
    pix, prio = np.concatenate(pix_all), np.concatenate(prio_all)
    kind, val = np.concatenate(kind_all), np.concatenate(val_all)
    # Where microlites overlap, the one with the highest (hashed) priority is on top; this
    # does not depend on the window.
    order = np.lexsort((prio, pix))
    pix, kind, val = pix[order], kind[order], val[order]
    last = np.r_[pix[1:] != pix[:-1], True]
    pix, kind, val = pix[last], kind[last], val[last]
    phases = np.array(list(_MICROLITE_TYPES), dtype=np.uint8)[kind]
    an = 0.5 + 0.2 * val
    plag_grey, plag_eds = plagioclase_colour(an)
    grey = np.where(
        kind == 0, plag_grey, np.where(kind == 1, _GM_CPX_GREY, PHASE_TABLE.const_grey[Phase.OXIDE])
    )
    eds = np.where(
        kind[None] == 0,
        plag_eds,
        np.where(
            kind[None] == 1, _GM_CPX_EDS[:, None], PHASE_TABLE.const_eds[Phase.OXIDE][:, None]
        ),
    )
    canvas.phase.ravel()[pix] = phases
    canvas.grey.ravel()[pix] = grey
    flat = canvas.eds.reshape(N_BANDS, -1)
    flat[:, pix] = eds


def render_truth(model: SectionModel, row0: int, col0: int, height: int, width: int) -> Canvas:
    """Noise-free truth of a window: phases, nominal BSE grey, expected EDS counts, mg#, ids.

    Parameters
    ----------
    model : SectionModel
    row0, col0 : int
        Top-left pixel of the window.
    height, width : int
        Window shape in pixels.
    """
    keys = _keys(model.config.seed)
    canvas = Canvas(row0, col0, height, width)
    _paint_glass(canvas, model, keys)
    _paint_microlites(canvas, model, keys[_S_MICROLITE])
    for grain in model.grains_in(row0, col0, height, width):
        grain.paint(canvas)
    return canvas


@dataclass
class ObservedWindow:
    """One window of a synthetic section as acquired, with its truth.

    Attributes
    ----------
    bse : ndarray (h, w) uint8 or uint16
        uint16 for a 16-bit look (:attr:`~olmap.synth.config.LookConfig.bit_depth`).
    eds : ndarray (band, h, w) uint16
        Counts of :data:`~olmap.synth.phases.EDS_ELEMENTS`.
    phase, instance, mg : ndarray (h, w)
        Truth: phase codes, olivine instance ids (0 elsewhere), olivine mg# (NaN elsewhere).
    """

    bse: np.ndarray
    eds: np.ndarray
    phase: np.ndarray
    instance: np.ndarray
    mg: np.ndarray


def _look_grey(model: SectionModel, truth: Canvas) -> np.ndarray:
    """Nominal grey of the truth window under the section's look (before the point-spread).

    Per-phase shifts, charging of the epoxy (smooth bright patches: the uncoated resin holds
    charge), then the detector's contrast and brightness, all in 8-bit levels.
    """
    look = model.config.look
    grey = truth.grey.astype(np.float32, copy=True)
    if look.phase_shift:
        lut = np.zeros(256, dtype=np.float32)
        for phase in Phase:
            lut[phase] = look.phase_shift.get(phase.name.lower(), 0.0)
        grey += lut[truth.phase]
    if look.charging:
        key = stream_key(model.config.seed, _S_CHARGING)
        field = value_noise(
            key, truth.row0, truth.col0, truth.height, truth.width, model.config.um(80.0)
        )
        resin = (truth.phase == Phase.EPOXY) | (truth.phase == Phase.CRACK)
        grey += np.where(resin, look.charging * np.clip(field, 0.0, None) ** 2, 0.0)
    return look.contrast * (grey - 128.0) + 128.0 + look.brightness


def _look_acquisition(
    model: SectionModel, grey: np.ndarray, rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    """Acquisition artefacts of a look: vignetting per tile, a gain ramp, scan-line noise."""
    cfg = model.config
    look = cfg.look
    th, tw = cfg.acquisition_tile
    if look.vignetting:
        dy = ((rows % th) + 0.5) / th - 0.5
        dx = ((cols % tw) + 0.5) / tw - 0.5
        grey = grey * (1.0 - look.vignetting * 2.0 * (dy[:, None] ** 2 + dx[None, :] ** 2))
    if look.ramp:
        a = np.deg2rad(look.ramp_angle_deg)
        u = np.cos(a) * ((cols + 0.5) / cfg.width - 0.5)
        v = np.sin(a) * ((rows + 0.5) / cfg.height - 0.5)
        grey = grey * (1.0 + look.ramp * (v[:, None] + u[None, :]))
    if look.scan_line_noise:
        key = stream_key(cfg.seed, _S_SCAN)
        line = hash_normal(key, rows[:, None], (cols // tw)[None, :], 0)
        grey = grey + look.scan_line_noise * line
    return grey


def observation_halo(model: SectionModel) -> int:
    """Pixels of truth needed around a window for the BSE and EDS point-spread functions."""
    cfg = model.config
    sigma = max(cfg.um(cfg.bse_psf_um), cfg.um(cfg.eds_psf_um))
    return int(4.0 * sigma + 0.5) + 1


def _check_aligned(model: SectionModel, row0: int, col0: int, height: int, width: int) -> None:
    cfg = model.config
    for start, size, total, name in (
        (row0, height, cfg.height, "row"),
        (col0, width, cfg.width, "col"),
    ):
        if start % NOISE_TILE or (size % NOISE_TILE and start + size != total):
            raise ValueError(
                f"observed windows must align to the {NOISE_TILE}-px noise grid "
                f"({name} {start}+{size})"
            )


def render_observed(
    model: SectionModel, row0: int, col0: int, height: int, width: int
) -> ObservedWindow:
    """What the SEM records in a window: BSE and EDS with PSF, drift, tile steps and noise.

    The window must be aligned to the :data:`NOISE_TILE` grid (any multiple of it, or
    reaching the section's edge).
    """
    cfg = model.config
    _check_aligned(model, row0, col0, height, width)
    padded, inner = halo_window(
        Window(col0, row0, width, height), observation_halo(model), cfg.height, cfg.width
    )
    truth = render_truth(
        model, int(padded.row_off), int(padded.col_off), int(padded.height), int(padded.width)
    )
    s_bse, s_eds = cfg.um(cfg.bse_psf_um), cfg.um(cfg.eds_psf_um)
    nominal = truth.grey if cfg.look.is_default else _look_grey(model, truth)
    grey = ndimage.gaussian_filter(nominal, s_bse, mode="nearest")[inner]
    lam = np.stack([ndimage.gaussian_filter(b, s_eds, mode="nearest")[inner] for b in truth.eds])

    rows = np.arange(row0, row0 + height)
    cols = np.arange(col0, col0 + width)
    for sc in model.scratches_in(row0, col0, height, width):
        r0, r1 = max(sc.bbox[0], row0), min(sc.bbox[1], row0 + height)
        c0, c1 = max(sc.bbox[2], col0), min(sc.bbox[3], col0 + width)
        if r0 >= r1 or c0 >= c1:
            continue
        y = (np.arange(r0, r1) + 0.5)[:, None]
        x = (np.arange(c0, c1) + 0.5)[None, :]
        d = segment_distance(x, y, sc.x0, sc.y0, sc.x1, sc.y1)
        grey[r0 - row0 : r1 - row0, c0 - col0 : c1 - col0] -= sc.depth * np.exp(
            -((d / sc.width) ** 2)
        )

    # Acquisition tiles: each 512 x 338 px tile has its own small brightness step and gain.
    th, tw = cfg.acquisition_tile
    key = stream_key(cfg.seed, _S_TILE)
    t_rows, t_cols = rows // th, cols // tw
    ur, ir = np.unique(t_rows, return_inverse=True)
    uc, ic = np.unique(t_cols, return_inverse=True)
    t_off = cfg.tile_offset_sd * hash_normal(key, ur[:, None], uc[None, :], 0)
    t_gain = 1.0 + cfg.tile_gain_sd * hash_normal(key, ur[:, None], uc[None, :], 1)
    grey = grey * t_gain[ir][:, ic] + t_off[ir][:, ic]
    if not cfg.look.is_default:
        grey = _look_acquisition(model, grey, rows, cols)

    # Session drift, per column strip.
    s_idx = model.session_index(cols)
    gain = np.array([s.bse_gain for s in model.sessions])[s_idx][None, :]
    offset = np.array([s.bse_offset for s in model.sessions])[s_idx][None, :]
    grey = grey * gain + offset
    eds_gain = np.array([s.eds_gain for s in model.sessions])[s_idx][None, None, :]
    lam = lam * eds_gain + EDS_BACKGROUND

    sd = np.sqrt(cfg.bse_noise**2 + cfg.bse_shot_noise * np.maximum(grey, 0.0))
    look = cfg.look
    full = 255 if look.bit_depth == 8 else 65535
    bse = np.empty((height, width), dtype=look.dtype)
    eds = np.empty((N_BANDS, height, width), dtype=np.uint16)
    for tr in range(row0 // NOISE_TILE, (row0 + height - 1) // NOISE_TILE + 1):
        for tc in range(col0 // NOISE_TILE, (col0 + width - 1) // NOISE_TILE + 1):
            rng = tile_rng(cfg.seed, _S_NOISE, tr, tc)
            rs = slice(tr * NOISE_TILE - row0, min((tr + 1) * NOISE_TILE, row0 + height) - row0)
            cs = slice(tc * NOISE_TILE - col0, min((tc + 1) * NOISE_TILE, col0 + width) - col0)
            g = grey[rs, cs] + sd[rs, cs] * rng.standard_normal(grey[rs, cs].shape)
            if look.bit_depth == 16:
                g = g * look.scale_16bit + look.offset_16bit
            bse[rs, cs] = np.clip(np.rint(g), 0, full)
            eds[:, rs, cs] = np.minimum(rng.poisson(lam[:, rs, cs]), 65535)
    return ObservedWindow(
        bse=bse,
        eds=eds,
        phase=truth.phase[inner],
        instance=truth.instance[inner],
        mg=truth.mg[inner],
    )
