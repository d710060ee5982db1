import numpy as np

from olmap.synth.noise import hash_normal, hash_uniform, pixel_noise, stream_key, value_noise


def test_hash_uniform_is_deterministic_and_uniform():
    k = stream_key(5, 1)
    u = hash_uniform(k, np.arange(200)[:, None], np.arange(300)[None, :])
    assert np.array_equal(u, hash_uniform(k, np.arange(200)[:, None], np.arange(300)[None, :]))
    assert 0 <= u.min() and u.max() < 1
    hist, _ = np.histogram(u, bins=10, range=(0, 1))
    assert np.all(np.abs(hist / u.size - 0.1) < 0.01)
    assert not np.array_equal(
        u, hash_uniform(stream_key(6, 1), np.arange(200)[:, None], np.arange(300)[None, :])
    )


def test_hash_normal_moments():
    z = hash_normal(stream_key(1, 2), np.arange(100_000))
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02


def test_noise_fields_do_not_depend_on_the_window():
    k = stream_key(3, 4)
    whole = value_noise(k, 0, 0, 300, 400, 37.0)
    part = value_noise(k, 120, 250, 100, 150, 37.0)
    np.testing.assert_array_equal(part, whole[120:220, 250:400])
    whole = pixel_noise(k, -5, -5, 60, 60)
    np.testing.assert_array_equal(pixel_noise(k, 10, 20, 7, 9), whole[15:22, 25:34])
    assert np.abs(value_noise(k, 0, 0, 50, 50, 10.0)).max() <= 1.0
