"""protect/robust.py: each part of the purification-robust protection against an answer computed here
by other means (the purifiers it differentiates, StyleGuard's statistics term, the loss it ascends
and the step it takes), on tiny random-weight components."""
import numpy as np
import pytest
import torch

from artshield.protect import robust
from artshield.protect.robust import Robust, RobustConfig

IMAGE = torch.rand(3, 20, 24, generator=torch.Generator().manual_seed(0))
GREY = torch.rand(1, 20, 24, generator=torch.Generator().manual_seed(1))


def _method(bundle, seed=5, **options):
    method = Robust(bundle, RobustConfig(**options))
    method.generator = torch.Generator().manual_seed(seed)
    return method


def test_the_ensemble_its_defaults_and_its_options():
    """The default ensemble is the one the docstring lists, noisy-redraw may be added, the other
    diffusion purifiers are held out; StyleGuard's weight, the bench's budget; ensembles given as
    text are split; empty or unknown ones and values out of range are refused; a PSNR floor of 0 is
    no floor."""
    assert set(robust.ENSEMBLE) == {"none", "jpeg", "gaussian-blur", "gaussian-noise", "median", "bilateral", "resize"}
    assert robust.ENSEMBLE == robust.DIFFERENTIABLE + robust.BPDA and robust.BPDA == ("median", "bilateral")
    assert robust.KNOWN == robust.ENSEMBLE + ("noisy-redraw",)
    assert "none, jpeg, gaussian-blur, gaussian-noise, median, bilateral and resize" in " ".join(robust.__doc__.split())
    config = RobustConfig()
    assert (config.budget, config.step, config.steps, config.style_weight, config.target, config.psnr_floor,
            config.through_redraw, config.per_step, config.ensemble) == (16.0, 1.0, 100, 0.1, "texture", 30.0, True, 0,
                                                                         robust.ENSEMBLE)
    from artshield.purify import PURIFIERS

    assert robust.NOISE_SIGMA == PURIFIERS["gaussian-noise"].Config().sigma       # the bench's noise
    assert RobustConfig(ensemble=" jpeg ,median").ensemble == ("jpeg", "median")
    assert RobustConfig(ensemble=["resize"]).ensemble == ("resize",)
    choices = "none, jpeg, gaussian-blur, gaussian-noise, resize, median, bilateral, noisy-redraw"
    for ensemble, words in (((), r"\(none given\)"), ("jpeg,impress", r"\['impress'\]"), ("", r"\[''\]")):
        with pytest.raises(ValueError, match=rf"^ensemble: unknown purifier\(s\) {words}; choose from {choices}$"):
            RobustConfig(ensemble=ensemble)
    for name, admitted, refused in (("style_weight", [0.0, 1e6], [-0.1, 1.1e6]), ("psnr_floor", [0.0, 100.0], [-1, 101]),
                                    ("per_step", [0, 1000], [-1, 1001])):
        for value in admitted:
            assert getattr(RobustConfig(**{name: value}), name) == value
        for value in refused:
            with pytest.raises(ValueError, match=name):
                RobustConfig(**{name: value})
    assert RobustConfig(psnr_floor=0).budget_spec().psnr_floor is None
    assert RobustConfig().budget_spec().decay is False and RobustConfig().budget_spec(True).decay is True
    assert RobustConfig(psnr_floor=28.5).budget_spec().psnr_floor == 28.5
    assert RobustConfig(budget=8, steps=7).budget_spec().linf == 8 and RobustConfig(steps=7).budget_spec().steps == 7


def test_the_latent_statistics_and_the_style_term_written_out():
    """_stats: each image's and channel's mean and unbiased variance over positions; style: the
    squared distance of both to the clean image's minus that to the target's, averaged over
    channels, one value per image."""
    g = torch.Generator().manual_seed(2)
    latents = torch.randn(2, 4, 3, 5, generator=g)
    mean, var = robust._stats(latents)
    flat = latents.numpy().reshape(2, 4, -1)
    assert np.allclose(mean.numpy(), flat.mean(2), atol=1e-6) and np.allclose(var.numpy(), flat.var(2, ddof=1),
                                                                              atol=1e-5)
    method = Robust.__new__(Robust)
    method.clean_stats = (torch.randn(2, 4, generator=g), torch.rand(2, 4, generator=g))
    method.target_stats = (torch.randn(1, 4, generator=g), torch.rand(1, 4, generator=g))
    (cm, cv), (tm, tv) = [tuple(s.numpy() for s in pair) for pair in (method.clean_stats, method.target_stats)]
    m, v = flat.mean(2), flat.var(2, ddof=1)
    want = [sum((m[i, c] - cm[i, c]) ** 2 + (v[i, c] - cv[i, c]) ** 2 - (m[i, c] - tm[0, c]) ** 2
                - (v[i, c] - tv[0, c]) ** 2 for c in range(4)) / 4 for i in range(2)]
    assert np.allclose(method.style(latents).numpy(), want, atol=1e-5)


