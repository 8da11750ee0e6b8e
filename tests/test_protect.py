"""protect: the engine's budget, the transforms, every method through the CLI on tiny components,
and each method doing its job on mini against a same-budget random-noise baseline."""
import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from artshield import corpus
from artshield.cli import main
from artshield.protect import METHODS, protect
from artshield.models.views import fit_view, model_views
from artshield.protect.engine import PGD, Budget, random_deltas
from artshield.protect.transforms import TRANSFORMS, jpeg


def eight_bit(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=g).float() / 255


@pytest.mark.parametrize("budget", [8, 6.375, 1])
def test_pgd_deltas_stay_on_the_8_bit_grid_within_the_budget(budget):
    images = [eight_bit(3, 20, 20), eight_bit(3, 17, 40, seed=1), eight_bit(1, 24, 18, seed=2)]
    images[0][:, :5] = 1.0      # saturated pixels: the clamp to [0, 1] must hold too
    images[0][:, 5:10] = 0.0
    pgd = PGD(images, Budget(linf=budget, step=3, steps=4), size=16, generator=torch.Generator().manual_seed(0))
    pgd.run(lambda v: (v * torch.linspace(-1, 1, v.numel()).view_as(v)).sum())
    for x, d in zip(images, pgd.deltas()):
        assert d.shape == x.shape
        steps = d * 255
        assert torch.allclose(steps, steps.round(), atol=1e-4)          # multiples of 1/255
        assert steps.abs().max() <= int(budget) + 1e-4                   # floor(budget) on the grid
        assert ((x + d) >= 0).all() and ((x + d) <= 1).all()
        assert steps.abs().max() >= int(budget) - 1e-4                   # and the budget is used


def test_view_covers_every_pixel_of_a_non_square_image():
    image = eight_bit(3, 30, 75)
    assert fit_view(image, 16).shape == (3, 16, 16)
    assert fit_view(eight_bit(1, 9, 9), 16).shape == (3, 16, 16)
    pgd = PGD([image], Budget(linf=4, steps=12, random_start=False), size=16,
              generator=torch.Generator().manual_seed(0))
    touched = torch.zeros(30, 75, dtype=torch.bool)
    for step in range(12):
        loss = pgd.views().sum()
        (g,) = torch.autograd.grad(loss, pgd.deltas_, retain_graph=True)
        touched |= g.abs().sum(0) > 0
        pgd.step(loss, step)
    assert touched.all()


