"""Real models in, standard files out: single-file checkpoints, SD 2.x v-prediction, refusals,
dtypes, and exports that diffusers' own loaders open."""
import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from artshield.cli import main
from artshield.errors import ArtshieldError
from artshield.generate import generate
from artshield.models import load_model
from artshield.models.diffusion import denoising_loss, diffusion_target, predicted_noise
from artshield.models.tiny import make_tiny_model


@pytest.fixture(scope="module")
def sd2_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("sd2") / "model", seed=3, family="sd2")


@pytest.fixture(scope="module")
def sdxl_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("sdxl") / "model", seed=4, family="sdxl")


@pytest.fixture
def family_dir(request, tiny_model_dir, sd2_dir, sdxl_dir):
    return {"sd1": tiny_model_dir, "sd2": sd2_dir, "sdxl": sdxl_dir}[request.param]


def _sample(folder_or_pipe, prompt="folder icon, tango style", seed=1):
    from diffusers import DDIMScheduler

    pipe = folder_or_pipe
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, steps_offset=1, set_alpha_to_one=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe(prompt=[prompt], generator=[torch.Generator().manual_seed(seed)], num_inference_steps=3,
                guidance_scale=3.0, height=16, width=16, output_type="pt").images.float()


@pytest.mark.parametrize("family_dir", ["sd1", "sd2", "sdxl"], indirect=True)
def test_single_file_export_opens_in_diffusers_from_single_file_and_in_artshield(tmp_path, family_dir):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    folder = family_dir
    original = load_model(str(folder), device="cpu")
    out = tmp_path / "model.safetensors"
    assert main(["export", str(folder), "-o", str(out), "--format", "single-file", "-q"]) == 0
    assert (out.stat().st_mode & 0o077) != 0                        # readable by others, as the umask allows
    reference = generate(original, ["folder icon, tango style"], steps=3, guidance=3.0, seed=1)
    pipeline = StableDiffusionXLPipeline if original.is_sdxl else StableDiffusionPipeline
    theirs = pipeline.from_single_file(str(out), config=str(folder), local_files_only=True)
    assert torch.allclose(_sample(theirs), reference, atol=1e-4)
    ours = load_model(str(out), device="cpu", config=str(folder))
    assert ours.source == "single-file"
    assert ours.is_sdxl == original.is_sdxl
    assert ours.scheduler.config.prediction_type == original.scheduler.config.prediction_type
    assert torch.allclose(generate(ours, ["folder icon, tango style"], steps=3, guidance=3.0, seed=1), reference,
                          atol=1e-4)


