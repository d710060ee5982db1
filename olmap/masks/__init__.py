"""Training labels from EDS element maps: element-ratio rules, clean-up and crack masking.

The paper (seed 002, sect. 3.5) labels a pixel olivine when Ca/Mg < 0.1, Al/Mg < 0.1 and
Mg > 30 counts. olmap reads such rules from YAML (:mod:`olmap.masks.rules`), evaluates them
on windows of the EDS maps (:mod:`olmap.masks.label`, pure functions on arrays) and streams
whole mosaics through them (:mod:`olmap.masks.stream`). Element maps from vendor hypermaps
are made by summing counts in each element's Kα window (:mod:`olmap.core.xray`).
"""

from olmap.masks.label import (
    LabelStats,
    class_matches,
    classify_window,
    label_by_precedence,
    ratio_rule_mask,
)
from olmap.masks.rules import Condition, MineralRule, RuleSet, load_rules

__all__ = [
    "Condition",
    "LabelStats",
    "MineralRule",
    "RuleSet",
    "class_matches",
    "classify_window",
    "label_by_precedence",
    "load_rules",
    "ratio_rule_mask",
]
