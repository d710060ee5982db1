"""Class files of the CT mode (``configs/ct/*.yaml``): codes 1..N, names, colours, and for the
mass balance densities and molar masses (shared/CLI.md, "CT mode")."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from olmap.errors import InputError
from olmap.io.config import load_config

_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")


class PhaseClass(BaseModel):
    """One class: its code in label volumes, name and display colour."""

    model_config = ConfigDict(extra="forbid")

    code: int = Field(ge=1, le=254)
    name: str = Field(min_length=1)
    colour: str = "#808080"
    density_kg_m3: float | None = Field(default=None, gt=0)
    molar_mass_g_mol: float | None = Field(default=None, gt=0)
    formula: str | None = None
    #: Post-processing of ``olmap ct predict``: isolated clusters of this class smaller than
    #: this (voxels, 3D connected components) take the label around them (seed 000: 100 for
    #: bassanite, 8 for pores); 0 keeps every cluster.
    min_voxels: int = Field(default=0, ge=0)

    @field_validator("colour")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not _COLOUR.match(value):
            raise ValueError(f"colour must be #rrggbb, got {value!r}")
        return value


class ClassFile(BaseModel):
    """The classes of one experiment.

    Examples
    --------
    >>> cf = ClassFile(classes=[{"code": 1, "name": "pore"}, {"code": 2, "name": "grain"}])
    >>> cf.codes, cf.names
    ([1, 2], ['pore', 'grain'])
    """

    model_config = ConfigDict(extra="forbid")

    name: str = "classes"
    classes: list[PhaseClass] = Field(min_length=2)

    @model_validator(mode="after")
    def _unique(self) -> ClassFile:
        for attr in ("code", "name"):
            values = [getattr(c, attr) for c in self.classes]
            if len(set(values)) != len(values):
                raise ValueError(f"class {attr}s must be unique, got {values}")
        return self

    @property
    def codes(self) -> list[int]:
        return [c.code for c in self.classes]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    def by_name(self, name: str) -> PhaseClass:
        for c in self.classes:
            if c.name == name:
                return c
        raise KeyError(name)

    def metadata(self) -> list[dict]:
        """``{"code", "name", "colour"}`` per class, for label volumes' metadata."""
        return [{"code": c.code, "name": c.name, "colour": c.colour} for c in self.classes]

    def check_codes(self, values: np.ndarray, where: str) -> None:
        """Raise InputError if ``values`` (nonzero) hold a code this file does not define."""
        present = np.unique(values)
        unknown = sorted(set(present.tolist()) - {0, *self.codes})
        if unknown:
            raise InputError(
                f"{where}: class code {unknown[0]} is not in the class file "
                f"(codes {', '.join(map(str, self.codes))}; 0 = unlabelled)"
            )


def load_classes(path: str | Path) -> ClassFile:
    """Read and validate a class file; errors name the file and the field."""
    return load_config(ClassFile, path)
