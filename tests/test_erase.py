"""erase: parameter groups on any diffusers UNet, the ESD target and UCE's closed form on cases with
known answers, edits that save and load as models, and on mini an erasure that removes a style."""
import json

import pytest
import torch

from artshield.cli import main
from artshield.erase import ERASERS, erase, select_parameters
from artshield.erase.esd import esd_target
from artshield.erase.evaluate import Target, evaluate, parse_target, preserve_captions, prompt_sets
from artshield.erase.uce import closed_form, paired_embeddings
from artshield.generate import generate
from artshield.models import load_model
from artshield.models.weights import text_name


def test_parameter_groups_split_the_unet_by_name(tiny_bundle):
    unet = tiny_bundle.unet
    names = [n for n, _ in unet.named_parameters()]
    cross = select_parameters(unet, "cross-attention")
    kv = select_parameters(unet, "cross-attention-kv")
    rest = select_parameters(unet, "non-cross-attention")
    assert cross and all(".attn2." in n for n in cross)
    assert sorted(kv) == sorted(n for n in cross if ".to_k." in n or ".to_v." in n) and len(kv) < len(cross)
    assert not set(cross) & set(rest) and not any(".attn1." in n for n in cross)
    left_out = set(names) - set(cross) - set(rest)
    # ESD-u leaves out exactly the time embedding and the output layer
    assert left_out and all(n.split(".")[0] in ("time_embedding", "conv_norm_out", "conv_out") for n in left_out)
    assert any(n.startswith("conv_out.") for n in left_out)
    with pytest.raises(ValueError):
        select_parameters(unet, "everything")


def test_esd_target_is_negative_guidance_away_from_the_concept():
    e_u, e_c = torch.tensor([1.0, 0.0]), torch.tensor([3.0, 0.5])
    assert torch.equal(esd_target(e_u, e_c, 1.0), torch.tensor([-1.0, -0.5]))
    assert torch.equal(esd_target(e_u, e_c, 3.0), torch.tensor([-5.0, -1.5]))
    # with no difference between the conditional and the unconditional prediction there is nothing to erase
    assert torch.equal(esd_target(e_u, e_u, 2.0), e_u)


def test_uce_closed_form_solves_its_least_squares_problem():
    g = torch.Generator().manual_seed(0)
    w0 = torch.randn(6, 5, generator=g)
    e, guide, keep = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g), torch.randn(2, 5, generator=g)
    lam = 0.5
    w = closed_form(w0, e, guide, keep, lam).float()

    def objective(m):
        return ((m @ e.T - w0 @ guide.T) ** 2).sum() + ((m @ keep.T - w0 @ keep.T) ** 2).sum() \
            + lam * ((m - w0) ** 2).sum()

    m = w.clone().requires_grad_(True)
    objective(m).backward()
    assert m.grad.abs().max() < 1e-3                        # a stationary point of a convex problem
    assert objective(w) < objective(w0)
    # a tiny lam with as many erase pairs as input dimensions maps every e_i exactly onto W0 g_i
    e5, g5 = torch.randn(5, 5, generator=g), torch.randn(5, 5, generator=g)
    exact = closed_form(w0, e5, g5, torch.zeros(0, 5), 1e-8).float()
    assert torch.allclose(exact @ e5.T, w0 @ g5.T, atol=1e-3)
    # a huge lam changes nothing
    assert torch.allclose(closed_form(w0, e, guide, keep, 1e9).float(), w0, atol=1e-6)


def test_uce_pairs_the_tail_of_the_prompt_with_the_tail_of_the_guide(tiny_bundle):
    from artshield.erase.uce import _last_token

    prompt, guide_text = "folder icon, papirus style", "icon"
    e, g = paired_embeddings(tiny_bundle, prompt, guide_text)
    length = tiny_bundle.tokenizer.model_max_length
    p_last, g_last = _last_token(tiny_bundle, prompt), _last_token(tiny_bundle, guide_text)
    assert e.shape == g.shape and e.shape[0] == length - max(p_last, g_last)
    with torch.no_grad():
        concept, guide = tiny_bundle.embed([prompt, guide_text])
    # as in the authors' code: from the concept's last token on, nothing before it
    assert torch.allclose(e[0], concept[p_last]) and torch.allclose(g[0], guide[g_last])


