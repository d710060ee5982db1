"""Class rules: the paper's Table 2 at its boundaries, editable rules, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from olmap.crystals.classify import classify, load_class_rules
from olmap.crystals.config import ClassRules, olivine_rules
from olmap.errors import InputError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def table(**columns) -> pd.DataFrame:
    n = max(len(v) for v in columns.values())
    base = {"area_um2": [20000.0] * n, "core_rim_ratio": [1.0] * n, "mantle_excess": [np.nan] * n}
    base.update(columns)
    return pd.DataFrame(base)


def test_size_classes_at_table_2_boundaries():
    areas = [100.0, 100.5, 1000.0, 1000.5, 10000.0, 10000.5]
    got = classify(table(area_um2=areas), olivine_rules())["class"].tolist()
    # seed 002 Table 2: 100 < A <= 1,000 < A <= 10,000 < A
    assert got == [
        "unclassified",
        "microlite",
        "microlite",
        "microphenocryst",
        "microphenocryst",
        "phenocryst",
    ]


def test_zoning_thresholds_and_only_phenocrysts():
    r = [0.9599, 0.96, 1.0, 1.04, 1.0401, np.nan]
    got = classify(table(core_rim_ratio=r), olivine_rules())["zoning"].tolist()
    assert got == ["normal", "none", "none", "none", "reverse", ""]  # NaN r: not guessed
    small = classify(table(area_um2=[500.0], core_rim_ratio=[0.8]), olivine_rules())
    assert small["zoning"].tolist() == [""]  # microlites have no zoning class
    # A Mg-rich mantle makes a phenocryst complex, whatever r says.
    cx = classify(table(core_rim_ratio=[0.9], mantle_excess=[0.05]), olivine_rules())
    assert cx["zoning"].tolist() == ["complex"]


def test_shipped_yaml_is_the_default():
    assert load_class_rules(CONFIGS / "classes" / "olivine.yaml") == olivine_rules()


def test_user_rules_add_a_class(tmp_path):
    rules = {
        "classes": [
            {"name": "tiny", "when": {"area_um2": {"le": 100}}},
            {"name": "elongate", "when": {"aspect_ratio": {"gt": 3}}},
            {"name": "other", "when": {}},
        ],
        "zoning": {
            "classes": ["other"],
            "rules": [{"name": "rimmed", "when": {"mg_rim": {"lt": 0.8}}}],
        },
    }
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    t = pd.DataFrame(
        {"area_um2": [50.0, 500.0, 500.0], "aspect_ratio": [1, 4, 1], "mg_rim": [0.7, 0.7, 0.7]}
    )
    got = classify(t, load_class_rules(path))
    assert got["class"].tolist() == ["tiny", "elongate", "other"]
    assert got["zoning"].tolist() == ["", "", "rimmed"]


def test_bad_rules_are_one_clear_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("classes:\n  - name: a\n    when: {area_um2: {between: 3}}\n")
    with pytest.raises(InputError, match=r"bad\.yaml: classes\.0\.when\.area_um2\.between"):
        load_class_rules(path)
    with pytest.raises(InputError, match="not found"):
        load_class_rules(tmp_path / "missing.yaml")
    unknown = ClassRules.model_validate({"classes": [{"name": "a", "when": {"nope": {"gt": 1}}}]})
    with pytest.raises(InputError, match="'nope'"):
        classify(table(area_um2=[1.0]), unknown)
    with pytest.raises(ValueError, match="unknown classes"):
        ClassRules.model_validate(
            {"classes": [{"name": "a"}], "zoning": {"classes": ["b"], "rules": [{"name": "z"}]}}
        )


def test_shipped_crystals_config_is_the_default():
    from olmap.crystals.config import CrystalsConfig
    from olmap.io.config import load_config

    assert load_config(CrystalsConfig, CONFIGS / "crystals" / "crystals.yaml") == CrystalsConfig()
