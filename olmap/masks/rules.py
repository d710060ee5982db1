"""Element-ratio rule files: minerals defined by thresholds on EDS counts and count ratios.

A rule file is YAML (see ``configs/rules/`` and ``docs/masks.md``)::

    classes:                      # tried in file order: the first class whose rules all hold wins
      - name: olivine
        rules: [Ca/Mg < 0.1, Al/Mg < 0.1, Mg > 30]   # paper, sect. 3.5
        grow: {distance_px: 2, rules: [Ca/Mg < 0.3, Al/Mg < 0.4, Mg > 20]}
        min_size_px: 10
    ignore: {bse_below_share: 0.5}

A condition compares one *term* with a number. A term is an element (its counts), a sum of
elements (``Fe+Mg``) or a ratio of two such sums (``Ca/Mg``, ``(Fe+Mg)/Si``). A ratio whose
denominator is 0 counts as infinite (the paper: "if Mg = 0, Ca/Mg is infinite"), so
``Ca/Mg < 0.1`` is false there and ``Ca/Mg > 5`` is true.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    Strict,
    field_validator,
    model_validator,
)

from olmap.core.codes import IGNORE, UNCLASSIFIED
from olmap.io.config import load_config
from olmap.io.element_maps import ELEMENT_SYMBOLS

# A sum of element symbols; inside a ratio a sum needs parentheses, so that "Fe+Mg/Si" is not
# silently read one way or the other.
_PLAIN_SUM = r"[A-Za-z]+(?:\s*\+\s*[A-Za-z]+)*"
_SIDE = rf"(?:[A-Za-z]+|\(\s*{_PLAIN_SUM}\s*\))"
_TERM = rf"({_SIDE}\s*/\s*{_SIDE}|{_PLAIN_SUM}|\(\s*{_PLAIN_SUM}\s*\))"
_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_CONDITION = re.compile(rf"^\s*{_TERM}\s*(<=|>=|<|>)\s*{_NUMBER}\s*$")
_EXAMPLE = "e.g. 'Ca/Mg < 0.1', 'Mg > 30' or '(Fe+Mg)/Si >= 0.5' (sums in a ratio need brackets)"


@dataclass(frozen=True)
class Condition:
    """One threshold on counts or on a ratio of counts.

    Attributes
    ----------
    numerator : tuple of str
        Elements whose counts are summed.
    denominator : tuple of str
        Elements summed below the fraction bar; empty for a plain count threshold.
    op : {"<", "<=", ">", ">="}
    threshold : float
        Counts, or a dimensionless count ratio.
    """

    numerator: tuple[str, ...]
    denominator: tuple[str, ...]
    op: Literal["<", "<=", ">", ">="]
    threshold: float

    @classmethod
    def parse(cls, text: str) -> Condition:
        """Read a condition such as ``"Ca/Mg < 0.1"``.

        Raises
        ------
        ValueError
            For a syntax error or an unknown element symbol.
        """
        if not isinstance(text, str):
            raise ValueError(f"rule {text!r} is not text; write it like {_EXAMPLE}")
        match = _CONDITION.match(text)
        if match is None:
            raise ValueError(f"cannot read rule {text!r}; write it like {_EXAMPLE}")
        term, op, value = match.groups()
        num, _, den = term.partition("/")
        numerator = _elements(num, text)
        denominator = _elements(den, text) if den else ()
        return cls(numerator, denominator, op, float(value))  # type: ignore[arg-type]

    @property
    def elements(self) -> tuple[str, ...]:
        """Every element the condition reads."""
        return tuple(dict.fromkeys(self.numerator + self.denominator))

    def __str__(self) -> str:
        def side(els: tuple[str, ...]) -> str:
            return "+".join(els) if len(els) == 1 else "(" + "+".join(els) + ")"

        term = side(self.numerator) + ("/" + side(self.denominator) if self.denominator else "")
        return f"{term} {self.op} {self.threshold:g}"

    def evaluate(self, counts: Mapping[str, np.ndarray]) -> np.ndarray:
        """Boolean map where the condition holds.

        Parameters
        ----------
        counts : mapping of str to ndarray
            Counts per element, all of one shape (any numeric dtype).
        """
        value = _sum(counts, self.numerator)
        if self.denominator:
            den = _sum(counts, self.denominator)
            # A zero denominator makes the ratio infinite (paper: Mg = 0 -> Ca/Mg infinite).
            value = np.divide(value, den, out=np.full_like(value, np.inf), where=den > 0)
        return self.compare(value)

    @property
    def is_ratio(self) -> bool:
        return bool(self.denominator)

    def compare(self, value: np.ndarray) -> np.ndarray:
        """The condition's comparison applied to already computed term values."""
        return _OPS[self.op](value, self.threshold)