def test_minis_single_file_export_loads_back_without_a_config_from_what_it_recorded(tmp_path, mini_bundle):
    """mini's architecture is no shipped SD configuration: export records it in the file's
    metadata, and --model on the file reads it (no --model-config needed); a file that records
    none still needs one."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    out = tmp_path / "mini.safetensors"
    assert main(["export", "mini", "-o", str(out), "--format", "single-file", "-q"]) == 0
    with safe_open(str(out), "pt") as f:
        assert f.metadata()["artshield_config"] == "mini"
    reference = generate(mini_bundle, ["folder icon, tango style"], steps=3, guidance=3.0, seed=1)
    assert torch.allclose(generate(load_model(str(out), device="cpu"), ["folder icon, tango style"], steps=3,
                                   guidance=3.0, seed=1), reference, atol=1e-4)
    bare = tmp_path / "bare.safetensors"
    save_file(load_file(str(out)), str(bare))                        # the same tensors, no metadata
    with pytest.raises(ArtshieldError, match="position_embedding"):
        load_model(str(bare), device="cpu")


@pytest.mark.parametrize("method,fmt", [("uce", "diffusers"), ("advunlearn", "diffusers"),
                                        ("advunlearn", "single-file")])
def test_an_exported_erasure_opens_with_diffusers_own_loaders(tmp_path, tiny_model_dir, method, fmt):
    """An erasure of the UNet (uce) or of the text encoder (advunlearn) is in the files diffusers reads:
    from_pretrained on the folder, from_single_file on the checkpoint."""
    from diffusers import StableDiffusionPipeline

    edit = tmp_path / "erased"
    options = ["--iterations", "3", "--lr", "1e-2", "--option", "attack_steps=1", "--option", "ddim_steps=4",
               "--option", "warmup=0"] if method == "advunlearn" else []
    assert main(["erase", "--model", str(tiny_model_dir), "--concept", "folder icon", "--method", method,
                 "-o", str(edit), "--no-eval", "-q", *options]) == 0
    out = tmp_path / ("erased.safetensors" if fmt == "single-file" else "erased-diffusers")
    assert main(["export", str(edit), "-o", str(out), "--format", fmt, "-q"]) == 0
    reference = generate(load_model(str(edit), device="cpu"), ["folder icon, tango style"], steps=3, guidance=3.0,
                         seed=1)
    base = generate(load_model(str(tiny_model_dir), device="cpu"), ["folder icon, tango style"], steps=3,
                    guidance=3.0, seed=1)
    assert not torch.allclose(reference, base, atol=1e-4)          # the erasure is in the exported weights
    if fmt == "single-file":
        pipe = StableDiffusionPipeline.from_single_file(str(out), config=str(tiny_model_dir), local_files_only=True)
    else:
        pipe = StableDiffusionPipeline.from_pretrained(str(out), safety_checker=None, requires_safety_checker=False)
    assert torch.allclose(_sample(pipe), reference, atol=1e-4)
    assert main(["export", str(edit), "-o", str(out), "--format", fmt, "-q"]) == 2   # never replaces what is there


def test_lora_merged_into_a_single_file_matches_the_adapter(tmp_path, tiny_model_dir):
    from artshield.mimic import Adapter, mimic

    g = torch.Generator().manual_seed(0)
    adapter = mimic(load_model(str(tiny_model_dir), device="cpu"), [torch.rand(3, 16, 16, generator=g)] * 2,
                    ["folder icon, sks style"] * 2, "lora", steps=4, lr=5e-2, rank=2, alpha=2.0)
    adapter.save(tmp_path / "lora")
    out = tmp_path / "merged.safetensors"
    assert main(["export", str(tiny_model_dir), "--adapter", str(tmp_path / "lora"), "-o", str(out),
                 "--format", "single-file", "-q"]) == 0
    merged = generate(load_model(str(out), device="cpu", config=str(tiny_model_dir)), ["folder icon, sks style"],
                      steps=3, guidance=3.0, seed=1)
    applied = generate(Adapter.load(tmp_path / "lora").apply(load_model(str(tiny_model_dir), device="cpu")),
                       ["folder icon, sks style"], steps=3, guidance=3.0, seed=1)
    assert torch.allclose(merged, applied, atol=1e-4)


def test_a_pickle_is_refused_and_never_unpickled(tmp_path, capsys):
    marker = tmp_path / "pwned"
    code = (f"import pickle, os\nclass P:\n    def __reduce__(self):\n        return (os.system, ('touch {marker}',))\n"
            f"open('{tmp_path / 'model.ckpt'}', 'wb').write(pickle.dumps(P()))\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    for name in ("model.ckpt", "model.bin", "model.pt"):
        target = tmp_path / name
        if not target.exists():
            target.write_bytes((tmp_path / "model.ckpt").read_bytes())
        assert main(["generate", "--model", str(target), "--prompt", "x", "-o", str(tmp_path / "out"), "-q"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "pickled checkpoint" in err and "safetensors" in err
    assert not marker.exists()


def test_checkpoints_that_are_not_text_to_image_models_are_refused_in_one_line(tmp_path, capsys):
    lora = tmp_path / "lora.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(2, 2)}, str(lora))
    inpaint = tmp_path / "inpaint.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(2, 9, 3, 3)}, str(inpaint))
    for spec, words in ((lora, "not a Stable Diffusion checkpoint"), (inpaint, "inpainting")):
        assert main(["generate", "--model", str(spec), "--prompt", "x", "-o", str(tmp_path / "o"), "-q"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and words in err, err


def test_v_prediction_target_and_noise_are_the_schedulers_on_known_values(sd2_dir):
    bundle = load_model(str(sd2_dir), device="cpu")
    assert bundle.scheduler.config.prediction_type == "v_prediction"
    z, eps, t = torch.full((1, 4, 2, 2), 0.5), torch.full((1, 4, 2, 2), -1.0), torch.tensor([999])
    abar = float(bundle.scheduler.alphas_cumprod[999])
    expected = abar ** 0.5 * -1.0 - (1 - abar) ** 0.5 * 0.5          # v = sqrt(abar) eps - sqrt(1 - abar) z
    assert torch.allclose(diffusion_target(bundle, z, eps, t), torch.full_like(z, expected), atol=1e-6)
    noisy = bundle.scheduler.add_noise(z, eps, t)
    assert torch.allclose(predicted_noise(bundle, diffusion_target(bundle, z, eps, t), noisy, t), eps, atol=1e-5)
    bundle.scheduler = type(bundle.scheduler).from_config(bundle.scheduler.config, prediction_type="sample")
    assert torch.equal(diffusion_target(bundle, z, eps, t), z)
    assert torch.allclose(predicted_noise(bundle, z, noisy, t), eps, atol=1e-4)


def test_min_snr_weights_are_diffusers_for_each_prediction_type(sd2_dir):
    from diffusers.training_utils import compute_snr

    from artshield.models.diffusion import min_snr_weights

    bundle = load_model(str(sd2_dir), device="cpu")
    t = torch.tensor([0, 5, 100, 400, 999])
    snr = compute_snr(bundle.scheduler, t)
    clipped = torch.minimum(snr, torch.full_like(snr, 5.0))
    for kind, expected in (("v_prediction", clipped / (snr + 1)), ("epsilon", clipped / snr), ("sample", clipped)):
        bundle.scheduler = type(bundle.scheduler).from_config(bundle.scheduler.config, prediction_type=kind)
        assert torch.allclose(min_snr_weights(bundle, t, 5.0), expected, rtol=1e-5), kind
    # weighted, the loss of a latent at a small t (high SNR) shrinks by its weight; at a large t it is unchanged
    bundle.scheduler = type(bundle.scheduler).from_config(bundle.scheduler.config, prediction_type="epsilon")
    z, ctx = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(0)), bundle.embed(["a", "b"])
    ts = torch.tensor([5, 999])
    plain = denoising_loss(bundle, z, ctx, torch.Generator().manual_seed(1), ts)
    weighted = denoising_loss(bundle, z, ctx, torch.Generator().manual_seed(1), ts, snr_gamma=5.0)
    assert torch.allclose(weighted, plain * min_snr_weights(bundle, ts, 5.0), rtol=1e-5) and weighted[0] < plain[0]


@pytest.mark.parametrize("family_dir", ["sd2", "sdxl"], indirect=True)
def test_every_command_runs_on_sd2_v_prediction_and_sdxl_models(tmp_path, family_dir):
    from PIL import Image

    from artshield.names import MIMIC, PROTECT

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(2):
        Image.fromarray((torch.rand(20, 24, 3, generator=g) * 255).byte().numpy()).save(imgs / f"a{i}.png")
    m = ["--model", str(family_dir), "-q"]
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("folder icon\nprinter icon\n")
    runs = [["generate", "--prompt", "folder icon", "-n", "1", "--steps", "2"],
            *(["protect", str(imgs), "--method", p, "--steps", "2", "--option", "pool_steps=4"] if p == "metacloak"
              else ["protect", str(imgs), "--method", p, "--steps", "2"] for p in PROTECT),
            *(["purify", str(imgs), "--method", p] for p in ("diffpure", "noisy-redraw", "jpeg")),
            *(["mimic", str(imgs), "--method", p, "--steps", "2"] for p in MIMIC),
            *(["erase", "--concept", "folder icon", "--method", p, "--iterations", "2", "--no-eval"]
              for p in ("esd-x", "esd-u")),
            ["erase", "--concept", "folder icon", "--method", "uce", "--no-eval"],
            ["audit", "--prompts", str(prompts), "--generations", "2", "--min-clique", "2", "--steps", "2"],
            ["audit", "--prompts", str(prompts), "--candidates", str(imgs), "--method", "detect"]]
    for i, run in enumerate(runs):
        assert main([*run, *m, "-o", str(tmp_path / f"out{i}")]) == 0, run
        results = json.loads((tmp_path / f"out{i}" / "results.json").read_text())
        assert results.get("failed", []) == [], run


def test_device_and_dtype_are_checked_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    for flags, words in ((["--device", "mps"], "no MPS"), (["--device", "cuda:7"], "CUDA"),
                         (["--device", "tpu"], "not a device")):
        assert main(["generate", "--prompt", "x", "-o", str(tmp_path / "o"), "-q", *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and words in err and "--device" in err, err
    with pytest.raises(ArtshieldError, match="not a dtype"):
        load_model("mini", device="cpu", dtype="fp8")
    assert load_model("mini", device="cpu", dtype="bf16").dtype == torch.bfloat16


def test_fp16_variant_folders_load(tmp_path, tiny_model_dir):
    import shutil

    folder = tmp_path / "fp16"
    shutil.copytree(tiny_model_dir, folder)
    for part in ("unet", "vae", "text_encoder"):
        weights = next((folder / part).glob("*.safetensors"))
        weights.rename(weights.with_name(weights.stem + ".fp16.safetensors"))
    bundle = load_model(str(folder), device="cpu")
    reference = load_model(str(tiny_model_dir), device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(bundle.unet.state_dict().values(),
                                                  reference.unet.state_dict().values()))


def test_half_precision_training_keeps_fp32_master_weights(tiny_model_dir):
    from artshield.mimic import MIMICS, mimic

    bundle = load_model(str(tiny_model_dir), device="cpu", dtype=torch.float16)
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 16, 16, generator=g) for _ in range(2)]
    for method in MIMICS:
        adapter = mimic(bundle, images, ["folder icon, sks style"] * 2, method, steps=4, lr=1e-2)
        assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in adapter.tensors.values()), method
        assert adapter.info["final_loss"] == adapter.info["final_loss"], method          # not NaN


def test_clip_vocabulary_gives_clips_token_ids(tmp_path):
    from transformers import CLIPTokenizer

    from artshield.models.single_file import clip_vocabulary

    clip_vocabulary(tmp_path)
    tok = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    assert len(tok) == 49408
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_memory_options_leave_results_unchanged(tiny_model_dir):
    from artshield.protect import protect

    images = [torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))]
    plain = protect(load_model(str(tiny_model_dir), device="cpu"), images, "advdm", steps=2, score=False)
    saving = load_model(str(tiny_model_dir), device="cpu").save_memory(True, True, True)
    assert saving.unet.is_gradient_checkpointing
    light = protect(saving, images, "advdm", steps=2, score=False)
    assert torch.allclose(plain.deltas[0], light.deltas[0], atol=1 / 255 + 1e-6)


def test_sdxl_conditioning_matches_the_diffusers_pipeline(sdxl_dir):
    """The one-tensor context and the UNet hook give what StableDiffusionXLPipeline gives the UNet."""
    bundle = load_model(str(sdxl_dir), device="cpu")
    pipe = bundle.pipeline()
    embeds, _, pooled, _ = pipe.encode_prompt("folder icon", do_classifier_free_guidance=False)
    ids = torch.tensor([[16.0, 16.0, 0, 0, 16.0, 16.0]])
    z, t = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([500])
    theirs = bundle.unet(z, t, encoder_hidden_states=embeds,
                         added_cond_kwargs={"text_embeds": pooled, "time_ids": ids}).sample
    ours = bundle.unet(z, t, encoder_hidden_states=bundle.embed(["folder icon"])).sample
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert torch.equal(bundle.embed([""]), torch.zeros_like(bundle.embed([""])))   # force_zeros_for_empty_prompt


def test_sdxl_lora_and_embedding_load_in_diffusers(tmp_path, sdxl_dir):
    from diffusers import StableDiffusionXLPipeline

    from artshield.mimic import Adapter, mimic

    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 16, 16, generator=g) for _ in range(2)]
    lora = mimic(load_model(str(sdxl_dir), device="cpu"), images, ["folder icon, sks style"] * 2, "lora", steps=4,
                 lr=5e-2)
    lora.save(tmp_path / "lora")
    ours = generate(Adapter.load(tmp_path / "lora").apply(load_model(str(sdxl_dir), device="cpu")),
                    ["folder icon, sks style"], steps=3, guidance=3.0, seed=1)
    pipe = StableDiffusionXLPipeline.from_pretrained(str(sdxl_dir))
    plain = _sample(pipe, "folder icon, sks style")
    pipe.load_lora_weights(str(tmp_path / "lora"), weight_name="adapter.safetensors")
    assert torch.allclose(_sample(pipe, "folder icon, sks style"), ours, atol=1e-4)
    assert not torch.allclose(plain, ours, atol=1e-3)
    assert main(["export", str(tmp_path / "lora"), "-o", str(tmp_path / "k.safetensors"), "--format", "kohya",
                 "-q"]) == 0
    pipe = StableDiffusionXLPipeline.from_pretrained(str(sdxl_dir))
    pipe.load_lora_weights(str(tmp_path / "k.safetensors"))
    assert torch.allclose(_sample(pipe, "folder icon, sks style"), ours, atol=1e-4)

    ti = mimic(load_model(str(sdxl_dir), device="cpu"), images, ["folder icon, sks style"] * 2, "textual-inversion",
               steps=3, lr=5e-2)
    assert set(ti.tensors) == {"clip_l", "clip_g"}
    ti.save(tmp_path / "ti")
    pipe = StableDiffusionXLPipeline.from_pretrained(str(sdxl_dir))
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "ti" / "adapter.safetensors"))
    token = ti.info["token"]
    pipe.load_textual_inversion(saved["clip_l"], token=token, text_encoder=pipe.text_encoder,
                                tokenizer=pipe.tokenizer)
    pipe.load_textual_inversion(saved["clip_g"], token=token, text_encoder=pipe.text_encoder_2,
                                tokenizer=pipe.tokenizer_2)
    applied = generate(Adapter.load(tmp_path / "ti").apply(load_model(str(sdxl_dir), device="cpu")),
                       [ti.prompt("folder icon, sks style")], steps=3, guidance=3.0, seed=1)
    assert torch.allclose(_sample(pipe, ti.prompt("folder icon, sks style")), applied, atol=1e-4)


def test_export_refuses_what_has_no_standard_form_in_one_line(tmp_path, tiny_model_dir, capsys):
    from artshield.mimic import mimic

    images = [torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))]
    for method in ("hypernetwork", "textual-inversion"):
        mimic(load_model(str(tiny_model_dir), device="cpu"), images, ["folder icon, sks style"], method,
              steps=1).save(tmp_path / method)
        assert main(["export", str(tmp_path / method), "-o", str(tmp_path / f"{method}-out"), "-q"]) == 2
    assert main(["export", str(tiny_model_dir), "-o", str(tmp_path / "k.safetensors"), "--format", "kohya"]) == 2
    assert main(["export", str(tiny_model_dir), "-o", str(tmp_path / "model.ckpt"), "--format", "single-file"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("artshield: error:") for line in lines), lines
    assert "cannot be folded" in lines[0] and "load_textual_inversion" in lines[1]
    assert "holds a LoRA" in lines[2] and "*.safetensors" in lines[3]
    assert not any(p.name.endswith("-out") for p in tmp_path.iterdir())


def test_dreambooth_with_its_text_encoder_trains_both_and_exports_both_to_diffusers(tmp_path, tiny_model_dir):
    from diffusers import StableDiffusionPipeline

    from artshield.mimic import Adapter, mimic

    base = load_model(str(tiny_model_dir), device="cpu")
    g = torch.Generator().manual_seed(0)
    images, captions = [torch.rand(3, 16, 16, generator=g) for _ in range(2)], ["folder icon, sks style"] * 2
    unet_only = mimic(base, images, captions, "dreambooth", steps=3, lr=1e-2)
    assert not any(k.startswith("text_encoder") for k in unet_only.tensors)
    adapter = mimic(base, images, captions, "dreambooth", steps=3, lr=1e-2, train_text_encoder=True)
    encoder = {k[len("text_encoder."):]: v for k, v in adapter.tensors.items() if k.startswith("text_encoder.")}
    assert set(encoder) == set(base.text_encoder.state_dict())
    assert any(not torch.equal(v, base.text_encoder.state_dict()[k]) for k, v in encoder.items())   # it moved
    adapter.save(tmp_path / "db")
    adapted = Adapter.load(tmp_path / "db").apply(load_model(str(tiny_model_dir), device="cpu"))
    assert all(torch.equal(adapted.text_encoder.state_dict()[k], v) for k, v in encoder.items())
    out = tmp_path / "db-diffusers"
    assert main(["export", str(tiny_model_dir), "--adapter", str(tmp_path / "db"), "-o", str(out), "-q"]) == 0
    pipe = StableDiffusionPipeline.from_pretrained(str(out), safety_checker=None, requires_safety_checker=False)
    assert all(torch.equal(pipe.text_encoder.state_dict()[k], v) for k, v in encoder.items())
    reference = generate(adapted, ["folder icon, tango style"], steps=3, guidance=3.0, seed=1)
    assert torch.allclose(_sample(pipe), reference, atol=1e-4)


def test_advunlearn_trains_the_text_encoder_of_sd2_and_refuses_sdxl_in_one_line(sd2_dir, sdxl_dir, tmp_path, capsys):
    from artshield.erase import erase

    sd2 = load_model(str(sd2_dir), device="cpu")
    edit = erase(sd2, ["folder icon"], "advunlearn", iterations=2, lr=1e-2, ddim_steps=4, attack_steps=1, warmup=0.0)
    erased = edit.apply(sd2.copy())
    with torch.no_grad():
        assert not torch.allclose(erased.embed(["folder icon"]), sd2.embed(["folder icon"]))
    assert main(["erase", "--model", str(sdxl_dir), "--concept", "folder icon", "--method", "advunlearn",
                 "-o", str(tmp_path / "x"), "--no-eval", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "SDXL" in err[0]
    assert not (tmp_path / "x" / "edit.safetensors").exists()


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_tiny_transformer_models_open_in_diffusers(tmp_path, family):
    """The tiny SD3 and FLUX folders are what diffusers' own pipelines run (T5 tokenizer learnt with
    the tokenizers library); artshield on them, and their single files: tests/test_flow_models.py."""
    from diffusers import FluxPipeline, StableDiffusion3Pipeline

    from artshield.models.tiny import make_tiny_transformer_model

    folder = make_tiny_transformer_model(tmp_path / family, family)
    pipe = (StableDiffusion3Pipeline if family == "sd3" else FluxPipeline).from_pretrained(str(folder))
    pipe.set_progress_bar_config(disable=True)
    image = pipe(prompt=["folder icon"], num_inference_steps=2, height=16, width=16, guidance_scale=3.0,
                 max_sequence_length=16, generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert image.shape == (1, 3, 16, 16) and torch.isfinite(image).all()


def test_a_single_file_without_its_text_encoder_is_refused_in_one_line(tmp_path, capsys):
    unet_only = tmp_path / "unet-only.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3)}, str(unet_only))
    assert main(["generate", "--model", str(unet_only), "--prompt", "x", "-o", str(tmp_path / "g"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot load it as a sd15 checkpoint" in err[0] and "missing" in err[0]