def test_rece_adversarial_embedding_solves_its_least_squares_problem():
    from artshield.erase.uce import adversarial_embedding

    g = torch.Generator().manual_seed(1)
    original = [torch.randn(6, 5, generator=g) for _ in range(3)]
    current = [w + 0.5 * torch.randn(6, 5, generator=g) for w in original]
    e = torch.randn(4, 5, generator=g)
    reg = 1e-3
    c = adversarial_embedding(current, original, e, reg)

    def objective(x):
        return sum(((w @ x.T - w0 @ e.T) ** 2).sum() for w, w0 in zip(current, original)) + reg * (x ** 2).sum()

    x = c.clone().requires_grad_(True)
    objective(x).backward()
    assert x.grad.abs().max() < 1e-3
    # through the edited projections it reads as the concept read before the edit, better than e itself
    assert objective(c) < objective(e)
    # with nothing edited the concept is its own adversarial embedding
    assert torch.allclose(adversarial_embedding(original, original, e, 1e-9), e, atol=1e-4)


def _kv_shift(bundle, edit, prompt: str, guide: str = "") -> float:
    """How far the edited keys and values of `prompt`'s rows (from its last token on, the rows UCE
    edits) are from the original's of the guide's rows they pair with, relative to where the unedited
    ones were: 1 before any edit, lower once the prompt reads as the guide."""
    from artshield.erase.base import select_parameters

    params = dict(bundle.unet.named_parameters())
    e, g = paired_embeddings(bundle, prompt, guide)
    before = after = 0.0
    for name in select_parameters(bundle.unet, "cross-attention-kv"):
        w0 = params[name].detach().float()
        before += float(((e @ w0.T - g @ w0.T) ** 2).sum())
        after += float(((e @ edit.tensors[name].float().T - g @ w0.T) ** 2).sum())
    return after / before


@pytest.mark.parametrize("method", ["uce", "rece"])
def test_closed_form_methods_erase_every_concept_given_at_once(tiny_bundle, method):
    concepts = ["red folder", "blue cat", "green tree"]
    edit = erase(tiny_bundle, concepts, method, preserve=["a house"])
    assert edit.info["concepts"] == concepts
    for c in concepts:
        assert _kv_shift(tiny_bundle, edit, c) < 0.5, c
    one = erase(tiny_bundle, concepts[:1], method, preserve=["a house"])
    assert _kv_shift(tiny_bundle, one, concepts[1]) > _kv_shift(tiny_bundle, edit, concepts[1])
    if method == "rece":
        uce = erase(tiny_bundle, concepts, "uce", preserve=["a house"], lam=0.1)
        assert any(not torch.allclose(edit.tensors[k], uce.tensors[k]) for k in edit.tensors)
        assert len(edit.info["adversarial_embedding_shift"]) == edit.info["config"]["epochs"]


@pytest.mark.parametrize("method", sorted(ERASERS))
def test_every_method_saves_an_edit_that_loads_as_a_model(tmp_path, tiny_model_dir, method):
    base = load_model(str(tiny_model_dir), device="cpu")
    before = {k: v.clone() for k, v in base.unet.state_dict().items()}
    text_before = {f"text_encoder.{text_name(k)}": v.clone() for k, v in base.text_encoder.named_parameters()}
    options = {"iterations": 2, "lr": 1e-2, "ddim_steps": 4} if method.startswith("esd") else {}
    if method == "advunlearn":
        options = {"iterations": 2, "lr": 1e-2, "ddim_steps": 4, "attack_steps": 1, "warmup": 0.0,
                   "preserve": ["a house", "a tree"]}
    edit = erase(base, ["folder icon"], method, **options)
    assert all(torch.equal(v, base.unet.state_dict()[k]) for k, v in before.items())   # base left alone
    assert all(torch.equal(v, dict(base.text_encoder.named_parameters())[k.split(".", 1)[1].removeprefix(
        "text_model.")]) for k, v in text_before.items())
    old = {**before, **text_before}
    changed = [k for k, v in edit.tensors.items() if not torch.allclose(v, old[k])]
    assert changed and set(changed) <= set(edit.tensors)
    if method == "advunlearn":   # the text encoder's transformer layers and final norm; no embedding, no UNet
        assert set(edit.tensors) == {k for k in text_before if ".encoder." in k or ".final_layer_norm." in k}
    else:
        group = {"esd-x": "cross-attention", "esd-u": "non-cross-attention"}.get(method, "cross-attention-kv")
        assert set(edit.tensors) == set(select_parameters(base.unet, group))
    edit.save(tmp_path / "edit")
    info = json.loads((tmp_path / "edit" / "edit.json").read_text())
    assert info["method"] == method and info["base_model"] == str(tiny_model_dir.resolve())
    erased = load_model(str(tmp_path / "edit"), device="cpu")
    assert erased.source == "edit"
    loaded = {**erased.unet.state_dict(),
              **{f"text_encoder.{text_name(k)}": v for k, v in erased.text_encoder.named_parameters()}}
    assert all(torch.equal(loaded[k], v.float()) for k, v in edit.tensors.items())
    a = generate(erased, ["folder icon"], steps=2, seed=1)
    b = generate(base, ["folder icon"], steps=2, seed=1)
    assert not torch.allclose(a, b)


