"""Parameters of the crystal catalogue and the class rules (seed 002 sect. 3.9, Table 2)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class CrystalsConfig(BaseModel):
    """Everything that defines ``olmap crystals`` except the class rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The mask's class of the crystals catalogued, by name in its class list (a mask without
    # one: value 1).
    mask_class: str = Field("olivine", min_length=1)
    # 8-neighbour components, as scipy/skimage label by default; 1 = 4-neighbour.
    connectivity: Literal[1, 2] = 2
    # seed 002 Table 2: the smallest class (microlite) starts above 100 µm²; smaller
    # components are segmentation noise and are not catalogued.
    min_area_um2: float = Field(100.0, ge=0)
    # seed 002 sect. 3.9: rim pixels within b px of the outline are left out ("susceptible to
    # be wrongly classified as olivine"); the paper gives no value. olmap: 2 px, the width of
    # the BSE point-spread darkening at an outline in the synthetic data.
    rim_exclude_px: float = Field(2.0, ge=0)
    # Distances are measured from the external outline only (seed 002 sect. 5.1-5.2 names
    # holes and cracks counted as outline as a failure): holes are filled, and cracks that
    # reach the outline are closed over this radius (px) first. 0 = measure from every edge,
    # as the paper did.
    close_cracks_px: int = Field(2, ge=0)
    external_outline: bool = True
    # Radial mg# profile: bins of normalised distance (0 = outline, 1 = the crystal's deepest
    # pixel); the zoning rules read it (complex zoning: Mg-rich mantle).
    radial_bins: int = Field(10, ge=2, le=50)
    # Touching crystals (one component) are split along BSE steps between them (olmap;
    # olmap.crystals.instances): the gradient smoothing (px), the depth of the gradient minima
    # that seed the over-segmentation and the mean gradient along a boundary that keeps two
    # regions apart (grey levels per px of 8-bit BSE; 16-bit BSE is divided by 257).
    # Measured on synthetic sections in docs/crystals.md.
    split_touching: bool = True
    split_sigma_px: float = Field(0.7, gt=0)
    split_h_min: float = Field(1.0, gt=0)
    split_boundary_step: float = Field(2.0, gt=0)
    # A line of high gradient must also be a step in level: pieces whose medians 1.5-5 px
    # either side of their contact differ by less than this stay one crystal (scan-line
    # offsets, scratches, session seams: issue 23). In mg# when an mg# map is given (session
    # drift corrected there; 0.005 is the 2 grey levels of split_boundary_step at the
    # default look's -0.0025 mg# per level), else in BSE levels the boundary step x 1 px.
    split_min_step_mg: float = Field(0.005, ge=0)
    # Sharp zoning is a BSE step too: pieces less solid than this (rings, arcs) rejoin their
    # neighbour, and adjacent pieces whose union loses less solidity than the loss are one
    # crystal (olmap; 0.5-0.7 and 0-0.02 tried, docs/crystals.md).
    split_min_solidity: float = Field(0.6, ge=0, le=1)
    split_max_solidity_loss: float = Field(0.005, ge=0, le=1)
    # Touching crystals of similar mg# (no BSE step): pieces of >= split_shape_min_pixels
    # less solid than this are cut at their necks (distance-transform watershed from maxima
    # deeper than split_shape_h_px), keeping cuts whose parts are clearly more convex than
    # their union (olmap; docs/crystals.md). null skips it.
    split_shape_below_solidity: float | None = Field(0.9, ge=0, le=1)
    split_shape_h_px: float = Field(1.0, gt=0)
    split_shape_max_loss: float = Field(0.03, ge=0, le=1)
    split_shape_min_pixels: int = Field(1000, ge=16)
    # A small crystal grown onto a larger one of similar mg#: cut off along the line between
    # the two notches (>= split_notch_depth_px deep) it makes in their outline, when both
    # parts are convex (solidity >= split_notch_min_solidity) and the notches cover at least
    # split_notch_gap_ratio of the smaller part (olmap; docs/crystals.md). null skips it.
    split_notch_depth_px: float | None = Field(1.5, gt=0)
    split_notch_gap_ratio: float = Field(0.15, ge=0)
    split_notch_min_solidity: float = Field(0.8, ge=0, le=1)
    # Only microlites are cut off this way (seed 002 Table 2: A <= 1,000 µm²): cracks and
    # inclusions notch larger crystals too.
    split_notch_max_area_um2: float = Field(1000.0, gt=0)
    chunk: int = Field(2048, ge=64, description="labelling chunk side (px)")
    # A component whose bounding box spans more pixels than this is no crystal but a
    # mis-segmented region (or a thin artefact across the mosaic); it is skipped with a
    # warning (and counted) rather than read whole, so memory stays bounded.
    max_crystal_pixels: int = Field(4096 * 4096, ge=1)


