"""What artshield writes, loaded by the other tools' own loaders (diffusers here), not by ours."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from artshield.generate import generate
from artshield.mimic import Adapter, mimic
from artshield.models import load_model

PROMPT = "folder icon, sks style"


def _images(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, 20, 24, generator=g) for _ in range(n)]


def _diffusers_pipe(folder):
    """diffusers' own pipeline on a folder, with the sampler artshield uses (DDIM, SD's offsets)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, steps_offset=1, set_alpha_to_one=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(pipe, prompt, steps=3, seed=1, guidance=3.0, size=16):
    return pipe(prompt=[prompt], generator=[torch.Generator("cpu").manual_seed(seed)], num_inference_steps=steps,
                guidance_scale=guidance, height=size, width=size, output_type="pt").images.float()


@pytest.fixture(scope="module")
def lora_folder(tmp_path_factory, tiny_model_dir):
    base = load_model(str(tiny_model_dir), device="cpu")
    adapter = mimic(base, _images(), [PROMPT] * 3, "lora", steps=5, lr=5e-2, rank=2, alpha=3.0)
    out = tmp_path_factory.mktemp("lora") / "lora"
    adapter.save(out)
    return out


def test_diffusers_load_lora_weights_gives_the_images_of_generate_with_the_adapter(lora_folder, tiny_model_dir):
    ours = generate(Adapter.load(lora_folder).apply(load_model(str(tiny_model_dir), device="cpu")), [PROMPT],
                    steps=3, guidance=3.0, seed=1)
    pipe = _diffusers_pipe(tiny_model_dir)
    plain = _run(pipe, PROMPT)
    pipe.load_lora_weights(str(lora_folder), weight_name="adapter.safetensors")
    theirs = _run(pipe, PROMPT)
    assert not torch.allclose(plain, theirs, atol=1e-3)          # the LoRA was loaded and acts
    assert torch.allclose(ours, theirs, atol=1e-4)               # exactly as it does in artshield


def test_kohya_layout_converts_back_with_diffusers_loader(lora_folder, tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    from artshield.cli import main

    out = tmp_path / "style.safetensors"
    assert main(["export", str(lora_folder), "-o", str(out), "--format", "kohya"]) == 0
    keys = load_file(str(out))
    assert all(k.startswith("lora_unet_") for k in keys)
    assert any(k.endswith(".alpha") for k in keys) and any(k.endswith(".lora_down.weight") for k in keys)
    pipe = _diffusers_pipe(tiny_model_dir)
    pipe.load_lora_weights(str(out))
    kohya = _run(pipe, PROMPT)
    ours = generate(Adapter.load(lora_folder).apply(load_model(str(tiny_model_dir), device="cpu")), [PROMPT],
                    steps=3, guidance=3.0, seed=1)
    assert torch.allclose(ours, kohya, atol=1e-4)                # alpha 3 at rank 2 survives the round trip


@pytest.mark.parametrize("vectors", [1, 3])
def test_diffusers_load_textual_inversion_reads_our_embedding(tmp_path, tiny_model_dir, vectors):
    base = load_model(str(tiny_model_dir), device="cpu")
    adapter = mimic(base, _images(), [PROMPT] * 3, "textual-inversion", steps=3, lr=5e-2, num_vectors=vectors)
    adapter.save(tmp_path / "ti")
    ours = generate(Adapter.load(tmp_path / "ti").apply(load_model(str(tiny_model_dir), device="cpu")),
                    [adapter.prompt(PROMPT)], steps=3, guidance=3.0, seed=1)
    pipe = _diffusers_pipe(tiny_model_dir)
    pipe.load_textual_inversion(str(tmp_path / "ti"), weight_name="adapter.safetensors")
    token = adapter.info["token"]
    names = [token] + [f"{token}_{i}" for i in range(1, vectors)]
    assert adapter.info["tokens"] == names and all(n in pipe.tokenizer.get_vocab() for n in names)
    ids = pipe.tokenizer.convert_tokens_to_ids(names)
    rows = pipe.text_encoder.get_input_embeddings().weight[ids].detach()
    assert torch.equal(rows, adapter.tensors[token].reshape(vectors, -1))
    assert torch.allclose(ours, _run(pipe, adapter.prompt(PROMPT)), atol=1e-4)


def test_results_are_written_with_the_users_umask(tmp_path, tiny_model_dir):
    from artshield.io import write_text

    old = os.umask(0o022)
    try:
        path = write_text("x", tmp_path / "a.txt")
        assert (path.stat().st_mode & 0o777) == 0o644
    finally:
        os.umask(old)


def test_the_api_takes_pil_and_numpy_images_and_gives_back_the_same_kind(tiny_bundle):
    from artshield.protect import protect
    from artshield.purify import purify

    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8), "RGB")
    grey = Image.fromarray(np.random.default_rng(1).integers(0, 256, (20, 24), dtype=np.uint8), "L")
    array = np.asarray(rgb).copy()
    result = protect(tiny_bundle, [rgb, grey, array], "advdm", steps=2, budget=8, score=False)
    out = result.protected([rgb, grey, array])
    assert isinstance(out[0], Image.Image) and out[0].size == rgb.size and out[0].mode == "RGB"
    assert isinstance(out[1], Image.Image) and out[1].mode == "L"
    assert isinstance(out[2], np.ndarray) and out[2].dtype == np.uint8 and out[2].shape == array.shape
    change = np.abs(np.asarray(out[0], dtype=int) - np.asarray(rgb, dtype=int)).max()
    assert 0 < change <= 8
    cleaned = purify(None, [rgb, array.astype(np.float32) / 255], "jpeg")
    assert isinstance(cleaned[0], Image.Image)
    assert cleaned[1].dtype == np.float32 and cleaned[1].shape == array.shape
    with pytest.raises(TypeError, match="PIL image, a numpy array"):
        purify(None, ["not an image"], "jpeg")


def test_lora_file_carries_diffusers_metadata(lora_folder):
    from safetensors import safe_open

    with safe_open(str(lora_folder / "adapter.safetensors"), "pt") as f:
        meta = json.loads(f.metadata()["lora_adapter_metadata"])
        assert all(k.startswith("unet.") for k in f.keys())
    assert meta["unet.r"] == 2 and meta["unet.lora_alpha"] == 3.0