def test_differentiable_jpeg_matches_pillow_as_the_bench_uses_it():
    """Quality 75 with Pillow's default 4:2:0 chroma subsampling (the bench's JPEG purifier), and 4:4:4:
    within 0.5/255 mean of Pillow's output, on a photo crop and on the test icons of both artists."""
    from skimage.data import astronaut

    icons = corpus.load_images(corpus.items(split="finetune", theme="gartoon")[:6]
                               + corpus.items(split="finetune", theme="moka")[:6], 64)
    arrays = [np.ascontiguousarray(astronaut()[:128, :128])] + \
        [np.ascontiguousarray((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)) for x in icons]
    for subsampling in (True, False):
        for array in arrays:
            buf = io.BytesIO()
            Image.fromarray(array).save(buf, "JPEG", quality=75, **({} if subsampling else {"subsampling": 0}))
            pillow = torch.from_numpy(np.array(Image.open(buf))).permute(2, 0, 1).float()[None] / 255
            x = torch.from_numpy(array).permute(2, 0, 1).float()[None] / 255
            ours = jpeg(x, torch.Generator(), quality=75, subsampling=subsampling)
            assert (ours - pillow).abs().mean() * 255 < 0.5, subsampling
            assert (ours - x).abs().mean() * 255 > 1.0                 # and it is not the identity


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_transforms_keep_shape_pass_gradients_and_change_the_image(name):
    x = eight_bit(2, 3, 20, 28).requires_grad_(True)
    y = TRANSFORMS[name](x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    (g,) = torch.autograd.grad(y.sum(), x)
    assert g.abs().sum() > 0
    # not the identity: every draw changes the image (hflip: half of them, so one of four at least)
    x = x.detach()
    changed = [float((TRANSFORMS[name](x, torch.Generator().manual_seed(s)) - x).abs().mean()) * 255 > 1.0
               for s in range(4)]
    assert any(changed) if name == "hflip" else all(changed), changed


def test_random_baseline_is_on_the_grid_within_budget():
    x = [eight_bit(3, 10, 12)]
    (d,) = random_deltas(x, 5.5, torch.Generator().manual_seed(0))
    assert (d * 255).abs().max() <= 5 + 1e-4 and torch.allclose(d * 255, (d * 255).round(), atol=1e-4)


def _inputs(folder):
    folder.mkdir()
    rgba = np.zeros((20, 24, 4), np.uint8)
    rgba[..., :3] = np.arange(20 * 24 * 3).reshape(20, 24, 3) % 256
    rgba[..., 3] = np.tile(np.linspace(0, 255, 24).astype(np.uint8), (20, 1))
    Image.fromarray(rgba, "RGBA").save(folder / "alpha.png")
    Image.fromarray(np.asarray(rgba)[..., :3].copy()).save(folder / "photo.jpg", quality=92)
    Image.fromarray((np.arange(18 * 18) % 256).astype(np.uint8).reshape(18, 18), "L").save(folder / "grey.png")
    return folder


# methods whose other loops do not shrink with --steps: their short settings through --option
SHORT = {"metacloak": ["--option", "pool_steps=4", "--option", "interval=2"]}


@pytest.mark.parametrize("model", ["tiny", pytest.param("mini", marks=pytest.mark.slow)])
@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_runs_through_the_cli(tmp_path, tiny_model_dir, method, model):
    src = _inputs(tmp_path / "in")
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    out = tmp_path / "out"
    argv = ["protect", str(src), "-o", str(out), "--model", str(tiny_model_dir) if model == "tiny" else "mini",
            "--method", method, "--steps", "2", "--budget", "6", "-q", *SHORT.get(method, [])]
    assert main(argv) == 0
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before          # originals untouched
    res = json.loads((out / "results.json").read_text())
    assert res["method"] == method and not res["failed"] and len(res["images"]) == 3
    for rec in res["images"]:
        assert rec["objective"]["name"] and rec["objective"]["goal"] in ("up", "down")
        if not rec["output"].endswith(".jpg"):                                 # lossless: exact budget
            assert rec["linf_255"] <= 6 + 1e-6
    with Image.open(out / "alpha.png") as im:                                  # mode and alpha kept
        assert im.mode == "RGBA"
        assert np.array_equal(np.asarray(im)[..., 3], np.asarray(Image.open(src / "alpha.png"))[..., 3])
    with Image.open(out / "grey.png") as im:
        assert im.mode == "L" and im.size == (18, 18)
    with Image.open(out / "photo.jpg") as im:
        assert im.format == "JPEG"


def test_rerun_skips_done_images_unless_overwrite(tmp_path, tiny_model_dir):
    src = _inputs(tmp_path / "in")
    out = tmp_path / "out"
    base = ["protect", str(src), "-o", str(out), "--model", str(tiny_model_dir), "--steps", "1", "-q"]
    assert main(base) == 0
    stamp = (out / "alpha.png").stat().st_mtime_ns
    assert main(base) == 0
    res = json.loads((out / "results.json").read_text())
    assert all("skipped" in r for r in res["images"]) and all("linf_255" in r for r in res["images"])
    assert (out / "alpha.png").stat().st_mtime_ns == stamp
    assert main(base + ["--overwrite"]) == 0
    assert not any("skipped" in r for r in json.loads((out / "results.json").read_text())["images"])


def test_demo_writes_page_and_images(tmp_path, tiny_model_dir):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--model", str(tiny_model_dir), "--steps", "2", "-q"]) == 0
    res = json.loads((out / "results.json").read_text())
    page = (out / "index.html").read_text()
    assert len(res["images"]) == 5 and page.count("<img") >= 35       # 7 labelled pictures per sample
    import re

    from PIL import Image

    for src, width in re.findall(r'<img src="([^"]+)" alt="[^"]+" width="(\d+)"', page):
        with Image.open(out / src) as im:          # every picture exists, at least at its native width
            assert int(width) >= im.width and int(width) % im.width == 0, src
    assert page.count("full file</a>") == page.count("<img") and "model's view" in page
    for rec in res["images"]:
        for f in rec["files"].values():
            assert (out / f).is_file()
        assert rec["linf_255"] <= res["config"]["budget"] + 1e-6


# --- each method does its job on mini: the objective moves the right way, far beyond what random
# noise of the same budget does -------------------------------------------------------------------
EFFICACY_OPTIONS = {"advdm": {}, "mist": {}, "sds": {}, "sds-minus": {"steps": 100}, "photoguard": {"steps": 60},
                    "glaze": {"steps": 40}, "aspl": {"steps": 30}, "robust": {"style_weight": 0},
                    "ace": {"pgd_steps": 10, "train_steps": 5},
                    "metacloak": {"pgd_steps": 5, "trials": 1, "pool_steps": 20, "interval": 10}}


@pytest.fixture(scope="module")
def artworks():
    items = corpus.items(split="finetune", theme="moka")[:3]
    return list(corpus.load_images(items, 64))


@pytest.mark.slow
@pytest.mark.parametrize("method", list(METHODS))
def test_method_moves_its_objective_well_beyond_random_noise_on_mini(mini_bundle, artworks, method):
    options = {"budget": 8, "steps": 30, **EFFICACY_OPTIONS[method]}
    result = protect(mini_bundle, artworks, method=method, seed=0, **options)
    sign = 1 if METHODS[method].objective_goal == "up" else -1
    for obj in result.objective:
        gain = sign * (obj["protected"] - obj["clean"])
        noise = abs(obj["random_noise"] - obj["clean"])
        assert gain > 3 * noise, obj
        assert gain > 0.05 * abs(obj["clean"]), obj
    for x, d in zip(artworks, result.deltas):
        assert (d * 255).abs().max() <= 8 + 1e-4


@pytest.mark.slow
def test_robust_keeps_more_of_its_objective_than_advdm_after_every_purifier_it_optimises_through(mini_bundle):
    """The same L-infinity box (PSNR floor and style term off, so that only the expectation over
    purifiers differs), the same steps and seed: after each purifier of robust's ensemble, the
    denoising loss of robust's images is above AdvDM's."""
    from artshield.protect.robust import ENSEMBLE, loss_after

    images = list(corpus.load_images(corpus.items(split="finetune", theme="gartoon")[:4], 64))
    same = {"budget": 16, "steps": 100, "seed": 0, "score": False}
    advdm = protect(mini_bundle, images, method="advdm", **same).protected(images)
    robust = protect(mini_bundle, images, method="robust", psnr_floor=0, style_weight=0, **same).protected(images)
    for name in ENSEMBLE:
        assert loss_after(mini_bundle, robust, name) > loss_after(mini_bundle, advdm, name), name


def test_robust_refuses_an_unknown_purifier_and_keeps_its_psnr_floor(tiny_bundle):
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 24, 24, generator=g), torch.rand(3, 16, 20, generator=g)]
    with pytest.raises(ValueError, match="impress"):
        protect(tiny_bundle, images, method="robust", ensemble=("jpeg", "impress"), steps=1)
    made = protect(tiny_bundle, images, method="robust", budget=16, steps=3, psnr_floor=30, score=False)
    for x, d in zip(images, made.deltas):
        assert 10 * math.log10(1 / float(d.pow(2).mean())) >= 30 and float(d.abs().max()) * 255 <= 16 + 1e-4