Bound = float | None


class Condition(BaseModel):
    """Bounds on one catalogue attribute: every given bound must hold (NaN never matches)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gt: Bound = None
    ge: Bound = None
    lt: Bound = None
    le: Bound = None

    def holds(self, value: float) -> bool:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        return (
            (self.gt is None or value > self.gt)
            and (self.ge is None or value >= self.ge)
            and (self.lt is None or value < self.lt)
            and (self.le is None or value <= self.le)
        )


class Rule(BaseModel):
    """A named class or zoning: it applies when every condition holds (none = always)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    when: dict[str, Condition] = {}

    def holds(self, attributes: dict[str, float]) -> bool:
        return all(c.holds(attributes.get(k, math.nan)) for k, c in self.when.items())


class ZoningRules(BaseModel):
    """Zoning of the crystals of some classes: the first rule that holds names it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    classes: list[str]
    rules: list[Rule] = Field(min_length=1)


class ClassRules(BaseModel):
    """Classes by the first rule that holds, then zoning for the classes that have it.

    A crystal no class rule fits gets the class ``unclassified``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    classes: list[Rule] = Field(min_length=1)
    zoning: ZoningRules | None = None

    @model_validator(mode="after")
    def _zoned_classes_exist(self) -> ClassRules:
        names = [r.name for r in self.classes]
        if len(set(names)) != len(names):
            raise ValueError(f"class names must be unique, got {names}")
        if self.zoning is not None:
            unknown = set(self.zoning.classes) - set(names)
            if unknown:
                raise ValueError(f"zoning.classes names unknown classes: {sorted(unknown)}")
        return self

    def attributes(self) -> set[str]:
        """Catalogue attributes the rules read."""
        rules = list(self.classes) + (list(self.zoning.rules) if self.zoning else [])
        return {k for r in rules for k in r.when}


def olivine_rules() -> ClassRules:
    """seed 002 Table 2, plus complex zoning (olmap); ``configs/classes/olivine.yaml`` is a copy.

    Microlite 100 < A <= 1,000 µm², microphenocryst 1,000 < A <= 10,000 µm², phenocryst
    A > 10,000 µm²; phenocrysts are normally zoned for r < 0.96, reversely for r > 1.04, else
    unzoned; before those, complex when the radial mg# profile has a Mg-rich mantle more than
    0.03 above both core and rim (olmap; seed 002 sect. 3.9 and 5.2 describe such crystals
    hidden among the unzoned ones).
    """
    return ClassRules.model_validate(
        {
            "classes": [
                {"name": "microlite", "when": {"area_um2": {"gt": 100, "le": 1000}}},
                {"name": "microphenocryst", "when": {"area_um2": {"gt": 1000, "le": 10000}}},
                {"name": "phenocryst", "when": {"area_um2": {"gt": 10000}}},
            ],
            "zoning": {
                "classes": ["phenocryst"],
                "rules": [
                    {"name": "complex", "when": {"mantle_excess": {"gt": 0.03}}},
                    {"name": "normal", "when": {"core_rim_ratio": {"lt": 0.96}}},
                    {"name": "reverse", "when": {"core_rim_ratio": {"gt": 1.04}}},
                    {"name": "none", "when": {"core_rim_ratio": {"ge": 0.96, "le": 1.04}}},
                ],
            },
        }
    )
