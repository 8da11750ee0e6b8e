"""Known answers for the budgeted optimiser every protection runs on (protect/engine.py), with toy
losses instead of a model: which way each step moves, where the box and [0, 1] clip it, where the
moving view looks, what reaches the 8-bit grid, and how the PSNR floor scales a perturbation."""
import math

import pytest
import torch

from artshield.models.views import fit_view
from artshield.protect.engine import PGD, Budget, psnr_scale, random_deltas
from artshield.protect.transforms import TRANSFORMS


def _pgd(images, size=8, seed=0, before_view=None, **budget):
    budget = {"random_start": False, **budget}
    return PGD(images, Budget(**budget), size=size, generator=torch.Generator().manual_seed(seed),
               before_view=before_view)


def test_budget_refuses_what_cannot_be_a_budget():
    for bad in ({"linf": 0}, {"linf": 255.5}, {"linf": math.nan}, {"linf": -1}):
        with pytest.raises(ValueError, match=r"\(0, 255\]"):
            Budget(**bad)
    for bad in ({"step": 0}, {"step": math.inf}, {"step": math.nan}, {"step": -1}, {"steps": -1}):
        with pytest.raises(ValueError, match="step must be positive"):
            Budget(**bad)
    with pytest.raises(ValueError, match="^step must be positive and finite, and steps non-negative$"):
        Budget(steps=-1)
    with pytest.raises(ValueError, match=r"unknown EOT transform\(s\) \['sharpen'\]; known: jpeg, blur"):
        Budget(eot=("jpeg", "sharpen"))
    assert Budget(linf=255, steps=0).linf == 255 and Budget().eot == ()
    assert Budget(linf=0.5).linf == 0.5 and Budget(linf=1).linf == 1 and Budget(step=0.25).step == 0.25


def test_a_step_moves_each_pixel_by_the_step_along_the_gradients_sign_within_the_box_and_the_image():
    x = torch.full((3, 8, 8), 0.5)
    x[0, 0, 0], x[1, 0, 0] = 0.999, 0.001                     # next to white and to black
    weight = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(1))
    weight[2, 4, 4] = 0.0                                      # no gradient there: the pixel stays
    pgd = _pgd([x], linf=3, step=2)
    assert torch.equal(pgd.deltas_[0], torch.zeros_like(x)) and pgd.eps == 3 / 255
    pgd.step((pgd.views() * weight).sum(), 0)                  # a square image at the model's size: view = image
    expected = ((x + 2 / 255 * weight.sign()).clamp(0, 1) - x)
    assert torch.allclose(pgd.deltas_[0], expected, atol=1e-7) and pgd.deltas_[0][2, 4, 4] == 0
    pgd.step((pgd.views() * weight).sum(), 1)                  # a second step reaches the box at 3
    expected = ((x + (3 / 255) * weight.sign()).clamp(0, 1) - x)
    assert torch.allclose(pgd.deltas_[0], expected, atol=1e-7)
    down = _pgd([x], linf=3, step=2)
    down.step((down.views() * weight).sum(), 0, maximize=False)
    assert torch.allclose(down.deltas_[0], (x - 2 / 255 * weight.sign()).clamp(0, 1) - x, atol=1e-7)
    # an image the loss does not read keeps its delta (no gradient, no step), whichever it is
    for read in (0, 1):
        two = _pgd([x, x.clone()], linf=3, step=2)
        two.step((two.perturbed()[read] * weight).sum(), 0)
        assert torch.equal(two.deltas_[1 - read], torch.zeros_like(x)) and two.deltas_[read].abs().max() > 0
    # a PSNR floor scales each stepped delta back to it (0.2 dB above, for the rounding)
    floored = _pgd([x], linf=16, step=16, psnr_floor=30)
    floored.step((floored.views() * weight).sum(), 0)
    assert 10 * math.log10(1 / floored.deltas_[0].detach().pow(2).mean()) == pytest.approx(30.2, abs=1e-3)


