import numpy as np
import pytest

from artshield.metrics.distribution import frechet_distance, kernel_distance


def test_fid_is_zero_for_identical_sets_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 8))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    b = rng.normal(size=(2000, 8)) + 2.0
    # same covariance, mean shifted by 2 in each of 8 dimensions: FID close to 8 * 2^2
    assert frechet_distance(a, b) == pytest.approx(32.0, rel=0.1)


def test_kid_separates_distributions():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(500, 16)), rng.normal(size=(500, 16))
    c = rng.normal(size=(500, 16)) * 2 + 1
    assert abs(kernel_distance(a, b)) < 0.05
    assert kernel_distance(a, c) > 10 * abs(kernel_distance(a, b))


def test_too_few_samples_is_an_error():
    with pytest.raises(ValueError):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