def test_the_grey_wrapper_and_bpda():
    """_rgb gives a three-channel function a grey image as three equal channels and returns their
    mean; a colour image goes straight in. _bpda: the purified values forward, gradient one backward."""
    f = lambda x: torch.stack([x[0] * 2, x[1] + 1, x[2] * 0])           # noqa: E731  channels treated apart
    assert torch.equal(robust._rgb(f)(IMAGE), f(IMAGE))
    assert torch.allclose(robust._rgb(f)(GREY), (GREY * 2 + GREY + 1 + 0) / 3)
    x = IMAGE.clone().requires_grad_(True)
    purified = (IMAGE * 0.5).double()
    y = robust._bpda(x, purified)
    (y * torch.arange(3.0)[:, None, None]).sum().backward()
    assert y.dtype == x.dtype and torch.allclose(y, IMAGE * 0.5)
    assert torch.equal(x.grad, torch.arange(3.0)[:, None, None].expand_as(IMAGE))


def test_each_member_is_the_purifier_it_names_with_the_draws_of_the_methods_generator(tiny_bundle):
    """Every member against the function it stands for, called with a generator in the same state:
    none, JPEG (transforms.jpeg; grey through _rgb), Gaussian noise at the bench's sigma, resize, the
    blur (the bench's 7-tap table or a Gaussian of sigma in [0.5, 1.6], by a fair draw), median and
    bilateral forward as the bench's purifiers with the identity's gradient, noisy-redraw through its
    sampler or by BPDA."""
    from artshield.protect import transforms
    from artshield.purify import PURIFIERS

    def twin(seed=5):
        return torch.Generator().manual_seed(seed)

    method = _method(tiny_bundle)
    assert method.purifier("none")(IMAGE) is IMAGE
    for image in (IMAGE, GREY):
        method.generator = twin()
        got = method.purifier("jpeg")(image)
        ref = transforms.jpeg(image.expand(3, -1, -1)[None], twin())[0]
        assert torch.allclose(got, ref if image.shape[0] == 3 else ref.mean(0, keepdim=True), atol=1e-6)
    method.generator = twin()
    noise = torch.randn(IMAGE.shape, generator=twin())
    x = IMAGE.clone().requires_grad_(True)
    y = method.purifier("gaussian-noise")(x)
    assert torch.allclose(y, (IMAGE + noise * 0.05).clamp(0, 1), atol=1e-7)
    y.sum().backward()                         # differentiated for real: no gradient where the noise was clipped
    clipped = ((IMAGE + noise * 0.05) > 1) | ((IMAGE + noise * 0.05) < 0)
    assert clipped.any() and (x.grad[clipped] == 0).all() and (x.grad[~clipped] == 1).all()
    method.generator = twin()
    assert torch.equal(method.purifier("resize")(IMAGE), transforms.resize(IMAGE[None], twin())[0])

    kinds = set()
    for seed in range(12):
        method.generator, g = twin(seed), twin(seed)
        blur = method.purifier("gaussian-blur")          # a member draws from the generator of its making
        if transforms._uniform(g, 0, 1) < 0.5:
            kinds.add("bench")
            ref = transforms.blur(IMAGE[None], g, taps=transforms.OPENCV_7, border="symmetric")[0]
        else:
            kinds.add("gaussian")
            sigma = transforms._uniform(g, 0.5, 1.6)
            assert 0.5 <= sigma <= 1.6
            ref = transforms.blur(IMAGE[None], g, sigma=sigma, radius=3, border="symmetric")[0]
        assert torch.equal(blur(IMAGE), ref), seed
    assert kinds == {"bench", "gaussian"}

    ramp = torch.linspace(0, 1, 24)[None, None, :].expand(3, 20, 24)
    grain = (ramp + torch.randn(ramp.shape, generator=twin(8)) * 8 / 255).clamp(0, 1)    # what the filters are for
    for name in ("median", "bilateral"):
        bench = PURIFIERS.create(name, None)
        for image in (grain, grain[:1]):
            x = image.clone().requires_grad_(True)
            method.generator = twin()
            y = method.purifier(name)(x)
            assert torch.allclose(y, bench.one(image, twin()), atol=1e-6) and (y - image).abs().max() > 0.01, name
            y.sum().backward()
            assert torch.equal(x.grad, torch.ones_like(image)), name

    through = _method(tiny_bundle, through_redraw=True)
    assert through.purifier("noisy-redraw") == through.redraw
    bpda = _method(tiny_bundle, through_redraw=False)
    x = IMAGE.clone().requires_grad_(True)
    y = bpda.purifier("noisy-redraw")(x)
    assert torch.allclose(y, PURIFIERS.create("noisy-redraw", tiny_bundle).one(IMAGE, twin()), atol=1e-5)
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(IMAGE))


