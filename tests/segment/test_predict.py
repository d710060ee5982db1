"""Streaming mosaic prediction: equal to whole-image inference, no double counting, resumable,
the same on Dask, nodata kept."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from rasterio.windows import Window

from olmap.core.windows import sliding_windows
from olmap.errors import InputError, OutputExistsError
from olmap.io.raster import raster_info, read_raster, write_raster
from olmap.io.resume import RunInterrupted, progress_path
from olmap.segment.blend import WindowPlan, accumulate_run, blend_weights, run_windows
from olmap.segment.checkpoint import ModelMeta, load_checkpoint, save_checkpoint
from olmap.segment.config import PredictConfig
from olmap.segment.evaluate import evaluate_rasters
from olmap.segment.infer import flip_averaged_probabilities
from olmap.segment.job import synthetic_init_model
from olmap.segment.model import Segmenter
from olmap.segment.predict import predict_mosaic

ARCH = "deeplabv3_mobilenet_v3_large"
# Small windows so the test mosaic (700 x 1100 px) has 2 bands x 3 blocks and ~180 windows.
SMALL = {"window": 128, "stride": 48, "band": 512, "device": "cpu"}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """olmap's shipped synthetic init as an olivine model: real, varied probabilities."""
    model, meta = synthetic_init_model(["unclassified", "olivine"])
    return save_checkpoint(tmp_path_factory.mktemp("model") / "model.pt", model, meta)


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:700, 0:1100]
    image = 110 + 40 * np.sin(xx / 37.0) * np.cos(yy / 23.0) + rng.normal(0, 8, xx.shape)
    image = np.clip(image, 0, 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("mosaic") / "bse.tif"
    write_raster(path, image, pixel_size_um=0.5)
    return path, image


def naive_reference(model: Segmenter, image: np.ndarray, window: int, stride: int) -> np.ndarray:
    """Whole-image inference written out plainly: every window, summed, divided by counts."""
    h, w = image.shape
    total = np.zeros((h, w), np.float64)
    count = np.zeros((h, w), np.float64)
    for win in sliding_windows(h, w, window, stride):
        rs, cs = win.toslices()
        x = torch.from_numpy(image[rs, cs].astype(np.float32))[None, None]
        total[rs, cs] += flip_averaged_probabilities(model, x, False).numpy()[0, 0]
        count[rs, cs] += 1
    return total / count


@pytest.fixture(scope="module")
def reference(model_file: Path, mosaic: tuple[Path, np.ndarray]) -> np.ndarray:
    model, _ = load_checkpoint(model_file)
    return naive_reference(model, mosaic[1], SMALL["window"], SMALL["stride"])


def test_window_plan_covers_every_pixel_without_repeats() -> None:
    plan = WindowPlan.over(700, 1100, 128, 48)
    starts = [(int(w.row_off), int(w.col_off)) for w in sliding_windows(700, 1100, 128, 48)]
    assert len(set(starts)) == len(starts) == plan.n_windows
    covered = np.zeros((700, 1100), int)
    for r in plan.row_starts:
        for c in plan.col_starts:
            covered[r : r + 128, c : c + 128] += 1
    assert covered.min() >= 1
    assert plan.row_starts[-1] + 128 == 700 and plan.col_starts[-1] + 128 == 1100


def test_runs_list_each_touching_window_once() -> None:
    plan = WindowPlan.over(700, 1100, 128, 48)
    per_block = run_windows(plan, (512, 700), (0, 1100), 512)
    listed = [(int(w.row_off), int(w.col_off)) for block in per_block for w in block]
    touching = [
        (r, c) for r in plan.row_starts for c in plan.col_starts if r < 700 and r + 128 > 512
    ]
    assert sorted(listed) == sorted(touching) and len(set(listed)) == len(listed)


def test_edge_windows_are_not_double_counted() -> None:
    """Each window predicts its own index: every pixel's mean must be the mean index of the
    windows that really cover it (brute force), including at the snapped edge windows."""
    h, w, size, stride = 300, 410, 64, 40
    plan = WindowPlan.over(h, w, size, stride)
    index = {}
    truth_sum = np.zeros((h, w))
    truth_n = np.zeros((h, w))
    for k, win in enumerate(sliding_windows(h, w, size, stride)):
        index[(int(win.row_off), int(win.col_off))] = k
        rs, cs = win.toslices()
        truth_sum[rs, cs] += k
        truth_n[rs, cs] += 1

    def predictions(schedule):
        for block in schedule:
            for win in block:
                k = index[(int(win.row_off), int(win.col_off))]
                yield win, np.full((1, size, size), k, np.float32), None

    out = np.full((h, w), np.nan)
    for rows in ((0, 128), (128, 300)):  # two bands: windows across the edge go to both
        schedule = run_windows(plan, rows, (0, w), 100)
        blocks = accumulate_run(
            plan,
            rows,
            (0, w),
            predictions(schedule),
            n_bands=1,
            block_width=100,
            weights=blend_weights((size, size)),
        )
        for block in blocks:
            rs, cs = block.window.toslices()
            out[rs, cs] = block.mean[0]
    np.testing.assert_allclose(out, truth_sum / truth_n, rtol=1e-5)


def test_streamed_output_equals_whole_image_reference(
    model_file: Path, mosaic: tuple[Path, np.ndarray], reference: np.ndarray, tmp_path: Path
) -> None:
    bse, _ = mosaic
    threshold = float(np.median(reference))
    result = predict_mosaic(
        model_file,
        bse,
        tmp_path / "prob.tif",
        tmp_path / "mask.tif",
        PredictConfig(**SMALL, threshold=threshold),
    )
    prob = read_raster(tmp_path / "prob.tif", bands=1).astype(int)
    mask = read_raster(tmp_path / "mask.tif", bands=1)
    expected = np.rint(reference * 255)
    assert np.abs(prob - expected).max() <= 1
    assert (prob == expected).mean() > 0.999  # only float rounding at .5 boundaries differs
    decided = np.abs(reference - threshold) > 1e-5
    assert np.array_equal(mask[decided], (reference >= threshold)[decided])
    assert 0.3 < mask.mean() < 0.7
    info = raster_info(tmp_path / "mask.tif")
    assert info.transform == raster_info(bse).transform
    assert info.tags["classes"] == "0=unclassified,1=olivine,255=nodata"
    assert result.blocks == 6 and result.windows == WindowPlan.over(700, 1100, 128, 48).n_windows
    assert result.class_pixels["olivine"] == int(mask.sum())
    assert not list(tmp_path.glob("*.partial*"))


def test_gaussian_blend_differs_but_agrees_where_one_window(
    model_file: Path, mosaic: tuple[Path, np.ndarray], reference: np.ndarray, tmp_path: Path
) -> None:
    bse, _ = mosaic
    settings = PredictConfig(**{**SMALL, "stride": 128}, blend="gaussian")
    predict_mosaic(model_file, bse, tmp_path / "p.tif", tmp_path / "m.tif", settings)
    model, _ = load_checkpoint(model_file)
    # stride = window: windows do not overlap except the snapped last ones, so interior
    # pixels of the first window are that window's own prediction whatever the weights.
    own = naive_reference(model, mosaic[1][:128, :128], 128, 128)
    prob = read_raster(tmp_path / "p.tif", bands=1)[:128, :128].astype(int)
    assert np.abs(prob - np.rint(own * 255)).max() <= 1


def test_interrupted_run_resumes_to_the_same_result(
    model_file: Path, mosaic: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    bse, _ = mosaic
    settings = PredictConfig(**SMALL, threshold=0.5)
    full = tmp_path / "full"
    predict_mosaic(model_file, bse, full / "p.tif", full / "m.tif", settings)

    calls = []

    def interrupt_after_two(n: int) -> None:
        calls.append(n)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C; olmap stops at the block boundary

    out = tmp_path / "resumed"
    with pytest.raises(RunInterrupted, match="2 of 6 blocks"):
        predict_mosaic(
            model_file, bse, out / "p.tif", out / "m.tif", settings, progress=interrupt_after_two
        )
    assert not (out / "m.tif").exists() and progress_path(out / "m.tif").exists()
    done = []
    result = predict_mosaic(
        model_file, bse, out / "p.tif", out / "m.tif", settings, progress=done.append
    )
    assert result.resumed_blocks == 2 and len(done) == 1 + 4  # the resumed part, then 4 blocks
    for name in ("p.tif", "m.tif"):
        assert np.array_equal(read_raster(out / name), read_raster(full / name))
    assert not progress_path(out / "m.tif").exists()


def test_dask_local_cluster_matches_single_process(
    model_file: Path, mosaic: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    bse, _ = mosaic
    settings = PredictConfig(**SMALL, threshold=0.5)
    predict_mosaic(model_file, bse, tmp_path / "p1.tif", tmp_path / "m1.tif", settings)
    result = predict_mosaic(
        model_file, bse, tmp_path / "p2.tif", tmp_path / "m2.tif", settings, dask="local:2"
    )
    assert result.settings["dask"] == "local:2"
    one, two = read_raster(tmp_path / "p1.tif"), read_raster(tmp_path / "p2.tif")
    assert np.array_equal(one, two)  # windows blended in one canonical order
    assert np.array_equal(read_raster(tmp_path / "m1.tif"), read_raster(tmp_path / "m2.tif"))


def test_nodata_is_skipped_and_written_as_nodata(model_file: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(60, 200, (600, 600)).astype(np.uint16)
    image[:, :300] = 0  # a mosaic corner without tiles
    bse = write_raster(tmp_path / "bse.tif", image, pixel_size_um=1.0, nodata=0)
    result = predict_mosaic(
        model_file, bse, tmp_path / "p.tif", tmp_path / "m.tif", PredictConfig(**SMALL)
    )
    mask = read_raster(tmp_path / "m.tif", bands=1)
    assert (mask[:, :300] == 255).all() and (mask[:, 300:] != 255).all()
    assert result.nodata_pixels == 600 * 300
    from olmap.io.raster import open_raster

    with open_raster(tmp_path / "p.tif") as ds:
        valid = ds.read_masks(1)
    assert (valid[:, :300] == 0).all() and (valid[:, 300:] == 255).all()
    # olmap evaluate leaves masked probabilities unscored, as it does 255 in the mask
    ref = write_raster(
        tmp_path / "ref.tif",
        (image > 130).astype(np.uint8),
        pixel_size_um=1.0,
        tags={"classes": "0=unclassified,1=olivine"},
    )
    for pred in ("p.tif", "m.tif"):
        report = evaluate_rasters(str(tmp_path / pred), str(ref))
        assert report["unscored_pixels"] == 600 * 300, pred
        assert report["overall"]["pixels"] == 600 * 300, pred


def test_bad_inputs_fail_clearly(
    model_file: Path, mosaic: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    bse, image = mosaic
    stack = write_raster(tmp_path / "eds.tif", np.stack([image, image]), pixel_size_um=1.0)
    with pytest.raises(InputError, match="has 2 bands"):
        predict_mosaic(model_file, stack, tmp_path / "p.tif", tmp_path / "m.tif")
    with pytest.raises(InputError, match="not a readable model checkpoint"):
        predict_mosaic(bse, bse, tmp_path / "p.tif", tmp_path / "m.tif")
    with pytest.raises(InputError, match="output is an input"):
        predict_mosaic(model_file, bse, bse, tmp_path / "m.tif")
    (tmp_path / "m.tif").write_text("old result")
    with pytest.raises(OutputExistsError):
        predict_mosaic(model_file, bse, tmp_path / "p.tif", tmp_path / "m.tif")
    with pytest.raises(ValidationError, match="stride"):
        PredictConfig(window=128, stride=256)
    with pytest.raises(ValidationError, match="multiple of 512"):
        PredictConfig(band=1000)


def test_window_source_reads_in_the_file_grid(mosaic: tuple[Path, np.ndarray]) -> None:
    from olmap.io.raster import WindowSource

    bse, image = mosaic
    with WindowSource(bse) as source:
        grey, valid = source.read(Window(10, 20, 30, 40))
    assert valid is None and np.array_equal(grey, image[20:60, 10:40])


def test_multi_class_model_gives_a_label_map_and_one_band_per_class(
    mosaic: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    names = ["unclassified", "olivine", "clinopyroxene"]
    model, meta = synthetic_init_model(names)
    model_file = save_checkpoint(tmp_path / "three.pt", model, meta)
    bse, image = mosaic
    predict_mosaic(model_file, bse, tmp_path / "p.tif", tmp_path / "m.tif", PredictConfig(**SMALL))
    prob = read_raster(tmp_path / "p.tif")
    labels = read_raster(tmp_path / "m.tif", bands=1)
    assert prob.shape == (3, *image.shape)
    assert raster_info(tmp_path / "p.tif").band_names == tuple(f"p_{n}" for n in names)
    assert np.abs(prob.astype(int).sum(0) - 255).max() <= 2  # probabilities sum to 1
    clear = np.sort(prob, axis=0)[-1].astype(int) - np.sort(prob, axis=0)[-2] > 2
    assert np.array_equal(labels[clear], prob.argmax(0)[clear])
    assert raster_info(tmp_path / "m.tif").tags["classes"] == (
        "0=unclassified,1=olivine,2=clinopyroxene,255=nodata"
    )


def test_a_run_starting_mid_band_sums_in_the_same_order(mosaic: tuple[Path, np.ndarray]) -> None:
    """Resumed runs and Dask tasks start at any block: every pixel must add up its windows in
    the order of a run over the whole band, or float rounding changes a few bits (and a few
    probabilities by 1/255)."""
    h, w = mosaic[1].shape
    plan = WindowPlan.over(h, w, 128, 48)
    weights = blend_weights((128, 128), "gaussian")

    def predictions(schedule):  # a fixed, window-dependent pattern of probabilities
        for block in schedule:
            for win in block:
                rng = np.random.default_rng([int(win.row_off), int(win.col_off)])
                yield win, rng.random((1, 128, 128), dtype=np.float32), None

    def blocks(cols):
        schedule = run_windows(plan, (0, 512), cols, 512)
        run = accumulate_run(
            plan, (0, 512), cols, predictions(schedule), n_bands=1, block_width=512,
            weights=weights,
        )  # fmt: skip
        return {int(b.window.col_off): b.mean for b in run}

    whole, resumed = blocks((0, w)), blocks((512, w))
    assert set(resumed) == {512, 1024}
    for col, mean in resumed.items():
        assert np.array_equal(mean, whole[col])  # bit for bit


def test_progress_saved_every_few_seconds_changes_nothing(
    model_file: Path, mosaic: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    """Saving closes, flushes and reopens the partial outputs between blocks."""
    bse, _ = mosaic
    settings = PredictConfig(**SMALL, threshold=0.5)
    predict_mosaic(model_file, bse, tmp_path / "a" / "p.tif", tmp_path / "a" / "m.tif", settings)
    saving = settings.model_copy(update={"save_every_s": 1e-6})  # after every block
    predict_mosaic(model_file, bse, tmp_path / "b" / "p.tif", tmp_path / "b" / "m.tif", saving)
    for name in ("p.tif", "m.tif"):
        assert np.array_equal(
            read_raster(tmp_path / "a" / name), read_raster(tmp_path / "b" / name)
        )


def test_many_band_probabilities_write_without_libtiff_errors(
    mosaic: tuple[Path, np.ndarray], tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    """9 probability bands with a nodata mask: GDAL used to print "Bad value 8 for
    ExtraSamples" from its compression threads, also after the files are reopened."""
    torch.manual_seed(0)
    names = [f"phase{i}" for i in range(9)]
    model = Segmenter(ARCH, 9, mean=110.0, std=30.0)
    meta = ModelMeta(ARCH, list(enumerate(names)), 110.0, 30.0)
    model_file = save_checkpoint(tmp_path / "nine.pt", model, meta)
    settings = PredictConfig(**SMALL, save_every_s=1e-6)
    predict_mosaic(model_file, mosaic[0], tmp_path / "p.tif", tmp_path / "m.tif", settings)
    assert raster_info(tmp_path / "p.tif").count == 9
    err = capfd.readouterr().err
    assert "ExtraSamples" not in err and "ERROR" not in err


def _scale_model(tmp_path: Path, image: np.ndarray) -> Path:
    """The synthetic init, recorded as trained on this uint8 image's grey levels."""
    model, meta = synthetic_init_model(["unclassified", "olivine"])
    meta.input_dtype = "uint8"
    meta.input_percentiles = [float(v) for v in np.percentile(image, [1, 50, 99])]
    return save_checkpoint(tmp_path / "u8.pt", model, meta)


def test_bse_on_another_scale_is_refused_or_rescaled_explicitly(
    mosaic: tuple[Path, np.ndarray], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bse, image = mosaic
    model_file = _scale_model(tmp_path, image)
    settings = PredictConfig(**SMALL, threshold=0.5)
    predict_mosaic(model_file, bse, tmp_path / "p8.tif", tmp_path / "m8.tif", settings)
    info = raster_info(bse)
    as16 = write_raster(
        tmp_path / "bse16.tif", image.astype(np.uint16) * 257, transform=info.transform
    )
    out = (tmp_path / "p.tif", tmp_path / "m.tif")
    with pytest.raises(InputError, match=r"bse16\.tif: grey levels .* another scale .* uint8"):
        predict_mosaic(model_file, as16, *out, settings)
    assert not out[0].exists()
    # Stated: the same image, the same result; matched automatically: said on one line.
    predict_mosaic(model_file, as16, *out, settings.model_copy(update={"bse_scale": 1 / 257}))
    assert np.array_equal(read_raster(out[1]), read_raster(tmp_path / "m8.tif"))
    predict_mosaic(
        model_file, as16, *out, settings.model_copy(update={"bse_scale": "auto"}), overwrite=True
    )
    assert "--bse-scale auto" in caplog.text
    for name, values in (("i8", image.view(np.int8)), ("f", image.astype(np.float32))):
        path = write_raster(tmp_path / f"bse_{name}.tif", values, transform=info.transform)
        with pytest.raises(InputError, match="no grey scale of its own"):
            predict_mosaic(model_file, path, *out, settings, overwrite=True)
    stated = settings.model_copy(update={"bse_scale": 1.0})
    predict_mosaic(model_file, tmp_path / "bse_f.tif", *out, stated, overwrite=True)
    assert np.array_equal(read_raster(out[1]), read_raster(tmp_path / "m8.tif"))


def test_a_locked_output_stops_prediction_at_once(
    model_file: Path, mosaic: tuple[Path, np.ndarray], tmp_path: Path, lock_held_elsewhere
) -> None:
    from olmap.errors import OutputLockedError

    out = tmp_path / "m.tif"
    with lock_held_elsewhere(out) as other:
        with pytest.raises(OutputLockedError, match=f"pid {other.pid}"):
            predict_mosaic(model_file, mosaic[0], tmp_path / "p.tif", out, PredictConfig(**SMALL))
    assert not (tmp_path / "p.tif").exists() and not out.exists()
