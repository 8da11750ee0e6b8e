import math

import numpy as np
import pytest
import torch

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


def _photo():
    import numpy as np
    from skimage.data import astronaut

    return torch.from_numpy(np.ascontiguousarray(astronaut()[::2, ::2])).permute(2, 0, 1).float() / 255


def test_lpips_orders_known_degradations():
    from artshield.metrics.image import lpips

    x = _photo()
    g = torch.Generator().manual_seed(0)
    blur = torch.nn.functional.avg_pool2d(x[None], 3, 1, 1, count_include_pad=False)[0]
    noise = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    other = x.flip(-1).flip(-2)
    values = [lpips(x, x), lpips(x, blur), lpips(x, noise), lpips(x, other)]
    assert values[0] == 0
    assert 0.02 < values[1] < values[2] < values[3]
    assert abs(lpips(x, noise) - lpips(noise, x)) < 1e-4


def test_psnr_ssim_linf_known_answers():
    from artshield.metrics.image import linf_255, psnr, ssim

    x = _photo()
    y = (x + 4 / 255).clamp(0, 1)
    shifted = torch.full_like(x, 0.5)
    assert psnr(x, x) == float("inf") and ssim(x, x) == pytest.approx(1.0)
    assert linf_255(x, y) == pytest.approx(4, abs=1e-3)
    d = torch.full((3, 8, 8), 0.5)
    assert psnr(d, d + 0.1) == pytest.approx(20.0, abs=1e-3)        # MSE 0.01 -> 20 dB
    assert ssim(x, shifted) < 0.5 < 0.9 < ssim(x, y)
    small = torch.rand(3, 8, 5, generator=torch.Generator().manual_seed(0))    # under skimage's 11-pixel window
    assert ssim(small, small) == pytest.approx(1.0) and ssim(small, 1 - small) < 0.5


def test_speed_bench_measures_both_methods(tiny_bundle, monkeypatch):
    """Each timed step is one PGD step of the method on the batch, after one untimed warm-up step;
    the figure is the median of the timed steps (a clock that advances by known amounts)."""
    import types

    from artshield.bench import speed
    from artshield.protect import engine

    for method in ("advdm", "sds"):
        row = speed.time_steps(tiny_bundle, method, batch=2, steps=1)
        assert row["seconds_per_step"] > 0 and row["peak_memory_mib"] >= 0 and row["method"] == method
    ticks = iter([0.0, 1.0, 10.0, 14.0, 20.0, 22.0])            # three steps of 1, 4 and 2 s
    monkeypatch.setattr(speed, "time", types.SimpleNamespace(perf_counter=lambda: next(ticks)))
    taken, step = [], engine.PGD.step
    monkeypatch.setattr(engine.PGD, "step", lambda self, loss, k, maximize=True: taken.append((k, len(self.images)))
                        or step(self, loss, k, maximize))
    row = speed.time_steps(tiny_bundle, "advdm", batch=2, steps=3)
    assert taken == [(0, 2), (1, 2), (2, 2), (3, 2)] and row["seconds_per_step"] == 2.0
    assert (row["steps_timed"], row["batch"], row["resolution"]) == (3, 2, tiny_bundle.image_size)


def test_the_speed_tables_render_the_benchs_rows():
    from artshield.bench.tables import mimic_speed, speed

    row = {"model": "sd3-medium-random", "device": "cpu", "dtype": "float32", "resolution": 256, "batch": 1,
           "memory_options": True, "advdm_s_per_step": 10.1741, "sds_s_per_step": 5.5729,
           "time_ratio_sds_over_advdm": 0.5477, "advdm_peak_mib": 1843.3, "sds_peak_mib": 963.6,
           "memory_ratio_sds_over_advdm": 0.5228, "steps_timed": 2}
    lora = {"model": "sd15-random", "dtype": "float32", "resolution": 512, "method": "lora", "batch": 1,
            "seconds_per_step": 0.0123456, "peak_memory_mib": 6563.2, "memory_options": False}
    lines = speed({"rows": [row, lora]}).splitlines()
    assert lines[2:] == ["| SD3 medium 256px, batch 1 | fp32 | on | 10.2 | 5.57 | 0.55 | 1,843 | 964 | 0.52 |"]
    assert mimic_speed({"rows": [row, lora]}).splitlines()[2:] == ["| SD-1.5 | fp32 | 512 px | lora | 0.0123 | 6,563 |"]