def test_exif_and_icc_profile_are_kept(tmp_path, tiny_model_dir):
    from PIL import ImageCms

    src = tmp_path / "in"
    src.mkdir()
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "artshield test camera"          # Make
    array = (np.arange(20 * 22 * 3).reshape(20, 22, 3) % 251).astype(np.uint8)
    Image.fromarray(array).save(src / "a.png", icc_profile=icc, exif=exif.tobytes())
    Image.fromarray(array).save(src / "b.jpg", icc_profile=icc, exif=exif.tobytes(), quality=95)
    out = tmp_path / "out"
    assert main(["protect", str(src), "-o", str(out), "--model", str(tiny_model_dir), "--steps", "1", "-q"]) == 0
    for name in ("a.png", "b.jpg"):
        with Image.open(out / name) as im:
            assert im.info.get("icc_profile") == icc
            assert im.getexif().get(0x010F) == "artshield test camera"
            assert im.size == (22, 20)


def test_sds_gradient_is_not_advdms(tiny_bundle):
    """SDS skips the UNet's Jacobian: with the same image, draws and condition its gradient
    differs from AdvDM's (a regression to AdvDM's loss would make them equal)."""
    from artshield.options import make_method

    image = [eight_bit(3, 16, 16)]
    grads = {}
    for name in ("advdm", "sds"):
        method = make_method("protect", name, tiny_bundle, steps=1, random_start=False)
        method.generator = torch.Generator().manual_seed(0)
        pgd = method.engine(image)
        method.setup(pgd)
        loss = method.loss(pgd.views(), pgd)
        grads[name] = torch.autograd.grad(loss, pgd.deltas_)[0].flatten()
    cosine = torch.nn.functional.cosine_similarity(grads["advdm"], grads["sds"], dim=0)
    assert grads["sds"].abs().sum() > 0 and cosine < 0.99, float(cosine)


