"""mimic: every method trains, saves and loads on tiny components; the saved adaptation changes
generations the way the trained model did; and on mini a short run learns a held-out style."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from artshield.cli import main
from artshield.generate import generate
from artshield.mimic import MIMICS, Adapter, mimic
from artshield.mimic.hypernetwork import _install
from artshield.models import load_model


def _images(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, 20, 24, generator=g) for _ in range(n)]


@pytest.mark.parametrize("method", list(MIMICS))
def test_every_method_trains_saves_loads_and_leaves_the_base_alone(tmp_path, tiny_model_dir, method):
    base = load_model(str(tiny_model_dir), device="cpu")
    before = {k: v.clone() for k, v in base.unet.state_dict().items()}
    vocab = len(base.tokenizer)
    adapter = mimic(base, _images(), ["folder icon, sks style"] * 3, method, steps=3, lr=1e-2)
    assert all(torch.equal(v, base.unet.state_dict()[k]) for k, v in before.items()) and len(base.tokenizer) == vocab
    adapter.save(tmp_path / "ad")
    loaded = Adapter.load(tmp_path / "ad")
    assert loaded.method == method and set(loaded.tensors) == set(adapter.tensors)
    adapted = loaded.apply(load_model(str(tiny_model_dir), device="cpu"))
    prompt = loaded.prompt("folder icon, sks style")
    a = generate(adapted, [prompt], steps=2, seed=1)
    b = generate(load_model(str(tiny_model_dir), device="cpu"), ["folder icon, sks style"], steps=2, seed=1)
    assert not torch.allclose(a, b)                    # the adaptation changes what is generated


def test_hypernetworks_start_as_the_identity(tiny_bundle):
    import copy

    unet = copy.deepcopy(tiny_bundle.unet)
    z = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    ctx = tiny_bundle.embed(["folder icon", "star icon"])
    t = torch.tensor([10, 500])
    with torch.no_grad():
        expected = unet(z, t, encoder_hidden_states=ctx).sample
        _install(unet, (1, 2, 1))
        got = unet(z, t, encoder_hidden_states=ctx).sample
    assert torch.allclose(expected, got, atol=1e-5)


def test_textual_inversion_only_learns_its_token(tiny_bundle):
    adapter = mimic(tiny_bundle, _images(2), ["sks style", "icon, sks style"], "textual-inversion", steps=4, lr=0.05)
    assert list(adapter.tensors) == ["<sks>"] and adapter.info["token"] == "<sks>"
    assert adapter.prompt("a star, sks style") == "a star, <sks> style"


def test_multi_vector_textual_inversion_learns_every_vector_and_nothing_else(tiny_bundle):
    rows = tiny_bundle.text_encoder.get_input_embeddings().weight.detach().clone()
    adapter = mimic(tiny_bundle, _images(2), ["sks style", "icon, sks style"], "textual-inversion", steps=4, lr=0.05,
                    num_vectors=3)
    vectors = adapter.tensors["<sks>"]
    assert list(adapter.tensors) == ["<sks>"] and vectors.shape == (3, rows.shape[1])
    assert adapter.info["tokens"] == ["<sks>", "<sks>_1", "<sks>_2"]
    # a prompt names the embedding by its first token, and encoding writes out the others, as diffusers does
    assert adapter.prompt("a star, sks style") == "a star, <sks> style"
    # every vector moved from where it started (the init word's embedding), each its own way
    start = rows[tiny_bundle.tokenizer(tiny_bundle.conventions.init_word, add_special_tokens=False).input_ids].mean(0)
    assert all(not torch.allclose(v, start) for v in vectors)
    assert not torch.allclose(vectors[0], vectors[1]) and not torch.allclose(vectors[1], vectors[2])
    loaded = Adapter("textual-inversion", adapter.tensors, adapter.info).apply(tiny_bundle.copy(text=True))
    ids = loaded.tokenizer.convert_tokens_to_ids(adapter.info["tokens"])
    assert torch.equal(loaded.text_encoder.get_input_embeddings().weight[ids].detach(), vectors)
    # written out once, and a prompt that already lists the tokens is left as it is
    tokens = loaded.tokenize(["a star, <sks> style", "a star, <sks> <sks>_1 <sks>_2 style"])
    assert tokens[0].tolist().count(ids[2]) == 1 and torch.equal(tokens[0], tokens[1])


def test_mimic_cli_with_sidecar_captions_then_generate(tmp_path, tiny_model_dir):
    art = tmp_path / "art"
    art.mkdir()
    for k in range(3):
        Image.fromarray((np.arange(16 * 16 * 3).reshape(16, 16, 3) * (k + 1) % 256).astype(np.uint8)).save(art / f"a{k}.png")
    (art / "a0.txt").write_text("house icon, {trigger} style\n")
    out = tmp_path / "lora"
    assert main(["mimic", str(art), "-o", str(out), "--model", str(tiny_model_dir), "--steps", "2", "-q"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["captions"][0] == "house icon, sks style" and (out / "adapter.safetensors").is_file()
    gen = tmp_path / "gen"
    assert main(["generate", "--model", str(tiny_model_dir), "--adapter", str(out), "--prompt", "house icon, sks style",
                 "-n", "1", "--steps", "2", "-o", str(gen), "-q"]) == 0
    assert json.loads((gen / "results.json").read_text())["adapter"]["method"] == "lora"
    assert main(["generate", "--model", str(tiny_model_dir), "--adapter", str(tmp_path), "--prompt", "x",
                 "-o", str(gen), "-q"]) == 2
    tuned = tmp_path / "tuned"
    assert main(["mimic", str(art), "-o", str(tuned), "--model", str(tiny_model_dir), "--steps", "2", "-q",
                 "--option", "rank=2", "--option", "lr-schedule=cosine", "--option", "snr_gamma=5"]) == 0
    config = json.loads((tuned / "adapter.json").read_text())["config"]
    assert (config["rank"], config["lr_schedule"], config["snr_gamma"]) == (2, "cosine", 5)
    assert main(["mimic", str(art), "-o", str(tmp_path / "bad"), "--model", str(tiny_model_dir), "-q",
                 "--option", "lr_schedule=step"]) == 2 and not (tmp_path / "bad").exists()


# --- on mini: a short run learns a held-out artist's style ----------------------------------------
# Settings chosen on a tuning split (moka's reference captions 24..72, never the 24 scored here;
# judge style accuracy on it, base model 0.00): lora 150 steps at 3e-3 -> 0.40 (400 at mini's 1e-3
# took three times as long); dreambooth 80 at 2e-4 -> 0.69; hypernetwork 100 at 2e-3 -> 0.33;
# textual inversion learns slowly whatever the rate (250 at 0.08 -> 0.06, 400 at 0.04 -> 0.17,
# batch 4 -> 0.06 to 0.13), so it keeps 800 steps at mini's 0.02 (-> 0.38).
THEME = "moka"        # the bench's artist: of the held-out three, the one mini's short runs learn best


@pytest.fixture(scope="module")
def moka():
    from artshield import corpus
    from artshield.metrics.judge import Judge

    finetune = corpus.items(split="finetune", theme=THEME)
    swap = (lambda c: c.replace(f"{THEME} style", "sks style"))
    return {"images": list(corpus.load_images(finetune, 64)), "captions": [swap(i.caption) for i in finetune],
            "prompts": [swap(i.caption) for i in corpus.items(split="reference", theme=THEME)][:24],
            "judge": Judge.load()}


def style_accuracy(data, bundle, adapter=None) -> float:
    prompts = [adapter.prompt(p) if adapter else p for p in data["prompts"]]
    styles, _ = data["judge"].predict(generate(bundle, prompts, seed=0))
    return sum(s == THEME for s in styles) / len(styles)


@pytest.fixture(scope="module")
def base_accuracy(mini_bundle, moka):
    return style_accuracy(moka, mini_bundle)


@pytest.mark.slow
@pytest.mark.parametrize("method, steps, lr", [("lora", 150, 3e-3), ("dreambooth", 80, 2e-4),
                                               ("textual-inversion", 800, None), ("hypernetwork", 100, 2e-3)])
def test_short_mimicry_on_mini_raises_the_judges_style_accuracy(mini_bundle, moka, base_accuracy, method, steps, lr):
    adapter = mimic(mini_bundle, moka["images"], moka["captions"], method, steps=steps, lr=lr, batch_size=8)
    after = style_accuracy(moka, adapter.apply(mini_bundle.copy()), adapter)
    assert after >= base_accuracy + 0.15, (base_accuracy, after)


def test_the_learning_rate_follows_its_schedule_and_autocast_trains_in_bfloat16(tiny_bundle, monkeypatch):
    seen = []
    step = torch.optim.AdamW.step

    def spy(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    mimic(tiny_bundle, _images(2), ["sks style"] * 2, "lora", steps=10, lr=1e-2, lr_schedule="cosine", warmup_steps=2)
    assert seen[0] == pytest.approx(0.0) and seen[2] == pytest.approx(1e-2)     # warm-up, then the peak
    assert all(a > b for a, b in zip(seen[2:], seen[3:])) and seen[-1] < 1e-3    # cosine decay toward zero
    seen.clear()
    mimic(tiny_bundle, _images(2), ["sks style"] * 2, "lora", steps=4, lr=1e-2)
    assert seen == [pytest.approx(1e-2)] * 4                                    # constant by default
    dtypes = []          # the mimic trains a copy of the bundle: watch the copy's first layer
    monkeypatch.setattr(type(tiny_bundle), "copy", _copy_with_hook(type(tiny_bundle).copy, dtypes))
    adapter = mimic(tiny_bundle, _images(2), ["sks style"] * 2, "lora", steps=2, autocast="bf16")
    assert torch.bfloat16 in dtypes and all(v.dtype == torch.float32 for v in adapter.tensors.values())
    with pytest.raises(ValueError, match="lr_schedule"):
        mimic(tiny_bundle, _images(2), ["sks style"] * 2, "lora", steps=1, lr_schedule="step")
    with pytest.raises(ValueError, match="autocast"):
        mimic(tiny_bundle, _images(2), ["sks style"] * 2, "lora", steps=1, autocast="int8")


def _copy_with_hook(copy, dtypes):
    def wrapped(self, *a, **k):
        out = copy(self, *a, **k)
        out.unet.conv_in.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
        return out
    return wrapped


def test_a_lora_on_the_cross_attention_alone_trains_and_loads_only_there(tiny_bundle, tmp_path):
    adapter = mimic(tiny_bundle, _images(2), ["sks style"] * 2, "lora", steps=2, lr=1e-2, layers="cross")
    assert adapter.tensors and all(".attn2." in k for k in adapter.tensors)
    adapter.save(tmp_path / "ad")
    adapted = Adapter.load(tmp_path / "ad").apply(tiny_bundle.copy())
    trained = {n for n, p in adapted.unet.named_parameters() if "lora_B" in n and p.abs().sum() > 0}
    assert trained and all(".attn2." in n for n in trained)
    with pytest.raises(ValueError, match="layers"):
        mimic(tiny_bundle, _images(2), ["sks style"] * 2, "lora", steps=1, layers="mlp")


def test_gradients_are_clipped_to_the_norm_asked_for(tiny_bundle, monkeypatch):
    norms = []
    clip = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *a, **k):
        params = list(params)
        before = clip(params, max_norm, *a, **k)
        norms.append((float(before), float(torch.cat([p.grad.flatten() for p in params]).norm()), max_norm))
        return before

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    mimic(tiny_bundle, _images(2), ["sks style"] * 2, "hypernetwork", steps=3, lr=1e-1, max_grad_norm=1e-3)
    assert len(norms) == 3 and all(after <= 1e-3 * 1.0001 < before for before, after, _ in norms)
    norms.clear()
    mimic(tiny_bundle, _images(2), ["sks style"] * 2, "hypernetwork", steps=3, lr=1e-1)
    assert norms == []                                                  # off by default
    with pytest.raises(ValueError, match="max_grad_norm"):
        mimic(tiny_bundle, _images(2), ["sks style"] * 2, "lora", steps=1, max_grad_norm=0.0)


@pytest.mark.parametrize("method", ["lora", "textual-inversion"])
def test_caption_dropout_trains_on_the_empty_prompt_in_the_captions_place(tiny_bundle, method):
    def run(captions, rate):
        adapter = mimic(tiny_bundle, _images(2), captions, method, steps=3, lr=1e-2, batch_size=2, caption_dropout=rate)
        return adapter.tensors

    captioned, empty = ["folder icon, sks style", "icon, sks style"], ["", ""]
    everything_dropped = run(captioned, 0.999)
    assert all(torch.equal(everything_dropped[k], v) for k, v in run(empty, 0.999).items())   # the captions never seen
    kept = run(captioned, 0.0)
    assert not all(torch.equal(kept[k], v) for k, v in run(empty, 0.0).items())             # captions matter
    assert not all(torch.equal(kept[k], v) for k, v in run(captioned, 0.5).items())         # and some were dropped
    with pytest.raises(ValueError, match="caption_dropout"):
        mimic(tiny_bundle, _images(2), captioned, method, steps=1, caption_dropout=1.0)


@pytest.mark.parametrize("unconditional", [True, False])
def test_a_hypernetwork_rewrites_guidances_unconditional_context_only_when_asked(tiny_bundle, unconditional):
    from artshield.generate import generate

    adapter = mimic(tiny_bundle, _images(2), ["sks style"] * 2, "hypernetwork", steps=2, lr=1e-1,
                    unconditional=unconditional)
    bundle = adapter.apply(tiny_bundle.copy())
    attn = next(m for name, m in bundle.unet.named_modules() if name.endswith("attn2"))
    seen = {}

    def keep(name, value):                      # the first call's (the first denoising step's)
        seen.setdefault(name, value)

    attn.register_forward_pre_hook(lambda m, args, kwargs: keep("context", kwargs["encoder_hidden_states"]),
                                   with_kwargs=True)
    attn.to_k.register_forward_pre_hook(lambda m, args: keep("keys_from", args[0]))
    generate(bundle, ["sks style", "icon, sks style"], steps=1, guidance=5.0)
    context, keys_from = seen["context"], seen["keys_from"]
    assert context.shape[0] == 4                                 # the unconditional rows first, then the prompts'
    assert not torch.allclose(keys_from[2:], context[2:])        # the prompts' contexts are always rewritten
    assert torch.equal(keys_from[:2], context[:2]) == (not unconditional)
