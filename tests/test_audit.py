"""audit: tiled L2 and the clique rule on known cases, AUC, and a small end-to-end audit on mini,
whose corpus plants duplicated training images."""
import json

import numpy as np
import pytest
import torch

from artshield.audit import (ExtractConfig, audit, auc, corpus_prompts, largest_clique, pairwise_tiled_l2,
                             precision_recall, tiled_l2)
from artshield.audit.extract import filter_generations
from artshield.cli import main


def test_tiled_l2_is_the_worst_tile_of_the_normalised_l2():
    a = torch.zeros(1, 3, 8, 8)
    b = a.clone()
    b[:, :, :4, :4] = 0.5                       # one tile of a 2x2 grid differs by 0.5 everywhere
    assert tiled_l2(a, b, grid=2).item() == pytest.approx(0.5)
    assert tiled_l2(a, b, grid=1).item() == pytest.approx(0.25)   # the whole image: sqrt(0.25 / 4)
    c = torch.full((1, 3, 8, 8), 0.1)
    assert tiled_l2(a, c, grid=4).item() == pytest.approx(0.1)
    with pytest.raises(ValueError):
        tiled_l2(torch.zeros(1, 3, 9, 9), torch.zeros(1, 3, 9, 9), grid=2)


def test_pairwise_tiled_l2_matches_the_direct_computation():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(7, 3, 16, 16, generator=g), torch.rand(5, 3, 16, 16, generator=g)
    d = pairwise_tiled_l2(x, y, grid=4, chunk=3)
    direct = torch.stack([tiled_l2(x[i].expand(5, -1, -1, -1), y, grid=4) for i in range(7)])
    assert torch.allclose(d, direct, atol=1e-5)
    self_d = pairwise_tiled_l2(x, grid=4)
    assert torch.all(self_d.diagonal() == 0) and torch.allclose(self_d, self_d.T)


def test_largest_clique_on_a_synthetic_graph():
    n = 30
    adj = np.zeros((n, n), dtype=bool)
    clique = [2, 5, 7, 11, 13, 17, 19, 23]
    for i in clique:
        for j in clique:
            adj[i, j] = i != j
    rng = np.random.default_rng(0)
    for _ in range(40):                          # sparse noise edges that form no larger clique
        i, j = rng.integers(0, n, 2)
        if i != j and not (i in clique and j in clique):
            adj[i, j] = adj[j, i] = True
    found = largest_clique(adj)
    assert found == clique
    sub = adj[np.ix_(found, found)]
    assert sub[~np.eye(len(found), dtype=bool)].all()               # it is a clique
    assert largest_clique(np.zeros((4, 4), dtype=bool)) in ([0], [1], [2], [3])


def test_the_filter_flags_collapsed_generations_and_not_diverse_ones():
    g = torch.Generator().manual_seed(0)
    base = torch.rand(1, 3, 16, 16, generator=g)
    collapsed = (base + 0.01 * torch.randn(12, 3, 16, 16, generator=g)).clamp(0, 1)
    diverse = torch.rand(12, 3, 16, 16, generator=g)
    cfg = ExtractConfig(generations=12, min_clique=10, grid=4)
    assert filter_generations(collapsed, cfg)["flagged"]
    rec = filter_generations(diverse, cfg)
    assert not rec["flagged"] and rec["clique_size"] < 3
    mixed = torch.cat([collapsed[:6], diverse[:6]])
    assert filter_generations(mixed, cfg)["clique_size"] == 6


def test_auc_and_precision_recall_on_known_cases():
    assert auc([3, 4, 1, 2], [1, 1, 0, 0]) == 1.0
    assert auc([1, 2, 3, 4], [1, 1, 0, 0]) == 0.0
    assert auc([1, 1, 1, 1], [1, 0, 1, 0]) == 0.5
    assert auc([0.9, 0.2, 0.4, 0.1], [1, 1, 0, 0]) == 0.75
    with pytest.raises(ValueError):
        auc([1, 2], [1, 1])
    pr = precision_recall([1, 1, 0, 0, 1], [1, 0, 0, 1, 1])
    assert pr["precision"] == pytest.approx(2 / 3, abs=1e-3) and pr["recall"] == pytest.approx(2 / 3, abs=1e-3)
    assert precision_recall([0, 0], [1, 0])["precision"] is None


