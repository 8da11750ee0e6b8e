"""Known answers for the primitives every method family shares: how an image meets the model's size
(models/views.py) and the one diffusion loss (models/diffusion.py). Each value here is worked out
independently (PIL's resampling, the formulas written out, a scheduler's own arithmetic), so that a
change to either module fails a test (the mutation score of docs/mutation.md)."""
from types import SimpleNamespace

import pytest
import torch
from _reference import pil_resize
from diffusers import DDPMScheduler
from PIL import Image

from artshield.models import diffusion
from artshield.models.views import canvas, fit_view, model_views, view_slack


def test_fit_view_resizes_the_short_side_then_cuts_the_square_as_pil_would():
    g = torch.Generator().manual_seed(0)
    wide = torch.rand(3, 20, 40, generator=g)
    resized = pil_resize(wide, 10, 20)
    assert torch.allclose(fit_view(wide, 10), resized[:, :, 5:15], atol=1e-5)           # centred
    assert torch.allclose(fit_view(wide, 10, offset=(0, 7)), resized[:, :, 7:17], atol=1e-5)
    assert torch.allclose(fit_view(wide, 10, offset=(0, 0)), resized[:, :, :10], atol=1e-5)
    tall = wide.transpose(1, 2).contiguous()                                              # 40 x 20
    assert torch.allclose(fit_view(tall, 10), pil_resize(tall, 20, 10)[:, 5:15, :], atol=1e-5)
    assert torch.allclose(fit_view(tall, 10, offset=(3, 0)), pil_resize(tall, 20, 10)[:, 3:13, :], atol=1e-5)
    # an odd size: 7 x 10 at 4 -> 4 x round(5.71) = 6, the cut one column in
    odd = torch.rand(3, 7, 10, generator=g)
    assert view_slack(odd, 4) == (0, 2)
    assert torch.allclose(fit_view(odd, 4), pil_resize(odd, 4, 6)[:, :, 1:5], atol=1e-5)
    # upscaling works the same way (12 x 16 at 24 -> 24 x 32, cut 4 columns in)
    small = torch.rand(3, 12, 16, generator=g)
    assert torch.allclose(fit_view(small, 24), pil_resize(small, 24, 32)[:, :, 4:28], atol=1e-5)
    # already the model's size: the very pixels; grey: three equal channels
    square = torch.rand(3, 8, 8, generator=g)
    assert torch.equal(fit_view(square, 8), square)
    grey = torch.rand(1, 20, 40, generator=g)
    view = fit_view(grey, 10)
    assert view.shape == (3, 10, 10) and torch.equal(view[0], view[2])
    assert torch.allclose(view[1], pil_resize(grey, 10, 20)[0, :, 5:15], atol=1e-5)


def test_fit_view_passes_gradients_to_every_pixel_it_reads():
    x = torch.rand(3, 20, 40, requires_grad=True)
    fit_view(x, 10).sum().backward()
    columns = x.grad.abs().sum((0, 1))
    assert (columns[12:28] > 0).all() and (columns[:8] == 0).all() and (columns[-8:] == 0).all()


def test_view_slack_and_model_views():
    g = torch.Generator().manual_seed(1)
    assert view_slack(torch.zeros(3, 20, 40), 10) == (0, 10)
    assert view_slack(torch.zeros(3, 40, 20), 10) == (10, 0)
    assert view_slack(torch.zeros(3, 9, 9), 9) == (0, 0)
    images = [torch.rand(3, 20, 40, generator=g), torch.rand(1, 12, 12, generator=g).double()]
    batch = model_views(images, 8)
    assert batch.shape == (2, 3, 8, 8) and batch.dtype == torch.float32 and batch.device.type == "cpu"
    assert torch.allclose(batch[0], fit_view(images[0], 8)) and torch.allclose(batch[1], fit_view(images[1].float(), 8))


def _fake_bundle(latent_scale: int, blocks: int, image_size: int, family: str = "sd", patch_size: int = 1):
    config = {"block_out_channels": [32] * blocks, "patch_size": patch_size}
    return SimpleNamespace(latent_scale=latent_scale, image_size=image_size, family=family,
                           is_flow=family in ("sd3", "flux"), unet=SimpleNamespace(config=SimpleNamespace(
                               **config, get=config.get)))


