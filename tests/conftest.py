"""Shared fixtures: small synthetic sections generated once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from olmap.synth.config import SynthConfig
from olmap.synth.section import SectionSummary, generate_section


@pytest.fixture(scope="session")
def section_1k(tmp_path_factory: pytest.TempPathFactory) -> SectionSummary:
    """A 1024 x 1024 synthetic section (seed 1, 4 sessions), generated once."""
    out = tmp_path_factory.mktemp("synth") / "section"
    return generate_section(out, SynthConfig(width=1024, height=1024, seed=1, sessions=4))


@pytest.fixture(scope="session")
def section_dir(section_1k: SectionSummary) -> Path:
    return section_1k.out_dir
