"""purify: each purifier on cases with a known answer, and the CLI."""
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from artshield.cli import main
from artshield.purify import PURIFIERS, purify
from artshield.purify.bilateral import guided_filter


def flat(value=0.5, h=32, w=32):
    return torch.full((3, h, w), value)


def test_jpeg_is_pillows_jpeg_at_quality_75():
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(3, 24, 40, generator=g) * 255).round() / 255
    (out,) = purify(None, [x], "jpeg")
    buf = io.BytesIO()
    Image.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(buf, "JPEG", quality=75)
    expected = torch.from_numpy(np.array(Image.open(buf))).permute(2, 0, 1).float() / 255
    assert torch.equal(out, expected)


def test_gaussian_noise_has_the_stated_sigma_and_follows_the_seed():
    x = flat(0.5, 128, 128)
    a, b = purify(None, [x], "gaussian-noise", seed=1)[0], purify(None, [x], "gaussian-noise", seed=1)[0]
    assert torch.equal(a, b)
    assert float((a - x).std()) == pytest.approx(0.05, rel=0.05)
    assert not torch.equal(a, purify(None, [x], "gaussian-noise", seed=2)[0])


def test_blur_and_median_keep_flat_images_and_remove_impulses():
    x = flat(0.4)
    for method in ("gaussian-blur", "median", "bilateral"):
        assert (purify(None, [x], method)[0] - x).abs().max() < 1 / 255 + 1e-6, method
    salty = x.clone()
    salty[:, 10, 10] = 1.0
    assert (purify(None, [salty], "median")[0] - x).abs().max() < 1 / 255 + 1e-6
    spread = purify(None, [salty], "gaussian-blur")[0]
    assert spread[0, 10, 10] < 0.6 and spread[0, 10, 12] > 0.4 + 1 / 255


def test_bilateral_smooths_small_noise_but_keeps_a_hard_edge():
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(3, 48, 48)
    x[:, :, 24:] = 1.0
    noisy = (x * 0.6 + 0.2 + torch.randn(x.shape, generator=g) * 4 / 255).clamp(0, 1)
    (out,) = purify(None, [noisy], "bilateral")
    flat_region = (slice(None), slice(8, 40), slice(4, 18))
    assert out[flat_region].std() < noisy[flat_region].std() / 3
    assert float(out[:, :, 30:].mean() - out[:, :, :18].mean()) > 0.55      # the 0.6 step survives


def test_guided_filter_with_itself_as_guide_and_tiny_eps_is_the_identity():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (20, 20, 3)).astype(np.float32)
    assert np.abs(guided_filter(image, image, 2, 1e-4) - image).max() < 0.05


@pytest.mark.parametrize("method", ["diffpure", "noisy-redraw", "impress"])
def test_diffusion_purifiers_keep_shape_and_follow_the_seed(tiny_bundle, method):
    opts = {"iterations": 3} if method == "impress" else {}
    x = [torch.rand(3, 20, 28, generator=torch.Generator().manual_seed(0)), torch.rand(1, 16, 16)]
    a = purify(tiny_bundle, x, method, seed=3, **opts)
    b = purify(tiny_bundle, x, method, seed=3, **opts)
    assert [t.shape for t in a] == [t.shape for t in x]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert all((u - v).abs().mean() > 0.01 for u, v in zip(a, x))     # a purifier that returns its input fails
    with pytest.raises(ValueError, match="needs a model"):
        purify(None, x, method)


@pytest.mark.parametrize("method", ["bilateral", "jpeg", "gaussian-noise", "gaussian-blur", "median"])
def test_every_filter_changes_a_noisy_image(method):
    """A smooth image plus a small perturbation, what the filters are for: each changes it (a
    purifier that returns its input fails here)."""
    ramp = torch.linspace(0, 1, 32)
    smooth = torch.stack([ramp[None, :].expand(32, 32), ramp[:, None].expand(32, 32), torch.full((32, 32), 0.5)])
    noise = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(0)) * 8 / 255
    x = [(smooth + noise).clamp(0, 1)]
    (y,) = purify(None, x, method)
    assert y.shape == x[0].shape and (y - x[0]).abs().mean() > 2 / 255


@pytest.mark.slow
def test_impress_restores_vae_consistency_on_mini(mini_bundle):
    from artshield import corpus
    from artshield.protect import protect

    x = corpus.load_images(corpus.items(split="finetune", theme="sugar")[:1], 32)[0]
    (delta,) = protect(mini_bundle, [x], method="advdm", budget=16, steps=40, score=False).deltas
    protected = (x + delta).clamp(0, 1)

    def inconsistency(img):
        with torch.no_grad():
            v = img[None]
            return float((v - mini_bundle.decode(mini_bundle.encode(v))).pow(2).mean())

    (cleaned,) = purify(mini_bundle, [protected], "impress", iterations=150, init_noise=0.0)
    assert inconsistency(cleaned) < 0.7 * inconsistency(protected)


@pytest.mark.slow
def test_diffpure_changes_more_with_a_larger_t_star(mini_bundle):
    from artshield import corpus
    from artshield.metrics.image import psnr

    x = corpus.load_images(corpus.items(split="finetune", theme="moka")[:1], 32)[0]
    small = purify(mini_bundle, [x], "diffpure", t_star=0.05)[0]
    large = purify(mini_bundle, [x], "diffpure", t_star=0.6)[0]
    assert psnr(small, x) > psnr(large, x) + 2


def test_purify_cli_writes_copies_and_results(tmp_path, tiny_model_dir):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray((np.arange(20 * 20 * 3) % 256).astype(np.uint8).reshape(20, 20, 3)).save(src / "a.png")
    (src / "bad.png").write_text("no image")
    for method in PURIFIERS:
        out = tmp_path / method
        argv = ["purify", str(src), "-o", str(out), "--method", method, "--model", str(tiny_model_dir), "-q"]
        if method == "impress":
            argv += ["--option", "iterations=2"]
        if method == "noisy-upscale":
            from artshield.models.tiny import make_tiny_upscaler

            argv += ["--option", f"upscaler={make_tiny_upscaler(tmp_path / 'upscaler')}", "--option",
                     "upscaler_steps=1"]
        assert main(argv) == 1, method                   # bad.png fails, a.png is done
        res = json.loads((out / "results.json").read_text())
        assert [r["output"] for r in res["images"]] == ["a.png"] and "bad.png" in res["failed"][0]["error"]
        with Image.open(out / "a.png") as im:
            assert im.size == (20, 20)
    assert main(["purify", str(src / "a.png"), "-o", str(tmp_path / "x"), "--method", "jpeg", "--option",
                 "nope=1", "-q"]) == 2


