import os
import signal

import numpy as np

from olmap.io.resume import Checkpoint, interrupts_deferred


def test_checkpoint_round_trip_and_fingerprint(tmp_path):
    ck = Checkpoint("job-a", 7, {"sums": np.arange(5.0), "flags": np.array([True, False])})
    ck.save(tmp_path)
    back = Checkpoint.load(tmp_path, "job-a")
    assert back is not None and back.done == 7
    np.testing.assert_array_equal(back.arrays["sums"], np.arange(5.0))
    assert Checkpoint.load(tmp_path, "job-b") is None  # another job's checkpoint is ignored
    (tmp_path / "checkpoint.npz").write_bytes(b"garbage")
    assert Checkpoint.load(tmp_path, "job-a") is None
    assert Checkpoint.load(tmp_path / "absent", "job-a") is None


def test_interrupts_become_a_flag_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGINT)
    with interrupts_deferred() as stop:
        assert not stop
        os.kill(os.getpid(), signal.SIGINT)
        assert stop and stop.signal == signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is before


def test_a_checkpoint_that_cannot_be_written_leaves_no_temporary(tmp_path, monkeypatch):
    """A full disk while saving: the error is raised and the half-written ``.tmp`` removed
    (the earlier checkpoint, if any, stays)."""
    import pytest

    Checkpoint("job", 1, {"a": np.zeros(3)}).save(tmp_path, "c.npz")

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    with pytest.raises(OSError, match="No space"):
        Checkpoint("job", 2, {"a": np.ones(3)}).save(tmp_path, "c.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]
    assert Checkpoint.load(tmp_path, "job", "c.npz").done == 1
