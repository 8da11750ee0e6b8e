"""Dataset inference ("was my art used?"): the test's p-value under the null and with a planted
signal, its scoring model against an independent fit, the features against the model written out,
a model fine-tuned on a set found by its features, and the command."""
import json

import numpy as np
import pytest
import torch

from artshield.audit import dataset


def test_the_p_value_is_uniform_when_neither_set_was_trained_on():
    """Two sets drawn alike (Gaussian, skewed, and with a constant column): the p-values of 200
    replications pass a Kolmogorov-Smirnov test against the uniform, and p <= 0.1 about a tenth of
    the time (a binomial 99.9 % band)."""
    from scipy.stats import binom, kstest

    rng = np.random.default_rng(1)
    for draw in (lambda: rng.normal(size=(20, 6)),
                 lambda: np.hstack([rng.exponential(size=(20, 5)), np.ones((20, 1))])):
        ps = np.array([dataset.dataset_inference((x := draw())[:10], x[10:], permutations=49, seed=r)["p_value"]
                       for r in range(200)])
        assert kstest(ps, "uniform").pvalue > 0.01
        low, high = binom.ppf([0.0005, 0.9995], 200, 0.1)
        assert low <= (ps <= 0.1).sum() <= high, (ps <= 0.1).mean()


def test_a_planted_signal_is_found_and_shown_in_the_effect_sizes():
    rng = np.random.default_rng(2)
    suspect, heldout = rng.normal(size=(30, 15)), rng.normal(size=(30, 15))
    suspect[:, :5] -= 1.0                               # lower error on five signals, as training images have
    r = dataset.dataset_inference(suspect, heldout, seed=0)
    assert r["p_value"] <= 0.002 and r["auc"] > 0.8 and len(r["null_auc"]) == 999
    assert r["p_value"] == (1 + sum(a >= r["auc"] - 1e-12 for a in r["null_auc"])) / 1000
    d = dataset.effect_sizes(suspect, heldout)
    assert (d[:5] < -0.5).all() and (np.abs(d[5:]) < 0.8).all()
    # the same sets unlabelled alike: swapped, the signal still separates them (the test is two-sided in
    # effect: the classifier learns the direction), and a constant detector finds nothing
    assert dataset.dataset_inference(heldout, suspect, seed=0)["p_value"] <= 0.002
    flat = dataset.dataset_inference(np.ones((30, 15)), np.ones((30, 15)), permutations=99)
    assert flat["p_value"] == 1.0 and flat["auc"] == 0.5


def test_the_scoring_model_is_the_penalised_maximum_likelihood_fit():
    from scipy.optimize import minimize

    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 4))
    y = (x[:, 0] + 0.5 * rng.normal(size=40) > 0).astype(float)

    def loss(w):
        z = w[0] + x @ w[1:]
        return np.sum(np.logaddexp(0, z) - y * z) + 0.5 * 2.0 * np.sum(w[1:] ** 2)

    want = minimize(loss, np.zeros(5), method="BFGS", options={"gtol": 1e-10}).x
    assert np.allclose(dataset.fit_logistic(x, y, ridge=2.0), want, atol=1e-5)
    # out-of-fold: a fold's scores come from a fit on the other folds, standardised by them
    folds = np.arange(40) % 4
    scores = dataset.out_of_fold_scores(x, y, folds, ridge=2.0)
    train = folds != 0
    mean, sd = x[train].mean(0), x[train].std(0)
    w = dataset.fit_logistic((x[train] - mean) / sd, y[train], 2.0)
    assert np.allclose(scores[~train], ((x[~train] - mean) / sd) @ w[1:]) and abs(w[0]) > 0.01
    assert dataset.auc(np.array([3.0, 1.0, 2.0, 2.0]), np.array([1, 0, 1, 0])) == 0.875


def test_too_few_images_or_permutations_are_refused_saying_what_is_needed():
    x = np.zeros((9, 3))
    with pytest.raises(ValueError, match="at least 10 images in each set .9 suspect, 12 held-out"):
        dataset.dataset_inference(x, np.zeros((12, 3)))
    with pytest.raises(ValueError, match="at least 14 images"):
        dataset.dataset_inference(np.zeros((12, 3)), np.zeros((12, 3)), folds=7)
    with pytest.raises(ValueError, match="NaN"):
        dataset.dataset_inference(np.full((10, 3), np.nan), np.zeros((10, 3)))
    with pytest.raises(ValueError, match="cannot give a p-value at or under alpha 0.01.*at least 99"):
        dataset.run(None, [torch.rand(3, 8, 8)] * 10, ["x"] * 10, [torch.rand(3, 8, 8)] * 10, ["x"] * 10,
                    permutations=50)
    assert "once in 1,000 tries" in dataset.explain(0.001) and "once in 20 tries" in dataset.explain(0.05)
    assert dataset.verdict(0.001, 0.01).startswith("evidence") and dataset.verdict(0.2, 0.01).startswith("no evidence")


