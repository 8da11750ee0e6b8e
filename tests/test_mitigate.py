"""Wen et al.'s inference-time mitigation (audit/mitigate.py) and `generate --mitigate-memorization`."""
import json
import math

import pytest
import torch

from artshield.audit.detect import text_conditional_magnitude
from artshield.audit.mitigate import MitigateConfig, adjust, default_target, magnitude, starting_noise
from artshield.cli import main
from artshield.generate import generate

PROMPTS = ["people icon, papirus style", "cd image icon, gnomecolors style", "a red star"]


def _sampler(bundle):
    s = bundle.sampler()
    s.set_timesteps(bundle.conventions.steps, device=bundle.device)
    return s


def test_the_default_target_is_the_authors_three_rescaled_by_the_latent_size(tiny_bundle, mini_bundle):
    # mini: 4 x 8 x 8 latents, 256 of SD's 16384 elements, so 3 x sqrt(1 / 64)
    assert default_target(mini_bundle) == pytest.approx(3 / 8)
    side = tiny_bundle.image_size // 2 ** (len(tiny_bundle.vae.config.block_out_channels) - 1)
    elements = tiny_bundle.unet.config.in_channels * side * side
    assert default_target(tiny_bundle) == pytest.approx(3 * math.sqrt(elements / 16384))


def test_starting_noise_and_magnitude_are_the_detectors_at_step_one(mini_bundle):
    """The magnitude the mitigation lowers is Wen's detector score at step one with one generation."""
    sampler = _sampler(mini_bundle)
    for seed in (0, 5):
        noise = starting_noise(mini_bundle, [seed] * len(PROMPTS)) * sampler.init_noise_sigma
        with torch.no_grad():
            d = magnitude(mini_bundle, sampler, noise, mini_bundle.embed(PROMPTS), mini_bundle.embed([""])).numpy()
        wen = text_conditional_magnitude(mini_bundle, PROMPTS, generations=1, steps=1, seed=seed)
        assert d == pytest.approx(wen, rel=1e-5)


def test_a_target_above_every_magnitude_changes_nothing(mini_bundle):
    plain = generate(mini_bundle, PROMPTS, seed=3)
    records = []
    kept = generate(mini_bundle, PROMPTS, seed=3, mitigate=MitigateConfig(target=100.0), records=records)
    assert torch.equal(plain, kept)
    assert [r["adjusted"] for r in records] == [False] * 3
    assert all(r["steps"] == 0 and r["magnitude_after"] == r["magnitude_before"] for r in records)


def test_a_low_target_is_reached_and_the_images_change(mini_bundle):
    plain = generate(mini_bundle, PROMPTS, seed=3)
    records = []
    low = generate(mini_bundle, PROMPTS, seed=3, mitigate=MitigateConfig(target=0.5, iterations=40), records=records)
    for r, a, b in zip(records, plain, low):
        assert r["magnitude_before"] > 0.5 and r["adjusted"]
        assert r["reached_target"] and r["magnitude_after"] <= 0.5 + 1e-6 and 1 <= r["steps"] <= 40
        assert (a - b).abs().max() > 0.05


def test_one_step_is_adamw_on_every_token_state_but_the_first(mini_bundle):
    """iterations=1 and an unreachable target: the states after one AdamW step, written out (the first
    step's bias-corrected moments are g and g^2, so the step is lr x g / (|g| + eps) after the decay)."""
    sampler = _sampler(mini_bundle)
    noise = starting_noise(mini_bundle, [7, 8])
    context = mini_bundle.embed(PROMPTS[:2]).detach()
    lr = 0.05
    new, records = adjust(mini_bundle, context, noise, sampler, MitigateConfig(lr=lr, iterations=1), target=1e-6)
    free = context[:, 1:].clone().requires_grad_(True)
    d = magnitude(mini_bundle, sampler, noise.float() * sampler.init_noise_sigma,
                  torch.cat([context[:, :1], free], 1), mini_bundle.embed([""]).detach())
    (g,) = torch.autograd.grad(d.sum(), [free])
    expected = context[:, 1:] * (1 - lr * 0.01) - lr * g / (g.abs() + 1e-8)
    assert torch.equal(new[:, :1], context[:, :1])
    assert torch.allclose(new[:, 1:], expected, atol=1e-6)
    assert [r["steps"] for r in records] == [1, 1] and not any(r["reached_target"] for r in records)
    assert [r["magnitude_before"] for r in records] == pytest.approx(d.detach().numpy(), abs=1e-5)


def test_each_row_stops_on_its_own_as_if_adjusted_alone(mini_bundle):
    sampler = _sampler(mini_bundle)
    noise = starting_noise(mini_bundle, [1, 2, 3])
    context = mini_bundle.embed(PROMPTS).detach()
    config = MitigateConfig(iterations=8)
    together, records = adjust(mini_bundle, context, noise, sampler, config, target=0.7)
    assert len({r["steps"] for r in records}) > 1          # rows stopped at different steps
    for i in range(3):
        alone, (record,) = adjust(mini_bundle, context[i:i + 1], noise[i:i + 1], sampler, config, target=0.7)
        # Adam divides by the gradient's size, so batched and single float sums differ a little
        assert torch.allclose(together[i], alone[0], atol=2e-4)
        assert record["steps"] == records[i]["steps"]
        assert record["magnitude_after"] == pytest.approx(records[i]["magnitude_after"], abs=1e-4)