def test_aspl_and_sds_start_from_the_clean_image_and_count_their_steps(tiny_bundle):
    from artshield.options import make_method

    for name in ("aspl", "sds"):
        assert make_method("protect", name, tiny_bundle).config.random_start is False
    aspl = make_method("protect", "aspl", tiny_bundle, steps=8, pgd_steps=6, train_steps=1)
    assert aspl.config.rounds == 2 and aspl.total_steps(1) == 8
    ticks = []
    aspl.run([eight_bit(3, 16, 16)], torch.Generator().manual_seed(0), progress=ticks.append)
    assert sum(ticks) == 8                                  # 6 + 2: exactly the steps asked for


@pytest.mark.slow
def test_aspl_is_not_advdm_against_a_fine_tuned_surrogate(mini_bundle, artworks):
    """ASPL attacks the model a mimic is fine-tuning: against such a model (fine-tuned on the clean
    images) its perturbation raises the denoising loss more than the same PGD without ASPL's
    fine-tuning (train_steps 0: AdvDM at ASPL's budget), and the two perturbations differ."""
    import copy

    from artshield.models.diffusion import denoising_loss
    from artshield.models.views import model_views

    options = {"steps": 60, "pgd_steps": 6}
    aspl = protect(mini_bundle, artworks, "aspl", seed=0, score=False, train_steps=3, **options)
    plain = protect(mini_bundle, artworks, "aspl", seed=0, score=False, train_steps=0, **options)
    assert any(not torch.equal(a, b) for a, b in zip(aspl.deltas, plain.deltas))
    mimic_unet = copy.deepcopy(mini_bundle.unet).float().train().requires_grad_(True)
    opt = torch.optim.AdamW(mimic_unet.parameters(), lr=mini_bundle.conventions.learning_rate("dreambooth", 5e-6))
    clean = model_views(artworks, mini_bundle.image_size)
    context = mini_bundle.embed([mini_bundle.conventions.generic_prompt])
    g = torch.Generator().manual_seed(1)
    for _ in range(60):
        with torch.no_grad():
            latents = mini_bundle.encode(clean)
        loss = denoising_loss(mini_bundle, latents, context.expand(len(clean), -1, -1), g, unet=mimic_unet,
                              reduction="mean")
        opt.zero_grad()
        loss.backward()
        opt.step()
    mimic_unet.eval().requires_grad_(False)

    def against_mimic(result):
        views = model_views(result.protected(artworks), mini_bundle.image_size)
        total = 0.0
        for seed in range(8):
            with torch.no_grad():
                total += float(denoising_loss(mini_bundle, mini_bundle.encode(views),
                                              context.expand(len(views), -1, -1),
                                              torch.Generator().manual_seed(100 + seed), unet=mimic_unet).mean())
        return total / 8

    assert against_mimic(aspl) > against_mimic(plain)