def test_an_edit_refuses_a_model_it_does_not_fit(tmp_path, tiny_bundle, mini_bundle):
    edit = erase(tiny_bundle, ["folder icon"], "uce")
    with pytest.raises(Exception, match="does not fit"):
        edit.apply(mini_bundle)
    edit.info["base_model"] = "mini"          # an edit.json pointing at the wrong base
    edit.save(tmp_path / "bad")
    assert main(["generate", "--model", str(tmp_path / "bad"), "--prompt", "icon", "-n", "1", "-q",
                 "-o", str(tmp_path / "g")]) == 2


def test_targets_and_prompt_sets_follow_the_corpus():
    assert parse_target("faenza style") == Target("style", "faenza") == parse_target("Faenza")
    assert parse_target("trash can") == Target("concept", "trash can") == parse_target("trash can icon")
    assert parse_target("van gogh") is None
    assert Target("style", "faenza").swap("trash can icon, faenza style", "sks") == "trash can icon, sks style"
    assert Target("concept", "trash can").swap("trash can icon, faenza style", "sks") == "sks icon, faenza style"
    targets, others = prompt_sets(Target("style", "faenza"), 8, 2, seed=0)
    assert len(targets) == 8 and all(i.theme == "faenza" for i in targets)
    assert "faenza" not in others and all(len(v) == 2 and all(i.theme == k for i in v) for k, v in others.items())
    keep = preserve_captions(Target("style", "faenza"), seed=0, n_target=8, per_other=2)
    used = {i.caption for i in targets} | {i.caption for v in others.values() for i in v}
    assert keep and not set(keep) & used and not any("faenza" in p for p in keep)


@pytest.mark.slow
def test_uce_erases_a_style_of_mini_and_spares_the_others(mini_bundle):
    target = Target("style", "faenza")
    edit = erase(mini_bundle, ["faenza style"], "uce", preserve=preserve_captions(target, 0, 16, 3))
    results, images = evaluate(mini_bundle, edit, target, seed=0, n_target=16, per_other=3, recovery_steps=0)
    before, after = results["before"], results["after"]
    assert before["target_accuracy"] >= 0.6
    assert after["target_accuracy"] <= before["target_accuracy"] - 0.4
    assert after["others_accuracy"] >= before["others_accuracy"] - 0.2
    assert images["before"].shape == images["after"].shape


@pytest.mark.slow
def test_esd_x_short_run_lowers_a_style_on_mini(mini_bundle):
    target = Target("style", "faenza")
    edit = erase(mini_bundle, ["faenza style"], "esd-x", iterations=60, lr=2e-4)
    results, _ = evaluate(mini_bundle, edit, target, seed=0, n_target=16, per_other=2, recovery_steps=0)
    assert results["after"]["target_accuracy"] <= results["before"]["target_accuracy"] - 0.3


