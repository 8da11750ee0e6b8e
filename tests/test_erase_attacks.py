"""The attacks of erase's robustness evaluation (erase/attacks.py): their parts on tiny components,
and on mini, that each brings an erased style back where the erased model alone does not."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from artshield import names
from artshield.erase.attacks import (ATTACKS, RingABellConfig, concept_vector, genetic_search, make_attack,
                                     nearest_tokens, prefix_ids, prefixed_context, sequence_ids, simplex_projection,
                                     word_ids)


def test_the_command_line_table_lists_every_attack():
    assert names.ERASE_ATTACKS == tuple(ATTACKS)


def test_simplex_projection_lands_on_the_simplex_and_keeps_points_already_there():
    v = torch.randn(5, 40) * 3
    p = simplex_projection(v)
    assert torch.all(p >= 0) and torch.allclose(p.sum(-1), torch.ones(5), atol=1e-5)
    # the Euclidean projection: v - p is the same constant on every kept coordinate
    for row_v, row_p in zip(v, p):
        kept = row_p > 0
        gap = row_v[kept] - row_p[kept]
        assert torch.allclose(gap, gap[0].expand_as(gap), atol=1e-5)
        assert torch.all(row_v[~kept] <= gap[0] + 1e-5)
    q = torch.softmax(torch.randn(3, 10), -1)
    assert torch.allclose(simplex_projection(q), q, atol=1e-6)


def test_prefixed_context_equals_the_prompt_with_those_words_typed_in(tiny_bundle):
    tok = tiny_bundle.tokenizer
    vocab = word_ids(tok)
    chosen = [int(vocab[5]), int(vocab[17]), int(vocab[40])]
    ids = prefix_ids(tiny_bundle, "a red folder", 3)
    onehot = torch.nn.functional.one_hot(torch.tensor(chosen), len(tok)).float().requires_grad_(True)
    got = prefixed_context(tiny_bundle, ids, onehot)
    typed = ids.clone()
    typed[0, 1:4] = torch.tensor(chosen)
    with torch.no_grad():
        want = tiny_bundle.text_encoder(typed)[0]
    assert torch.allclose(got, want, atol=1e-5)
    got.pow(2).sum().backward()
    assert onehot.grad is not None and onehot.grad.abs().sum() > 0       # the words can be optimised
    # the hook is gone afterwards: the encoder reads the placeholders again
    with torch.no_grad():
        assert not torch.allclose(tiny_bundle.text_encoder(ids)[0], want, atol=1e-5)


def test_nearest_tokens_finds_each_rows_token_and_never_a_special_one(tiny_bundle):
    from artshield.erase.attacks import text_model_of

    table = text_model_of(tiny_bundle.text_encoder).embeddings.token_embedding.weight.detach()
    allowed = torch.zeros(table.shape[0], dtype=torch.bool)
    allowed[torch.as_tensor(word_ids(tiny_bundle.tokenizer))] = True
    picked = torch.as_tensor(word_ids(tiny_bundle.tokenizer)[[3, 50, 7]])
    assert torch.equal(nearest_tokens(table[picked] * 2.5, table, allowed), picked)      # cosine: scale-free
    special = torch.tensor(tiny_bundle.tokenizer.all_special_ids)
    assert not torch.isin(nearest_tokens(table[special], table, allowed), special).any()


def test_p4d_writes_prompts_nearer_the_base_image_than_its_start(tiny_bundle):
    """P4D keeps the prompt whose generation is nearest (LPIPS) the base model's image; its record holds
    the best distance at every evaluation, which can only fall, and a search that never steps
    (lr 0) keeps the same tokens."""
    from types import SimpleNamespace

    from artshield.erase.attacks import Context
    from artshield.generate import generate

    items = [SimpleNamespace(caption="a red folder"), SimpleNamespace(caption="a blue cat")]
    images = generate(tiny_bundle, [it.caption for it in items], seed=0, steps=2)
    ctx = Context(base=tiny_bundle, erased=tiny_bundle, target=None, items=items, prompt=lambda it: it.caption,
                  seed=0, base_images=images, hits=None, steps=2)
    for batch in (1, 2):          # one target at a time, as the authors, or side by side
        out = make_attack("p4d", tiny_bundle, length=4, iterations=41, eval_every=10, lr=0.5, batch=batch).run(ctx)
        assert len(out.prompts) == 2 and all(out.prompts)
        for j, trace in enumerate(out.info["best_lpips_by_step"]):
            assert [s for s, _ in trace] == [0, 10, 20, 30, 40]
            assert all(b <= a for (_, a), (_, b) in zip(trace, trace[1:]))
            assert out.info["lpips_to_base_image"][j] == trace[-1][1]
    ctx.items = items[:1]
    frozen_run = make_attack("p4d", tiny_bundle, length=4, iterations=21, eval_every=10, lr=1e-12,
                             weight_decay=0.0).run(ctx)
    moved = make_attack("p4d", tiny_bundle, length=4, iterations=21, eval_every=10, lr=0.5).run(ctx)
    assert len({s for s, _ in frozen_run.info["best_lpips_by_step"][0]}) == 3
    assert moved.info["tokens_changed"][0] > 0 == frozen_run.info["tokens_changed"][0]


def test_genetic_search_finds_a_planted_prompt(tiny_bundle):
    """The goal is the context of a known token row: the search must get far closer to it than its
    random start (a search that returns its first population fails)."""
    tok = tiny_bundle.tokenizer
    vocab = word_ids(tok)
    rng = np.random.default_rng(3)
    planted = vocab[rng.integers(0, len(vocab), size=(1, 4))].astype(np.int64)
    with torch.no_grad():
        goal = tiny_bundle.text_encoder(sequence_ids(tok, planted, tiny_bundle.device))[0][0]
    cfg = RingABellConfig(length=4, population=60, generations=150)
    found, distance, trace = genetic_search(tiny_bundle, goal, cfg, np.random.default_rng(0))
    assert isinstance(found, str) and found
    assert trace[0] > 0 and distance < 0.5 * trace[0]


def test_concept_vector_is_the_mean_difference_of_the_pairs(tiny_bundle):
    pairs = [("a red folder", "a folder"), ("a red cat", "a cat")]
    v = concept_vector(tiny_bundle, pairs)
    with torch.no_grad():
        a, b = tiny_bundle.embed(["a red folder", "a red cat"]), tiny_bundle.embed(["a folder", "a cat"])
    assert torch.allclose(v, (a - b).mean(0), atol=1e-5)


def test_model_settings_sit_between_the_authors_defaults_and_the_users_options(mini_bundle):
    assert make_attack("ring-a-bell", mini_bundle).config.generations == \
        mini_bundle.conventions.attack_settings["ring-a-bell"]["generations"]
    assert make_attack("ring-a-bell", mini_bundle, generations=7).config.generations == 7
    assert make_attack("unlearndiffatk", None).config.timesteps == 50          # the authors'
    with pytest.raises(ValueError, match="unknown option"):
        make_attack("ring-a-bell", None, steps=3)


def test_random_prefix_tries_until_the_judge_says_yes(tiny_bundle):
    """The control attack stops at the first success and reports how many prompts it tried; with a
    judge that never says yes it uses every try."""
    from types import SimpleNamespace

    from artshield.erase.attacks import Context

    calls = []

    def judge_after(n):
        def hits(images, items):
            calls.append(1)
            return [1.0 if len(calls) % n == 0 else 0.0]
        return hits

    items = [SimpleNamespace(caption="a red folder"), SimpleNamespace(caption="a blue cat")]
    common = dict(base=tiny_bundle, erased=tiny_bundle, target=None, items=items, prompt=lambda it: it.caption,
                  seed=0, base_images=None, steps=2)
    out = make_attack("random-prefix", tiny_bundle, tries=5).run(Context(hits=judge_after(3), **common))
    assert out.info["tries_used"] == [3, 3]
    assert all(p.endswith(it.caption) and p != it.caption for p, it in zip(out.prompts, items))
    calls.clear()
    never = make_attack("random-prefix", tiny_bundle, tries=4).run(Context(hits=lambda im, it: [0.0], **common))
    assert never.info["tries_used"] == [4, 4]


@pytest.mark.slow
def test_the_attacks_on_a_style_that_uce_erased_on_mini(mini_bundle):
    """UCE removes faenza from 8 target prompts. UnlearnDiffAtk, with a short search, gets some back,
    at least as many as its random-prefix control with as many tries; Ring-A-Bell, which never sees the erased model, does not here (the
    committed run: none of 32 after UCE, 4 more than the erased model after ESD-x), so of it this
    checks that its prompts are new and nearer its goal than the prompt it started from. An attack
    that writes the prompts unchanged (a no-op) fails."""
    from artshield.erase import erase
    from artshield.erase.attacks import concept_vector
    from artshield.erase.evaluate import concept_pairs, edited, measure, parse_target, prompt_sets, run_attacks
    from artshield.metrics.judge import Judge

    target = parse_target("faenza style")
    after = edited(mini_bundle, erase(mini_bundle, ["faenza style"], method="uce"))
    judge = Judge.load()
    targets, _ = prompt_sets(target, 8, 2, 0)
    before, images = measure(mini_bundle, judge, target, targets, {}, 0, None)
    erased, _ = measure(after, judge, target, targets, {}, 0, None)
    assert sum(before["target_hits"]) >= 6 and sum(erased["target_hits"]) <= 1
    options = {"ring-a-bell": {"generations": 100}, "unlearndiffatk": {"timesteps": 5}, "random-prefix": {"tries": 5}}
    records, worst, _ = run_attacks(mini_bundle, after, judge, target, targets, images,
                                    ["ring-a-bell", "unlearndiffatk", "random-prefix"], 0, attack_options=options)
    for name, record in records.items():
        assert all(p != t.caption for p, t in zip(record["prompts"], targets)), name
    uda, control = (sum(records[n]["target_hits"]) for n in ("unlearndiffatk", "random-prefix"))
    assert uda > sum(erased["target_hits"]) and uda >= control
    ring = records["ring-a-bell"]["attack"]
    vector = concept_vector(mini_bundle, concept_pairs(target, ring["config"]["pairs"], {t.caption for t in targets}, 0))
    start = float((ring["config"]["eta"] * vector).pow(2).sum())      # the target prompt's own distance to its goal
    assert sum(ring["distances"]) / len(ring["distances"]) < start
    assert worst["target_accuracy"] >= max(r["target_accuracy"] for r in records.values())


def test_the_erasure_tables_read_the_worst_case_and_the_field_layout():
    from artshield.bench.tables import erasure, erasure_field

    run = {"method": "uce", "concept": "faenza style", "n_target": 4, "erase_seconds": 0.5,
           "before": {"target_accuracy": 1.0, "others_accuracy": 0.7, "others_domain_fid": 40.0},
           "after": {"target_accuracy": 0.25, "others_accuracy": 0.6, "others_domain_fid": 41.0,
                     "others_cross_accuracy": 0.9},
           "attacks": {"ring-a-bell": 0.5}, "recovery": {"target_accuracy": 0.75}}
    table = erasure({"runs": [run]})
    row = table.splitlines()[2].split(" | ")
    # concept inversion, UnlearnDiffAtk, P4D and the random prefix were not run; Ring-A-Bell and the worst case were
    assert row[3] == row[5] == row[6] == row[7] == row[9] == "not run"
    assert row[4].startswith("0.50 [") and row[8].startswith("0.75 [")
    run["attack_hits"] = {"unlearndiffatk": [1, 1, 1, 0], "random-prefix": [0, 1, 1, 0]}
    assert erasure({"runs": [run]}).splitlines()[2].split(" | ")[9].startswith("+0.25 [+0.00, +0.75]")
    field = erasure_field({"runs": [run]}).splitlines()[2]
    assert field == "| uce, faenza style | 75.0 | 25.0 | 60.0 | 90.0 | 41.0 | 0.5 |"