@pytest.mark.slow
def test_glaze_stays_within_its_lpips_budget(mini_bundle, artworks):
    from artshield.metrics.image import visibility

    result = protect(mini_bundle, artworks, "glaze", seed=0, score=False, steps=40)
    budget = result.config["lpips_budget"]
    for x, y in zip(artworks, result.protected(artworks)):
        value = visibility(x, y, exact=True)["lpips"]          # LPIPS as the bench reports it
        assert value <= budget * 1.2, (value, budget)         # a penalty, not a hard constraint: 20 % slack


def test_aspl_surrogate_learns_a_separate_clean_set_when_given(tmp_path, tiny_model_dir, capsys):
    protected, clean = tmp_path / "b", tmp_path / "a"
    for folder, seed in ((protected, 0), (clean, 1)):
        folder.mkdir()
        for i in range(2):
            Image.fromarray((eight_bit(16, 16, 3, seed=seed * 10 + i) * 255).byte().numpy()).save(folder / f"{i}.png")
    common = ["--model", str(tiny_model_dir), "--steps", "2", "-q"]
    assert main(["protect", str(protected), "-o", str(tmp_path / "o1"), "--method", "aspl", *common]) == 0
    assert main(["protect", str(protected), "-o", str(tmp_path / "o2"), "--method", "aspl", "--surrogate-images",
                 str(clean), *common]) == 0
    res = json.loads((tmp_path / "o2" / "results.json").read_text())
    assert res["config"]["surrogate_images"] == "2 images"
    from artshield.models import load_model

    bundle = load_model(str(tiny_model_dir), device="cpu")
    images = [eight_bit(3, 16, 16, seed=i) for i in range(2)]
    others = [eight_bit(3, 16, 16, seed=10 + i) for i in range(2)]
    own = protect(bundle, images, "aspl", steps=4, lr=1e-1, score=False)
    given = protect(bundle, images, "aspl", steps=4, lr=1e-1, score=False, surrogate_images=others)
    assert any(not torch.equal(a, b) for a, b in zip(own.deltas, given.deltas))   # the surrogate learnt set A
    capsys.readouterr()
    assert main(["protect", str(protected), "-o", str(tmp_path / "o3"), "--method", "advdm", "--surrogate-images",
                 str(clean), *common]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_protect_writes_a_before_after_page_of_the_users_images(tmp_path, tiny_model_dir):
    import hashlib
    import re

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray((np.arange(20 * 22 * 3).reshape(20, 22, 3) % 251).astype(np.uint8)).save(src / "a.png")
    Image.fromarray(np.full((12, 12), 90, np.uint8)).save(src / "b <c>#.png")      # grey, odd characters
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.rglob("*.png")}
    out = tmp_path / "out"
    assert main(["protect", str(src), "-o", str(out), "--model", str(tiny_model_dir), "--steps", "1", "-q"]) == 0
    res = json.loads((out / "results.json").read_text())
    page = (out / res["page"]).read_text()
    links = re.findall(r'<img src="([^"]+)"', page)
    assert len(links) == 6 and "b &lt;c&gt;#.png" in page and "b%20%3Cc%3E%23.png" in page
    from urllib.parse import unquote

    for link in links:                                   # originals by relative link, the rest beside the page
        assert (out / unquote(link)).resolve().is_file(), link
    assert before == {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.rglob("*.png")}