def test_the_differentiated_redraw_is_noisy_redraw_with_a_gradient(tiny_bundle):
    """robust's own noisy-redraw gives the purifier's pixels for the same draws, and a gradient that
    is not the identity's (it flows through the sampler)."""
    from artshield.purify import PURIFIERS

    method = _method(tiny_bundle, seed=3)
    x = IMAGE.clone().requires_grad_(True)
    y = method.redraw(x)
    assert torch.allclose(y, PURIFIERS.create("noisy-redraw", tiny_bundle).one(IMAGE, torch.Generator().manual_seed(3)),
                          atol=1e-5)
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0 and not torch.allclose(x.grad, torch.ones_like(IMAGE))


def test_members_draws_per_step_purifiers_without_replacement():
    method = Robust.__new__(Robust)
    method.config = RobustConfig(ensemble="jpeg,median,resize,none")
    method.generator = torch.Generator().manual_seed(0)
    assert method.members() == ["jpeg", "median", "resize", "none"]
    method.config = RobustConfig(ensemble="jpeg,median,resize,none", per_step=4)
    assert method.members() == ["jpeg", "median", "resize", "none"]
    method.config = RobustConfig(ensemble="jpeg,median,resize,none", per_step=2)
    seen = set()
    for seed in range(20):
        method.generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(4, generator=torch.Generator().manual_seed(seed))[:2].tolist()
        drawn = method.members()
        assert drawn == [method.config.ensemble[i] for i in order] and len(set(drawn)) == 2
        seen.update(drawn)
    assert seen == {"jpeg", "median", "resize", "none"}