def test_corpus_prompts_mix_planted_duplicates_with_as_many_control_captions():
    from artshield import corpus

    train = {i.caption: i for i in corpus.items(split="train")}
    for control in ("novel", "training"):
        prompts, truth = corpus_prompts(seed=0, control=control)
        assert len(prompts) == len(set(prompts)) and sum(truth) * 2 == len(truth) >= 40
        assert corpus_prompts(seed=0, control=control) == (prompts, truth)
        assert all(train[p].copies > 1 for p, t in zip(prompts, truth) if t)
        negatives = [p for p, t in zip(prompts, truth) if not t]
        if control == "novel":
            assert not any(p in train for p in negatives)
        else:
            assert all(train[p].copies == 1 for p in negatives)
    with pytest.raises(ValueError):
        corpus_prompts(control="nope")


@pytest.mark.slow
def test_audit_on_mini_tells_planted_duplicates_from_novel_captions(mini_bundle):
    from artshield import corpus
    from artshield.audit.extract import calibrate, isolation

    prompts, truth = corpus_prompts(seed=0)
    pick = [i for i, t in enumerate(truth) if t][:4] + [i for i, t in enumerate(truth) if not t][:4]
    prompts, truth = [prompts[i] for i in pick], [truth[i] for i in pick]
    train = corpus.items(split="train")
    training = corpus.load_images(train, 32)
    tiled, plain = calibrate(training)
    report = audit(mini_bundle, prompts, truth=truth, training=training,
                   extract=ExtractConfig(generations=12, min_clique=8, threshold="auto"))
    results = report.to_dict()
    # "auto" is the calibration on the training images, recorded as the numbers it chose
    assert results["extraction"]["config"]["threshold"] == tiled
    assert results["extraction"]["config"]["match_threshold"] == plain
    assert results["detection"]["auc"] >= 0.75
    ext = results["extraction"]
    assert ext["precision"] == 1.0 and ext["recall"] >= 0.5
    # the near-copy rule is looser than the match delta: it finds every extraction and maybe more
    alone = isolation(training)
    assert ext["near_copy_rule"]["recall"] >= ext["recall"]
    for rec in results["per_prompt"]:
        assert rec["near_copy"] == (rec["flagged"] and rec["nearest_l2"] < alone[rec["nearest_training"]])
    assert set(report.flagged) == {k for k, r in enumerate(results["per_prompt"]) if r["flagged"]}
    for k in report.flagged:
        rec = results["per_prompt"][k]
        if rec["memorised"] and rec["extracted"]:      # matched to the very image that was planted
            assert train[rec["nearest_training"]].caption == rec["prompt"]


def test_the_audit_table_shows_the_near_copy_rule_beside_the_match_delta():
    from artshield.bench.tables import audit as table

    per = [{"magnitude": float(k), "memorised": k >= 2} for k in range(4)]
    config = {"threshold": 0.07, "match_threshold": 0.034}
    extraction = {"config": config, "precision": 1.0, "recall": 0.5,
                  "clique_rule_only": {"precision": 0.5, "recall": 1.0},
                  "near_copy_rule": {"precision": 2 / 3, "recall": 1.0}}
    report = {"per_prompt": per, "extraction": extraction, "prompt_source": "novel: no training image"}
    row = table(report).splitlines()[2]
    assert row.startswith("| 2 novel captions | 0.070 / 0.034 | 1.00 / 0.50 | 0.67 / 1.00 | 0.50 / 1.00 | 1.000 ")
    del extraction["near_copy_rule"]                    # a run from before the rule
    assert "| 1.00 / 0.50 | not measured | 0.50 / 1.00 |" in table(report)