def test_canvas_keeps_the_aspect_ratio_on_the_networks_grid():
    sd = _fake_bundle(8, 4, 512)                    # SD 1.5: latents / 8, three downsamplings: a 64 px grid
    assert canvas(sd, 600, 900) == (512, 768)
    assert canvas(sd, 900, 600) == (768, 512)
    assert canvas(sd, 512, 512) == (512, 512)
    assert canvas(sd, 100, 3000) == (512, 15360)
    assert canvas(sd, 1000, 1300) == (512, 640)     # 665.6 -> 10.4 units -> 10
    assert canvas(sd, 1000, 1370) == (512, 704)     # 701.4 -> 10.96 units -> 11
    assert canvas(_fake_bundle(4, 2, 32), 50, 70) == (32, 48)      # a 8 px grid: 44.8 -> 5.6 -> 6 units
    assert canvas(_fake_bundle(8, 4, 16), 40, 90) == (64, 64)      # never under one unit
    # SD3 (latents / 8, 2 x 2 patches) and FLUX (latents / 8, packed 2 x 2): a 16 px grid
    for flow in (_fake_bundle(8, 4, 1024, "sd3", patch_size=2), _fake_bundle(8, 4, 1024, "flux", patch_size=1)):
        assert canvas(flow, 1000, 1370) == (1024, 1408)             # 1402.9 -> 87.7 units -> 88


def _scheduled_bundle(kind: str | None, steps: int = 1000):
    config = {"num_train_timesteps": steps}
    if kind is not None:
        config["prediction_type"] = kind
    scheduler = DDPMScheduler(**config)
    if kind is None:
        scheduler._internal_dict = {k: v for k, v in scheduler.config.items() if k != "prediction_type"}
    return SimpleNamespace(scheduler=scheduler, device=torch.device("cpu"), dtype=torch.float32)


def _abar(bundle, t):
    return bundle.scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)


def test_targets_and_predicted_noise_for_each_prediction_type():
    g = torch.Generator().manual_seed(2)
    z, eps = torch.randn(2, 4, 3, 3, generator=g), torch.randn(2, 4, 3, 3, generator=g)
    t = torch.tensor([10, 700])
    assert diffusion.prediction_type(_scheduled_bundle(None)) == "epsilon"
    for kind in ("epsilon", "v_prediction", "sample"):
        bundle = _scheduled_bundle(kind)
        a = _abar(bundle, t)
        noisy = a.sqrt() * z + (1 - a).sqrt() * eps
        expected = {"epsilon": eps, "sample": z, "v_prediction": a.sqrt() * eps - (1 - a).sqrt() * z}[kind]
        target = diffusion.diffusion_target(bundle, z, eps, t)
        assert torch.allclose(target, expected, atol=1e-6), kind
        assert torch.allclose(diffusion.predicted_noise(bundle, target, noisy, t), eps, atol=1e-4), kind
        assert torch.allclose(diffusion.predicted_noise(bundle, target, noisy, t.tolist()), eps, atol=1e-4), kind
    odd = _scheduled_bundle("epsilon")
    odd.scheduler._internal_dict = {**odd.scheduler.config, "prediction_type": "x0-and-eps"}
    for call in (lambda: diffusion.diffusion_target(odd, z, eps, t), lambda: diffusion.predicted_noise(odd, z, z, t)):
        with pytest.raises(ValueError, match="'x0-and-eps' is not supported"):
            call()