@pytest.mark.slow
def test_cli_erase_writes_the_edit_results_and_a_loadable_model(tmp_path):
    out = tmp_path / "no-faenza"
    assert main(["erase", "--concept", "faenza style", "--method", "uce", "-o", str(out), "-q",
                 "--eval-prompts", "8", "--recovery-steps", "20", "--steps", "10",
                 "--attack-option", "ring-a-bell.generations=3", "--attack-option", "unlearndiffatk.timesteps=1",
                 "--attack-option", "unlearndiffatk.iterations=2", "--attack-option", "random-prefix.tries=2",
                 "--attack-option", "p4d.iterations=3", "--attack-option", "p4d.eval_every=2"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["method"] == "uce" and res["concept"] == "faenza style" and res["seconds"] > 0
    for key in ("before", "after"):
        assert {"target_accuracy", "others_accuracy"} <= set(res[key])
    assert "target_accuracy" in res["recovery"] and "others_accuracy" not in res["recovery"]
    attacks = res["evaluations"][0]["attacks"]
    assert list(attacks) == ["concept-inversion", "ring-a-bell", "unlearndiffatk", "p4d", "random-prefix"]
    assert [s for s, _ in attacks["p4d"]["attack"]["best_lpips_by_step"][0]] == [0, 2]
    assert attacks["ring-a-bell"]["attack"]["config"]["generations"] == 3         # the option reached the attack
    assert res["recovery"]["target_hits"] == [max(h) for h in zip(*(a["target_hits"] for a in attacks.values()))]
    page = (out / "report.html").read_text()
    assert "worst case over the attacks" in page and "after ring-a-bell" in page
    assert page.count("<img") == 1 and res["report"] == "report.html"
    assert (out / res["evaluations"][0]["grid"]).is_file() and (out / "edit.safetensors").is_file()
    assert main(["generate", "--model", str(out), "--prompt", "folder icon, faenza style", "-n", "1", "-q",
                 "--steps", "5", "-o", str(tmp_path / "gen")]) == 0
    # an unknown concept is erased but not evaluated, and says so
    assert main(["erase", "--concept", "van gogh", "--method", "uce", "-o", str(tmp_path / "vg"), "-q"]) == 0
    assert json.loads((tmp_path / "vg" / "results.json").read_text())["evaluations"][0]["skipped"]
    assert main(["erase", "--concept", "x", "--method", "nope", "-o", str(tmp_path / "n"), "-q"]) == 2
    assert main(["erase", "--concept", " ", "-o", str(tmp_path / "e"), "-q"]) == 2


def test_erase_page_gives_target_accuracy_with_intervals_and_the_labelled_grid():
    from pathlib import Path

    from artshield.erase.report import render

    folder = Path(__file__).parents[1] / "docs" / "results" / "erase" / "esd-x-faenza-style"
    results = json.loads((folder / "results.json").read_text())
    html = render(results, folder)
    assert "0.97 [" in html and "0.12 [" in html and "0.78 [" in html          # before, after, concept inversion
    assert "0.25 [" in html and "1.00 [1.00, 1.00]" in html                     # Ring-A-Bell, the worst case
    assert "rows: before, after, after concept-inversion, after ring-a-bell, after unlearndiffatk" in html
    assert "<th>after random-prefix</th>" in html and 'class="px"' in html
    older = Path(__file__).parents[1] / "docs" / "results" / "erase" / "uce-trash-can"   # concept inversion alone
    html = render(json.loads((older / "results.json").read_text()), older)
    assert "rows: before, after, after the recovery attack" in html and "0.64 [" in html
    skipped = {**results, "evaluations": [{"concept": "van <gogh>", "skipped": "not a style the judge knows"}]}
    html = render(skipped, folder)
    assert "Not evaluated: not a style the judge knows" in html and "van &lt;gogh&gt;" in html


def test_several_concepts_at_once_keep_none_of_them_and_are_not_counted_as_others():
    from artshield.erase.evaluate import default_preserve

    both = {"faenza style": Target("style", "faenza"), "tango style": Target("style", "tango")}
    keep = default_preserve(both, 0, 8, 2)
    assert keep and not any("faenza style" in p or "tango style" in p for p in keep)
    alone = default_preserve({"faenza style": Target("style", "faenza")}, 0, 8, 2)
    assert any("tango style" in p for p in alone)         # alone, tango is a style to keep


def test_concepts_come_from_a_file_and_from_the_flag_together(tmp_path, tiny_model_dir):
    listed = tmp_path / "concepts.txt"
    listed.write_text("# styles to remove\nblue cat\n\n  green tree  \n")
    out = tmp_path / "erased"
    assert main(["erase", "--model", str(tiny_model_dir), "--concept", "red folder", "--concepts-file", str(listed),
                 "--method", "uce", "--preserve", "a house", "-o", str(out), "--no-eval", "-q"]) == 0
    assert json.loads((out / "edit.json").read_text())["concepts"] == ["red folder", "blue cat", "green tree"]
    listed.write_text("# nothing here\n\n")
    assert main(["erase", "--model", str(tiny_model_dir), "--concepts-file", str(listed), "--method", "uce",
                 "-o", str(tmp_path / "none"), "--no-eval", "-q"]) == 2
