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
    """Every figure against what it names, recomputed from the generations and the corpus: the
    judge's accuracies on its real test split, the generations' style and concept hits (per theme
    too), the domain FID of the judge's features, the counts; a random-weight model's figures are
    those of a model that has learnt nothing."""
    import numpy as np

    from artshield import corpus
    from artshield.metrics.distribution import frechet_distance

    judge = Judge.load()
    figures, images, items = model_quality.run(tiny_bundle, judge, per_theme=1, steps=2)
    for key in ("vae_psnr_db", "judge_real_style_accuracy", "judge_real_concept_accuracy", "style_accuracy",
                "concept_accuracy", "domain_fid", "domain_kid", "seconds"):
        assert isinstance(figures[key], float), key
    themes = corpus.themes(heldout=False)
    assert len(items) == len(images) == len(themes) == 16 and [i.theme for i in items] == themes
    styles, concepts = judge.predict(images)
    assert figures["style_accuracy"] == round(float(np.mean([s == i.theme for s, i in zip(styles, items)])), 4)
    assert figures["concept_accuracy"] == round(float(np.mean([c == i.concept for c, i in zip(concepts, items)])), 4)
    assert figures["style_accuracy_by_theme"] == {i.theme: float(s == i.theme) for s, i in zip(styles, items)}
    test = corpus.items(judge_split="test")
    real_styles, real_concepts = judge.predict(corpus.load_images(test, 64))
    assert figures["judge_real_style_accuracy"] == round(float(np.mean([p == i.theme for p, i in zip(real_styles, test)])), 4)
    assert figures["judge_real_style_accuracy"] >= 0.68 and figures["judge_real_concept_accuracy"] >= 0.40
    real = corpus.load_images([i for i in corpus.items(split="train") if i.concept], 64)
    fid = frechet_distance(judge.features(images).numpy(), judge.features(real).numpy())
    assert figures["domain_fid"] == round(fid, 3) and figures["domain_kid"] > 0
    counts = figures["counts"]
    assert counts["generations"] == 16 and counts["judge_test_images"] == len(test)
    assert counts["fid_reference_images"] == len(real) and counts["chance_style"] == round(1 / 19, 4)
    # a random-weight model is no better than chance at the captioned style, and its VAE reconstructs badly
    assert figures["style_accuracy"] <= 0.5 and figures["vae_psnr_db"] < 20