def test_precision_recall_known_cases():
    from artshield.metrics.precision_recall import precision_recall

    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 4))
    assert precision_recall(real, real) == (1.0, 1.0)
    far = rng.normal(size=(300, 4)) + 50
    assert precision_recall(real, far) == (0.0, 0.0)
    # generations collapsed onto a small part of the real distribution: precise, but low recall
    collapsed = rng.normal(size=(300, 4)) * 0.1
    p, r = precision_recall(real, collapsed)
    assert p > 0.9 and r < 0.3


def test_brisque_scores_noise_as_worse_on_photographs_and_the_protect_report_shows_it(tmp_path, monkeypatch):
    pytest.importorskip("brisque")
    from skimage import data

    from artshield.io import write_image
    from artshield.metrics import image as metrics
    from artshield.protect import report

    rng = np.random.default_rng(0)
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        photo = torch.from_numpy(getattr(data, name)()).permute(2, 0, 1).float()[None] / 255
        photo = torch.nn.functional.interpolate(photo, size=(256, 256), mode="area")[0]
        noisy = (photo + torch.from_numpy(rng.uniform(-16, 16, photo.shape)).float() / 255).clamp(0, 1)
        clean_score, noisy_score = metrics.brisque(photo), metrics.brisque(noisy)
        assert noisy_score > clean_score + 2, (name, clean_score, noisy_score)
    # the same number as the package's own end to end `score`, once its numpy-2 failure is patched
    from brisque import BRISQUE

    fixed = BRISQUE.scale_features
    monkeypatch.setattr(BRISQUE, "scale_features",
                        lambda self, f: fixed(self, np.array([float(np.ravel(x)[0]) for x in f])))
    pixels = (noisy.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert metrics.brisque(noisy) == pytest.approx(BRISQUE(url=False).score(pixels), abs=1e-6)
    monkeypatch.undo()
    # the report: original -> protected per image, flagged when small; a missing package says how to get it
    write_image(photo, tmp_path / "in.png")
    write_image(noisy, tmp_path / "out" / "in.png")
    small = torch.nn.functional.interpolate(photo[None], size=(64, 64), mode="area")[0]
    write_image(small, tmp_path / "small.png")
    write_image(small.flip(-1), tmp_path / "out" / "small.png")
    assert metrics.brisque(torch.full((3, 64, 64), 0.4)) is None           # a flat colour has no BRISQUE
    write_image(torch.full((3, 64, 64), 0.4), tmp_path / "out" / "flat.png")
    results = {"method": "advdm", "config": {"budget": 16}, "images": [
        {"output": "flat.png", "file": str(tmp_path / "gone.png"), "psnr_db": 30, "ssim": 0.9, "lpips": 0.1,
         "linf_255": 16},
        {"file": str(tmp_path / "in.png"), "output": "in.png", "psnr_db": 30, "ssim": 0.9, "lpips": 0.1, "linf_255": 16},
        {"file": str(tmp_path / "small.png"), "output": "small.png", "psnr_db": 30, "ssim": 0.9, "lpips": 0.1,
         "linf_255": 16}]}
    page, _ = report.write_page(tmp_path / "out", results)
    html = page.read_text()
    assert f"{metrics.brisque(photo):.1f} &rarr; {metrics.brisque(noisy):.1f}</td>" in html
    assert html.count("(small image)") == 2 and "BRISQUE original &rarr; protected" in html
    assert html.count("undefined (no local contrast)") == 1
    monkeypatch.setattr(metrics, "brisque", lambda image: None)
    html = report.write_page(tmp_path / "out", results)[0].read_text()
    assert "BRISQUE original" not in html and "pip install 'artshield[quality]'" in html


def _ssim_by_hand(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. 2004's SSIM of two (H, W, C) float images in [0, 1], written out: Gaussian window of
    sigma 1.5 (3.5 sigma wide), K1 0.01, K2 0.03, population covariances, the mean of the SSIM map over
    the pixels whose window lies inside the image, then over channels."""
    from scipy.ndimage import gaussian_filter

    def blur(v):
        return gaussian_filter(v, sigma=1.5, truncate=3.5, mode="reflect")

    c1, c2, pad = 0.01 ** 2, 0.03 ** 2, 5
    values = []
    for k in range(x.shape[2]):
        a, b = x[..., k], y[..., k]
        ma, mb = blur(a), blur(b)
        va, vb, cov = blur(a * a) - ma ** 2, blur(b * b) - mb ** 2, blur(a * b) - ma * mb
        s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2))
        values.append(s[pad:-pad, pad:-pad].mean())
    return float(np.mean(values))


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).double().numpy()


def test_ssim_is_wang_et_als_gaussian_ssim_and_small_and_huge_images_are_rescaled_as_documented():
    from artshield.metrics.image import perceptual_size, ssim

    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 24, 31, generator=g)
    y = (x + 0.08 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert ssim(x, y) == pytest.approx(_ssim_by_hand(_hwc(x), _hwc(y)), abs=1e-9)
    assert 0.5 < ssim(x, y) < 0.99
    # one side under the 11-pixel window (the other over it): both scaled up by 11 / short side, nearest
    a, b = x[:, :6, :], y[:, :6, :]
    up = [torch.nn.functional.interpolate(t[None], size=(11, math.ceil(31 * 11 / 6)), mode="nearest")[0]
          for t in (a, b)]
    assert ssim(a, b) == pytest.approx(_ssim_by_hand(*map(_hwc, up)), abs=1e-9)
    a, b = x[:, :, :7], y[:, :, :7]                   # the short side is the width this time
    up = [torch.nn.functional.interpolate(t[None], size=(math.ceil(24 * 11 / 7), 11), mode="nearest")[0]
          for t in (a, b)]
    assert ssim(a, b) == pytest.approx(_ssim_by_hand(*map(_hwc, up)), abs=1e-9)
    # over max_side on the long side (the height here): both compared at max_side
    tall, tall_y = x.repeat(1, 4, 1)[:, :90], y.repeat(1, 4, 1)[:, :90]
    small = [perceptual_size(t[None], 64)[0] for t in (tall, tall_y)]
    assert small[0].shape[-2:] == (64, 22)
    assert ssim(tall, tall_y, max_side=64) == pytest.approx(_ssim_by_hand(*map(_hwc, small)), abs=1e-9)
    assert ssim(tall, tall_y, max_side=90) == pytest.approx(_ssim_by_hand(_hwc(tall), _hwc(tall_y)), abs=1e-9)
    assert ssim(tall, tall_y) == ssim(tall, tall_y, max_side=2048)


def test_ssims_default_cap_is_2048_pixels():
    from artshield.metrics import image

    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, 2049, 12, generator=g)
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert image.ssim(x, y) == image.ssim(x, y, max_side=2048) != image.ssim(x, y, max_side=4096)


def test_perceptual_size_known_sizes_and_pils_antialiased_bilinear():
    from _reference import pil_resize

    from artshield.metrics.image import perceptual_size

    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 100, 200, generator=g)
    assert perceptual_size(x, 512) is x                          # neither too large nor too small
    assert perceptual_size(x, 200) is x                          # the long side at the limit is not over it
    assert perceptual_size(x, 50).shape[-2:] == (25, 50)          # over: the long side becomes max_side
    assert perceptual_size(x.transpose(-1, -2), 50).shape[-2:] == (50, 25)
    assert perceptual_size(x[..., :48, :60], 512).shape[-2:] == (64, 80)   # short side 48 -> 64
    assert perceptual_size(x[..., :60, :48], 512).shape[-2:] == (80, 64)
    assert perceptual_size(x[..., :16, :20], 20).shape[-2:] == (64, 80)    # not over the limit: made 64
    assert perceptual_size(torch.rand(1, 3, 1, 4000), 512).shape[-2:] == (1, 512)   # never 0 pixels
    assert perceptual_size(torch.rand(1, 3, 4000, 1), 512).shape[-2:] == (512, 1)
    # the resampling is PIL's antialiased bilinear (a triangle filter), down and up
    for size, limit in (((25, 50), 50), ((64, 128), 4096)):
        src = x if limit == 50 else x[..., :32, :64]
        ours = perceptual_size(src, limit)[0]
        pil = pil_resize(src[0], *size).numpy()
        assert ours.shape[-2:] == size and np.abs(ours.numpy() - pil).max() < 1e-4
    # whatever comes in, the result is an image in [0, 1]
    wild = torch.cat([torch.full((1, 3, 100, 100), 2.0), torch.full((1, 3, 100, 100), -1.0)], -1)
    assert perceptual_size(wild, 50).unique().tolist() == [0.0, 1.0]


def test_psnr_per_image_is_psnr_of_each_pair():
    from artshield.metrics.image import psnr, psnr_per_image

    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 3, 5, 7, generator=g)
    b = torch.rand(3, 3, 5, 7, generator=g) * torch.tensor([1.0, 0.0, 0.5]).view(3, 1, 1, 1)
    b[1] = a[1]
    got = psnr_per_image(a, b)
    assert got.shape == (3,)
    assert got[1].item() == pytest.approx(100.0)                # identical: 100 dB, not inf
    for k in (0, 2):
        assert got[k].item() == pytest.approx(psnr(a[k], b[k]), abs=1e-4)
    half = torch.full((2, 1, 4, 4), 0.5)
    assert psnr_per_image(half, half + 0.1).tolist() == pytest.approx([20.0, 20.0], abs=1e-4)


def test_visibility_rounds_each_figure_to_its_digits_unless_exact():
    from artshield.metrics import image

    g = torch.Generator().manual_seed(3)
    x = torch.rand(3, 40, 40, generator=g)
    y = (x + torch.randn(x.shape, generator=g) * 0.02 + 4.1234567 / 255).clamp(0, 1)
    exact = image.visibility(y, x, exact=True)
    assert exact == {"linf_255": image.linf_255(y, x), "psnr_db": image.psnr(y, x), "ssim": image.ssim(y, x),
                     "lpips": image.lpips(y, x)}
    rounded = image.visibility(y, x)
    assert rounded == {"linf_255": round(exact["linf_255"], 3), "psnr_db": round(exact["psnr_db"], 3),
                       "ssim": round(exact["ssim"], 5), "lpips": round(exact["lpips"], 5)}
    assert all(round(v, d + 1) != round(v, d) for v, d in zip(exact.values(), (3, 3, 5, 5)))   # rounding shows


def test_amplified_change_maps_the_budget_to_white():
    from artshield.metrics.image import amplified_change

    clean = torch.full((1, 1, 4), 0.5)
    changed = clean + torch.tensor([0.0, 4.0, -4.0, 20.0]).view(1, 1, 4) / 255
    assert amplified_change(clean, changed, 8).flatten().tolist() == pytest.approx([0, 0.5, 0.5, 1], abs=1e-6)
    assert amplified_change(clean, changed, 0.5)[0, 0, 1].item() == 1.0
    small = clean + torch.tensor([0.0, 0.25, -0.125, 1.0]).view(1, 1, 4) / 255
    assert amplified_change(clean, small, 0.5).flatten().tolist() == pytest.approx([0, 0.5, 0.25, 1], abs=1e-5)
    assert amplified_change(clean, clean, 0).flatten().tolist() == [0, 0, 0, 0]      # no budget: no division by 0
    assert amplified_change(clean, small, 0).flatten().tolist() == [0, 1, 1, 1]


def test_brisque_reads_grey_and_rgba_as_their_rgb_and_clamps_out_of_range_pixels():
    pytest.importorskip("brisque")
    from skimage import data

    from artshield.metrics.image import brisque

    photo = torch.from_numpy(data.astronaut()[::2, ::2].copy()).permute(2, 0, 1).float() / 255
    grey = photo.mean(0, keepdim=True)
    assert brisque(grey) == pytest.approx(brisque(grey.expand(3, -1, -1)), abs=1e-9)
    alpha = torch.cat([photo, torch.rand(1, *photo.shape[1:], generator=torch.Generator().manual_seed(0))])
    assert brisque(alpha) == pytest.approx(brisque(photo), abs=1e-9)
    wild = photo * 1.6 - 0.3                  # a third of the pixels outside [0, 1]
    assert brisque(wild) == pytest.approx(brisque(wild.clamp(0, 1)), abs=1e-9)
    assert brisque(wild) != pytest.approx(brisque(photo), abs=0.5)


def test_fid_known_answer_for_sets_with_diagonal_covariances(monkeypatch):
    # a: mean 0, sample covariances diag(2/3, 8/3); b = 2a + (3, 4): covariance 4 times a's. For commuting
    # covariances FID = |mu_a - mu_b|^2 + sum (sqrt(var_a) - sqrt(var_b))^2 = 25 + (2/3 + 8/3)
    a = np.array([[1.0, 0], [-1, 0], [0, 2], [0, -2]])
    b = 2 * a + np.array([3.0, 4.0])
    assert frechet_distance(a, b) == pytest.approx(25 + 10 / 3, abs=1e-9)
    assert frechet_distance(b, a) == pytest.approx(25 + 10 / 3, abs=1e-9)
    # singular covariances (fewer samples than dimensions) still give the closed form
    c = np.array([[1.0, 0, 0], [-1, 0, 0]])
    assert frechet_distance(c, c * 3) == pytest.approx((np.sqrt(2) - np.sqrt(18)) ** 2, abs=1e-4)
    for short in ((np.zeros((5, 3)), np.zeros((1, 3))), (np.zeros((1, 3)), np.zeros((5, 3)))):
        with pytest.raises(ValueError, match="^FID needs at least two samples on each side$"):
            frechet_distance(*short)
    # when the square root comes out non-finite (near-singular products), both covariances get 1e-6 on
    # their diagonal and the root is taken again
    from artshield.metrics import distribution

    real_sqrtm, seen = distribution.linalg.sqrtm, []

    def failing_once(m, disp=True):
        seen.append(m)
        if len(seen) == 1:
            return np.full_like(m, np.nan), 1.0
        return real_sqrtm(m)
    monkeypatch.setattr(distribution.linalg, "sqrtm", failing_once)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s_a + s_b) - 2 * np.trace(
        real_sqrtm((s_a + 1e-6 * np.eye(2)) @ (s_b + 1e-6 * np.eye(2))).real)
    assert frechet_distance(a, b) == pytest.approx(expected, abs=1e-12) and len(seen) == 2
    assert np.allclose(seen[1], (s_a + 1e-6 * np.eye(2)) @ (s_b + 1e-6 * np.eye(2)), rtol=0, atol=1e-15)
    monkeypatch.undo()
    # computed in float64 whatever comes in
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(40, 3)).astype(np.float16), (rng.normal(size=(40, 3)) * 1.3 + 0.2).astype(np.float16)
    for pair in ((x, y.astype(np.float64)), (x.astype(np.float64), y)):
        assert frechet_distance(*pair) == frechet_distance(x.astype(np.float64), y.astype(np.float64))


def _mmd_by_hand(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(u, v) = (u.v / d + 1)^3, one pair of sums at a time."""
    m, d = len(x), x.shape[1]

    def k(u, v):
        return (float(u @ v) / d + 1) ** 3

    same = sum(k(x[i], x[j]) + k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    return same - 2 * sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m ** 2


def test_kid_known_answer_is_the_unbiased_mmd_of_each_seeded_subset():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(6, 3)), rng.normal(size=(9, 3)) * 1.5 + 0.5
    # subsets of 6 of a's 6 rows: every subset is all of a, so the average is exact for any seed
    whole = [kernel_distance(a, b[:6], subsets=s, seed=seed) for s, seed in ((1, 0), (3, 7))]
    assert whole == pytest.approx([_mmd_by_hand(a, b[:6])] * 2, abs=1e-9)
    # smaller subsets: the mean over the seeded draws, a's rows then b's for each subset in turn
    draw = np.random.default_rng(5)
    expected = []
    for _ in range(4):
        x = a[draw.choice(6, 4, replace=False)]
        expected.append(_mmd_by_hand(x, b[draw.choice(9, 4, replace=False)]))
    assert kernel_distance(a, b, subsets=4, subset_size=4, seed=5) == pytest.approx(np.mean(expected), abs=1e-9)
    # the defaults: 50 subsets of 100 with seed 0; the subset is the smaller set's size when it is smaller
    big, other = rng.normal(size=(130, 3)), rng.normal(size=(140, 3)) + 0.3
    assert kernel_distance(big, other) == kernel_distance(big, other, subsets=50, subset_size=100, seed=0)
    assert kernel_distance(big, other) != kernel_distance(big, other, seed=1)
    assert kernel_distance(big, other) != kernel_distance(big, other, subset_size=101)
    assert kernel_distance(a, b[:3], subsets=2) == pytest.approx(
        np.mean([_mmd_by_hand(*pair) for pair in _subsets(a, b[:3], 2, 3)]), abs=1e-9)
    assert kernel_distance(a[:2], b[:2], subsets=1) == pytest.approx(_mmd_by_hand(a[:2], b[:2]), abs=1e-9)   # two is enough
    # computed in float64 whatever comes in (float16 features would lose the kernel's precision)
    half, half_b = a.astype(np.float16), b.astype(np.float16)
    assert kernel_distance(half, half_b, subsets=3, subset_size=4) == kernel_distance(
        half.astype(np.float64), half_b.astype(np.float64), subsets=3, subset_size=4)
    for short in ((a[:1], b), (a, b[:1])):
        with pytest.raises(ValueError, match="^KID needs at least two samples on each side$"):
            kernel_distance(*short)


def _subsets(a, b, count, m, seed=0):
    draw = np.random.default_rng(seed)
    return [(a[draw.choice(len(a), m, replace=False)], b[draw.choice(len(b), m, replace=False)]) for _ in range(count)]


def test_precision_recall_known_answer_against_a_brute_force_count():
    from artshield.metrics.precision_recall import precision_recall

    def by_hand(real, gen, k):
        def radius(p, own):
            d = sorted(float(np.linalg.norm(p - q)) for q in own)
            return d[min(k, len(own) - 1)]

        def share(points, centres):
            return sum(any(np.linalg.norm(p - c) <= radius(c, centres) for c in centres) for p in points) / len(points)
        return share(gen, real), share(real, gen)

    real = np.array([[0.0], [1], [3], [7]])
    gen = np.array([[0.5], [11], [12], [-2], [5]])           # 11 lies exactly on the ball of 7 (radius 4, k=1)
    assert precision_recall(real, gen, k=1) == pytest.approx((0.6, 1.0))
    assert by_hand(real, gen, 1) == pytest.approx((0.6, 1.0))
    rng = np.random.default_rng(6)
    r, g = rng.normal(size=(12, 2)), rng.normal(size=(9, 2)) * 0.7 + 0.8
    for k in (1, 3, 20):                                      # k past the set's size: its farthest point
        assert precision_recall(r, g, k=k) == pytest.approx(by_hand(r, g, k))
    assert precision_recall(r, g) == precision_recall(r, g, k=3)
    # k past a small set's size: the farthest point's distance is the radius
    assert precision_recall(np.array([[0.0], [1], [10]]), np.array([[-8.0], [19.5]]), k=5) == (1.0, 1.0)
    # computed in float64 whatever comes in (float16 would overflow squaring distances of a few hundred)
    big, big_gen = (real * 300).astype(np.float16), (gen * 300).astype(np.float16)
    assert precision_recall(big, gen * 300, k=1) == precision_recall(real * 300, big_gen, k=1) == (0.6, 1.0)
    tight = (np.array([[0.0], [0.5]]) * 1000).astype(np.float16)     # its own radii overflow float16
    assert precision_recall(np.array([[0.0], [10.0]]) * 1000, tight, k=1) == (1.0, 0.5)
    assert precision_recall(real[:2], gen[:2], k=1) == by_hand(real[:2], gen[:2], 1)     # two are enough
    for short in ((r[:1], g), (r, g[:1])):
        with pytest.raises(ValueError, match="^precision/recall needs at least two samples on each side$"):
            precision_recall(*short)


def _lpips_by_hand(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LPIPS v0.1 (Zhang et al. 2018) with AlexNet, from the shipped weights, written out: inputs to
    [-1, 1], shifted and scaled per channel, five conv + ReLU taps (3 x 3 max-pooling, stride 2, after
    the first two, as AlexNet), each tap unit-normalised over channels, squared differences weighted by
    the layer's 1 x 1 head, averaged over space, summed over layers."""
    from safetensors.torch import load_file

    from artshield.metrics.lpips import WEIGHTS

    w = {k: v.double() for k, v in load_file(WEIGHTS).items()}
    shift = torch.tensor([-0.030, -0.088, -0.188], dtype=torch.float64).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450], dtype=torch.float64).view(1, 3, 1, 1)
    geometry = [(4, 2), (1, 2), (1, 1), (1, 1), (1, 1)]            # (stride, padding) of each convolution

    def taps(x):
        x = ((x.double() * 2 - 1) - shift) / scale
        out = []
        for i, (stride, pad) in enumerate(geometry):
            x = torch.relu(torch.nn.functional.conv2d(x, w[f"features.{i}.weight"], w[f"features.{i}.bias"],
                                                      stride, pad))
            out.append(x)
            if i in (0, 1):
                x = torch.nn.functional.max_pool2d(x, kernel_size=3, stride=2)
        return out
    total = torch.zeros(a.shape[0], dtype=torch.float64)
    for i, (fa, fb) in enumerate(zip(taps(a), taps(b))):
        fa = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        fb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        d = ((fa - fb) ** 2 * w[f"heads.{i}.weight"].view(1, -1, 1, 1)).sum(1)
        total += d.mean(dim=(1, 2))
    return total


def test_lpips_is_alexnet_lpips_written_out_from_the_shipped_weights(tmp_path, monkeypatch):
    from artshield.metrics import lpips as module

    g = torch.Generator().manual_seed(5)
    a = torch.rand(2, 3, 64, 80, generator=g)
    b = (a + 0.15 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    b[1] = torch.rand(3, 64, 80, generator=g)
    # a model of its own: lpips_model's cache, filled by earlier tests, would hide its construction
    model = module.LPIPS.load()
    assert torch.allclose(model(a, b).double(), _lpips_by_hand(a, b), rtol=1e-4, atol=1e-6)
    small = torch.rand(1, 3, 32, 40, generator=g)                     # the smallest size it takes
    assert torch.allclose(model(small, small.flip(-1)).double(), _lpips_by_hand(small, small.flip(-1)), rtol=1e-4)
    assert model(a, a).abs().max() < 1e-6 and module.lpips_model("cpu") is module.lpips_model("cpu")
    assert torch.allclose(module.lpips_model("cpu")(a, b), model(a, b))
    assert set(model.state_dict()) == {f"features.{i}.{p}" for i in range(5) for p in ("weight", "bias")} | {
        f"heads.{i}.weight" for i in range(5)}                        # the normalisation is not a weight
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match=r"^LPIPS needs images of at least 32x32, got \(31, 40\)$"):
        model(small[..., :31, :], small[..., :31, :])
    monkeypatch.setattr(module, "WEIGHTS", tmp_path / "gone.safetensors")
    with pytest.raises(FileNotFoundError, match="gone.safetensors: LPIPS weights missing; build them with"):
        module.LPIPS.load()