def test_cli_audit_writes_results_and_report(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("people icon, papirus style\n\nfolder icon, tango style\n")
    out = tmp_path / "audit"
    assert main(["audit", "--prompts", str(prompts), "--generations", "6", "--min-clique", "4",
                 "--steps", "8", "-o", str(out), "-q"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["prompts"] == 2 and len(res["per_prompt"]) == 2
    assert all("magnitude" in r and "clique_size" in r for r in res["per_prompt"])
    assert "auc" not in res["detection"] and (out / "report.html").is_file()


def test_filter_speed_benchmark_runs_and_finds_the_planted_clique():
    from artshield.bench.audit_speed import measure

    row = measure(n=40, size=16, repeats=1)
    assert row["clique_size"] == 20 and row["cpu_seconds"] >= 0


def test_calibrated_delta_is_a_quantile_of_distances_between_distinct_training_images():
    from artshield.audit.extract import calibrate

    levels = [0.0, 0.1, 0.3, 0.6, 0.6]             # the last is an exact copy: skipped, not distance 0
    training = torch.stack([torch.full((3, 8, 8), v) for v in levels])
    tiled, plain = calibrate(training, grid=2, quantile=0.5)
    # nearest distinct distances: 0.1, 0.1, 0.2, 0.3, 0.3 -> median 0.2, for both distances
    assert tiled == pytest.approx(0.2, abs=1e-5) and plain == pytest.approx(0.2, abs=1e-5)
    with pytest.raises(ValueError):
        calibrate(training, quantile=1.5)


def test_audit_page_has_a_summary_table_a_roc_curve_a_histogram_and_sorted_prompts():
    from artshield.audit.report import render

    per = [{"prompt": f"p{i} <b>", "memorised": i % 2 == 0, "magnitude": float(i), "clique_size": i, "flagged": i > 6}
           for i in range(10)]
    results = {"per_prompt": per, "detection": {"method": "m", "generations": 1, "steps": 1, "seconds_per_prompt": 0.1,
                                               "auc": 0.6},
               "extraction": {"method": "e", "config": {"generations": 10, "min_clique": 7, "threshold": 0.05},
                              "seconds_per_prompt": 1.0, "filter_cpu_seconds_per_prompt": 0.001}}
    html = render(results, "mini", "test", {"flagged_0009.png": (32, 32)})
    assert "Detection: ROC curve" in html and "Detection: scores by class" in html and "AUC 0.600" in html
    assert "<b>" not in html.split("<h2>Every prompt")[1] and "p9 &lt;b&gt;" in html
    order = [html.index(f"<td>p{i} &lt;b&gt;</td>") for i in (9, 5, 0)]
    assert order == sorted(order)                        # highest magnitude first
    assert html.count("<img") == 1 and "{" not in html.split("<h2>Summary")[1].split("<h2>")[0]


def test_the_true_positive_rate_at_one_percent_false_positives_and_a_constant_detector():
    """With 200 negatives, 1 % lets two of them through: the threshold is the third-highest negative;
    with 24 negatives none may pass. A detector that returns a constant finds nothing (TPR 0, AUC 0.5)."""
    from artshield.audit import tpr_at_fpr

    neg = np.arange(200.0)
    pos = np.array([197.5, 198.5, 199.5, 150.0])
    r = tpr_at_fpr(np.r_[pos, neg], [True] * 4 + [False] * 200)
    assert r["threshold"] == 197.0 and r["false_positives_allowed"] == 2 and r["tpr"] == 0.75
    assert r["tpr_interval"][0] < 0.75 < r["tpr_interval"][1]
    r = tpr_at_fpr([5, 6, 7, 1, 2, 6.5], [True, True, True, False, False, False])
    assert r["threshold"] == 6.5 and r["tpr"] == 1 / 3 and r["auc"] == pytest.approx(7 / 9, abs=1e-4)
    flat = tpr_at_fpr(np.ones(48), [True, False] * 24)
    assert flat["tpr"] == 0.0 and flat["auc"] == 0.5
    with pytest.raises(ValueError, match="at least one positive and one negative"):
        tpr_at_fpr([1.0, 2.0], [True, True])


def _by_hand(bundle, steps: int):
    """What the detectors written out below start from: the DDIM sampler on `steps` steps, the UNet, and
    generation g's pure noise (seeded g, drawn on the CPU, scaled by the sampler)."""
    sampler = bundle.sampler()
    sampler.set_timesteps(steps)
    unet = bundle.unet
    shape = (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    return sampler, unet, lambda g: torch.randn(shape, generator=torch.Generator().manual_seed(g))[None] * sampler.init_noise_sigma


def test_the_anisotropy_detector_written_out_on_a_tiny_model(tiny_bundle):
    """norm: |eps_c - eps_u| at the schedule's first timestep from the seeded pure noise; alignment:
    the cosine over channels, at each latent position, of eps_u and eps_c - eps_u at the timestep
    `low_step` from the end, averaged; the score weighs them; generations average."""
    from artshield.audit import Anisotropy, AnisotropyConfig

    method = Anisotropy(tiny_bundle, AnisotropyConfig(generations=2, low_step=2, sampling_steps=6, norm_weight=0.5,
                                                      cosine_weight=3.0, batch_size=3))
    prompts = ["a red icon", "a blue square", "x"]
    parts = method.parts(prompts)
    sampler, unet, start = _by_hand(tiny_bundle, 6)
    with torch.no_grad():
        for k, prompt in enumerate(prompts):
            norms, cosines = [], []
            for g in range(2):
                z = start(g)
                out = {}
                for name, t in (("high", sampler.timesteps[0]), ("low", sampler.timesteps[-2])):
                    out[name] = [unet(sampler.scale_model_input(z, t), t,
                                      encoder_hidden_states=tiny_bundle.embed([text])).sample for text in ("", prompt)]
                u, c = out["high"]
                norms.append(float((c - u).norm()))
                u, c = out["low"]
                cosines.append(float(((u * (c - u)).sum(1) / (u.norm(dim=1) * (c - u).norm(dim=1))).mean()))
            assert parts["norm"][k] == pytest.approx(np.mean(norms), rel=1e-4)
            # the cosine of a near-cancelling difference amplifies the rounding that batching changes
            # (on one thread the batched and the one-by-one UNet calls differ by about 1e-4 here)
            assert parts["cosine"][k] == pytest.approx(np.mean(cosines), rel=1e-4, abs=1e-3)
    assert np.allclose(parts["score"], 0.5 * parts["norm"] + 3.0 * parts["cosine"])
    assert np.allclose(method.run(prompts), parts["score"])
    with pytest.raises(ValueError, match="low_step 6 must be smaller"):
        Anisotropy(tiny_bundle, AnisotropyConfig(low_step=6, sampling_steps=6)).parts(prompts)


def test_audit_runs_the_anisotropy_detector_beside_wens_with_their_figures(tiny_bundle):
    result = audit(tiny_bundle, ["a", "b", "c", "d"], truth=[True, False, True, False], methods=("detect", "anisotropy"))
    d = result.to_dict()
    assert {"auc", "auc_interval", "tpr_at_1pct_fpr", "tpr_at_1pct_fpr_interval"} <= set(d["detection"])
    assert {"auc", "norm_auc", "cosine_auc", "tpr_at_1pct_fpr", "seconds_per_prompt"} <= set(d["anisotropy"])
    assert all({"magnitude", "anisotropy", "anisotropy_norm", "anisotropy_cosine"} <= set(p) for p in d["per_prompt"])


def test_the_consensus_detector_written_out_on_a_tiny_model(tiny_bundle):
    """Guided DDIM from each seed's pure noise; after `step` steps, the sampler's x0 estimate of each
    seed; the score is minus the mean RMS distance over ordered pairs of distinct seeds."""
    from artshield.audit import Consensus, ConsensusConfig
    from artshield.audit.detect import consensus_trajectory

    config = ConsensusConfig(generations=3, fraction=0.5, sampling_steps=6, guidance=4.0, batch_size=5)
    method = Consensus(tiny_bundle, config)
    assert method.step() == 3
    prompts = ["a red icon", "a blue square", "x"]
    scores = method.run(prompts)
    sampler, unet, start = _by_hand(tiny_bundle, 6)
    with torch.no_grad():
        for k, prompt in enumerate(prompts):
            x0 = []
            for g in range(3):
                z = start(g)
                for t in sampler.timesteps[:3]:
                    u, c = (unet(sampler.scale_model_input(z, t), t, encoder_hidden_states=tiny_bundle.embed([text])).sample
                            for text in ("", prompt))
                    out = sampler.step(u + 4.0 * (c - u), t, z)
                    z = out.prev_sample
                x0.append(out.pred_original_sample.flatten())
            pairs = [float((x0[a] - x0[b]).pow(2).mean().sqrt()) for a in range(3) for b in range(3) if a != b]
            assert scores[k] == pytest.approx(-np.mean(pairs), rel=1e-4)
    trajectory = consensus_trajectory(tiny_bundle, prompts, generations=3, last_step=3, sampling_steps=6, guidance=4.0)
    assert trajectory.shape == (3, 3) and np.allclose(trajectory[:, -1], scores)
    two = consensus_trajectory(tiny_bundle, prompts, generations=3, last_step=3, sampling_steps=6, guidance=4.0, first=2)
    assert not np.allclose(two, trajectory)
    assert Consensus(tiny_bundle, ConsensusConfig(fraction=0.01, sampling_steps=6)).step() == 1
    with pytest.raises(ValueError, match="beyond the schedule"):
        consensus_trajectory(tiny_bundle, prompts, last_step=7, sampling_steps=6)
    with pytest.raises(ValueError, match="generations"):
        ConsensusConfig(generations=1)


def test_the_audit_cli_runs_the_consensus_detector_and_its_page_names_it(tmp_path, tiny_model_dir):
    from artshield.cli import main

    prompts = tmp_path / "p.txt"
    prompts.write_text("folder icon\ntrash can icon\n")
    out = tmp_path / "a"
    assert main(["audit", "--model", str(tiny_model_dir), "--prompts", str(prompts), "--method", "detect,consensus",
                 "--consensus-generations", "3", "--steps", "5", "-o", str(out), "-q"]) == 0
    r = json.loads((out / "results.json").read_text())
    assert r["consensus"]["config"]["generations"] == 3 and r["consensus"]["step"] == 1
    assert all("consensus" in p for p in r["per_prompt"])
    assert "seed consensus of the predicted image" in (out / "report.html").read_text()