def test_noisy_upscale_runs_a_real_upscaler_pipeline_folder(tiny_bundle, tmp_path):
    """The x4-upscaler path: a StableDiffusionUpscalePipeline folder (tiny random weights, the
    real classes and layout) redraws the noisy image at 4x, and the result comes back at the
    input's size and channel count, reproducibly for a seed."""
    from artshield.models.tiny import make_tiny_upscaler

    folder = make_tiny_upscaler(tmp_path / "upscaler")
    x = [torch.rand(3, 12, 16, generator=torch.Generator().manual_seed(0)), torch.rand(1, 8, 8)]
    opts = {"upscaler": str(folder), "upscaler_steps": 2}
    a = purify(tiny_bundle, x, "noisy-upscale", seed=5, **opts)
    b = purify(tiny_bundle, x, "noisy-upscale", seed=5, **opts)
    assert [t.shape for t in a] == [t.shape for t in x]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert all(0 <= float(t.min()) and float(t.max()) <= 1 for t in a)
    c = purify(tiny_bundle, x, "noisy-upscale", seed=6, **opts)
    assert not torch.equal(a[0], c[0])


def test_noisy_upscale_upscales_the_training_size_view_and_needs_an_upscaler(tiny_bundle, tiny_model_dir, tmp_path,
                                                                              capsys):
    from artshield.cli import main
    from artshield.models.tiny import make_tiny_upscaler
    from artshield.purify import PURIFIERS

    folder = make_tiny_upscaler(tmp_path / "upscaler")
    purifier = PURIFIERS.create("noisy-upscale", tiny_bundle, upscaler=str(folder), upscaler_steps=1)
    seen = []
    pipe = purifier.pipe
    purifier.pipe = lambda **kw: seen.append(tuple(kw["image"].shape)) or pipe(**kw)
    big = torch.rand(3, 96, 144, generator=torch.Generator().manual_seed(0))
    (out,) = purifier.run([big], torch.Generator().manual_seed(0))
    assert out.shape == big.shape and max(seen[0][-2:]) <= 2 * tiny_bundle.image_size   # not the full image
    (tmp_path / "in").mkdir()
    from PIL import Image

    Image.new("RGB", (16, 16), "white").save(tmp_path / "in" / "a.png")
    capsys.readouterr()
    # a model with no upscaler of its own (only mini has one) and none named: refused in one line
    assert main(["purify", str(tmp_path / "in"), "--method", "noisy-upscale", "--model", str(tiny_model_dir),
                 "-o", str(tmp_path / "o"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "noisy-redraw" in err and "upscaler=DIR" in err


def test_noisy_upscale_tells_the_upscaler_a_noise_level_it_does_not_add(tiny_bundle, tmp_path):
    """Hönig et al.'s fork: the upscaler is conditioned on noise level 320 but its input is not
    noised further (only the purifier's own sigma); `added_noise_level` gives the stock behaviour."""
    from artshield.models.tiny import make_tiny_upscaler
    from artshield.purify import PURIFIERS

    folder = make_tiny_upscaler(tmp_path / "upscaler")
    x = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))

    def seen(**opts):
        purifier = PURIFIERS.create("noisy-upscale", tiny_bundle, upscaler=str(folder), upscaler_steps=1, sigma=0.0,
                                    **opts)
        calls = []
        purifier.pipe.unet.register_forward_pre_hook(
            lambda m, a, kw: calls.append((kw["class_labels"].clone(), a[0][:, 4:].clone())), with_kwargs=True)
        purifier.run([x], torch.Generator().manual_seed(0))
        labels, image = calls[0]
        return set(labels.tolist()), (image[0] - (x * 2 - 1)).abs().max().item()

    labels, change = seen()
    assert labels == {320} and change < 0.06            # told 320, given the image (level 0: noise x 0.01)
    labels, change = seen(noise_level=100, added_noise_level=100)
    assert labels == {100} and change > 0.2             # the stock pipeline: told 100 and noised at 100
    with pytest.raises(ValueError, match="cannot exceed"):
        PURIFIERS.create("noisy-upscale", tiny_bundle, upscaler=str(folder), noise_level=10, added_noise_level=20)


@pytest.mark.slow
def test_minis_own_upscaler_removes_the_noise_it_is_given(mini_bundle):
    """noisy-upscale on mini needs no option: it runs mini's x4 upscaler (a separate model, trained on
    the training themes only), and on held-out artists' icons the result is closer to the clean icon
    than the sigma-0.1 noisy view it was given (it denoises), without copying the input."""
    from artshield import corpus
    from artshield.metrics.image import psnr_per_image
    from artshield.purify.noisy_upscale import MINI_UPSCALER_DIR, default_upscaler

    assert default_upscaler(mini_bundle) == str(MINI_UPSCALER_DIR)
    items = [i for t in corpus.themes(heldout=True) for i in corpus.items(split="finetune", theme=t)[:2]]
    clean = corpus.load_images(items, 64)
    out = torch.stack(purify(mini_bundle, list(clean), "noisy-upscale", seed=0, upscaler_steps=10))
    noisy = (clean + torch.randn(clean.shape, generator=torch.Generator().manual_seed(0)) * 0.1).clamp(0, 1)
    assert out.shape == clean.shape and not torch.equal(out, clean)
    assert float(psnr_per_image(out, clean).mean()) > float(psnr_per_image(noisy, clean).mean()) + 1.0
    # the noise and the upscaler's sampling come from the seed: another seed, another picture
    again = torch.stack(purify(mini_bundle, list(clean[:4]), "noisy-upscale", seed=1, upscaler_steps=10))
    assert (again - out[:4]).abs().mean() * 255 > 1.0


def _smooth_pairs(n: int, seed: int, size: int = 40):
    """Smooth images (bilinear blow-ups of 5x5 noise) and copies with a +-8/255 random sign pattern."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    clean = [F.interpolate(torch.rand(1, 3, 5, 5, generator=g), size=(size, size), mode="bilinear",
                           align_corners=False)[0] for _ in range(n)]
    protected = [(c + (torch.rand(c.shape, generator=g) > 0.5).float().sub(0.5) * 16 / 255).clamp(0, 1) for c in clean]
    return protected, clean


def test_a_trained_denoiser_undoes_the_perturbation_it_learnt_and_loads_back_only_from_its_own_file(tmp_path, capsys):
    """On held-out pairs the trained denoiser brings the protected images closer to their originals
    (an untrained one is the identity); saved and loaded as the `denoiser` purifier it gives the same
    images; a digest that does not match, a file of another kind and a missing file are one-line refusals."""
    import hashlib

    from safetensors.torch import save_file

    from artshield.metrics.image import psnr
    from artshield.purify.denoiser import DenoiserNet, save_denoiser, train_denoiser

    x = torch.rand(1, 3, 20, 20)
    assert torch.equal(DenoiserNet(8, 3)(x), x)                 # it starts as the identity
    protected, clean = _smooth_pairs(12, seed=0)
    net, losses = train_denoiser(protected[:8], clean[:8], steps=200, lr=3e-3, batch=8, crop=32, width=16, depth=4,
                                 seed=0)
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:5])
    with torch.no_grad():
        gains = [psnr(net(p[None])[0].clamp(0, 1), c) - psnr(p, c) for p, c in zip(protected[8:], clean[8:])]
    assert min(gains) > 2.0, gains                                # dB, on pairs it never saw
    path = save_denoiser(net, tmp_path / "d.safetensors", {"protection": "test"})
    purifier = PURIFIERS.create("denoiser", weights=str(path), sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    assert purifier.about == {"protection": "test"}
    with torch.no_grad():
        expected = net(protected[9][None])[0].clamp(0, 1)
    assert torch.allclose(purify(None, [protected[9]], "denoiser", weights=str(path))[0], expected, atol=1e-6)
    with pytest.raises(ValueError, match=r"its SHA-256 is [0-9a-f]{12}\.\.\., not the 000000000000\.\.\. asked for "
                                         r"\(the file was retrained or replaced\)$"):
        PURIFIERS.create("denoiser", weights=str(path), sha256="0" * 64)
    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    (tmp_path / "d.pt").write_bytes(b"not a pickle we would open")
    for weights, words in ((tmp_path / "other.safetensors", "not an artshield denoiser"),
                           (tmp_path / "d.pt", ".safetensors file only"), (tmp_path / "none.safetensors", "no such file")):
        with pytest.raises(ValueError, match=words):
            PURIFIERS.create("denoiser", weights=str(weights))
    (tmp_path / "in").mkdir()
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(tmp_path / "in" / "a.png")
    capsys.readouterr()
    assert main(["purify", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--method", "denoiser", "--option",
                 f"weights={tmp_path / 'd.pt'}", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "d.pt" in err and "safetensors" in err


def test_the_denoiser_gives_a_large_image_the_same_pixels_in_tiles(monkeypatch, tmp_path):
    from artshield.purify import denoiser

    torch.manual_seed(0)
    net = denoiser.DenoiserNet(6, 4)
    for conv in net.convs:
        torch.nn.init.normal_(conv.weight, std=0.3)
    purifier = PURIFIERS.create("denoiser", weights=str(denoiser.save_denoiser(net, tmp_path / "n.safetensors")))
    x = torch.rand(3, 37, 45, generator=torch.Generator().manual_seed(1))
    whole = purifier.one(x, None)
    monkeypatch.setattr(denoiser, "TILE", 16)
    tiled = purifier.one(x, None)
    assert not torch.allclose(whole, x, atol=1e-3) and torch.allclose(tiled, whole, atol=1e-5)


def test_the_committed_adaptive_attack_record_describes_the_shipped_denoiser():
    """docs/results/adaptive/results.json was made with the denoiser artshield ships, trained on
    themes the bench never scores."""
    import hashlib
    from pathlib import Path

    from artshield.purify.denoiser import SHIPPED, load_denoiser

    record = json.loads((Path(__file__).parent.parent / "docs" / "results" / "adaptive" / "results.json").read_text())
    shipped = SHIPPED / f"{record['weights']}.safetensors"
    assert hashlib.sha256(shipped.read_bytes()).hexdigest() == record["weights_sha256"]
    _, about = load_denoiser(record["weights"])
    assert about["protection"] == record["protection"] and about["pairs"] == record["pairs"]
    from artshield import corpus

    assert about["themes"] and set(about["themes"]).isdisjoint(corpus.themes(heldout=True))   # never a scored artist


def test_the_filters_known_answers_jpeg_noise_and_blur():
    """Each filter against an answer computed here by other means: JPEG is Pillow's own encode and
    decode at the quality asked (colour and grey), noise is the seeded draw added and clipped, the
    blur of a corner impulse is OpenCV's separable kernel for the size, with the border reflected
    (the edge pixel repeated, BORDER_REFLECT)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 24, 20, generator=g)
    grey = torch.rand(1, 24, 20, generator=g)
    for image in (x, grey):
        array = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(array[..., 0] if array.shape[2] == 1 else array).save(buf, "JPEG", quality=30)
        expected = np.array(Image.open(io.BytesIO(buf.getvalue()))).reshape(array.shape)
        out = purify(None, [image], "jpeg", quality=30)[0]
        assert out.shape == image.shape
        assert torch.equal((out * 255).round().to(torch.uint8).permute(1, 2, 0), torch.from_numpy(expected))
    edge = torch.zeros(3, 16, 16)
    edge[:, :, 8:] = 1.0                                   # half black, half white: the clip matters both ways
    draw = torch.randn(edge.shape, generator=torch.Generator().manual_seed(5)) * 0.3
    out = PURIFIERS.create("gaussian-noise", sigma=0.3).one(edge, torch.Generator().manual_seed(5))
    assert torch.allclose(out, (edge + draw).clamp(0, 1)) and out.min() == 0 and out.max() == 1
    # sigma 0 on kernels up to 7 px: OpenCV's fixed binomial-like taps; an even kernel is made odd (4 -> 5);
    # a sigma given: the Gaussian of that sigma
    gauss = np.exp(-np.arange(-3, 4) ** 2 / (2 * 2.0 ** 2))
    for kernel, sigma, taps in ((7, 0, np.array([1, 3.5, 7, 9, 7, 3.5, 1]) / 32), (4, 0, np.array([1, 4, 6, 4, 1]) / 16),
                                (7, 2.0, gauss / gauss.sum())):
        k = len(taps)
        impulse = np.zeros((12, 12))
        impulse[0, 0] = 1.0
        padded = np.pad(impulse, k // 2, mode="symmetric")  # BORDER_REFLECT: the edge pixel is repeated
        rows = np.stack([np.convolve(r, taps, mode="valid") for r in padded])
        both = np.stack([np.convolve(c, taps, mode="valid") for c in rows.T]).T
        image = torch.from_numpy(impulse).float()[None].repeat(3, 1, 1)
        out = PURIFIERS.create("gaussian-blur", kernel=kernel, sigma=sigma).one(image, None)
        assert out.shape == image.shape
        assert np.abs(out[0].numpy() - both).max() <= 1 / 255 + 1e-6, kernel


def test_the_purifiers_base_clamps_converts_without_sharing_memory_and_counts_each_image(monkeypatch):
    from artshield.purify import base

    x = torch.tensor([[[-0.2, 0.5], [1.3, 1.0]]]).repeat(3, 1, 1)
    assert base.to_uint8(x)[..., 0].tolist() == [[0, 128], [255, 255]]          # out of range: clipped, not wrapped
    array = np.array([[0, 51], [255, 102]], dtype=np.uint8)
    t = base.from_uint8(array)
    array[0, 0] = 255                                                           # the tensor is a copy
    assert t.shape == (1, 2, 2) and t.dtype == torch.float32 and torch.equal(t.flatten() * 255, torch.tensor([0., 51, 255, 102]))
    assert float(base.from_uint8(np.array([[[7]]], dtype=np.int64) + 256)) * 255 == pytest.approx(7)   # read as uint8
    purifier = PURIFIERS.create("median")
    monkeypatch.setattr(purifier, "one", lambda image, generator: image * 3 - 1)  # a purifier that overshoots
    counted = []
    out = purifier.run([x, x[:, :1]], progress=counted.append)
    assert counted == [1, 1] and purifier.total_steps(2) == 2
    assert all(o.min() >= 0 and o.max() <= 1 for o in out) and out[0][0, 0, 0] == 0 and out[0][0, 1, 0] == 1


def _box_mean(a: np.ndarray, r: int) -> np.ndarray:
    """Mean over each (2r + 1)^2 window of an (H, W, C) array, the edge pixel repeated at the border."""
    k = 2 * r + 1
    p = np.pad(a.astype(np.float64), ((r, r), (r, r), (0, 0)), mode="symmetric")
    c = np.pad(p, ((1, 0), (1, 0), (0, 0))).cumsum(0).cumsum(1)
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / k ** 2


def _guided(guide: np.ndarray, source: np.ndarray, r: int, eps: float) -> np.ndarray:
    mi, mp = _box_mean(guide, r), _box_mean(source, r)
    a = (_box_mean(guide * source, r) - mi * mp) / (_box_mean(guide * guide, r) - mi * mi + eps)
    return _box_mean(a, r) * guide + _box_mean(mp - a * mi, r)


def test_the_bilateral_purifier_is_opencvs_filter_then_he_et_als_guided_filter_in_colour_and_grey(monkeypatch):
    """Known answers from an independent guided filter (integral-image box means): on a non-square
    image, so that a window wrong on one axis shows; then the whole purifier, colour and grey; and
    with a guided filter that overshoots, the clip to 0-255 on both sides."""
    import cv2

    from artshield.purify import bilateral

    rng = np.random.default_rng(0)
    guide = rng.integers(0, 256, (13, 19, 3)).astype(np.float32)
    source = rng.integers(0, 256, (13, 19, 3)).astype(np.float32)
    assert np.abs(guided_filter(guide, source, 2, 10.0) - _guided(guide, source, 2, 10.0)).max() < 1e-2
    one = guided_filter(guide[..., :1], source[..., :1], 2, 10.0)      # OpenCV drops a lone channel's axis
    assert one.shape == (13, 19, 1) and np.abs(one - _guided(guide[..., :1], source[..., :1], 2, 10.0)).max() < 1e-2
    for channels in (3, 1):
        array = rng.integers(0, 256, (14, 11, channels)).astype(np.uint8)
        image = torch.from_numpy(array).permute(2, 0, 1).float() / 255
        colour = np.repeat(array, 3, axis=2) if channels == 1 else array     # as cv2.imread reads a grey file
        x = colour
        for _ in range(3):
            x = cv2.bilateralFilter(x, 5, 30.0, 8.0)
        y = _guided(colour.astype(np.float64), x.astype(np.float64), 2, 0.5)
        expected = np.clip(np.round(y), 0, 255)[..., :channels]
        out = PURIFIERS.create("bilateral", passes=3, sigma_color=30.0, guided_passes=1, guided_radius=2,
                               guided_eps=0.5).one(image, None)
        assert out.shape == image.shape
        assert np.abs(out.permute(1, 2, 0).numpy() * 255 - expected).max() <= 1.0 + 1e-4, channels
        plain = PURIFIERS.create("bilateral", passes=2, guided_passes=0).one(image, None)
        x = cv2.bilateralFilter(cv2.bilateralFilter(colour, 5, 8.0, 8.0), 5, 8.0, 8.0)[..., :channels]
        assert torch.equal(plain, torch.from_numpy(x.copy()).permute(2, 0, 1) / 255)
        if channels == 1:                    # OpenCV on the one channel would have smoothed more
            alone = cv2.bilateralFilter(cv2.bilateralFilter(array[..., 0], 5, 8.0, 8.0), 5, 8.0, 8.0)
            assert np.abs(alone.astype(float) - x[..., 0]).max() >= 2
        with monkeypatch.context() as m:
            m.setattr(bilateral, "guided_filter", lambda guide, source, radius, eps: source * 3 - 255.4)
            over = PURIFIERS.create("bilateral", passes=0, guided_passes=1).one(image, None)
        expected = np.clip(np.round(array.astype(np.float64) * 3 - 255.4), 0, 255)
        assert expected.min() == 0 and expected.max() == 255
        assert np.array_equal(over.permute(1, 2, 0).numpy() * 255, expected.astype(np.float32)) or \
            np.abs(over.permute(1, 2, 0).numpy() * 255 - expected).max() < 1e-3


@pytest.mark.parametrize("method", ["bilateral", "jpeg", "gaussian-noise", "gaussian-blur", "median", "denoiser",
                                    "diffpure", "noisy-redraw", "impress"])
def test_every_purifier_keeps_a_grey_image_grey(method, tiny_bundle):
    """A one-channel image (a greyscale scan) comes back one-channel, same size, in [0, 1]: the
    bilateral filter and the denoiser each failed on one before."""
    options = {"diffpure": {"steps": 10}, "impress": {"iterations": 2}}.get(method, {})
    grey = torch.rand(1, 24, 20, generator=torch.Generator().manual_seed(3))
    (out,) = purify(tiny_bundle if PURIFIERS[method].needs_model else None, [grey], method, **options)
    assert out.shape == grey.shape and out.min() >= 0 and out.max() <= 1 and torch.isfinite(out).all()


def test_the_median_filter_is_the_median_of_each_window_and_even_sizes_are_made_odd():
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.integers(0, 256, (3, 12, 14)).astype(np.float32) / 255)

    def by_hand(r):         # each window's median, the edge pixel repeated (OpenCV's border for medianBlur)
        p = np.pad((x * 255).round().numpy().astype(np.uint8), ((0, 0), (r, r), (r, r)), mode="edge")
        return np.stack([[[np.median(p[c, i:i + 2 * r + 1, j:j + 2 * r + 1]) for j in range(14)] for i in range(12)]
                         for c in range(3)]) / 255
    for kernel, r in ((3, 1), (4, 2), (5, 2)):
        out = PURIFIERS.create("median", kernel=kernel).run([x])[0]
        assert np.abs(out.numpy() - by_hand(r)).max() < 1e-6, kernel


