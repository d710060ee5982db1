"""Parameters of a synthetic thin section, with the source of each default."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from olmap.synth.phases import Phase


class SizeClassDensity(BaseModel):
    """Number density and area range of one population of crystals."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_mm2: float = Field(ge=0, description="crystals per mm² of section")
    area_um2: tuple[float, float] = Field(description="log-uniform range of section areas (µm²)")

    @model_validator(mode="after")
    def _check_range(self) -> SizeClassDensity:
        lo, hi = self.area_um2
        if not 0 < lo < hi:
            raise ValueError(f"area range must satisfy 0 < min < max, got {self.area_um2}")
        return self


class LookConfig(BaseModel):
    """How one instrument renders a section: the part of a BSE image that is not the rock.

    The defaults are olmap's "default look" (the demo's, pixel for pixel the generator of
    before this field existed). :func:`olmap.synth.looks.random_look` draws the others within
    the ranges a real SEM varies (docs/synthetic-data.md, "Looks").

    Grey levels are on an 8-bit scale until the last step: the nominal grey of a pixel
    (linear in mean atomic number) plus ``phase_shift[phase]`` becomes
    ``contrast * (grey - 128) + 128 + brightness``; a 16-bit look then writes
    ``grey * scale_16bit + offset_16bit``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    contrast: float = Field(1.0, gt=0, description="detector contrast (x the default look's)")
    brightness: float = Field(0.0, description="detector brightness shift (8-bit grey levels)")
    # Phases whose composition differs from one rock or coating to the next (glass, pyroxene,
    # plagioclase, epoxy) move against olivine, whose grey is tied to its mg#.
    phase_shift: dict[str, float] = Field(
        default_factory=dict, description="grey shift per phase name (8-bit levels)"
    )
    bit_depth: Literal[8, 16] = 8
    scale_16bit: float = Field(257.0, gt=0, description="16-bit levels per 8-bit level")
    offset_16bit: float = Field(0.0, ge=0, description="16-bit black level")
    vignetting: float = Field(0.0, ge=0, lt=0.5, description="gain loss at tile corners")
    ramp: float = Field(0.0, ge=0, lt=0.5, description="gain change across the section")
    ramp_angle_deg: float = 0.0
    scan_line_noise: float = Field(0.0, ge=0, description="sd of per-line offsets (levels)")
    charging: float = Field(0.0, ge=0, description="peak brightening of epoxy (levels)")

    def output_grey(self, grey: float | np.ndarray, phase: str | None = None) -> np.ndarray:
        """Nominal 8-bit grey of ``phase`` as this look writes it (no drift, no noise)."""
        g = np.asarray(grey, dtype=np.float64) + self.phase_shift.get(phase or "", 0.0)
        g = self.contrast * (g - 128.0) + 128.0 + self.brightness
        if self.bit_depth == 16:
            g = g * self.scale_16bit + self.offset_16bit
        return g

    @model_validator(mode="after")
    def _check_phases(self) -> LookConfig:
        unknown = set(self.phase_shift) - {p.name.lower() for p in Phase}
        if unknown:
            raise ValueError(f"phase_shift: unknown phase(s) {', '.join(sorted(unknown))}")
        return self

    @property
    def dtype(self) -> str:
        """Data type of ``bse.tif``."""
        return "uint8" if self.bit_depth == 8 else "uint16"

    @property
    def is_default(self) -> bool:
        """True for the default look (rendering skips every look step)."""
        return self == LookConfig()


class SynthConfig(BaseModel):
    """Everything that defines a synthetic section; with ``seed`` it fixes every pixel.

    Defaults follow the sample of seed 002 (high-Mg basaltic andesite, sect. 3.1–3.2) where
    it gives numbers, and typical SEM behaviour elsewhere. Crystal densities are higher than
    in the paper's section (20,293 microlites, 975 microphenocrysts, 660 phenocrysts over
    ~960 mm²) so that small synthetic sections still hold every class.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: int = Field(4096, ge=64, description="section width in pixels")
    height: int = Field(4096, ge=64, description="section height in pixels")
    seed: int = Field(0, ge=0)
    pixel_size_um: float = Field(1.0, gt=0, le=20)  # seed 002 sect. 3.2: 1 µm per pixel
    sessions: int = Field(4, ge=1, le=64)  # seed 002 Table 1: several acquisition sessions
    acquisition_tile: tuple[int, int] = (338, 512)  # rows, cols; seed 002 sect. 3.2

    # Modal composition. seed 002 sect. 3.1: ~20 % vesicles, olivine ~8.5 %, cpx ~9 %,
    # opx and oxides < 0.2 % (vesicle-free); vesicles are reduced to keep more rock per pixel.
    vesicle_fraction: float = Field(0.12, ge=0, lt=0.6)
    vesicle_diameter_um: tuple[float, float] = (30.0, 900.0)
    # Olivine size classes: seed 002 Table 2 (microlite 100–1,000 µm², microphenocryst
    # 1,000–10,000 µm², phenocryst > 10,000 µm²).
    olivine_microlites: SizeClassDensity = SizeClassDensity(per_mm2=45, area_um2=(110, 950))
    olivine_microphenocrysts: SizeClassDensity = SizeClassDensity(per_mm2=5, area_um2=(1100, 9500))
    olivine_phenocrysts: SizeClassDensity = SizeClassDensity(per_mm2=0.9, area_um2=(11000, 120000))
    cpx_microlites: SizeClassDensity = SizeClassDensity(per_mm2=40, area_um2=(60, 900))
    cpx_microphenocrysts: SizeClassDensity = SizeClassDensity(per_mm2=6, area_um2=(1000, 9000))
    cpx_phenocrysts: SizeClassDensity = SizeClassDensity(per_mm2=0.8, area_um2=(10000, 90000))
    orthopyroxene: SizeClassDensity = SizeClassDensity(per_mm2=0.3, area_um2=(800, 30000))
    plagioclase: SizeClassDensity = SizeClassDensity(per_mm2=3, area_um2=(400, 15000))
    oxides: SizeClassDensity = SizeClassDensity(per_mm2=25, area_um2=(15, 300))
    # Phenocryst zoning frequencies; seed 002 sect. 4.5: 124 normal, 61 reverse, 475 none of
    # 660; part of "none" is given to complex zoning (Fe-rich core and rim, Mg-rich mantle).
    zoning_probabilities: dict[str, float] = {
        "none": 0.62,
        "normal": 0.20,
        "reverse": 0.10,
        "complex": 0.08,
    }
    broken_fraction: float = Field(0.15, ge=0, le=1)  # seed 002 sect. 5.2: broken fragments
    cluster_fraction: float = Field(0.2, ge=0, le=1)  # touching crystals (glomerocrysts)

    # BSE signal. Noise and PSF are typical of fast-scan field-emission BSE mosaics.
    bse_noise: float = Field(2.5, ge=0, description="BSE noise sd at zero signal (grey levels)")
    bse_shot_noise: float = Field(0.03, ge=0, description="extra variance per grey level")
    bse_psf_um: float = Field(0.5, ge=0)
    tile_offset_sd: float = Field(1.0, ge=0, description="brightness step between tiles (levels)")
    tile_gain_sd: float = Field(0.005, ge=0)
    scratches_per_mm2: float = Field(1.5, ge=0)
    # Session drift. seed 002 sect. 4.2 / Fig. 5: shifts of BSE and EDS between sessions;
    # issue 4 asks for robustness to ±6 % BSE drift.
    bse_gain_range: tuple[float, float] = (0.94, 1.06)
    bse_offset_range: tuple[float, float] = (-5.0, 5.0)
    eds_gain_range: tuple[float, float] = (0.85, 1.15)
    # EDS: the X-ray interaction volume blurs the maps (seed 002 sect. 3.5: cracks vanish).
    eds_psf_um: float = Field(1.5, ge=0)

    # Instrument look: detector contrast, per-phase grey, bit depth, artefacts.
    look: LookConfig = LookConfig()

    # EPMA rim-to-rim profiles (seed 002 sect. 3.3, 4.4).
    epma_profiles: int | None = Field(
        None, ge=0, description="number; default ~half the phenocrysts"
    )
    epma_step_um: float = Field(4.0, gt=0)
    epma_relocation_um: tuple[float, float] = (3.0, 0.7)  # sd along, across the line
    epma_relative_precision: tuple[float, float] = (0.005, 0.01)  # MgO, FeO (1 sd)

    @model_validator(mode="after")
    def _check(self) -> SynthConfig:
        total = sum(self.zoning_probabilities.values())
        if abs(total - 1) > 1e-6 or set(self.zoning_probabilities) - {
            "none",
            "normal",
            "reverse",
            "complex",
        }:
            raise ValueError("zoning_probabilities: keys none/normal/reverse/complex summing to 1")
        for name in ("bse_gain_range", "bse_offset_range", "eds_gain_range"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name}: min > max")
        return self

    @model_validator(mode="after")
    def _check_sessions(self) -> SynthConfig:
        if self.width < 32 * self.sessions:
            raise ValueError(
                f"{self.sessions} sessions need a width of at least {32 * self.sessions} px "
                f"(32 px each), got {self.width}"
            )
        return self

    @property
    def area_mm2(self) -> float:
        """Section area in mm²."""
        return self.width * self.height * self.pixel_size_um**2 / 1e6

    def um(self, value_um: float) -> float:
        """Convert a length in µm to pixels."""
        return value_um / self.pixel_size_um


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``WxH`` (e.g. ``4096x4096``) into (width, height) pixels."""
    parts = text.lower().replace(" ", "").split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"size must look like WIDTHxHEIGHT (e.g. 4096x4096), got {text!r}")
    width, height = int(parts[0]), int(parts[1])
    if width < 64 or height < 64:
        raise ValueError(f"size must be at least 64x64 pixels, got {text!r}")
    return width, height