def test_the_features_are_the_models_denoising_errors_and_do_not_depend_on_the_set(tiny_bundle):
    """Each feature written out for one image (its latent noised by the draw of its seed, the
    model's prediction against the target with the caption and with the empty prompt); an image's
    row is the same in any batch, any order."""
    g = torch.Generator().manual_seed(0)
    size = tiny_bundle.image_size
    images = torch.rand(3, 3, size, size, generator=g)
    captions = ["a red icon", "", "a blue icon"]
    features = dataset.membership_features(tiny_bundle, images, captions, timesteps=(100, 600), draws=2, seed=5,
                                           batch_size=2)
    assert features.shape == (3, 6)
    again = dataset.membership_features(tiny_bundle, images.flip(0), captions[::-1], timesteps=(100, 600), draws=2,
                                        seed=5, batch_size=3)
    assert np.allclose(again[::-1], features, atol=1e-5)
    with torch.no_grad():
        z = tiny_bundle.encode(images[2:3])
        want = np.zeros((2, 2))
        for j, t in enumerate((100, 600)):
            tt = torch.tensor([t])
            for d in range(2):
                noise = torch.randn(tuple(z.shape[1:]), generator=torch.Generator().manual_seed(5 + d))[None]
                noisy = tiny_bundle.scheduler.add_noise(z, noise, tt)
                for k, caption in enumerate(("a blue icon", "")):
                    pred = tiny_bundle.unet(noisy, tt, encoder_hidden_states=tiny_bundle.embed([caption])).sample
                    want[k, j] += float((pred - noise).pow(2).mean()) / 2      # epsilon prediction
    assert np.allclose(features[2], np.r_[want[0], want[1], want[0] - want[1]], atol=1e-5)
    assert dataset.feature_names((100, 600))[::2] == ["conditional loss @ t=100", "unconditional loss @ t=100",
                                                       "conditional - unconditional @ t=100"]
    with pytest.raises(ValueError, match="timesteps must lie in"):
        dataset.membership_features(tiny_bundle, images, captions, timesteps=(1000,))
    with pytest.raises(ValueError, match="3 images and 2 captions"):
        dataset.membership_features(tiny_bundle, images, captions[:2])


