"""The streaming engine: every element in exactly one block, resume, Ctrl-C, Dask."""

import itertools

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


def _run_of_squares(blocks):  # module level: Dask workers unpickle it
    assert all(b.inner[0] == blocks[0].inner[0] for b in blocks)  # one row of the grid
    for b0, b1 in itertools.pairwise(blocks):
        assert b1.index == b0.index + 1  # consecutive
    for block in blocks:
        yield np.full(block.shape, block.index**2)


@pytest.mark.parametrize(("workers", "dask"), [(1, None), (2, None), (1, "local:1")])
def test_runs_of_blocks_give_the_same_result(tmp_path, workers, dask):
    """A job computing runs of neighbouring blocks at once writes what a block-by-block job
    writes, serially, in threads and on Dask, with runs cut at ``run_length``."""
    shape = (7, 11)
    grid = BlockGrid(shape, (3, 2))
    single, runs = np.zeros(shape, int), np.zeros(shape, int)
    seen = []

    def writer(arr):
        return lambda block, result: arr.__setitem__(block.inner, result)

    def compute_run(blocks):
        seen.append([b.index for b in blocks])
        return _run_of_squares(blocks)

    run_blocks(BlockJob(grid, _square, writer(single), "s"), checkpoint=None)
    job = BlockJob(
        grid,
        None,
        writer(runs),
        "r",
        compute_run=_run_of_squares if dask else compute_run,
        run_length=4,
    )
    run_blocks(job, checkpoint=None, workers=workers, dask=dask)
    assert np.array_equal(single, runs)
    if not dask:  # rows of 6 blocks, cut at 4: [0-3], [4-5], [6-9], ...
        assert sorted(seen)[:2] == [[0, 1, 2, 3], [4, 5]] and len(seen) == 6


def test_an_interrupted_run_resumes_inside_it(tmp_path):
    """Blocks of a run written before a Ctrl-C are not computed again: the rerun's runs
    start after them."""
    import signal

    shape = (4, 10)
    grid = BlockGrid(shape, (4, 2))
    out = np.zeros(shape, int)
    seen = []

    def compute_run(blocks):
        seen.append([b.index for b in blocks])
        for block in blocks:
            if block.index == 2 and len(seen) == 1:
                signal.raise_signal(signal.SIGINT)  # deferred to the end of this block
            yield np.full(block.shape, block.index + 1)

    def job():
        return BlockJob(
            grid, None, lambda b, r: out.__setitem__(b.inner, r), "o", compute_run=compute_run
        )

    with pytest.raises(RunInterrupted, match="3 of 5 blocks"):
        run_blocks(job(), checkpoint=tmp_path / "c.npz", fingerprint="f")
    stats = run_blocks(job(), checkpoint=tmp_path / "c.npz", fingerprint="f")
    assert seen == [[0, 1, 2, 3, 4], [3, 4]] and stats.resumed == 3
    assert np.array_equal(out[0], np.repeat(np.arange(1, 6), 2))
