import itertools

import pytest

from olmap.synth.config import SynthConfig, parse_size
from olmap.synth.model import build_model, session_splits, size_class


def test_size_classes_follow_table_2():
    assert size_class(100.0) == ""
    assert size_class(100.5) == "microlite"
    assert size_class(1000.0) == "microlite"
    assert size_class(1000.1) == "microphenocryst"
    assert size_class(10000.0) == "microphenocryst"
    assert size_class(10000.1) == "phenocryst"


def test_session_splits_are_by_session():
    assert session_splits(1) == ["train"]
    assert session_splits(4) == ["train", "train", "val", "test"]
    assert session_splits(10).count("train") == 6


def test_parse_size():
    assert parse_size("4096x2048") == (4096, 2048)
    for bad in ("4096", "ax5", "10x10"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_model_is_deterministic_and_sessions_tile_the_width():
    cfg = SynthConfig(width=2048, height=1024, seed=11, sessions=3)
    a, b = build_model(cfg), build_model(cfg)
    assert [g.bbox for g in a.grains] == [g.bbox for g in b.grains]
    assert a.sessions == b.sessions
    edges = [(s.col0, s.col1) for s in a.sessions]
    assert edges[0][0] == 0 and edges[-1][1] == 2048
    assert all(e0[1] == e1[0] for e0, e1 in itertools.pairwise(edges))
    assert len({(s.bse_gain, s.bse_offset, s.eds_gain) for s in a.sessions}) == 3
    assert [g.bbox for g in build_model(cfg.model_copy(update={"seed": 12})).grains] != [
        g.bbox for g in a.grains
    ]


def test_config_rejects_inconsistent_values():
    with pytest.raises(ValueError):
        SynthConfig(zoning_probabilities={"none": 0.5, "normal": 0.2})
    with pytest.raises(ValueError):
        SynthConfig(width=10)
