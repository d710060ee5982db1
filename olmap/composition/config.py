"""Parameters of the composition stage (``olmap calibrate``, ``olmap mgmap``), validated.

Defaults are the paper's (seed 002) where it gives a value and olmap's measured choices
elsewhere; each comment says which (figures in docs/composition.md and docs/benchmarks.md).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class LofConfig(BaseModel):
    """Local Outlier Factor on (row, col, BSE) pixel features (seed 002 sect. 3.8)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The paper does not give k. scikit-learn's default (20) flags 6 % of the crack and hole
    # pixels of synthetic phenocrysts: LOF cannot call a cluster of more than k pixels an
    # outlier, and cracks and plucked holes hold hundreds. k = 400 flagged 92 % of those in
    # phenocrysts, k = 800 97 % (0.14 % of clean olivine flagged; docs/composition.md).
    n_neighbors: int = Field(800, ge=2, description="k at full resolution (pixels)")
    # ...but when k nears a crystal's size every neighbourhood is the whole crystal and LOF
    # is ~1 everywhere: microlite cracks went 60 % -> 97 % flagged with k <= n/4.
    max_neighbor_fraction: float = Field(0.25, gt=0, le=1, description="k <= this x pixels")
    # Feature units per BSE unit. None (olmap, issue 23) = from each crystal's own noise:
    # noise_weight / (robust sd of its pixel-to-pixel BSE differences), so one noise sd
    # weighs noise_weight pixels on any instrument. The paper's raw features weigh one 8-bit
    # grey level like one pixel, which fixes the filter to one contrast and noise level (a
    # 16-bit rule of 1/257 per level, used before, was tuned to olmap's default look).
    bse_scale: float | None = Field(None, gt=0, description="BSE units -> feature units")
    # 3: the weight the raw features gave the default look's noise (sd ~3.1 levels), where
    # k and the threshold were measured (docs/composition.md).
    noise_weight: float = Field(3.0, gt=0, description="pixels of distance per noise sd")
    # Crystals with fewer 4-adjacent pixel pairs than this take the median noise sd of the
    # (up to 50) largest crystals of the section: too few pairs for a robust spread.
    min_noise_pairs: int = Field(50, ge=1)
    # Smallest noise sd used (BSE units): quantised or noise-free images.
    min_noise_sd: float = Field(0.3, gt=0)
    # scikit-learn's contamination="auto": outlier when LOF > 1.5 (Breunig et al. 2000).
    threshold: float = Field(1.5, gt=1.0, description="LOF above which a pixel is an outlier")
    # olmap: on a regular grid the density at stride s is 1/s² of the full one and LOF, a
    # ratio of densities, does not change; fitting on every s-th row and column with k/s²
    # neighbours gives the flags of k neighbours on every pixel (99.97 % of pixels agree),
    # ~12x faster. 1 = plain scikit-learn LOF on all pixels (tools/bench_mgmap.py).
    grid_stride: int = Field(4, ge=1, le=8, description="subsampling of the fitted pixels")
    min_pixels: int = Field(10, ge=3, description="crystals with fewer pixels are not filtered")

    def scale_for_noise(self, noise_sd: float) -> float:
        """LOF feature units per BSE unit for a crystal of this noise sd (``bse_scale`` if set)."""
        if self.bse_scale is not None:
            return self.bse_scale
        return self.noise_weight / max(noise_sd, self.min_noise_sd)


class ProfileConfig(BaseModel):
    """How the BSE image is sampled along EPMA profiles and how profiles are cleaned."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # olmap: an EPMA spot integrates ~1-2 µm (interaction volume); a Gaussian of this sd is
    # applied before sampling so one noisy pixel does not stand for a spot.
    spot_sigma_um: float = Field(1.0, ge=0, description="Gaussian sd of the sampled spot (µm)")
    # Samples across the line are averaged (like skimage.measure.profile_line's linewidth);
    # zoning runs along the line, so a few µm across add signal, not blur.
    line_width_um: float = Field(3.0, ge=0, description="width averaged across the line (µm)")
    # Profile outliers: LOF on (row, col, BSE) of the profile's points, replaced by linear
    # interpolation along the profile (seed 002 sect. 3.8). k = scikit-learn's default: with
    # k = 10 the steep rims of zoned crystals were flagged and the test RMSE rose 0.0038 ->
    # 0.0045 on a synthetic section; a crack crosses a line in one or two points.
    lof_neighbors: int = Field(20, ge=2)
    lof_threshold: float = Field(1.5, gt=1.0)
    # olmap (issue 23): the features are (point index, weight x detrended BSE / the
    # profile's own robust noise sd), so one noise sd weighs this many point spacings on any
    # instrument. The paper's raw (row, col, BSE) tied one grey level to one micrometre: on a
    # 16-bit section of another contrast it flagged 19 of 48 points, zoned rims included.
    # 3 = the weight the raw features gave the default look's noise (sd ~3 levels per 1 px).
    lof_noise_weight: float = Field(3.0, gt=0, description="point spacings per noise sd")
    # olmap: interpolation cannot repair a profile of which more is bad; beyond this share
    # only the most outlying points are replaced and the profile is reported as capped.
    max_outlier_share: float = Field(0.2, gt=0, le=1, description="most points replaced")


class RegistrationConfig(BaseModel):
    """Automatic relocation of EPMA lines on the BSE image (olmap; the paper did it by hand)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    max_along_um: float = Field(10.0, ge=0, description="search range along the line (µm)")
    max_across_um: float = Field(2.0, ge=0, description="search range across the line (µm)")
    # Gaussian prior on the relocation error (olmap): along the line an analyst may be off by
    # a few µm (3 µm: largest error 2.0 µm over 41 synthetic profiles, against 2.6 µm with
    # 5 µm and 4.7 µm with 1.5 µm); across it the profile's concentric zoning barely
    # constrains the shift, so a tight prior keeps the given position unless the data insist
    # (docs/composition.md).
    prior_along_um: float = Field(3.0, gt=0)
    prior_across_um: float = Field(0.5, gt=0)
    # Residuals of neighbouring points are correlated; 16 points count as one independent
    # residual (measured best of 1-64 on synthetic sections; olmap.composition.profiles).
    points_per_residual: float = Field(16.0, ge=1)
    # Analysts put every spot on clean olivine (seed 002 sect. 3.3 relocated the lines by
    # eye on the BSE image): each point that a shift puts off the mask costs this much
    # log-likelihood (olmap; 2, 3 and 5 gave the same synthetic errors, docs/composition.md).
    off_mask_penalty: float = Field(3.0, ge=0)
    # Profiles run rim to rim (seed 002 sect. 3.3): each end point lies within this many
    # point spacings of the crystal's rim. null for profiles that stop short of the rims.
    rim_gap_steps: float | None = Field(1.0, gt=0)
    # mg# contrast marking the boundary where two olivine crystals touch (olmap; 5 sd of the
    # smoothed BSE noise in mg#, 0.01-0.025 measured alike).
    rim_mg_step: float = Field(0.015, gt=0)
    step_um: float = Field(0.25, gt=0, description="grid step of the search (µm)")
    iterations: int = Field(3, ge=1, le=10, description="register <-> refit rounds")


