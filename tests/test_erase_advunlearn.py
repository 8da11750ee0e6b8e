"""AdvUnlearn: the inner attack, the training on its prefix, the retain term, the model's settings."""
import dataclasses

import pytest
import torch

from artshield.erase import ERASERS, advunlearn, erase
from artshield.errors import ArtshieldError


def test_the_inner_attack_lowers_its_loss_on_the_gradient_and_on_its_sign():
    goal = torch.tensor([[0.5, -1.0, 2.0]])
    for method in ("pgd", "fast-at"):
        rows, losses = advunlearn.adversarial_rows(lambda r: (r - goal).pow(2).sum(), torch.zeros(1, 3), 200, 0.05,
                                                   method)
        assert not rows.requires_grad and len(losses) == 200
        assert losses[-1] < 0.05 * losses[0], method
    rows, losses = advunlearn.adversarial_rows(lambda r: (r - goal).pow(2).sum(), torch.zeros(1, 3), 0, 0.05)
    assert torch.equal(rows, torch.zeros(1, 3)) and losses == []


def _short(**extra):
    return {"iterations": 4, "lr": 1e-2, "ddim_steps": 4, "attack_steps": 2, "warmup": 0.5,
            "preserve": ["a house", "a tree", "a red car"], "retain_batch": 2, **extra}


def test_training_reads_the_attacks_prefix_after_the_warm_up(tiny_bundle, monkeypatch):
    """Each iteration after the warm-up trains on the rows the attack has just returned (and before
    it, on the plain prompt)."""
    returned, trained_on = [], []
    attack, reads = advunlearn.adversarial_rows, advunlearn.context_with_rows

    def spy_attack(*args, **kwargs):
        rows, losses = attack(*args, **kwargs)
        returned.append(rows)
        return rows, losses

    def spy_reads(encoder, ids, rows):
        if not rows.requires_grad:       # the attack optimises rows that ask for gradients; training's do not
            trained_on.append(rows)
        return reads(encoder, ids, rows)

    monkeypatch.setattr(advunlearn, "adversarial_rows", spy_attack)
    monkeypatch.setattr(advunlearn, "context_with_rows", spy_reads)
    edit = erase(tiny_bundle, ["folder icon"], "advunlearn", **_short())
    assert edit.info["warmup_iterations"] == 2
    assert len(returned) == 2 and len(trained_on) == 2
    assert all(a is b for a, b in zip(returned, trained_on))
    assert edit.info["final_attack_loss"] is not None


def _drift(bundle, edit, prompts):
    erased = edit.apply(bundle.copy())
    with torch.no_grad():
        return float((erased.embed(prompts) - bundle.embed(prompts)).pow(2).mean())


def test_the_retain_term_keeps_the_preserved_prompts_closer(tiny_bundle):
    keep = ["a house", "a tree", "a red car"]
    free = erase(tiny_bundle, ["folder icon"], "advunlearn", **_short(retain_weight=0.0, attack_steps=0, seed=3))
    held = erase(tiny_bundle, ["folder icon"], "advunlearn", **_short(retain_weight=30.0, attack_steps=0, seed=3,
                                                                       retain_batch=3))
    assert free.info["final_retain_loss"] is None and held.info["final_retain_loss"] is not None
    assert _drift(tiny_bundle, held, keep) < 0.7 * _drift(tiny_bundle, free, keep)


def test_settings_come_from_the_config_then_the_model_then_the_paper(tiny_bundle):
    conventions = tiny_bundle.conventions
    try:
        tiny_bundle.conventions = dataclasses.replace(conventions, erase_settings={"advunlearn": {"attack_steps": 7}},
                                                      esd_iterations=12, learning_rates={"advunlearn": 3e-4})
        s = ERASERS.create("advunlearn", tiny_bundle).settings()
        assert (s["attack_steps"], s["iterations"], s["lr"], s["ddim_steps"]) == (7, 12, 3e-4, 50)
        s = ERASERS.create("advunlearn", tiny_bundle, attack_steps=2, iterations=5, lr=1e-3).settings()
        assert (s["attack_steps"], s["iterations"], s["lr"]) == (2, 5, 1e-3)
        tiny_bundle.conventions = dataclasses.replace(conventions, erase_settings={"advunlearn": {"eta": 2}})
        with pytest.raises(ArtshieldError, match="eta"):
            ERASERS.create("advunlearn", tiny_bundle).settings()
    finally:
        tiny_bundle.conventions = conventions
    s = ERASERS.create("advunlearn", tiny_bundle).settings()
    assert (s["attack_steps"], s["iterations"], s["lr"], s["ddim_steps"], s["retain_weight"]) == (30, 1000, 1e-5, 50,
                                                                                                   0.3)


@pytest.mark.parametrize("bad", [{"attack_method": "fgsm"}, {"attack_init": "zeros"}, {"warmup": 1.5},
                                 {"preserve": "a house"}, {"prefix": 0}])
def test_bad_settings_are_refused_before_anything_runs(tiny_bundle, bad):
    with pytest.raises((ValueError, TypeError)):
        ERASERS.create("advunlearn", tiny_bundle, **bad)