def _reflect_conv_stack(x, layers):
    """The residual network written out: 3x3 convolutions over a reflected one-pixel border, a ReLU
    after every layer but the last (`layers`: (weight, bias) pairs)."""
    import torch.nn.functional as F

    h = x
    for i, (weight, bias) in enumerate(layers):
        h = F.conv2d(F.pad(h, (1, 1, 1, 1), mode="reflect"), weight, bias)
        h = h if i == len(layers) - 1 else h.clamp(min=0)
    return h


def test_the_denoiser_network_is_the_input_minus_a_reflect_padded_convolution_stack(tmp_path):
    """Random weights and the shipped robust-16 weights (read from the file by safetensors, not by
    artshield) against the network written out; the shapes of an architecture; an untrained network
    is exactly the identity; the smallest and refused architectures."""
    from safetensors.torch import load_file

    from artshield.purify.denoiser import DenoiserNet, load_denoiser, resolve

    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 11, 9, generator=g)
    net = DenoiserNet(5, 3)
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in net.convs] == [(3, 5, (3, 3)), (5, 5, (3, 3)),
                                                                                  (5, 3, (3, 3))]
    assert (net.width, net.depth, net.reach) == (5, 3, 3)
    assert torch.equal(net(x), x) and not net.convs[0].weight.eq(0).all()     # only the last layer starts at zero
    with torch.no_grad():
        for conv in net.convs:
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 0.4)
            conv.bias.copy_(torch.randn(conv.bias.shape, generator=g) * 0.2 - 0.1)
        got = net(x)
    want = x - _reflect_conv_stack(x, [(c.weight, c.bias) for c in net.convs])
    assert torch.allclose(got, want, atol=1e-5) and not torch.allclose(got, x, atol=1e-2)

    shipped, about = load_denoiser("robust-16")
    tensors = load_file(str(resolve("robust-16")))
    layers = [(tensors[f"convs.{i}.weight"], tensors[f"convs.{i}.bias"]) for i in range(len(tensors) // 2)]
    assert shipped.depth == len(layers) == 6 and shipped.width == 32 and not shipped.training
    with torch.no_grad():
        got = shipped(x)
    assert torch.allclose(got, x - _reflect_conv_stack(x, layers), atol=1e-5)
    assert (got - x).abs().max() > 1e-3                        # the shipped network is not the identity

    assert DenoiserNet(1, 2)(x).shape == x.shape
    assert (DenoiserNet().width, DenoiserNet().depth) == (shipped.width, shipped.depth)   # the defaults: the shipped
    for width, depth in ((0, 3), (4, 1)):
        with pytest.raises(ValueError, match="width >= 1 and depth >= 2"):
            DenoiserNet(width, depth)


def test_the_denoiser_purifier_on_grey_tiny_and_colour_images(tmp_path):
    """Colour: the network's output unclamped by the purifier's `one` (the base clamps); grey: the mean
    of the colour result for the grey image in every channel; a side under two pixels (no reflection
    possible) is returned as it came."""
    from artshield.purify.denoiser import DenoiserNet, save_denoiser

    net = DenoiserNet(4, 2)
    with torch.no_grad():
        for conv in net.convs:
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=torch.Generator().manual_seed(5)) * 0.5)
    purifier = PURIFIERS.create("denoiser", weights=str(save_denoiser(net, tmp_path / "n.safetensors")))
    g = torch.Generator().manual_seed(1)
    colour, grey = torch.rand(3, 6, 7, generator=g), torch.rand(1, 6, 7, generator=g)
    with torch.no_grad():
        assert torch.allclose(purifier.one(colour, None), net(colour[None])[0], atol=1e-6)
        want = net(grey.expand(3, -1, -1)[None])[0].mean(0, keepdim=True)
    assert purifier.one(grey, None).shape == (1, 6, 7) and torch.allclose(purifier.one(grey, None), want, atol=1e-6)
    for thin in (torch.rand(3, 1, 7, generator=g), torch.rand(3, 7, 1, generator=g)):
        assert torch.equal(purifier.one(thin, None), thin)
    two = torch.rand(3, 2, 2, generator=g)
    with torch.no_grad():
        assert torch.allclose(purifier.one(two, None), net(two[None])[0], atol=1e-6)