_OPS = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}


def _elements(side: str, text: str) -> tuple[str, ...]:
    symbols = tuple(s.strip() for s in side.strip().strip("()").split("+"))
    for s in symbols:
        if s not in ELEMENT_SYMBOLS:
            raise ValueError(f"rule {text!r} names {s!r}, which is not an element symbol")
    return symbols


def _sum(counts: Mapping[str, np.ndarray], elements: tuple[str, ...]) -> np.ndarray:
    # float32 holds every count below 2**24 exactly and halves the memory of a window.
    total = np.asarray(counts[elements[0]], dtype=np.float32)
    for el in elements[1:]:
        total = total + counts[el]
    return total


def _parse_conditions(value: object) -> object:
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        return [v if isinstance(v, Condition) else Condition.parse(v) for v in value]
    return value


Conditions = Annotated[
    tuple[Condition, ...], BeforeValidator(_parse_conditions), Field(min_length=1)
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


#: Whole numbers only (YAML ``true`` or ``2.5`` are errors, not 1 or 2).
StrictCount = Annotated[int, Strict()]
#: Numbers only (YAML ``true`` is an error, not 1.0).
StrictNumber = Annotated[float, Strict()]

#: Names the label map reserves for 0 and 255.
RESERVED_NAMES = ("unclassified", "ignore")


class GrowRule(_Strict):
    """Hysteresis at grain boundaries (olmap's addition to the paper).

    EDS excites a volume about a micrometre wide, so pixels at a grain's outline mix its
    spectrum with the neighbour's and fail the strict ratios. Unclassified pixels within
    ``distance_px`` of the class that pass these looser rules join it.
    """

    distance_px: StrictCount = Field(2, ge=1, le=64)
    rules: Conditions


class MineralRule(_Strict):
    """One class of the label map.

    ``reject`` maps a name to conditions tested at each pixel the class's rules match, on the
    counts of the matched pixels pooled within ``reject_pool_px`` (a box): a pixel for which
    all conditions of an entry hold is not this class (e.g. olivine candidates whose Si per
    Mg+Fe is that of orthopyroxene); it goes on to later classes and the report counts it.
    """

    # Letters, digits, "_", "-" and inner spaces; no leading/trailing space ("olivine " would
    # be a second class that prints like "olivine").
    name: str = Field(min_length=1, pattern=r"^[A-Za-z](?:[\w -]*\w)?$")
    code: StrictCount | None = Field(None, ge=1, le=254)
    rules: Conditions
    grow: GrowRule | None = None
    min_size_px: StrictCount = Field(0, ge=0, description="objects of <= this many px removed")
    fill_holes_px: StrictCount = Field(0, ge=0, description="holes of <= this many px filled")
    reject: dict[str, Conditions] = Field(default_factory=dict)
    reject_pool_px: StrictCount = Field(3, ge=0, le=32, description="pooling box half-side")

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name.strip().lower() in RESERVED_NAMES:
            raise ValueError(f"{name!r} is reserved for label values 0 and 255; rename the class")
        return name

    @property
    def elements(self) -> tuple[str, ...]:
        conds = self.rules + (self.grow.rules if self.grow else ())
        conds += tuple(c for entry in self.reject.values() for c in entry)
        return tuple(dict.fromkeys(el for c in conds for el in c.elements))


class IgnoreRule(_Strict):
    """Pixels inside any class that BSE shows as cracks or holes become ``ignore`` (255).

    EDS blurs cracks away, so the rules label them as the host mineral; BSE resolves them.
    The level is either relative to the map (``bse_below_share``: a share of the way from the
    map's darkest grey, the resin of cracks and holes, up to the class's median grey; the same
    on any detector gain, black level and bit depth) or absolute (``bse_below``: a grey level
    of 8-bit BSE, x 257 on 16-bit BSE, which must be retuned when the contrast changes).
    """

    bse_below: StrictNumber | None = Field(
        None,
        gt=0,
        description="8-bit BSE grey level below which a pixel is a crack (16-bit BSE: x 257)",
    )
    bse_below_share: StrictNumber | None = Field(
        None,
        gt=0,
        lt=1,
        description="crack below dark + share x (class median - dark), on the map's BSE",
    )
    dilate_px: StrictCount = Field(0, ge=0, le=16, description="grow the ignored zone (px)")

    @model_validator(mode="after")
    def _one_level(self) -> IgnoreRule:
        if (self.bse_below is None) == (self.bse_below_share is None):
            raise ValueError("give one of bse_below (8-bit grey level) or bse_below_share")
        return self


class RuleSet(_Strict):
    """A rule file: classes in precedence order, and optional crack masking.

    ``units``: ``counts`` (raw counts per pixel, as in the paper) or ``relative`` (each
    element divided by its level in a reference phase of the same map, see
    :mod:`olmap.masks.normalise`; thresholds then hold on any instrument).
    """

    units: Literal["counts", "relative"] = "counts"
    classes: tuple[MineralRule, ...] = Field(min_length=1, max_length=254)
    ignore: IgnoreRule | None = None
    _source: str = PrivateAttr("")

    @property
    def source(self) -> str:
        """The file the rules were read from ("" for rules built in code)."""
        return self._source

    @model_validator(mode="after")
    def _unique(self) -> RuleSet:
        names = [c.name for c in self.classes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"class names must be unique; repeated: {', '.join(dupes)}")
        codes = list(self.codes.values())
        if len(set(codes)) != len(codes):
            raise ValueError(f"class codes must be unique, got {codes}")
        return self

    @property
    def codes(self) -> dict[str, int]:
        """Label value of each class: its ``code``, else its position (1, 2, ...)."""
        return {c.name: c.code or i for i, c in enumerate(self.classes, start=1)}

    @property
    def elements(self) -> tuple[str, ...]:
        """Every element any rule reads, in first-use order."""
        return tuple(dict.fromkeys(el for c in self.classes for el in c.elements))

    @property
    def class_names(self) -> dict[int, str]:
        """All label values with their names, ``unclassified`` and ``ignore`` included."""
        names = {UNCLASSIFIED: "unclassified"}
        names.update({code: name for name, code in self.codes.items()})
        names[IGNORE] = "ignore"
        return names

    @property
    def halo_px(self) -> int:
        """Margin a window needs so that windowed labels equal whole-image labels.

        Growth reaches ``distance_px``. An object or hole of at most ``n`` px spans at most
        ``n`` px, so a size filter decides correctly with ``n + 1`` px of correct context. Hole
        filling runs on the labels left by the small-object filter, so its context must itself
        be correct: the margins of the stages add up, and the crack dilation adds its radius.
        """
        grow = max((c.grow.distance_px for c in self.classes if c.grow), default=0)
        small = max((c.min_size_px + 1 if c.min_size_px else 0 for c in self.classes), default=0)
        holes = max(
            (c.fill_holes_px + 1 if c.fill_holes_px else 0 for c in self.classes), default=0
        )
        dilate = self.ignore.dilate_px if self.ignore else 0
        # ``reject`` pools counts within reject_pool_px before anything else runs.
        reject = max((c.reject_pool_px for c in self.classes if c.reject), default=0)
        return reject + grow + small + holes + dilate


def load_rules(path: str | Path) -> RuleSet:
    """Read and validate a rule file; errors name the file, the key and the rule text."""
    rules = load_config(RuleSet, path)
    rules._source = str(path)
    return rules
