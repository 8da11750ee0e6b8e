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


def test_speed_bench_measures_both_methods(tiny_bundle):
    from artshield.bench.speed import time_steps

    for method in ("advdm", "sds"):
        row = time_steps(tiny_bundle, method, batch=2, steps=1)
        assert row["seconds_per_step"] > 0 and row["peak_memory_mib"] >= 0 and row["method"] == method


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