def test_draws_take_noise_then_timesteps_from_the_generator():
    bundle = _scheduled_bundle("epsilon", steps=50)
    noise, t = diffusion.draws(bundle, (3, 4, 2, 2), torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    assert torch.equal(noise, torch.randn(3, 4, 2, 2, generator=g))
    assert torch.equal(t, torch.randint(0, 50, (3,), generator=g))
    given = torch.tensor([1, 2, 3])
    noise2, t2 = diffusion.draws(bundle, (3, 4, 2, 2), torch.Generator().manual_seed(5), given)
    assert torch.equal(noise2, noise) and torch.equal(t2, given)
    many = diffusion.draws(bundle, (4000, 1), torch.Generator().manual_seed(0))[1]
    assert many.min() == 0 and many.max() == 49            # the whole range [0, T)


class _ConstantUNet(torch.nn.Module):
    """Predicts `value` everywhere, in its own dtype; records what it was called with."""

    def __init__(self, value: float, dtype=torch.float32):
        super().__init__()
        self.value, self.calls, self._dtype = value, [], dtype
        self.register_buffer("anchor", torch.zeros(()))

    @property
    def dtype(self):
        return self._dtype

    def forward(self, noisy, t, encoder_hidden_states):
        self.calls.append((noisy.clone(), t.clone(), encoder_hidden_states))
        return SimpleNamespace(sample=torch.full_like(noisy, self.value))


def test_denoising_loss_is_the_mean_squared_error_to_the_target_with_min_snr_weights():
    bundle = _scheduled_bundle("epsilon")
    bundle.unet = _ConstantUNet(0.0)
    g = torch.Generator().manual_seed(3)
    z = torch.randn(2, 4, 3, 3, generator=g)
    context = torch.randn(2, 5, 8, generator=g)
    t = torch.tensor([100, 900])
    loss = diffusion.denoising_loss(bundle, z, context, torch.Generator().manual_seed(7), timesteps=t)
    eps = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(loss, eps.pow(2).flatten(1).mean(1), atol=1e-6)
    noisy, seen_t, seen_c = bundle.unet.calls[-1]
    a = _abar(bundle, t)
    assert torch.allclose(noisy, a.sqrt() * z + (1 - a).sqrt() * eps, atol=1e-6)
    assert torch.equal(seen_t, t) and seen_c is context
    mean = diffusion.denoising_loss(bundle, z, context, torch.Generator().manual_seed(7), timesteps=t, reduction="mean")
    assert mean.shape == () and torch.allclose(mean, loss.mean())
    other = _ConstantUNet(1.0)                                         # a surrogate replaces the bundle's
    moved = diffusion.denoising_loss(bundle, z, context, torch.Generator().manual_seed(7), timesteps=t, unet=other)
    assert torch.allclose(moved, (1 - eps).pow(2).flatten(1).mean(1), atol=1e-6) and len(other.calls) == 1
    weighted = diffusion.denoising_loss(bundle, z, context, torch.Generator().manual_seed(7), timesteps=t,
                                        snr_gamma=5.0)
    assert torch.allclose(weighted, loss * diffusion.min_snr_weights(bundle, t, 5.0), atol=1e-6)
    with pytest.raises(ValueError, match="'sum'"):
        diffusion.denoising_loss(bundle, z, context, torch.Generator().manual_seed(7), timesteps=t, reduction="sum")


def test_min_snr_weights_written_out():
    t = torch.tensor([0, 50, 400, 999])
    for kind in ("epsilon", "v_prediction", "sample"):
        bundle = _scheduled_bundle(kind)
        abar = bundle.scheduler.alphas_cumprod.double()[t]
        snr = abar / (1 - abar)
        clipped = torch.minimum(snr, torch.full_like(snr, 5.0))
        expected = {"epsilon": clipped / snr, "v_prediction": clipped / (snr + 1), "sample": clipped}[kind]
        got = diffusion.min_snr_weights(bundle, t, 5.0)
        assert torch.allclose(got.double(), expected, rtol=1e-5), kind
    eps = diffusion.min_snr_weights(_scheduled_bundle("epsilon"), t, 5.0)
    assert eps[0] < 0.01 and eps[-1] == pytest.approx(1.0)          # low noise weighted down, high noise 1


def test_stratified_timesteps_are_the_centres_of_equal_strata():
    bundle = _scheduled_bundle("epsilon")
    assert diffusion.stratified_timesteps(bundle, 4).tolist() == [125, 375, 625, 875]
    assert diffusion.stratified_timesteps(bundle, 3).tolist() == [166, 500, 833]
    assert diffusion.stratified_timesteps(_scheduled_bundle("epsilon", steps=10), 10).tolist() == list(range(10))


def test_the_loss_reads_v_targets_and_everything_follows_the_bundles_device_and_dtype():
    # v-prediction: a UNet that predicts 0 leaves the whole v target as the error
    bundle = _scheduled_bundle("v_prediction")
    bundle.unet = _ConstantUNet(0.0)
    g = torch.Generator().manual_seed(4)
    z, context, t = torch.randn(2, 4, 3, 3, generator=g), torch.randn(2, 5, 8, generator=g), torch.tensor([30, 600])
    loss = diffusion.denoising_loss(bundle, z, context, torch.Generator().manual_seed(1), timesteps=t)
    eps = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(1))
    a = _abar(bundle, t)
    assert torch.allclose(loss, (a.sqrt() * eps - (1 - a).sqrt() * z).pow(2).flatten(1).mean(1), atol=1e-6)
    # the bundle's dtype sets the noise's; a UNet in double precision gets its inputs in double
    bundle = _scheduled_bundle("epsilon")
    bundle.dtype = torch.float64
    noise, _ = diffusion.draws(bundle, (2, 4, 3, 3), torch.Generator().manual_seed(0))
    assert noise.dtype == torch.float64
    bundle.dtype, bundle.unet = torch.float32, _ConstantUNet(0.0, torch.float64)
    diffusion.denoising_loss(bundle, z, context, torch.Generator().manual_seed(1), timesteps=t)
    noisy, _, seen_context = bundle.unet.calls[-1]
    assert noisy.dtype == torch.float64 and seen_context.dtype == torch.float64
    # another device (the meta device stands for a GPU): draws, predicted noise and weights follow it
    bundle = _scheduled_bundle("v_prediction")
    bundle.device, bundle.unet = torch.device("meta"), _ConstantUNet(0.0)
    noise, steps = diffusion.draws(bundle, (2, 4, 3, 3), torch.Generator().manual_seed(0))
    assert noise.device.type == "meta" and steps.device.type == "meta"
    meta = torch.zeros(2, 4, 3, 3, device="meta")
    assert diffusion.predicted_noise(bundle, meta, meta, t).device.type == "meta"
    loss = diffusion.denoising_loss(bundle, meta, torch.zeros(2, 5, 8, device="meta"), torch.Generator().manual_seed(0))
    assert loss.device.type == "meta" and loss.shape == (2,)