def test_step_size_decays_linearly_to_zero_when_asked():
    pgd = _pgd([torch.rand(3, 8, 8)], step=2, steps=10, decay=True)
    assert [round(pgd.step_size(s) * 255, 6) for s in (0, 5, 10)] == [2.0, 1.0, 0.0]
    assert _pgd([torch.rand(3, 8, 8)], step=2, steps=10).step_size(7) == 2 / 255
    assert _pgd([torch.rand(3, 8, 8)], step=2, steps=0, decay=True).step_size(0) == 2 / 255
    assert _pgd([torch.rand(3, 8, 8)], step=2, steps=1, decay=True).step_size(1) == 0.0


def test_the_random_start_is_a_uniform_draw_in_the_box_kept_inside_the_image():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(3, 8, 12, generator=g)
    x[:, 0] = 1.0
    pgd = PGD([x], Budget(linf=6), size=8, generator=torch.Generator().manual_seed(4))
    draw = (torch.rand(x.shape, generator=torch.Generator().manual_seed(4)) * 2 - 1) * 6 / 255
    assert torch.allclose(pgd.deltas_[0], (x + draw).clamp(0, 1) - x, atol=1e-7)
    assert pgd.deltas_[0].requires_grad and (pgd.deltas_[0][:, 0] <= 0).all()
    # images come in any float type and leave on the engine's device, in float32
    wide = PGD([x.double()], Budget(linf=6), size=8, generator=torch.Generator().manual_seed(4))
    assert wide.images[0].dtype == torch.float32 and torch.equal(wide.deltas_[0], pgd.deltas_[0])
    meta = PGD([x], Budget(linf=6), size=8, generator=torch.Generator().manual_seed(4), device=torch.device("meta"))
    assert meta.images[0].device.type == "meta" and meta.deltas_[0].device.type == "meta"
    assert meta.images[0].dtype == torch.float32
    floored = PGD([x], Budget(linf=16, psnr_floor=40), size=8, generator=torch.Generator().manual_seed(4))
    d = floored.deltas_[0].detach()
    assert 10 * math.log10(1 / d.pow(2).mean()) == pytest.approx(40.2, abs=1e-3)


def test_the_moving_view_steps_through_positions_that_cover_a_wide_image():
    g = torch.Generator().manual_seed(5)
    wide = torch.rand(3, 8, 24, generator=g)
    pgd = _pgd([wide])
    # slack 16 columns, ceil(24 / 8) + 1 = 4 positions: columns 0, 5, 11, 16, then again
    for at in (0, 5, 11, 16, 0):
        assert torch.equal(pgd.views()[0], fit_view(wide, 8, (0, at)))
    assert pgd.calls == 5
    assert torch.equal(pgd.views(moving=False)[0], fit_view(wide, 8)) and pgd.calls == 5
    tall = wide.transpose(1, 2).contiguous()
    pgd = _pgd([tall])
    assert [torch.equal(pgd.views()[0], fit_view(tall, 8, (at, 0))) for at in (0, 5, 11)] == [True] * 3
    # a square image needs no moving, and clean_views ignores delta
    square = torch.rand(3, 16, 16, generator=g)
    pgd = _pgd([square, wide], linf=8, random_start=True)
    assert torch.equal(pgd.views()[0], fit_view(square + pgd.deltas_[0], 8))
    assert torch.equal(pgd.clean_views(), torch.stack([fit_view(square, 8), fit_view(wide, 8)]))
    assert [torch.equal(p, x + d) for p, x, d in zip(pgd.perturbed(), [square, wide], pgd.deltas_)] == [True, True]


def test_eot_draws_one_transform_per_view_from_the_generator_and_before_view_comes_first():
    x = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(6))
    pgd = _pgd([x], seed=7, eot=("jpeg", "resize", "hflip"))
    got = [pgd.views() for _ in range(4)]
    g = torch.Generator().manual_seed(7)
    for views in got:
        k = int(torch.randint(3, (1,), generator=g))
        name = ("jpeg", "resize", "hflip")[k]
        assert torch.equal(views, TRANSFORMS[name](x[None], g)), name
    assert torch.equal(pgd.views(transform=False), x[None])
    darker = _pgd([x], before_view=lambda images: [im * 0.5 for im in images])
    assert torch.allclose(darker.views(), x[None] * 0.5)