def test_train_denoiser_checks_its_pairs_takes_whole_small_images_and_steps_at_its_learning_rate():
    """Refused inputs; an image no larger than the crop is used whole (its only position); one
    training step moves the zero-initialised last layer by Adam's first step, the learning rate; the
    loss of every step is returned, the network in eval mode with the asked architecture; the seed
    decides the result; the defaults are the ones the shipped denoiser's record was trained with."""
    import inspect

    from artshield.purify.denoiser import train_denoiser

    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 8, 8, generator=g), torch.rand(3, 8, 8, generator=g)
    same = r"must be the same \(3, H, W\) shape"
    for protected, clean, words in (([], [], "needs pairs"), ([a], [a, b], "needs pairs"),
                                    ([a], [a[:, :7]], same), ([a[:1]], [a[:1]], same), ([a[0]], [a[0]], same)):
        with pytest.raises(ValueError, match=words):
            train_denoiser(protected, clean, steps=1)
    calls = []
    net, losses = train_denoiser([a], [b], steps=1, lr=2e-3, batch=2, crop=48, width=3, depth=2, progress=calls.append)
    assert len(losses) == 1 and calls == [1] and not net.training and (net.width, net.depth) == (3, 2)
    last = net.convs[-1]
    assert torch.allclose(last.weight.abs().max(), torch.tensor(2e-3), rtol=1e-3)   # Adam's first step is lr
    assert torch.allclose(last.bias.abs(), torch.full((3,), 2e-3), rtol=1e-3)
    # loss of step one: the pair whole, flipped or not, through the identity network: the mean squared gap
    assert losses[0] == pytest.approx(float((a - b).pow(2).mean()), rel=1e-5)
    big = [torch.rand(3, 12, 10, generator=g) for _ in range(3)]
    runs = [train_denoiser(big, big[::-1], steps=3, batch=2, crop=5, width=3, depth=2, seed=s)[1] for s in (0, 0, 1)]
    wide = [torch.rand(3, 8, 20, generator=g) for _ in range(2)]        # the crop is cut to the shorter side
    assert len(train_denoiser(wide, wide[::-1], steps=4, batch=2, crop=10, width=3, depth=2)[1]) == 4
    # the defaults as a caller who names none gets them (steps aside: a full run)
    large = [torch.rand(3, 50, 50, generator=g) for _ in range(2)]
    named = dict(lr=1e-3, batch=16, crop=48, seed=0)
    assert train_denoiser(large, large[::-1], steps=2, width=3, depth=2)[1] == train_denoiser(
        large, large[::-1], steps=2, width=3, depth=2, **named)[1]
    assert (lambda n: (n.width, n.depth))(train_denoiser([a], [b], steps=1)[0]) == (32, 6)
    assert runs[0] == runs[1] and runs[0] != runs[2] and len(runs[0]) == 3
    record = json.loads((__import__("pathlib").Path(__file__).parent.parent / "docs" / "results" / "adaptive"
                         / "results.json").read_text())
    defaults = {k: p.default for k, p in inspect.signature(train_denoiser).parameters.items()}
    assert {k: defaults[k] for k in ("steps", "lr", "width", "depth", "seed")} == {
        k: record[k] for k in ("steps", "lr", "width", "depth", "seed")}
    assert (defaults["batch"], defaults["crop"]) == (16, 48)


