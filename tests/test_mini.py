"""The embedded model: loads by name, generates icons, and runs the model-quality bench."""
import torch

from artshield import generate
from artshield.bench import model_quality
from artshield.metrics.judge import Judge


def test_mini_loads_by_name_with_sd_parts(mini_bundle):
    b = mini_bundle
    assert b.source == "embedded" and b.image_size == 32 and b.dtype == torch.float32
    assert type(b.unet).__name__ == "UNet2DConditionModel" and type(b.vae).__name__ == "AutoencoderKL"
    assert type(b.text_encoder).__name__ == "CLIPTextModel"
    assert b.conventions.guidance > 1 and b.conventions.corpus


def test_mini_generates_the_same_icons_for_the_same_seed(mini_bundle):
    a = generate(mini_bundle, ["folder icon, papirus style", "printer icon, oxygen style"], seed=1, steps=10)
    b = generate(mini_bundle, ["folder icon, papirus style", "printer icon, oxygen style"], seed=1, steps=10)
    assert a.shape == (2, 3, 32, 32) and torch.equal(a, b)
    assert a.std() > 0.05  # not a flat colour


def test_mini_vae_reconstructs_unseen_artists():
    from artshield import corpus
    from artshield.models import load_model

    bundle = load_model("mini", device="cpu")
    heldout = [i for s in ("finetune", "reference") for i in corpus.items(split=s)][::6]
    assert {i.theme for i in heldout} == set(corpus.themes(heldout=True))
    assert model_quality.vae_psnr(bundle, corpus.load_images(heldout, 32)) > 25.0


def test_model_quality_bench_reports_every_figure(tiny_bundle):
    figures, images, items = model_quality.run(tiny_bundle, Judge.load(), per_theme=1, steps=2)
    for key in ("vae_psnr_db", "judge_real_style_accuracy", "judge_real_concept_accuracy", "style_accuracy",
                "concept_accuracy", "domain_fid", "domain_kid", "seconds"):
        assert isinstance(figures[key], float), key
    assert len(items) == len(images) == 16
    # a random-weight model is no better than chance at the captioned style
    assert figures["style_accuracy"] <= 0.5