def test_the_options_are_checked():
    with pytest.raises(ValueError, match="lr"):
        MitigateConfig(lr=0)
    with pytest.raises(ValueError, match="iterations"):
        MitigateConfig(iterations=0)
    with pytest.raises(ValueError, match="target"):
        MitigateConfig(target=-1.0)


def test_generate_cli_mitigates_and_records_each_image(tmp_path, capsys):
    out = tmp_path / "g"
    assert main(["generate", "--prompt", PROMPTS[0], "-n", "2", "-o", str(out), "-q", "--steps", "4",
                 "--mitigate-memorization", "--mitigate-target", "0.9"]) == 0
    r = json.loads((out / "results.json").read_text())
    assert r["mitigation"]["target"] == 0.9 and r["mitigation"]["lr"] == 0.05
    assert [i["seed"] for i in r["images"]] == [0, 1]
    for image in r["images"]:
        m = image["mitigation"]
        assert m["target"] == 0.9 and (m["magnitude_after"] < m["magnitude_before"] or not m["adjusted"])
    assert main(["generate", "--prompt", "x", "-o", str(tmp_path / "h"), "--mitigate-target", "1"]) == 2
    assert "without --mitigate-memorization" in capsys.readouterr().err
    assert main(["generate", "--prompt", "x", "-o", str(tmp_path / "h"), "--mitigate-memorization",
                 "--mitigate-iterations", "0"]) == 2
    assert "iterations" in capsys.readouterr().err
    assert not (tmp_path / "h").exists()


def test_the_mitigation_table_is_rendered_from_its_record():
    from artshield.bench.tables import mitigation

    figure = {"plain": 0.5, "mitigated": 0.25, "difference": -0.25, "interval": [-0.4, -0.1], "verdict": "lower"}
    report = {"extraction": {"captions": 4, "generations": 8,
                             "plain": {"extracted": 3, "flagged": 4, "near_copies": 4},
                             "mitigated": {"0.5": {"target": 0.82, "extracted": 1, "flagged": 4, "near_copies": 3,
                                                   "generations_adjusted": 30}},
                             "cross_fitted_choice": [{"quantile": 0.5, "target": 0.82, "extracted_on_the_other_half": 0,
                                                      "near_copies_on_the_other_half": 2, "of": 2},
                                                     {"quantile": 0.1, "target": 0.62, "extracted_on_the_other_half": 1,
                                                      "of": 2}]},
              "ordinary_captions": {"captions": 10, "level": 1 - 0.05 / 3,
                                    "mitigated": {"0.5": {"style_accuracy": figure, "concept_accuracy": figure,
                                                          "domain_fid": figure}}}}
    text = mitigation(report)
    assert "| plain | | 3 of 4 [0.30, 0.95] | 4 of 4 [0.51, 1.00] | 4 of 4 | |" in text
    assert "| mitigated | 0.820 (50 %) | 1 of 4 [0.05, 0.70] | 3 of 4 [0.30, 0.95] | 4 of 4 | 30 of 32 |" in text
    assert "| chosen on half A, counted on half B | 0.820 (50 %) | 0 of 2 [0.00, 0.66] | 2 of 2 [0.34, 1.00] | | |" in text
    assert "| chosen on half B, counted on half A | 0.620 (10 %) | 1 of 2 [0.09, 0.91] | not measured | | |" in text
    assert "[98.3 % paired interval]" in text
    assert "| judge's style accuracy | 50 % | 0.500 | 0.250 | -0.250 [-0.400, -0.100] | lower |" in text


def test_mitigation_runs_on_a_v_prediction_model_and_sdxl_is_refused_in_one_line(tmp_path, capsys):
    from artshield.models import load_model
    from artshield.models.tiny import make_tiny_model

    sd2 = make_tiny_model(tmp_path / "sd2", seed=3, family="sd2")
    bundle = load_model(str(sd2), device="cpu")
    records = []
    images = generate(bundle, ["a red star", "folder icon"], seed=0, steps=3,
                      mitigate=MitigateConfig(target=1e-3, iterations=2), records=records)
    assert images.shape[0] == 2 and torch.isfinite(images).all()
    assert [r["steps"] for r in records] == [2, 2] and all(r["magnitude_after"] < r["magnitude_before"] for r in records)
    sdxl = make_tiny_model(tmp_path / "sdxl", seed=4, family="sdxl")
    assert main(["generate", "--model", str(sdxl), "--prompt", "x", "-o", str(tmp_path / "g"),
                 "--mitigate-memorization"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not SDXL yet" in err and not (tmp_path / "g").exists()


def test_a_near_copy_is_a_flagged_caption_closer_to_its_image_than_any_other_training_image():
    from artshield.audit.extract import isolation, near_copy

    training = torch.zeros(4, 3, 4, 4)
    training[1] += 0.25                   # 0.25 from image 0 (normalised L2)
    training[2] += 0.75                   # 0.5 from image 1
    training[3] += 0.75                   # an exact copy of image 2: skipped, as calibrate skips it
    alone = isolation(training)
    assert alone.tolist() == [0.25, 0.25, 0.5, 0.5]
    record = {"flagged": True, "nearest_training": 2, "nearest_l2": 0.375}
    assert near_copy(record, alone)                                        # noisy, yet nearer than image 1
    assert not near_copy({**record, "nearest_l2": 0.5}, alone)             # as far as its neighbour: not a copy
    assert not near_copy({**record, "flagged": False}, alone)              # the seeds disagree: not a copy
    assert not near_copy({**record, "nearest_training": 0}, alone)