def test_ace_attacks_a_surrogate_that_learns_between_rounds_and_leaves_the_base_model_alone(tiny_bundle, monkeypatch):
    """ACE's surrogate starts as the base model and learns between rounds: the LoRA's update is zero
    in the first round's PGD and not after; the base model is left as it was; the budget holds."""
    from artshield.protect.ace import ACE

    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 32, 32, generator=g) for _ in range(2)]
    before = {k: v.clone() for k, v in tiny_bundle.unet.state_dict().items()}
    updates = []
    loss = ACE.loss

    def spy(self, views, pgd):
        with torch.no_grad():
            updates.append(sum(float(p.abs().sum()) for n, p in self.surrogate.named_parameters() if "lora_B" in n))
        return loss(self, views, pgd)

    monkeypatch.setattr(ACE, "loss", spy)
    result = protect(tiny_bundle, images, method="ace", budget=16, step=2, steps=12, pgd_steps=4, train_steps=3,
                     lr=1e-2, seed=0)
    assert len(updates) == 12 and updates[:4] == [0.0] * 4 and all(u > 0 for u in updates[4:])
    assert all(torch.equal(v, tiny_bundle.unet.state_dict()[k]) for k, v in before.items())
    assert all((d * 255).abs().max() <= 16 + 1e-4 for d in result.deltas)


@pytest.mark.slow
def test_ace_pulls_minis_prediction_toward_its_own_target_more_than_toward_another(mini_bundle, artworks):
    from artshield.protect.ace import ACE

    result = protect(mini_bundle, artworks[:2], method="ace", budget=8, steps=20, pgd_steps=10, train_steps=3, seed=0)
    mine, grey = ACE(mini_bundle), ACE(mini_bundle, ACE.Config(target="grey"))
    for x, y in zip(artworks[:2], result.protected(artworks[:2])):
        vx, vy = model_views([x], mini_bundle.image_size), model_views([y], mini_bundle.image_size)
        own, other = float(mine.score(vy) - mine.score(vx)), float(grey.score(vy) - grey.score(vx))
        assert own < -0.03 * float(mine.score(vx)) and own < 2 * other, (own, other)


def test_metacloak_attacks_a_pool_of_surrogate_states_each_unrolled_on_the_protected_images(tiny_bundle,
                                                                                             monkeypatch):
    """The pool holds the surrogate DreamBooth run at steps 0, 9, 19 (interval 10 of 20); every trial
    visits each pooled state; a call's model is the pooled state at the first call and has trained on
    the protected images by the next; the PGD steps add up exactly; the EOT blurs; the base is untouched."""
    from artshield.protect.metacloak import MetaCloak

    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 32, 32, generator=g) for _ in range(2)]
    before = {k: v.clone() for k, v in tiny_bundle.unet.state_dict().items()}
    seen = []
    loss = MetaCloak.loss

    def spy(self, views, pgd):
        with torch.no_grad():
            seen.append(float(sum(p.double().sum() for p in self.model.parameters())))
        return loss(self, views, pgd)

    monkeypatch.setattr(MetaCloak, "loss", spy)
    eot, through = MetaCloak.eot, []
    monkeypatch.setattr(MetaCloak, "eot", lambda self, views: through.append(1) or eot(self, views))
    method = MetaCloak(tiny_bundle, MetaCloak.Config(budget=16, step=2, steps=26, pgd_steps=2, trials=2, pool_steps=20,
                                                     interval=10, advance_steps=1, lr=1e-3))
    assert method.config.pool_points() == [0, 9, 19]
    deltas = method.run(images, torch.Generator().manual_seed(0))
    assert len(seen) == 26 == len(through) and method.pool_size == 3 and method.calls_per_model(3) == 2
    # calls of two PGD steps: within a call the model is fixed; between calls of one state it trained
    assert all(seen[i] == seen[i + 1] for i in range(0, 26, 2))
    assert seen[0] != seen[2] and seen[4] != seen[0]             # trained after a call; the next state differs
    assert seen[12] == seen[0] and seen[16] == seen[4]           # the second trial starts from the same states
    assert all(torch.equal(v, tiny_bundle.unet.state_dict()[k]) for k, v in before.items())
    assert all((d * 255).abs().max() <= 16 + 1e-4 for d in deltas)
    views = torch.rand(2, 3, 16, 16, generator=g)
    method.generator = torch.Generator().manual_seed(1)
    assert not torch.allclose(method.eot(views), views) and method.eot(views).shape == views.shape