def test_a_saved_denoiser_records_its_architecture_and_refuses_diverged_or_mismatched_weights(tmp_path, monkeypatch):
    """The file's metadata (artshield, width, depth, about) as safetensors reads it; NaN weights are
    not written; a file whose tensors do not fit its stated architecture, or that holds NaN, or that
    is not safetensors at all, is refused naming the file; a shipped name with a slash is a path."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from artshield.purify.denoiser import DenoiserNet, load_denoiser, resolve, save_denoiser

    net = DenoiserNet(4, 3)
    path = save_denoiser(net, tmp_path / "sub" / "dir" / "n.safetensors", {"b": 1, "a": [2]})
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta == {"artshield": "denoiser", "width": "4", "depth": "3", "about": '{"a": [2], "b": 1}'}
    assert load_denoiser(path)[1] == {"a": [2], "b": 1}
    assert load_denoiser(save_denoiser(net, tmp_path / "plain.safetensors"))[1] == {}
    with torch.no_grad():
        net.convs[0].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"^the denoiser's training diverged \(NaN or infinite weights\): nothing was "
                                         r"written$"):
        save_denoiser(net, tmp_path / "nan.safetensors")
    assert not (tmp_path / "nan.safetensors").exists()
    good = DenoiserNet(4, 3).state_dict()
    cases = {"wide": ({"artshield": "denoiser", "width": "5", "depth": "3"}, good, "do not fit"),
             "deep": ({"artshield": "denoiser", "width": "4", "depth": "4"}, good, "do not fit"),
             "unsized": ({"artshield": "denoiser", "depth": "3"}, good, "do not fit"),
             "nan": ({"artshield": "denoiser", "width": "4", "depth": "3"},
                     {**good, "convs.1.bias": torch.full((4,), float("inf"))}, "NaN or infinite")}
    for name, (metadata, tensors, words) in cases.items():
        save_file(tensors, str(tmp_path / f"{name}.safetensors"), metadata=metadata)
        with pytest.raises(ValueError, match=words) as caught:
            load_denoiser(tmp_path / f"{name}.safetensors")
        assert f"{name}.safetensors" in str(caught.value)
    for about, want in ((None, {}), ("", {}), ('{"x": 1}', {"x": 1})):       # no record, an empty one, a record
        metadata = {"artshield": "denoiser", "width": "4", "depth": "3", **({} if about is None else {"about": about})}
        save_file(good, str(tmp_path / "about.safetensors"), metadata=metadata)
        assert load_denoiser(tmp_path / "about.safetensors")[1] == want
    (tmp_path / "junk.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    with pytest.raises(ValueError, match=r"not a readable safetensors file \(.+\)") as caught:
        load_denoiser(tmp_path / "junk.safetensors")
    assert "(None)" not in str(caught.value)
    save_file(good, str(tmp_path / "wide2.safetensors"), metadata={"artshield": "denoiser", "width": "5", "depth": "3"})
    with pytest.raises(ValueError, match=r"do not fit its stated architecture \(Error\(s\) in loading state_dict"):
        load_denoiser(tmp_path / "wide2.safetensors")
    (tmp_path / "robust-16").mkdir()
    with pytest.raises(ValueError, match="no such file"):
        resolve(str(tmp_path / "robust-16"))
    assert resolve("robust-16").name == "robust-16.safetensors"
    with pytest.raises(ValueError, match=r"\(shipped: robust-16\)$"):
        resolve("robust-99")
    with pytest.raises(ValueError, match="no such file"):          # a name with a slash is a path, not a shipped name
        resolve("../denoisers/robust-16")
    from artshield.purify import denoiser

    for names, listed in (([], "none"), (["b", "a"], "a, b")):
        shelf = tmp_path / f"shelf{len(names)}"
        shelf.mkdir()
        for name in names:
            save_denoiser(DenoiserNet(2, 2), shelf / f"{name}.safetensors")
        with monkeypatch.context() as m:
            m.setattr(denoiser, "SHIPPED", shelf)
            with pytest.raises(ValueError, match=rf"\(shipped: {listed}\)$"):
                resolve("robust-16")
    import types

    owner = types.SimpleNamespace(device="cpu")
    assert PURIFIERS.create("denoiser", owner).bundle is owner


def test_the_model_purifiers_options_are_the_papers_defaults_within_their_stated_ranges():
    """Each default is the setting the module's docstring cites from its paper, and each range
    admits its ends and refuses just past them."""
    import re

    from artshield.purify import diffpure, impress, noisy_upscale

    assert "t* = 0.15 is DiffPure's ImageNet setting" in diffpure.__doc__
    assert (diffpure.DiffPureConfig().t_star, diffpure.DiffPureConfig().steps) == (0.15, 100)
    glaze_case = impress.__doc__.split("(the PhotoGuard")[0]
    cited = {" ".join(k.split()): v for k, v in re.findall(r"(delta|lr|alpha|initial\s+noise)\s+([0-9.]+)", glaze_case)}
    config = impress.ImpressConfig()
    assert {k: float(v) for k, v in cited.items()} == {"delta": config.delta, "lr": config.lr, "alpha": config.alpha,
                                                       "initial noise": config.init_noise}
    assert "3000 iterations" in impress.__doc__ and config.iterations == 3000
    assert "noise sigma = 0.1" in noisy_upscale.__doc__ and "strength 0.25" in noisy_upscale.__doc__
    assert "*told* `noise_level` = 320 but only `added_noise_level` = 0" in " ".join(noisy_upscale.__doc__.split())
    redraw, upscale = noisy_upscale.NoisyRedrawConfig(), noisy_upscale.NoisyUpscaleConfig()
    assert (redraw.sigma, redraw.strength, redraw.prompt) == (0.1, 0.25, None)
    assert (upscale.sigma, upscale.noise_level, upscale.added_noise_level, upscale.upscaler_steps, upscale.prompt,
            upscale.upscaler) == (0.1, 320, 0, 75, None, None)
    ranges = [(diffpure.DiffPureConfig, "t_star", [1e-6, 1.0], [0.0, 1.001]),
              (diffpure.DiffPureConfig, "steps", [1, 1000], [0, 1001]),
              (impress.ImpressConfig, "iterations", [1, 1_000_000], [0, 1_000_001]),
              (impress.ImpressConfig, "lr", [1e-9], [0.0]),
              (impress.ImpressConfig, "alpha", [0.0, 50.0], [-0.01]),
              (impress.ImpressConfig, "delta", [0.0, 1.0], [-0.01, 1.01]),
              (impress.ImpressConfig, "init_noise", [0.0, 1.0], [-0.01, 1.01]),
              (noisy_upscale.NoisyRedrawConfig, "sigma", [0.0, 1.0], [-0.01, 1.01]),
              (noisy_upscale.NoisyRedrawConfig, "strength", [1e-6, 1.0], [0.0, 1.01]),
              (noisy_upscale.NoisyUpscaleConfig, "sigma", [0.0, 1.0], [-0.01, 1.01]),
              (noisy_upscale.NoisyUpscaleConfig, "noise_level", [0, 350], [-1, 351]),
              (noisy_upscale.NoisyUpscaleConfig, "added_noise_level", [0], [-1, 351]),
              (noisy_upscale.NoisyUpscaleConfig, "upscaler_steps", [1, 1000], [0, 1001])]
    for kind, name, admitted, refused in ranges:
        for value in admitted:
            assert getattr(kind(**{name: value}), name) == value
        for value in refused:
            with pytest.raises(ValueError, match=name):
                kind(**{name: value})
    assert noisy_upscale.NoisyUpscaleConfig(noise_level=350, added_noise_level=350).added_noise_level == 350


def test_diffpure_and_noisy_redraw_send_the_canvas_view_through_img2img_with_their_settings(tiny_bundle, monkeypatch):
    """img2img replaced by a recorder that returns a known image: DiffPure sends the model's canvas
    view with an empty prompt, t*, its step grid, no guidance and ancestral steps (eta 1); noisy-redraw
    sends the seeded noisy image's canvas view with the model's generic prompt (or the one given) at
    its strength; both bring the returned image back to the input's size and channels."""
    from artshield.purify import diffpure, noisy_upscale
    from artshield.purify._redraw import from_canvas, to_canvas

    calls = []

    def recorder(bundle, images, prompts, strength, generator, **settings):
        calls.append((images.clone(), prompts, strength, generator, settings))
        return 1 - images

    monkeypatch.setattr(diffpure, "img2img", recorder)
    monkeypatch.setattr(noisy_upscale, "img2img", recorder)
    g = torch.Generator().manual_seed(0)
    for image in (torch.rand(3, 20, 28, generator=g), torch.rand(1, 12, 12, generator=g)):
        calls.clear()
        purifier = PURIFIERS.create("diffpure", tiny_bundle, t_star=0.3, steps=40)
        generator = torch.Generator().manual_seed(1)
        out = purifier.one(image, generator)
        (sent, prompts, strength, used, settings), = calls
        assert torch.equal(sent, to_canvas(tiny_bundle, image)) and prompts == [""] and strength == 0.3
        assert used is generator and settings == {"steps": 40, "guidance": 1.0, "eta": 1.0}
        assert torch.equal(out, from_canvas(1 - sent, image)) and out.shape == image.shape

        for options, prompt in (({"sigma": 0.2, "strength": 0.4}, tiny_bundle.conventions.generic_prompt),
                                ({"prompt": "a red apple"}, "a red apple")):
            calls.clear()
            purifier = PURIFIERS.create("noisy-redraw", tiny_bundle, **options)
            out = purifier.one(image, torch.Generator().manual_seed(2))
            sigma = options.get("sigma", 0.1)
            noisy = (image + torch.randn(image.shape, generator=torch.Generator().manual_seed(2)) * sigma).clamp(0, 1)
            (sent, prompts, strength, _, settings), = calls
            assert torch.equal(sent, to_canvas(tiny_bundle, noisy)) and prompts == [prompt] and settings == {}
            assert strength == options.get("strength", 0.25) and (noisy - image).abs().max() > 0.05
            assert torch.equal(out, from_canvas(1 - sent, image))