def _icons(n, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.rand(3, 4, 4, generator=g)
        out.append(torch.nn.functional.interpolate(x[None], size=(16, 16), mode="nearest")[0])
    return out


def test_the_command_audits_a_model_with_an_adapter_against_held_out_images(tiny_model_dir, tmp_path, capsys):
    """Through the command, on a tiny model with a LoRA: results.json (the test's figures, every
    image's features and score, the adapter), the page with its verdict and charts, a bad file
    reported and the exit code 1; the adapter is what is audited (its features are not the base
    model's); too few images, a conflicting option or alpha out of the permutations' reach are
    refused in one line before anything is written. (That a fine-tuned set is found is measured on
    mini: tests/test_audit_dataset.py's slow test and docs/results/audit-dataset/.)"""
    from artshield.cli import main
    from artshield.io import write_image
    from artshield.mimic import mimic
    from artshield.models import load_model

    members, others = _icons(12, 0), _icons(12, 1)
    adapter = mimic(load_model(str(tiny_model_dir), device="cpu"), members, ["an icon, sks style"] * 12, "lora",
                    steps=4, lr=3e-2, seed=0)
    adapter.save(tmp_path / "lora")
    for name, images in (("mine", members), ("unpublished", others)):
        for k, x in enumerate(images):
            write_image(x, tmp_path / name / f"{k:02d}.png")
    (tmp_path / "mine" / "broken.png").write_bytes(b"not a png")
    argv = ["audit", "--model", str(tiny_model_dir), "--dataset", str(tmp_path / "mine"), "--heldout",
            str(tmp_path / "unpublished"), "--caption", "an icon, sks style", "--permutations", "199", "-q"]
    assert main([*argv, "--adapter", str(tmp_path / "lora"), "--calibrate", "-o", str(tmp_path / "adapted")]) == 1
    # (exit code 1: broken.png)
    r = json.loads((tmp_path / "adapted" / "results.json").read_text())
    assert r["mode"] == "dataset inference" and r["adapter"]["method"] == "lora" and "captions" not in r["adapter"]
    assert r["trained_on"] == (r["p_value"] <= 0.01) and r["verdict"].startswith("evidence" if r["trained_on"] else "no")
    assert r["suspect"] == r["heldout"] == 12 and "broken.png" in r["failed"][0]["file"]
    # --calibrate: each image is also calibrated by the base model: 15 features and 15 differences
    assert len(r["features"]) == 30 and len(r["scores"]["suspect"]) == 12 and len(r["null_auc"]) == 199
    assert r["calibrated_by_base"] and r["features"][15]["name"] == "conditional loss @ t=50, adapted - base"
    page = (tmp_path / "adapted" / "report.html").read_text()
    assert r["verdict"].split(" (")[0] in page and page.count("<svg") == 2 and "mine" in page
    assert main([*argv, "-o", str(tmp_path / "base")]) == 1
    base = json.loads((tmp_path / "base" / "results.json").read_text())
    assert base["adapter"] is None and 0 < base["p_value"] <= 1
    assert not base["calibrated_by_base"] and len(base["features"]) == 15
    adapted, plain = np.array(r["image_features"]["suspect"]), np.array(base["image_features"]["suspect"])
    assert not np.allclose(plain, adapted[:, :15])
    assert np.allclose(adapted[:, 15:], adapted[:, :15] - plain, atol=2e-6)
    capsys.readouterr()
    assert main([*argv, "--adapter", str(tmp_path / "nowhere"), "-o", str(tmp_path / "z")]) == 2
    assert "nowhere" in capsys.readouterr().err and not (tmp_path / "z").exists()
    assert main([*argv, "--calibrate", "-o", str(tmp_path / "z")]) == 2
    assert "needs --adapter" in capsys.readouterr().err and not (tmp_path / "z").exists()
    capsys.readouterr()
    for k in range(5):
        (tmp_path / "unpublished" / f"{k:02d}.png").unlink()
    assert main([*argv, "-o", str(tmp_path / "few")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "at least 10 readable images" in err and ": 7)" in err
    assert not (tmp_path / "few").exists()
    for extra, words in ((["--prompts", str(tmp_path / "p.txt")], "belong to the memorisation audit"),
                         (["--alpha", "0.001", "--permutations", "500"], "too few to reach --alpha 0.001")):
        assert main([*argv[:-3], *extra, "-o", str(tmp_path / "x"), "-q"]) == 2
        assert words in capsys.readouterr().err
    assert main(["audit", "--dataset", str(tmp_path / "mine"), "-o", str(tmp_path / "y"), "-q"]) == 2
    assert "go together" in capsys.readouterr().err


@pytest.mark.slow
def test_a_set_a_mimic_fine_tuned_mini_on_is_found_and_mini_itself_is_not_accused():
    """gartoon's fine-tuning icons split at random, 20 and 20: a LoRA with the bench's settings on the
    first 20; dataset inference on the adapted model finds them (p <= 0.01), on mini itself it does
    not (the same sets, p > 0.01)."""
    from artshield import corpus
    from artshield.bench.experiment import PRESETS, trigger_caption
    from artshield.mimic import mimic
    from artshield.models import load_model
    from artshield.models.views import model_views

    pool = corpus.items(split="finetune", theme="gartoon")
    order = np.random.default_rng(0).permutation(len(pool))
    items = [pool[i] for i in order[:40]]
    images = list(corpus.load_images(items, 64))
    captions = [trigger_caption(i.caption, "gartoon") for i in items]
    bundle = load_model("mini", device="cpu")
    views = model_views(images, bundle.image_size)
    base = dataset.membership_features(bundle, views, captions)
    preset = PRESETS["mimics"]
    adapter = mimic(bundle, images[:20], captions[:20], "lora", steps=preset.mimicry_steps["lora"],
                    lr=preset.mimicry_lr["lora"], seed=0, **preset.mimicry_options["lora"])
    adapter.apply(bundle)
    adapted = dataset.membership_features(bundle, views, captions)
    assert dataset.dataset_inference(adapted[:20], adapted[20:])["p_value"] <= 0.01
    assert dataset.dataset_inference(base[:20], base[20:])["p_value"] > 0.01


def test_the_dataset_table_labels_each_row_by_its_model_calibration_and_draws_and_pools_the_nulls():
    from artshield.bench.tables import dataset as table

    null = {"splits": 2, "false_positive_rate": {"0.05": 0.5, "0.01": 0.0}, "p_values": [0.03, 0.5]}
    base = {"artist": "moka", "images_per_set": 30, "auc": 0.6, "null_never_trained": null}
    records = [{**base, "mimic": "dreambooth", "steps": 150, "p_value": 0.009, "calibrated_by_base": True},
               {**base, "mimic": "dreambooth", "steps": 150, "p_value": 0.004, "draws": 16},
               {**base, "mimic": "dreambooth", "steps": 150, "p_value": 0.059},
               {"artist": "moka", "model": "mini", "images_per_set": 30, "p_value": 0.2, "auc": 0.5, "null": null}]
    rows = table({"records": records}).splitlines()
    assert rows[2].startswith("| moka | mini | 30 | 0.200 | 0.500 | not accused |")
    assert rows[3].startswith("| moka | mini + dreambooth (150 steps) | 30 | 0.059 | 0.600 | not found |")
    assert rows[4].startswith("| moka | mini + dreambooth (150 steps), calibrated by mini | 30 | 0.009 | 0.600 | **found** |")
    assert rows[5].startswith("| moka | mini + dreambooth (150 steps), 16 noise draws | 30 | 0.004 | 0.600 | **found** |")
    assert rows[6].startswith("| all | every null split above, pooled |") and rows[6].endswith("of 8 |")