def _flow_bundle(family: str = "sd3", shift: float = 3.0, steps: int = 1000):
    from artshield.models.flow import FlowSchedule

    return SimpleNamespace(scheduler=FlowSchedule({"num_train_timesteps": steps, "shift": shift}, family),
                           device=torch.device("cpu"), dtype=torch.float32)


def test_flow_targets_draws_loss_and_strata_written_out():
    # SD3 / FLUX: z_t = (1 - s) z + s eps, target eps - z, t = 1000 s; the noise back from a velocity
    bundle = _flow_bundle()
    assert diffusion.prediction_type(bundle) == "flow"
    g = torch.Generator().manual_seed(6)
    z, eps = torch.randn(2, 4, 3, 3, generator=g), torch.randn(2, 4, 3, 3, generator=g)
    t = torch.tensor([100.0, 750.0])
    s = (t / 1000).view(-1, 1, 1, 1)
    noisy = (1 - s) * z + s * eps
    target = diffusion.diffusion_target(bundle, z, eps, t)
    assert torch.allclose(target, eps - z, atol=1e-6)
    assert torch.allclose(diffusion.predicted_noise(bundle, target, noisy, t), eps, atol=1e-5)
    assert torch.allclose(diffusion.predicted_noise(bundle, target, noisy, t.tolist()), eps, atol=1e-5)
    # draws: the noise, then the family's training-time draw, from one generator
    noise, drawn = diffusion.draws(bundle, (3, 4, 2, 2), torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    assert torch.equal(noise, torch.randn(3, 4, 2, 2, generator=g))
    assert torch.equal(drawn, bundle.scheduler.sample_timesteps(3, g))
    given = torch.tensor([10.0, 20.0, 30.0])
    assert torch.equal(diffusion.draws(bundle, (3, 4, 2, 2), torch.Generator().manual_seed(5), given)[1], given)
    # the loss: a transformer that predicts 0 leaves the whole velocity as the error, at the noised input
    bundle.unet = _ConstantUNet(0.0)
    context = torch.randn(2, 5, 8, generator=g)
    loss = diffusion.denoising_loss(bundle, z, context, torch.Generator().manual_seed(7), timesteps=t)
    eps7 = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(loss, (eps7 - z).pow(2).flatten(1).mean(1), atol=1e-6)
    seen, seen_t, _ = bundle.unet.calls[-1]
    assert torch.allclose(seen, (1 - s) * z + s * eps7, atol=1e-6) and torch.equal(seen_t, t)
    refusal = r"^Min-SNR weighting is defined for DDPM-trained models, not flow matching \(SD3, FLUX\)$"
    with pytest.raises(ValueError, match=refusal):
        diffusion.min_snr_weights(bundle, t, 5.0)
    with pytest.raises(ValueError, match=refusal):
        diffusion.denoising_loss(bundle, z, context, torch.Generator().manual_seed(7), timesteps=t, snr_gamma=5.0)
    # strata: the centres of equal strata of the training table, small noise to large (t = 10 sigma here)
    plain = _flow_bundle(shift=1.0, steps=10)
    assert torch.allclose(diffusion.stratified_timesteps(plain, 5), torch.tensor([2.0, 4, 6, 8, 10]))
    assert torch.equal(diffusion.stratified_timesteps(bundle, 4), bundle.scheduler.spread(4))
    # a GPU (the meta device): flow draws and predicted noise follow the bundle's device
    bundle.device = torch.device("meta")
    noise, drawn = diffusion.draws(bundle, (2, 4, 3, 3), torch.Generator().manual_seed(0))
    assert noise.device.type == "meta" and drawn.device.type == "meta"
    meta = torch.zeros(2, 4, 3, 3, device="meta")
    assert diffusion.predicted_noise(bundle, meta, meta, t).device.type == "meta"


def _pil_bicubic(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return pil_resize(image, height, width, Image.BICUBIC)


def test_the_redraw_canvas_is_pils_bicubic_there_and_back_clipped_to_the_image_range():
    from artshield.purify._redraw import from_canvas, to_canvas

    bundle = _fake_bundle(4, 2, 16)                               # an 8 px grid, 16 px short side
    bundle.device = torch.device("cpu")
    g = torch.Generator().manual_seed(6)
    image = torch.rand(3, 40, 70, generator=g)
    image[:, :20] = (torch.arange(70) >= 37).float()            # a sharp 0/1 edge: bicubic overshoots it
    x = to_canvas(bundle, image)
    assert x.shape == (1, 3, 16, 32) and x.min() >= 0 and x.max() <= 1
    assert torch.allclose(x[0], _pil_bicubic(image, 16, 32).clamp(0, 1), atol=1e-4)
    assert (_pil_bicubic(image, 16, 32).max() > 1.01) and (_pil_bicubic(image, 16, 32).min() < -0.01)
    back = from_canvas(x, image)
    assert back.shape == image.shape and back.min() >= 0 and back.max() <= 1
    assert torch.allclose(back, _pil_bicubic(x[0], 40, 70).clamp(0, 1), atol=1e-4)
    assert (_pil_bicubic(x[0], 40, 70).min() < -0.001) or (_pil_bicubic(x[0], 40, 70).max() > 1.001)
    grey = image[:1]
    up = to_canvas(bundle, grey)
    assert up.shape == (1, 3, 16, 32) and torch.equal(up[0, 0], up[0, 2])
    assert torch.allclose(from_canvas(up, grey), _pil_bicubic(up[0], 40, 70).clamp(0, 1).mean(0, keepdim=True),
                          atol=1e-4)
    bundle.device = torch.device("meta")
    assert to_canvas(bundle, image).device.type == "meta"