def test_noisy_upscale_sends_the_noisy_training_size_view_and_noises_only_what_it_adds(tiny_bundle, tmp_path):
    """The pipeline replaced by a recorder: it gets the seeded noisy canvas view, the prompt, the
    level it is told, its steps and the generator, and its image comes back at the input's size.
    The low-resolution scheduler, patched, noises at the told level minus the unadded part (never
    below zero), exactly as the stock scheduler at that level. Folders that are not an upscaler, or
    whose weights hold NaN, are refused; only mini has a default upscaler."""
    import types

    from diffusers import DDPMScheduler
    from safetensors.torch import load_file, save_file

    from artshield.models.tiny import make_tiny_upscaler
    from artshield.purify import noisy_upscale
    from artshield.purify._redraw import from_canvas, to_canvas

    folder = make_tiny_upscaler(tmp_path / "upscaler")
    purifier = PURIFIERS.create("noisy-upscale", tiny_bundle, upscaler=str(folder), sigma=0.3, upscaler_steps=3,
                                prompt="ink")
    calls = []

    def pipe(**kwargs):
        calls.append(kwargs)
        return types.SimpleNamespace(images=kwargs["image"].flip(-1).repeat_interleave(4, -1).repeat_interleave(4, -2))

    purifier.pipe = pipe
    for image in (torch.rand(3, 24, 36, generator=torch.Generator().manual_seed(0)), torch.rand(1, 10, 10)):
        calls.clear()
        generator = torch.Generator().manual_seed(4)
        out = purifier.one(image, generator)
        small = to_canvas(tiny_bundle, image)[0]
        noisy = (small + torch.randn(small.shape, generator=torch.Generator().manual_seed(4)) * 0.3).clamp(0, 1)
        (kw,) = calls
        assert torch.equal(kw["image"], noisy[None]) and kw["generator"] is generator
        assert (kw["prompt"], kw["noise_level"], kw["num_inference_steps"], kw["output_type"]) == ("ink", 320, 3, "pt")
        big = noisy[None].flip(-1).repeat_interleave(4, -1).repeat_interleave(4, -2)
        assert torch.equal(out, from_canvas(big, image)) and out.shape == image.shape
    generic = PURIFIERS.create("noisy-upscale", tiny_bundle, upscaler=str(folder))
    generic.pipe = pipe
    calls.clear()
    generic.one(torch.rand(3, 8, 8), torch.Generator().manual_seed(0))
    assert calls[0]["prompt"] == tiny_bundle.conventions.generic_prompt

    stock = DDPMScheduler.from_pretrained(folder / "low_res_scheduler")
    sample, noise = torch.rand(1, 3, 8, 8), torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    for told, added in ((320, 0), (100, 60), (200, 200)):
        patched = PURIFIERS.create("noisy-upscale", tiny_bundle, upscaler=str(folder), noise_level=told,
                                   added_noise_level=added).pipe.low_res_scheduler
        for level in (told, told - 10, 0):
            want = stock.add_noise(sample, noise, torch.tensor([max(level - (told - added), 0)]))
            assert torch.equal(patched.add_noise(sample, noise, torch.tensor([level])), want), (told, added, level)
    assert not torch.equal(stock.add_noise(sample, noise, torch.tensor([40])), sample)

    with pytest.raises(ValueError, match="no model_index.json"):
        PURIFIERS.create("noisy-upscale", tiny_bundle, upscaler=str(tmp_path))
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(str(weights))
    pickled = make_tiny_upscaler(tmp_path / "pickled")                # weights only as a pickle: never loaded
    torch.save(tensors, pickled / "unet" / "diffusion_pytorch_model.bin")
    (pickled / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ValueError, match=r"cannot load it .*pickled \.bin weights are never loaded"):
        PURIFIERS.create("noisy-upscale", tiny_bundle, upscaler=str(pickled))
    first = next(iter(tensors))
    tensors[first] = torch.full_like(tensors[first], float("nan"))
    save_file(tensors, str(weights))
    with pytest.raises(ValueError, match="its unet weights hold NaN"):
        PURIFIERS.create("noisy-upscale", tiny_bundle, upscaler=str(folder))
    with pytest.raises(ValueError, match=r"^needs an upscaler that is not the attacked model: upscaler=DIR, a diffusers "
                                         r"StableDiffusionUpscalePipeline folder; noisy-redraw redraws with the model "
                                         r"itself$"):
        PURIFIERS.create("noisy-upscale", tiny_bundle)
    like_mini = types.SimpleNamespace(spec="mini", device=torch.device("cpu"), conventions=tiny_bundle.conventions)
    own = PURIFIERS.create("noisy-upscale", like_mini)          # mini's own upscaler, unnamed
    assert own.upscaler == str(noisy_upscale.MINI_UPSCALER_DIR)
    assert noisy_upscale.default_upscaler(types.SimpleNamespace(spec="mini")) == str(noisy_upscale.MINI_UPSCALER_DIR)
    assert noisy_upscale.default_upscaler(types.SimpleNamespace(spec="tiny")) is None
    assert noisy_upscale.default_upscaler(object()) is None