def test_the_loss_is_the_denoising_loss_plus_the_weighted_style_term_per_image(tiny_bundle):
    from artshield.models.diffusion import denoising_loss
    from artshield.protect.base import scored_denoising_loss

    method = _method(tiny_bundle, style_weight=0.3)
    views = torch.rand(2, 3, tiny_bundle.image_size, tiny_bundle.image_size, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        mean, var = robust._stats(tiny_bundle.encode(views))
        method.clean_stats, method.target_stats = (mean + 0.5, var * 2), (mean[:1] - 0.3, var[:1] / 2)
        got = method.loss(views, None)
        latents = tiny_bundle.encode(views)
        context = tiny_bundle.embed([tiny_bundle.conventions.generic_prompt]).expand(2, -1, -1)
        semantic = denoising_loss(tiny_bundle, latents, context, torch.Generator().manual_seed(5))
        style = method.style(latents)
    assert got.shape == () and torch.allclose(got, (semantic + 0.3 * style).sum(), atol=1e-5)
    assert style.abs().min() > 1e-2                           # the style term counts in this case
    assert torch.allclose(method.score(views), scored_denoising_loss(tiny_bundle, views, context))


def test_run_ascends_the_mean_loss_over_the_steps_members_and_sets_up_the_statistics(tiny_bundle, monkeypatch):
    """The loss handed to each PGD step is the mean over the step's members of the loss on the views
    after that member; the clean and target statistics are those of the clean views and the target;
    progress counts steps; the engine's hook is cleared afterwards; grey images come back grey."""
    from artshield.protect import engine

    steps, members, losses = [], [], []
    step = engine.PGD.step

    def recording_step(self, loss, index, maximize=True):
        steps.append((float(loss.detach()), index, maximize, self))
        return step(self, loss, index, maximize)

    loss = Robust.loss

    seen_views = []

    def recording_loss(self, views, pgd):
        seen_views.append(views.detach().clone())
        value = loss(self, views, pgd)
        losses.append(float(value.detach()))
        return value

    members = Robust.members
    drawn = []
    monkeypatch.setattr(engine.PGD, "step", recording_step)
    monkeypatch.setattr(Robust, "loss", recording_loss)
    monkeypatch.setattr(Robust, "members", lambda self: drawn.append(members(self)) or drawn[-1])
    method = Robust(tiny_bundle, RobustConfig(steps=3, ensemble="none,jpeg,resize", per_step=2, psnr_floor=0))
    ticks = []
    square, grey = IMAGE[:, :, :20], GREY[:, :, :20]        # square: every view is the same cut, only purified
    deltas = method.run([square, grey], torch.Generator().manual_seed(0), progress=ticks.append)
    views = seen_views[:]
    assert ticks == [1, 1, 1] and [s[1] for s in steps] == [0, 1, 2] and all(s[2] for s in steps)
    assert [len(d) for d in drawn] == [2, 2, 2] and len(losses) == 6
    for i, (total, *_rest) in enumerate(steps):
        assert total == pytest.approx(np.mean(losses[2 * i:2 * i + 2]), rel=1e-5)
    pgd = steps[0][3]
    assert pgd.before_view is None and [d.shape for d in deltas] == [square.shape, grey.shape]
    assert max(float(d.abs().max()) for d in deltas) > 0
    for i, names in enumerate(drawn):             # the loss saw each member's purified views
        first, second = views[2 * i:2 * i + 2]
        assert not torch.allclose(first, second), names
    # the run follows its generator: the same seed, the same result; another seed, another one
    monkeypatch.undo()
    again = [Robust(tiny_bundle, RobustConfig(steps=2, ensemble="jpeg,gaussian-noise", psnr_floor=0)).run(
        [IMAGE], torch.Generator().manual_seed(seed))[0] for seed in (3, 3, 4)]
    assert torch.equal(again[0], again[1]) and not torch.equal(again[0], again[2])
    with torch.no_grad():
        clean = robust._stats(tiny_bundle.encode(pgd.clean_views()))
        target = robust._stats(method.target_latent())
    for ours, want in zip(method.clean_stats + method.target_stats, clean + target):
        assert torch.allclose(ours, want, atol=1e-6)
    assert not torch.allclose(method.clean_stats[0], method.target_stats[0])


def test_loss_after_scores_the_models_view_after_a_purifier(tiny_bundle):
    """loss_after: the scored denoising loss of the model's views of the images as they are, after a
    bench purifier with the seed, or resized to 70 % and back."""
    from artshield.models.views import fit_view
    from artshield.protect import transforms
    from artshield.protect.base import scored_denoising_loss
    from artshield.purify import purify

    context = tiny_bundle.embed([tiny_bundle.conventions.generic_prompt])

    def scored(images):
        views = torch.stack([fit_view(x, tiny_bundle.image_size) for x in images])
        return float(scored_denoising_loss(tiny_bundle, views, context.expand(len(views), -1, -1)).mean())

    images = [IMAGE, IMAGE.flip(-1)]
    with torch.no_grad():
        assert robust.loss_after(tiny_bundle, images, "none") == pytest.approx(scored(images), rel=1e-6)
        resized = [transforms.resize(x[None], torch.Generator().manual_seed(2), factor=0.7)[0] for x in images]
        assert robust.loss_after(tiny_bundle, images, "resize", seed=2) == pytest.approx(scored(resized), rel=1e-6)
        noisy = purify(tiny_bundle, images, "gaussian-noise", seed=3)
        assert robust.loss_after(tiny_bundle, images, "gaussian-noise", seed=3) == pytest.approx(scored(noisy), rel=1e-6)
        assert robust.loss_after(tiny_bundle, images, "gaussian-noise", seed=4) != pytest.approx(scored(noisy), rel=1e-6)
        assert robust.loss_after(tiny_bundle, images, "gaussian-noise") == pytest.approx(
            scored(purify(tiny_bundle, images, "gaussian-noise", seed=1)), rel=1e-6)          # seed 1 by default
        redrawn = purify(tiny_bundle, images, "noisy-redraw", seed=1)
        assert robust.loss_after(tiny_bundle, images, "noisy-redraw") == pytest.approx(scored(redrawn), rel=1e-6)