def test_run_steps_the_budgets_count_and_reports_each():
    x = torch.full((3, 8, 8), 0.5)
    seen, ticks = [], []
    pgd = _pgd([x], linf=8, step=1, steps=3, decay=True)
    pgd.run(lambda v: (seen.append(v.shape[0]) or v.sum()), progress=ticks.append)
    # steps 0, 1, 2 of 3 with a decaying step: 1 + 2/3 + 1/3 = 2 levels up
    assert len(seen) == 3 and ticks == [1, 1, 1]
    assert torch.allclose(pgd.deltas_[0], torch.full_like(x, 2 / 255), atol=1e-6)
    later = _pgd([x], linf=8, step=1, steps=3, decay=True)
    later.run(lambda v: v.sum(), steps=1, first=2)                     # only the last step: 1/3 level
    assert torch.allclose(later.deltas_[0], torch.full_like(x, 1 / 3 / 255), atol=1e-6)
    down = _pgd([x], linf=8, step=1, steps=2)
    down.run(lambda v: v.sum(), maximize=False)
    assert torch.allclose(down.deltas_[0], torch.full_like(x, -2 / 255), atol=1e-6)


def test_final_deltas_are_on_the_8_bit_grid_within_the_floor_of_the_budget():
    x = torch.tensor([[[0.5, 0.5, 0.5, 0.995, 0.005, 0.5, 0.5, 0.5]]])
    pgd = _pgd([x], linf=2.5)
    with torch.no_grad():
        pgd.deltas_[0].copy_(torch.tensor([[[3.4, 1.6, -1.4, 4.0, -4.0, -2.5, -4.0, 1.498]]]) / 255)
    (d,) = pgd.deltas()
    assert (d * 255).tolist()[0][0] == pytest.approx([2, 2, -1, 0.005 * 255, -0.005 * 255, -2, -2, 1], abs=1e-4)
    assert d.device.type == "cpu" and not d.requires_grad
    exact = _pgd([torch.full((1, 1, 2), 0.5)], linf=4)
    with torch.no_grad():
        exact.deltas_[0].copy_(torch.tensor([[[4.0, -4.0]]]) / 255)
    assert (exact.deltas()[0] * 255).tolist() == [[pytest.approx([4.0, -4.0], abs=1e-4)]]   # the budget itself


def test_psnr_scale_and_random_deltas_known_answers():
    d = torch.full((3, 4, 4), 0.1)                                  # rms 0.1: 20 dB
    assert psnr_scale(d, 30) == pytest.approx(10 ** (-30.2 / 20) / 0.1)
    assert psnr_scale(d, 19.7) == 1.0 and psnr_scale(d, 19.9) == pytest.approx(10 ** (-20.1 / 20) / 0.1)
    assert psnr_scale(torch.zeros(3, 2, 2), 60) == 1.0
    x = torch.rand(3, 5, 5, generator=torch.Generator().manual_seed(8))
    x[0] = 1.0
    (noise,) = random_deltas([x], 4.7, torch.Generator().manual_seed(9))
    q = torch.randint(-4, 5, x.shape, generator=torch.Generator().manual_seed(9)).float() / 255
    assert torch.allclose(noise, (x + q).clamp(0, 1) - x) and (noise[0] <= 0).all()
    assert set((noise[1:] * 255).round().unique().tolist()) == set(range(-4, 5))
    (whole,) = random_deltas([torch.full((3, 20, 20), 0.5)], 4, torch.Generator().manual_seed(9))
    assert set((whole * 255).round().unique().tolist()) == set(range(-4, 5))      # a whole budget is reached