def test_impress_is_adam_on_consistency_plus_the_lpips_hinge_written_out(tiny_bundle):
    """IMPRESS against its objective optimised here by hand: Adam's update and the cosine schedule
    written out, the consistency of the model's canvas view under the autoencoder plus alpha times
    the LPIPS excess over delta, from the protected image plus seeded noise, clipped to [0, 1]. One
    case has the hinge active, a grey one has it at the defaults."""
    import math

    import torch.nn.functional as F

    from artshield.metrics.image import perceptual_size
    from artshield.metrics.lpips import lpips_model
    from artshield.models.views import canvas

    lpips = lpips_model("cpu")
    g = torch.Generator().manual_seed(0)
    cases = [(torch.rand(3, 20, 28, generator=g), {"iterations": 3, "lr": 0.05, "alpha": 0.7, "delta": 0.01,
                                                   "init_noise": 0.2}),
             (torch.rand(1, 16, 16, generator=g), {"iterations": 2})]
    for image, options in cases:
        c = {"lr": 0.01, "alpha": 0.1, "delta": 0.1, "init_noise": 0.1, **options}
        rgb = image.expand(3, -1, -1)[None]
        ref = perceptual_size(rgb, 512)
        size = canvas(tiny_bundle, *image.shape[-2:])
        x = (image + torch.randn(image.shape, generator=torch.Generator().manual_seed(9)) * c["init_noise"]).clamp(0, 1)
        m, v, hinges = torch.zeros_like(x), torch.zeros_like(x), []
        for t in range(c["iterations"]):
            xt = x.clone().requires_grad_(True)
            seen = xt.clamp(0, 1).expand(3, -1, -1)[None]
            view = F.interpolate(seen, size=size, mode="bilinear", antialias=True, align_corners=False)
            consistency = ((view - tiny_bundle.decode(tiny_bundle.encode(view))) ** 2).mean()
            excess = lpips(perceptual_size(seen, 512), ref)[0] - c["delta"]
            hinges.append(float(excess.detach()))
            (grad,) = torch.autograd.grad(consistency + c["alpha"] * excess.clamp(min=0), xt)
            m, v = 0.9 * m + 0.1 * grad, 0.999 * v + 0.001 * grad ** 2
            lr = c["lr"] * (1 + math.cos(math.pi * t / c["iterations"])) / 2
            x = x - lr * (m / (1 - 0.9 ** (t + 1))) / ((v / (1 - 0.999 ** (t + 1))).sqrt() + 1e-8)
        purifier = PURIFIERS.create("impress", tiny_bundle, **options)
        out = purifier.one(image, torch.Generator().manual_seed(9))
        assert out.shape == image.shape and torch.allclose(out, x.clamp(0, 1), atol=2e-5)
        assert (out - image).abs().max() > 0.05
        if len(options) > 1:
            assert min(hinges) > 0.01            # the LPIPS term acts at every step of this case