class CalibrateConfig(BaseModel):
    """Everything that defines ``olmap calibrate`` (stored in calibration.json)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The mask's class of the mineral calibrated, by name in its class list (a mask without
    # one: value 1).
    mask_class: str = Field("olivine", min_length=1)
    profile: ProfileConfig = ProfileConfig()
    registration: RegistrationConfig = RegistrationConfig()
    # seed 002 eq. 5: RMSE10 leaves out the first and last 10 points of every profile.
    end_points: int = Field(10, ge=0, description="points left out at each end for RMSE10")
    # olmap (issue 23): which line is used. auto = the one with the smaller leave-one-
    # profile-out RMSE over the calibration profiles (filtered when fewer than two profiles
    # or on a tie); both lines and both errors are reported. filtered / not_filtered force one.
    fit_choice: Literal["auto", "filtered", "not_filtered"] = "auto"
    # olmap (issue 23): an olivine standard of known mg# measured with the drift standards
    # is a point of the line on the reference BSE scale, far from the profiles' narrow mg#
    # range; a line through it takes its slope from that lever arm. auto = anchored when its
    # leave-one-profile-out RMSE is smaller (never with fewer than two profiles); always /
    # never force it. Needs --standards with one of olivine_standards.
    anchor: Literal["auto", "always", "never"] = "auto"
    # mg# of olivine standards by name in standards.csv: San Carlos olivine Fo90.4
    # (Jarosewich et al. 1980, cited in seed 002 sect. 3.2).
    olivine_standards: dict[str, Annotated[float, Field(gt=0, le=1)]] = {
        "san_carlos_olivine": 0.904
    }
    # olmap (issue 23): the BSE point-spread (sd, px) undone at olivine outlines before
    # sampling (olmap.composition.psf; mgmap undoes the same). None = estimated from the
    # outlines in the profiles' windows; 0 = off (the paper's raw BSE).
    psf_sigma_px: float | None = Field(None, ge=0, le=8)


class MgMapConfig(BaseModel):
    """Everything that defines ``olmap mgmap``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The mask's class of the mineral mapped, by name in its class list (a mask without one:
    # value 1).
    mask_class: str = Field("olivine", min_length=1)
    lof: LofConfig = LofConfig()
    # olmap: mg# from one pixel carries the BSE noise (~3 grey levels = 0.008 mg# on the
    # default look); a Gaussian over clean olivine pixels (normalised convolution, outliers
    # and background excluded; touching crystals share their contact) averages it down.
    # None (issue 23) = from the noise: the sd that brings |slope| x the crystals' median
    # noise sd down to smooth_target_mg (1.1 px on the default look, where 1 px was used
    # before), at least 1 px and at most smooth_max_um; a number fixes it (px); 0 =
    # per-pixel values as in the paper.
    smooth_sigma_px: float | None = Field(None, ge=0, le=8)
    smooth_target_mg: float = Field(0.002, gt=0, description="mg# noise left after smoothing")
    # An EPMA spot integrates ~1-2 µm: smoothing beyond that would blur what the probe
    # resolves.
    smooth_max_um: float = Field(1.5, gt=0, description="largest automatic smoothing (µm)")
    connectivity: int = Field(2, ge=1, le=2, description="1 = 4-neighbour, 2 = 8-neighbour")
    chunk: int = Field(2048, ge=64, description="pixels per side of the streamed blocks")
    # A component larger than this is no crystal (16 mm² at 1 µm/px) but a mis-segmented
    # region; it is left unfiltered (with a warning) and never read whole, so memory stays
    # bounded.
    max_crystal_pixels: int = Field(4096**2, ge=1024)
