"""Shared fixtures: a small synthetic section, its olivine mask and dataset, made once."""

from __future__ import annotations

from pathlib import Path

import pytest

from olmap.dataset.build import build_dataset
from olmap.io.eds import open_eds
from olmap.masks.rules import load_rules
from olmap.masks.stream import build_label_map
from olmap.synth.config import SynthConfig
from olmap.synth.section import SectionSummary, generate_section

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="session")
def section_1k(tmp_path_factory: pytest.TempPathFactory) -> SectionSummary:
    """A 1024 x 1024 synthetic section (seed 1, 4 sessions), generated once."""
    out = tmp_path_factory.mktemp("synth") / "section"
    return generate_section(out, SynthConfig(width=1024, height=1024, seed=1, sessions=4))


@pytest.fixture(scope="session")
def section_dir(section_1k: SectionSummary) -> Path:
    return section_1k.out_dir


@pytest.fixture(scope="session")
def olivine_mask(section_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("segment") / "mask.tif"
    build_label_map(
        open_eds([section_dir / "eds.tif"]),
        load_rules(CONFIGS / "rules" / "olivine.yaml"),
        out,
        bse=section_dir / "bse.tif",
    )
    return out


@pytest.fixture(scope="session")
def olivine_dataset(
    section_dir: Path, olivine_mask: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("segment") / "dataset"
    build_dataset(
        section_dir / "bse.tif", olivine_mask, section_dir / "sessions.csv", out, tile=(128, 128)
    )
    return out