def test_protect_takes_any_config_setting_through_option_and_refuses_a_wrong_one_in_one_line(tmp_path, tiny_model_dir,
                                                                                             capsys):
    src = _inputs(tmp_path / "in")
    base = ["protect", str(src), "--model", str(tiny_model_dir), "--method", "ace", "--steps", "2", "-q"]
    assert main([*base, "-o", str(tmp_path / "a"), "--option", "rank=2", "--option", "pgd_steps=1",
                 "--option", "budget=3", "--budget", "5"]) == 0
    config = json.loads((tmp_path / "a" / "results.json").read_text())["config"]
    assert config["rank"] == 2 and config["pgd_steps"] == 1 and config["budget"] == 5     # the flag wins
    capsys.readouterr()
    assert main([*base, "-o", str(tmp_path / "b"), "--option", "rank=0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--method ace" in err and "rank" in err and not (tmp_path / "b").exists()


def test_the_eot_blur_reproduces_the_benchs_gaussian_blur(mini_bundle):
    """The EOT blur with OpenCV's 7-tap table and robust's border, against the bench's purifier
    (OpenCV, 7 x 7, sigma 0, BORDER_REFLECT): within the purifier's own 8-bit rounding."""
    from artshield.purify import PURIFIERS
    from artshield.protect.transforms import OPENCV_7, blur

    from artshield.protect.robust import Robust

    icons = corpus.load_images(corpus.items(split="finetune", theme="gartoon")[:4], 64)
    bench = PURIFIERS.create("gaussian-blur", None)
    robust = Robust(mini_bundle)
    robust.generator = torch.Generator().manual_seed(0)
    member = robust.purifier("gaussian-blur")
    for x in icons:
        ours = blur(x[None], torch.Generator(), taps=OPENCV_7, border="symmetric")[0]
        theirs = bench.one(x, torch.Generator())
        assert (ours - theirs).abs().max() * 255 <= 1.0 and (ours - x).abs().mean() * 255 > 1.0
        # robust's member draws the bench's own blur among its others
        exact = [float((member(x) - theirs).abs().max() * 255) <= 1.0 for _ in range(12)]
        assert 2 <= sum(exact) <= 10, exact


def test_robust_optimises_through_each_purifier_of_its_ensemble(tiny_bundle, monkeypatch):
    """Each step's loss is taken on the images after each member of the ensemble: every member but
    "none" changes what the loss sees, and no two members show it the same images."""
    from artshield.protect.robust import Robust

    seen = []
    loss = Robust.loss
    monkeypatch.setattr(Robust, "loss", lambda self, views, pgd: seen.append(views.detach().clone()) or
                        loss(self, views, pgd))
    g = torch.Generator().manual_seed(0)
    icon = corpus.load_images(corpus.items(split="finetune", theme="gartoon")[:1], 32)[0]
    images = [(icon + torch.rand(icon.shape, generator=g) * 0.06 - 0.03).clamp(0, 1)]      # a little grain
    method = Robust(tiny_bundle, Robust.Config(steps=1, psnr_floor=0))
    method.run(images, torch.Generator().manual_seed(0))
    names = list(method.config.ensemble)
    assert len(seen) == len(names) and "none" in names and len(names) >= 6
    plain = seen[names.index("none")]
    for i, name in enumerate(names):
        if name != "none":
            assert (seen[i] - plain).abs().mean() * 255 > 0.5, name
        for j in range(i):
            assert not torch.allclose(seen[i], seen[j]), (names[i], names[j])
