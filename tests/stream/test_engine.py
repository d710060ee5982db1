"""The streaming engine: every element in exactly one block, resume, Ctrl-C, Dask."""

import numpy as np
import pytest

from olmap.io.resume import RunInterrupted
from olmap.stream import BlockGrid, BlockJob, run_blocks


@pytest.mark.parametrize(
    ("shape", "block", "halo"),
    [((7, 5), (3, 2), 1), ((5, 9, 4), (2, 4, 3), (1, 2, 0)), ((1, 1, 1), 4, 2), ((10,), 3, 0)],
)
def test_blocks_cover_every_element_once(shape, block, halo):
    grid = BlockGrid(shape, block, halo)
    hits = np.zeros(shape, int)
    data = np.arange(np.prod(shape)).reshape(shape)
    for k, b in enumerate(grid):
        assert b.index == k and grid[k] == b
        hits[b.inner] += 1
        # the crop of the padded read is the inner region
        assert np.array_equal(data[b.outer][b.crop], data[b.inner])
        for s, o, h, n in zip(b.inner, b.outer, grid.halo, shape, strict=True):
            assert o.start == max(0, s.start - h) and o.stop == min(n, s.stop + h)
    assert np.all(hits == 1)
    assert len(grid) == len(list(grid))


def test_grid_rejects_mismatched_axes():
    with pytest.raises(ValueError, match="axes"):
        BlockGrid((4, 4), (2, 2, 2))


def _job(out, calls, fail_at=None):
    grid = BlockGrid(out.shape, (2, 3))

    def compute(block):
        calls.append(block.index)
        return np.full(block.shape, block.index + 1)

    def write(block, result):
        if fail_at is not None and block.index == fail_at:
            raise KeyboardInterrupt  # a second Ctrl-C: stops at once
        out[block.inner] = result

    return BlockJob(grid, compute, write, "test-out", state={"sum": np.zeros(1)})


def test_run_blocks_resumes_where_it_stopped(tmp_path):
    out = np.zeros((5, 7), int)
    calls = []
    with pytest.raises(KeyboardInterrupt):
        run_blocks(_job(out, calls, fail_at=4), checkpoint=tmp_path / "c.npz", fingerprint="a")
    assert (tmp_path / "c.npz").exists()
    first = list(calls)
    calls.clear()
    stats = run_blocks(_job(out, calls), checkpoint=tmp_path / "c.npz", fingerprint="a")
    assert stats.resumed == 4 and sorted(calls) == list(range(4, 9)) and first == list(range(5))
    expected = np.zeros_like(out)
    for b in BlockGrid(out.shape, (2, 3)):
        expected[b.inner] = b.index + 1
    assert np.array_equal(out, expected)
    assert not (tmp_path / "c.npz").exists()  # removed when complete


def test_other_fingerprint_starts_afresh(tmp_path):
    out = np.zeros((5, 7), int)
    with pytest.raises(KeyboardInterrupt):
        run_blocks(_job(out, [], fail_at=2), checkpoint=tmp_path / "c.npz", fingerprint="a")
    calls = []
    stats = run_blocks(_job(out, calls), checkpoint=tmp_path / "c.npz", fingerprint="b")
    assert stats.resumed == 0 and sorted(calls) == list(range(9))


def test_ctrl_c_is_deferred_to_a_block_boundary(tmp_path):
    import os
    import signal

    out = np.zeros((5, 7), int)
    grid = BlockGrid(out.shape, (2, 3))

    def compute(block):
        if block.index == 1:
            os.kill(os.getpid(), signal.SIGINT)  # arrives mid-block
        return np.full(block.shape, 1)

    def write(block, result):
        out[block.inner] = result

    job = BlockJob(grid, compute, write, "out")
    with pytest.raises(RunInterrupted, match="interrupted after 2 of 9 blocks"):
        run_blocks(job, checkpoint=tmp_path / "c.npz", fingerprint="x")
    assert out.sum() == grid[0].size + grid[1].size  # both blocks written whole


def test_threads_give_the_same_result(tmp_path):
    a, b = np.zeros((9, 9), int), np.zeros((9, 9), int)
    run_blocks(_job(a, []), checkpoint=tmp_path / "a.npz", fingerprint="a")
    run_blocks(_job(b, []), checkpoint=tmp_path / "b.npz", fingerprint="a", workers=2)
    assert np.array_equal(a, b)


def _square(block):  # module level: Dask workers unpickle it
    return np.full(block.shape, block.index**2)


def test_dask_local_cluster_matches_local_run(tmp_path):
    shape = (6, 8)
    grid = BlockGrid(shape, (4, 3))
    local, remote = np.zeros(shape, int), np.zeros(shape, int)

    def writer(arr):
        return lambda block, result: arr.__setitem__(block.inner, result)

    run_blocks(
        BlockJob(grid, _square, writer(local), "l"), checkpoint=tmp_path / "l", fingerprint="f"
    )
    run_blocks(
        BlockJob(grid, _square, writer(remote), "r"),
        checkpoint=tmp_path / "r",
        fingerprint="f",
        dask="local:1",
    )
    assert np.array_equal(local, remote) and remote.max() == (len(grid) - 1) ** 2
