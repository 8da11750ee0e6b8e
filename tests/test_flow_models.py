"""Stable Diffusion 3 and FLUX (flow-matching transformers) behind the bundle's UNet call shape,
checked against diffusers' own pipelines and training scripts on tiny random-weight folders."""
from __future__ import annotations

import math
import shutil

import pytest
import torch

from artshield.cli import main
from artshield.errors import ArtshieldError
from artshield.generate import generate
from artshield.models import load_model
from artshield.models.diffusion import denoising_loss, diffusion_target, draws, predicted_noise, stratified_timesteps
from artshield.models.flow import FlowSchedule, pack, unpack
from artshield.models.tiny import make_tiny_transformer_model
from artshield.sampling import img2img

PROMPTS = ["a painting of a house", "folder icon, tango style"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("flow")
    return {family: make_tiny_transformer_model(root / family, family) for family in ("sd3", "flux")}


@pytest.fixture(scope="module", params=["sd3", "flux"])
def bundle(request, folders):
    return load_model(str(folders[request.param]), device="cpu")


def test_the_folders_load_as_flow_bundles_with_their_pipelines_defaults(bundle):
    assert bundle.is_flow and not bundle.is_sdxl
    assert bundle.scheduler.config["prediction_type"] == "flow"
    # StableDiffusion3Pipeline: 28 steps, guidance 7.0; FluxPipeline: 28 steps, embedded guidance 3.5
    assert (bundle.conventions.steps, bundle.conventions.guidance) == ((28, 7.0) if bundle.family == "sd3" else (28, 3.5))
    assert bundle.classifier_free == (bundle.family == "sd3")
    # the wrapper's parameters carry the names diffusers' LoRA files use for these pipelines
    assert all(name.startswith("transformer.") for name, _ in bundle.unet.named_parameters())


def test_our_sampling_through_the_wrapper_is_the_pipelines_own(bundle):
    """img2img at strength 1 (our embedding, our packing, our timestep scaling, our guidance) starts
    from the same noise as the pipeline and must give its images: any error in the wrapper shows."""
    reference = generate(bundle, PROMPTS, seed=5, steps=4)
    assert reference.std() > 0.01
    images = torch.rand(len(PROMPTS), 3, bundle.image_size, bundle.image_size)
    ours = torch.cat([img2img(bundle, images[i:i + 1], [p], 1.0, torch.Generator().manual_seed(5 + i), steps=4)
                      for i, p in enumerate(PROMPTS)])
    assert (ours - reference).abs().max() < 1e-4
    # and the prompt matters (the pooled row and the tokens reach the transformer)
    other = generate(bundle, ["printer icon, oxygen style"] * 2, seed=5, steps=4)
    assert (other - reference).abs().max() > 1e-3


def test_partial_strength_keeps_the_picture_and_stochastic_steps_draw_from_the_generator(bundle):
    images = torch.rand(2, 3, bundle.image_size, bundle.image_size)
    a = img2img(bundle, images, PROMPTS, 0.5, torch.Generator().manual_seed(0), steps=4, eta=1.0)
    b = img2img(bundle, images, PROMPTS, 0.5, torch.Generator().manual_seed(0), steps=4, eta=1.0)
    c = img2img(bundle, images, PROMPTS, 0.5, torch.Generator().manual_seed(1), steps=4, eta=1.0)
    assert torch.equal(a, b) and (a - c).abs().max() > 1e-4


def test_the_training_loss_is_the_diffusers_training_scripts(bundle):
    """denoising_loss against the loss written out as train_dreambooth_lora_sd3.py / _flux.py write
    it: x_t = (1 - s) z + s eps, the transformer called directly, target eps - z."""
    z = torch.randn(2, bundle.unet.config.in_channels // (4 if bundle.family == "flux" else 1), 8, 8)
    context = bundle.embed(PROMPTS)
    loss = denoising_loss(bundle, z, context, torch.Generator().manual_seed(3))
    noise, t = draws(bundle, tuple(z.shape), torch.Generator().manual_seed(3))
    sigma = (t / 1000).reshape(-1, 1, 1, 1)
    noisy = (1 - sigma) * z + sigma * noise
    tokens, pooled = context[:, :-1], context[:, -1, :bundle.unet.config.pooled_projection_dim]
    tf = bundle.unet.transformer
    if bundle.family == "sd3":
        pred = tf(hidden_states=noisy, encoder_hidden_states=tokens, pooled_projections=pooled, timestep=t).sample
    else:
        packed = noisy.view(2, -1, 4, 2, 4, 2).permute(0, 2, 4, 1, 3, 5).reshape(2, 16, -1)
        ids = torch.stack(torch.meshgrid(torch.zeros(1), torch.arange(4.0), torch.arange(4.0), indexing="ij"),
                          dim=-1).reshape(-1, 3)
        out = tf(hidden_states=packed, encoder_hidden_states=tokens, pooled_projections=pooled, timestep=t / 1000,
                 img_ids=ids, txt_ids=torch.zeros(tokens.shape[1], 3), guidance=torch.full((2,), 3.5)).sample
        pred = out.view(2, 4, 4, -1, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(z.shape)
    expected = (pred - (noise - z)).pow(2).flatten(1).mean(1)
    assert torch.allclose(loss, expected, atol=1e-5)


def test_training_times_follow_each_familys_script(folders):
    """SD3: logit-normal u read through the shift-3 table (most draws in the middle-to-high noise);
    FLUX-dev: uniform u, unshifted table (its scheduler shifts by resolution only when sampling)."""
    g = torch.Generator().manual_seed(0)
    sd3 = FlowSchedule({"shift": 3.0}, "sd3").sample_timesteps(20000, g) / 1000
    flux = FlowSchedule({"shift": 3.0, "use_dynamic_shifting": True}, "flux").sample_timesteps(20000, g) / 1000
    assert ((sd3 > 0) & (sd3 <= 1)).all() and ((flux > 0) & (flux <= 1)).all()
    assert abs(flux.mean().item() - 0.5) < 0.01 and abs(flux.std().item() - 1 / math.sqrt(12)) < 0.01
    # logit-normal(0, 1) has median 1/2; shift 3 sends 1/2 to 3/4
    assert abs(sd3.median().item() - 0.75) < 0.01
    spread = FlowSchedule({"shift": 3.0}, "sd3").spread(4) / 1000
    assert (spread.diff() > 0).all() and spread[0] > 0.125 and spread[-1] < 1


def test_noise_read_back_from_a_velocity(bundle):
    z, eps = torch.randn(2, 4, 4, 4), torch.randn(2, 4, 4, 4)
    t = torch.tensor([200.0, 900.0])
    noisy = bundle.scheduler.add_noise(z, eps, t)
    assert torch.allclose(noisy[1], 0.1 * z[1] + 0.9 * eps[1], atol=1e-6)
    v = diffusion_target(bundle, z, eps, t)
    assert torch.allclose(predicted_noise(bundle, v, noisy, t), eps, atol=1e-5)
    assert stratified_timesteps(bundle, 3).dtype.is_floating_point


def test_flux_packing_round_trips_and_refuses_odd_sides():
    x = torch.randn(2, 4, 6, 8)
    patches, ids = pack(x)
    assert patches.shape == (2, 12, 16) and ids.shape == (12, 3) and ids[-1].tolist() == [0, 2, 3]
    assert torch.equal(unpack(patches, x.shape), x)
    with pytest.raises(ValueError, match="even"):
        pack(torch.randn(1, 4, 5, 8))


def test_generate_command_on_sd3_and_flux_folders(folders, tmp_path):
    for family, folder in folders.items():
        out = tmp_path / family
        assert main(["generate", "--model", str(folder), "--prompt", "folder icon", "--steps", "2",
                     "-o", str(out), "-q"]) == 0
        pngs = sorted(out.glob("*.png"))
        assert pngs and all(p.stat().st_size > 0 for p in pngs)


def _images(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, 20, 24, generator=g) for _ in range(n)]


@pytest.fixture(scope="module")
def lora_folders(folders, tmp_path_factory):
    from artshield.mimic import mimic

    out = {}
    for family, folder in folders.items():
        adapter = mimic(load_model(str(folder), device="cpu"), _images(), ["folder icon, sks style"] * 3, "lora",
                        steps=5, lr=5e-2, rank=2, alpha=3.0)
        out[family] = tmp_path_factory.mktemp(family) / "lora"
        adapter.save(out[family])
    return out


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_a_lora_on_the_transformer_loads_with_the_pipelines_own_load_lora_weights(family, folders, lora_folders):
    """The LoRA file is read by StableDiffusion3Pipeline's / FluxPipeline's `load_lora_weights`, acts
    there, and gives exactly the images artshield's generate gives with the adapter."""
    from diffusers import FluxPipeline, StableDiffusion3Pipeline
    from safetensors import safe_open

    from artshield.mimic import Adapter

    with safe_open(str(lora_folders[family] / "adapter.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all(k.startswith("transformer.") for k in keys)
    assert any(".attn.add_k_proj." in k for k in keys) and (family == "sd3") != any(".ff.net.2." in k for k in keys)
    prompt = "folder icon, sks style"
    bundle = Adapter.load(lora_folders[family]).apply(load_model(str(folders[family]), device="cpu"))
    ours = generate(bundle, [prompt], steps=3, seed=1)
    pipe = (StableDiffusion3Pipeline if family == "sd3" else FluxPipeline).from_pretrained(str(folders[family]))
    pipe.set_progress_bar_config(disable=True)
    guidance = bundle.conventions.guidance

    def run():
        kw = {"max_sequence_length": bundle.t5_length(pipe.tokenizer_3 if family == "sd3" else pipe.tokenizer_2)}
        return pipe(prompt=[prompt], generator=[torch.Generator().manual_seed(1)], num_inference_steps=3,
                    guidance_scale=guidance, height=16, width=16, output_type="pt", **kw).images.float()

    plain = run()
    pipe.load_lora_weights(str(lora_folders[family]), weight_name="adapter.safetensors")
    theirs = run()
    assert (plain - theirs).abs().max() > 1e-3           # the LoRA was loaded and acts
    assert (ours - theirs).abs().max() < 1e-4            # exactly as in artshield


def test_a_lora_for_one_family_is_refused_on_another(folders, lora_folders, tiny_model_dir):
    from artshield.errors import ArtshieldError
    from artshield.mimic import Adapter

    with pytest.raises(ArtshieldError, match="trained on a SD3 model, not on a FLUX one"):
        Adapter.load(lora_folders["sd3"]).apply(load_model(str(folders["flux"]), device="cpu"))
    with pytest.raises(ArtshieldError, match="trained on a FLUX model, not on a SD one"):
        Adapter.load(lora_folders["flux"]).apply(load_model(str(tiny_model_dir), device="cpu"))


@pytest.mark.parametrize("method", ["hypernetwork"])
def test_mimics_that_do_not_apply_are_refused_in_one_line(folders, method, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    Image.new("RGB", (16, 16), (200, 30, 30)).save(images / "a.png")
    assert main(["mimic", str(images), "--model", str(folders["flux"]), "--method", method, "--steps", "1",
                 "-o", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{method} does not run on FLUX" in err[0], err
    assert not (tmp_path / "out" / "adapter.safetensors").exists()


def test_dreambooth_trains_the_transformer_and_its_weights_load_back(bundle):
    from artshield.mimic import mimic

    adapter = mimic(bundle, _images(2), ["folder icon"] * 2, "dreambooth", steps=2, lr=1e-2)
    assert adapter.info["family"] == bundle.family
    changed = bundle.copy(text=False)
    adapter.apply(changed)
    base = dict(bundle.unet.named_parameters())
    moved = [n for n, p in changed.unet.named_parameters() if not torch.equal(p, base[n])]
    assert moved and all(n.startswith("transformer.") for n in moved)


@pytest.mark.parametrize("method", ["advdm", "mist", "sds", "sds-minus", "photoguard", "glaze", "aspl", "ace",
                                    "metacloak", "robust"])
def test_every_protection_runs_on_sd3_and_flux_within_its_budget(bundle, method):
    from artshield.protect import protect

    images = _images(2)
    out = protect(bundle, images, method=method, steps=2, budget=8.0, score=False)
    for before, after in zip(images, out.protected(images)):
        assert after.shape == before.shape
        assert (after - before).abs().max() <= 8 / 255 + 1e-6 and (after - before).abs().max() > 0


@pytest.mark.parametrize("method", ["diffpure", "noisy-redraw", "impress"])
def test_the_diffusion_purifiers_redraw_through_the_flow_model(bundle, method):
    from artshield.purify import purify

    images = _images(2)
    out = purify(bundle, images, method, seed=0, **({"iterations": 5} if method == "impress" else {}))
    assert [tuple(x.shape) for x in out] == [tuple(x.shape) for x in images]
    assert all((a - b).abs().mean() > 1e-3 for a, b in zip(out, images))


def test_export_writes_a_folder_the_pipelines_open(folders, tmp_path):
    from diffusers import DiffusionPipeline

    for family, folder in folders.items():
        out = tmp_path / family
        assert main(["export", str(folder), "-o", str(out), "-q"]) == 0
        pipe = DiffusionPipeline.from_pretrained(str(out))
        assert type(pipe).__name__ == ("StableDiffusion3Pipeline" if family == "sd3" else "FluxPipeline")
        again = load_model(str(out), device="cpu")
        assert again.family == family


def _tensors(path):
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


# names of the authors' layouts, one per kind of tensor the conversion touches
SD3_NAMES = ["pos_embed", "x_embedder.proj.weight", "t_embedder.mlp.0.weight", "y_embedder.mlp.2.bias",
             "context_embedder.weight", "final_layer.linear.weight", "final_layer.adaLN_modulation.1.bias",
             "joint_blocks.0.x_block.attn.qkv.weight", "joint_blocks.0.context_block.attn.qkv.bias",
             "joint_blocks.0.x_block.attn.proj.weight", "joint_blocks.0.x_block.adaLN_modulation.1.weight",
             "joint_blocks.0.context_block.adaLN_modulation.1.weight", "joint_blocks.0.x_block.mlp.fc1.weight",
             "joint_blocks.0.x_block.mlp.fc2.bias"]
FLUX_NAMES = ["time_in.in_layer.weight", "vector_in.out_layer.bias", "guidance_in.in_layer.weight", "txt_in.weight",
              "img_in.bias", "final_layer.linear.weight", "final_layer.adaLN_modulation.1.weight",
              "double_blocks.0.img_mod.lin.weight", "double_blocks.0.txt_attn.qkv.weight",
              "double_blocks.0.img_attn.norm.query_norm.scale", "double_blocks.0.txt_mlp.2.bias",
              "double_blocks.0.img_attn.proj.weight", "single_blocks.0.linear1.weight", "single_blocks.0.linear2.bias",
              "single_blocks.0.modulation.lin.weight", "single_blocks.0.norm.key_norm.scale"]


def _every_tensor_distinct(transformer, folder):
    """Random values in every tensor (norm scales start as ones, biases as zeros: a swap of two of
    them would pass unseen), saved as the folder's transformer."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in transformer.parameters():
            p.normal_()
    shutil.rmtree(folder / "transformer")
    transformer.save_pretrained(folder / "transformer")


def test_the_sd3_single_file_is_the_authors_layout_that_diffusers_reads_back_tensor_for_tensor(folders, tmp_path):
    from diffusers import SD3Transformer2DModel

    folder, out = tmp_path / "sd3", tmp_path / "sd3.safetensors"
    shutil.copytree(folders["sd3"], folder)
    _every_tensor_distinct(SD3Transformer2DModel.from_pretrained(folder / "transformer"), folder)
    assert main(["export", str(folder), "-o", str(out), "--format", "single-file", "-q"]) == 0
    tensors, metadata = _tensors(out)
    assert all("model.diffusion_model." + name in tensors for name in SD3_NAMES), sorted(tensors)[:5]
    assert not any("transformer_blocks" in k or "to_q" in k for k in tensors)
    assert metadata["artshield_base"] == str(folder.resolve())
    theirs = SD3Transformer2DModel.from_single_file(str(out), config=str(folder), subfolder="transformer",
                                                    local_files_only=True)
    ours = SD3Transformer2DModel.from_pretrained(folder / "transformer").state_dict()
    read = theirs.state_dict()
    assert set(read) == set(ours) and all(torch.equal(read[k], ours[k]) for k in ours)
    # the final modulation is stored (shift, scale): diffusers' (scale, shift) halves swapped
    half = ours["norm_out.linear.bias"].shape[0] // 2
    stored = tensors["model.diffusion_model.final_layer.adaLN_modulation.1.bias"]
    assert torch.equal(stored[:half], ours["norm_out.linear.bias"][half:])


def test_an_sd3_single_file_runs_as_its_folder_does_on_the_base_it_names(folders, tmp_path):
    folder, out = folders["sd3"], tmp_path / "sd3.safetensors"
    assert main(["export", str(folder), "-o", str(out), "--format", "single-file", "-q"]) == 0
    single, whole = load_model(str(out), device="cpu"), load_model(str(folder), device="cpu")
    assert single.family == "sd3" and single.source == "single-file" and single.architecture == str(folder.resolve())
    assert (single.conventions.steps, single.conventions.guidance) == (whole.conventions.steps, whole.conventions.guidance)
    kw = dict(steps=2, size=16, seed=3)
    assert torch.allclose(generate(single, PROMPTS[:1], **kw)[0], generate(whole, PROMPTS[:1], **kw)[0], atol=1e-6)
    # an erasure made on the file loads back on it, and its own single file names the same base
    assert main(["erase", "--model", str(out), "--concept", "folder icon", "--method", "esd-x", "--iterations", "2",
                 "--no-eval", "-o", str(tmp_path / "erased"), "-q"]) == 0
    erased = load_model(str(tmp_path / "erased"), device="cpu")
    assert main(["export", str(tmp_path / "erased"), "-o", str(tmp_path / "erased.safetensors"),
                 "--format", "single-file", "-q"]) == 0
    assert _tensors(tmp_path / "erased.safetensors")[1]["artshield_base"] == str(folder.resolve())
    again = load_model(str(tmp_path / "erased.safetensors"), device="cpu").unet.transformer.state_dict()
    edited = erased.unet.transformer.state_dict()
    assert all(torch.equal(again[k], edited[k]) for k in edited)
    assert not all(torch.equal(edited[k], v) for k, v in whole.unet.transformer.state_dict().items())


def test_the_parts_an_sd3_file_carries_replace_its_bases(folders, tmp_path):
    """A file with its own VAE (Stable Diffusion's original VAE names) and CLIP-L (SD3's prefix)
    brings them; the parts it lacks come from the base folder."""
    from safetensors.torch import save_file

    from artshield.models.ldm_layout import vae_to_ldm

    folder = folders["sd3"]
    base = load_model(str(folder), device="cpu")
    assert main(["export", str(folder), "-o", str(tmp_path / "t.safetensors"), "--format", "single-file", "-q"]) == 0
    tensors, _ = _tensors(tmp_path / "t.safetensors")
    vae = {k: v + 0.01 for k, v in base.vae.state_dict().items()}
    tensors.update({"first_stage_model." + k: v for k, v in vae_to_ldm(vae, base.vae.config).items()})
    clip = {k: v * 1.5 for k, v in base.text_encoder.state_dict().items() if k != "text_projection.weight"}
    tensors.update({"text_encoders.clip_l.transformer." + k: v for k, v in clip.items()})
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp_path / "full.safetensors"))
    loaded = load_model(str(tmp_path / "full.safetensors"), device="cpu", config=str(folder))
    assert all(torch.equal(loaded.vae.state_dict()[k], v) for k, v in vae.items())
    state = loaded.text_encoder.state_dict()
    assert all(torch.equal(state[k], v) for k, v in clip.items())
    assert torch.equal(state["text_projection.weight"], base.text_encoder.state_dict()["text_projection.weight"])
    assert torch.equal(loaded.text_encoder_2.state_dict()["text_model.final_layer_norm.weight"],
                       base.text_encoder_2.state_dict()["text_model.final_layer_norm.weight"])
    # tensors of another shape are refused in one line, not loaded half
    tensors["text_encoders.clip_l.transformer.text_model.embeddings.token_embedding.weight"] = torch.zeros(3, 3)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ArtshieldError, match="cannot load it"):
        load_model(str(tmp_path / "bad.safetensors"), device="cpu", config=str(folder))


def test_the_flux_single_file_is_black_forest_labs_layout(folders, tmp_path):
    from diffusers import FluxTransformer2DModel

    folder, out = tmp_path / "flux", tmp_path / "flux.safetensors"
    shutil.copytree(folders["flux"], folder)
    _every_tensor_distinct(FluxTransformer2DModel.from_pretrained(folder / "transformer"), folder)
    assert main(["export", str(folder), "-o", str(out), "--format", "single-file", "--dtype", "bf16", "-q"]) == 0
    tensors, metadata = _tensors(out)
    assert all(name in tensors for name in FLUX_NAMES), sorted(tensors)[:5]
    assert all(v.dtype == torch.bfloat16 for v in tensors.values())
    ours = load_model(str(folder), device="cpu").unet.transformer.state_dict()
    width = ours["x_embedder.weight"].shape[0]
    qkv = tensors["double_blocks.0.img_attn.qkv.weight"].float()
    assert torch.equal(qkv[width:2 * width], ours["transformer_blocks.0.attn.to_k.weight"].bfloat16().float())
    linear1 = tensors["single_blocks.0.linear1.bias"].float()
    assert torch.equal(linear1[3 * width:], ours["single_transformer_blocks.0.proj_mlp.bias"].bfloat16().float())
    for norm, name in (("norm_q", "img_attn.norm.query_norm"), ("norm_added_k", "txt_attn.norm.key_norm")):
        assert torch.equal(tensors[f"double_blocks.0.{name}.scale"].float(),
                           ours[f"transformer_blocks.0.attn.{norm}.weight"].bfloat16().float())
    assert sum(v.numel() for v in tensors.values()) == sum(v.numel() for v in ours.values())
    assert metadata["artshield_base"] == str(folder.resolve())


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_a_lora_merged_into_a_flow_model_exports_as_a_single_file_on_its_base(family, folders, lora_folders, tmp_path):
    from artshield.export import merge_adapter

    out = tmp_path / f"{family}.safetensors"
    assert main(["export", str(lora_folders[family]), "-o", str(out), "--format", "single-file", "-q"]) == 0
    tensors, metadata = _tensors(out)
    assert metadata["artshield_base"] == str(folders[family].resolve())
    merged = merge_adapter(load_model(str(folders[family]), device="cpu"), str(lora_folders[family]))
    ours = merged.unet.transformer.state_dict()
    base = load_model(str(folders[family]), device="cpu").unet.transformer.state_dict()
    key = "transformer_blocks.0.attn.to_out.0.weight"
    name = ("model.diffusion_model.joint_blocks.0.x_block.attn.proj.weight" if family == "sd3"
            else "double_blocks.0.img_attn.proj.weight")
    assert torch.equal(tensors[name], ours[key]) and not torch.equal(ours[key], base[key])


def test_a_flow_single_file_without_its_base_or_on_the_wrong_one_is_refused_in_one_line(folders, tmp_path, capsys):
    from safetensors.torch import save_file

    cases = []
    for family, name in (("sd3", "model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight"),
                         ("flux", "double_blocks.0.img_attn.qkv.weight")):
        single = tmp_path / f"{family}.safetensors"
        save_file({name: torch.zeros(2, 2)}, str(single))
        other = folders["flux" if family == "sd3" else "sd3"]
        cases += [([], single, "pass --model-config with the diffusers folder of its base model", single),
                  (["--model-config", str(other)], single, "which a single-file", other),
                  (["--model-config", str(folders[family])], single, "cannot load it", single)]
    with_t5 = tmp_path / "t5.safetensors"
    save_file({"model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight": torch.zeros(2, 2),
               "text_encoders.t5xxl.transformer.shared.weight": torch.zeros(2, 2)}, str(with_t5))
    no_t5 = tmp_path / "no-t5"
    shutil.copytree(folders["sd3"], no_t5)
    shutil.rmtree(no_t5 / "tokenizer_3")
    cases.append((["--model-config", str(no_t5)], with_t5, "no T5 tokenizer", with_t5))
    for extra, single, words, named in cases:          # the one line names the file, or the folder at fault
        capsys.readouterr()
        assert main(["generate", "--model", str(single), *extra, "--prompt", "x", "-o", str(tmp_path / "g"),
                     "-q"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0] and str(named) in err[0], (words, err)
        assert not (tmp_path / "g").exists()


@pytest.mark.slow
def test_a_flux_transformer_at_its_real_width_round_trips_through_diffusers_own_reader(folders, tmp_path):
    """diffusers reads FLUX files only at FLUX.1's width (3,072: its reader splits `linear1` by that
    number), so this FLUX has it, with one block of each kind (530 M parameters, 1 GB in bf16)."""
    from diffusers import FluxTransformer2DModel

    wide = tmp_path / "wide"
    shutil.copytree(folders["flux"], wide)
    config = FluxTransformer2DModel.load_config(wide / "transformer")
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=config["in_channels"], num_layers=1, num_single_layers=1, attention_head_dim=128,
        num_attention_heads=24, joint_attention_dim=config["joint_attention_dim"],
        pooled_projection_dim=config["pooled_projection_dim"], guidance_embeds=True, axes_dims_rope=(16, 56, 56))
    _every_tensor_distinct(transformer.to(torch.bfloat16), wide)
    out = tmp_path / "flux.safetensors"
    assert main(["export", str(wide), "-o", str(out), "--format", "single-file", "--dtype", "bf16", "-q"]) == 0
    theirs = FluxTransformer2DModel.from_single_file(str(out), config=str(wide), subfolder="transformer",
                                                     local_files_only=True, torch_dtype=torch.bfloat16).state_dict()
    ours = transformer.state_dict()
    assert set(theirs) == set(ours) and all(torch.equal(theirs[k], ours[k]) for k in ours)
    del theirs
    single = load_model(str(out), device="cpu", dtype="bf16")
    whole = load_model(str(wide), device="cpu", dtype="bf16")
    assert single.family == "flux" and single.architecture == str(wide.resolve())
    kw = dict(steps=1, size=16, seed=3)
    assert torch.equal(generate(single, PROMPTS[:1], **kw)[0], generate(whole, PROMPTS[:1], **kw)[0])


@pytest.mark.parametrize("command,words", [
    (["erase", "--concept", "folder icon", "--no-eval", "--method", "uce"], "uce does not run on SD3"),
    (["erase", "--concept", "folder icon", "--no-eval", "--method", "advunlearn"], "advunlearn does not run on SD3"),
    (["generate", "--prompt", "folder icon", "--mitigate-memorization"], "not SD3 yet")])
def test_what_is_not_built_for_flow_models_says_so_in_one_line(folders, command, words, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("folder icon\n")
    argv = [str(prompts) if a == "PROMPTS" else a for a in command]
    assert main([*argv, "--model", str(folders["sd3"]), "-o", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("method,group", [("esd-x", "joint attention"), ("esd-x-strict", "text keys and values"),
                                          ("esd-u", "the rest")])
def test_esd_edits_its_group_of_the_transformer_and_the_edit_loads_back(bundle, method, group, tmp_path):
    """ESD on a flow model trains only its group (joint blocks' attention projections; the text
    stream's add_k/add_v; the blocks outside those, never the embedders or the output layer; FLUX's
    single-stream attention counts as joint attention), moves
    the concept's prediction, and the saved edit opens with load_model like any other."""
    from artshield.erase import erase

    edit = erase(bundle, ["folder icon"], method, iterations=4, lr=1e-2, ddim_steps=4)
    names = list(edit.tensors)
    assert names and all(n.startswith("transformer.") for n in names)
    if group == "joint attention":
        assert all("transformer_blocks." in n and ".attn." in n for n in names)
        assert any(".single_transformer_blocks." in n for n in names) == (bundle.family == "flux")
        assert any(".attn.add_k_proj." in n for n in names) and any(".attn.to_q." in n for n in names)
    elif group == "text keys and values":
        assert all(n.split(".attn.")[1].startswith(("add_k_proj.", "add_v_proj.")) for n in names)
    else:
        assert not any(".attn.to_q." in n or ".attn.add_k_proj." in n for n in names)
        assert not any(n.startswith(("transformer.time_text_embed.", "transformer.proj_out.",
                                     "transformer.norm_out.", "transformer.x_embedder.")) for n in names)
    base = dict(bundle.unet.named_parameters())
    assert any(not torch.equal(edit.tensors[n], base[n]) for n in names)
    edit.save(tmp_path / "edit")
    erased = load_model(str(tmp_path / "edit"), device="cpu")
    assert erased.family == bundle.family
    before = generate(bundle, ["folder icon"], steps=3, seed=2)
    after = generate(erased, ["folder icon"], steps=3, seed=2)
    assert (before - after).abs().max() > 1e-4


def test_a_hub_id_in_the_local_cache_loads_and_sd3_without_t5_runs(folders, tmp_path, monkeypatch):
    """A hub id resolves through the Hugging Face cache (offline) to the flow loader by its
    model_index.json; an SD3 repository that lists no T5 (as SD3's own release allows) runs with
    zeros in T5's place, as StableDiffusion3Pipeline does."""
    import json
    import shutil

    import huggingface_hub.constants

    repo = tmp_path / "hub" / "models--org--tiny-sd3"
    snapshot = repo / "snapshots" / ("a" * 40)
    shutil.copytree(folders["sd3"], snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    full = load_model("org/tiny-sd3", device="cpu")
    assert (full.family, full.source) == ("sd3", "hub") and full.text_encoder_3 is not None
    index = json.loads((snapshot / "model_index.json").read_text())
    index.update(text_encoder_3=[None, None], tokenizer_3=[None, None])
    (snapshot / "model_index.json").write_text(json.dumps(index))
    shutil.rmtree(snapshot / "text_encoder_3")
    shutil.rmtree(snapshot / "tokenizer_3")
    bare = load_model("org/tiny-sd3", device="cpu")
    assert bare.text_encoder_3 is None
    context = bare.embed(PROMPTS)
    assert context.shape[1] == 2 * bare.tokenizer.model_max_length + 1
    assert torch.count_nonzero(context[:, bare.tokenizer.model_max_length:-1]) == 0
    assert torch.isfinite(generate(bare, PROMPTS[:1], steps=2)).all()


def test_dataset_inference_runs_on_a_flow_model(bundle):
    from artshield.audit import dataset

    g = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, bundle.image_size, bundle.image_size, generator=g)
    features = dataset.membership_features(bundle, images, ["folder icon"] * 3, draws=1)
    n = len(dataset.TIMESTEPS)
    assert features.shape == (3, 3 * n) and (features[:, :2 * n] > 0).all() and features.std(0).max() > 0


def test_textual_inversion_learns_the_token_in_every_encoder_and_fluxs_own_loader_reads_it(folders, tmp_path):
    """SD3: clip_l, clip_g and t5 rows; FLUX: clip_l and t5. FLUX's pipeline loads the two with its
    own load_textual_inversion (one call per encoder, as diffusers' advanced FLUX script does) and
    gives artshield's images; the embedding acts (the images differ from the base model's)."""
    from diffusers import FluxPipeline

    from artshield.mimic import Adapter, mimic

    for family, keys in (("sd3", {"clip_l", "clip_g", "t5"}), ("flux", {"clip_l", "t5"})):
        base = load_model(str(folders[family]), device="cpu")
        adapter = mimic(base, _images(), ["folder icon, sks style"] * 3, "textual-inversion", steps=4, lr=0.5)
        assert set(adapter.tensors) == keys
        adapter.save(tmp_path / family)
        prompt = "folder icon, <sks> style"
        bundle = Adapter.load(tmp_path / family).apply(load_model(str(folders[family]), device="cpu"))
        ours = generate(bundle, [prompt], steps=3, seed=1)
        assert (ours - generate(base, [prompt], steps=3, seed=1)).abs().max() > 1e-3
        with pytest.raises(Exception, match="does not fit"):
            Adapter.load(tmp_path / family).apply(load_model(str(folders["flux" if family == "sd3" else "sd3"]),
                                                            device="cpu"))
    pipe = FluxPipeline.from_pretrained(str(folders["flux"]))
    pipe.set_progress_bar_config(disable=True)
    from safetensors.torch import load_file

    vectors = load_file(str(tmp_path / "flux" / "adapter.safetensors"))
    pipe.load_textual_inversion(vectors["clip_l"], token="<sks>", text_encoder=pipe.text_encoder,
                                tokenizer=pipe.tokenizer)
    pipe.load_textual_inversion(vectors["t5"], token="<sks>", text_encoder=pipe.text_encoder_2,
                                tokenizer=pipe.tokenizer_2)
    theirs = pipe(prompt=[prompt], generator=[torch.Generator().manual_seed(1)], num_inference_steps=3,
                  guidance_scale=bundle.conventions.guidance, height=16, width=16, output_type="pt",
                  max_sequence_length=bundle.t5_length(pipe.tokenizer_2)).images.float()
    assert (ours - theirs).abs().max() < 1e-4


def test_the_written_out_euler_step_is_the_flow_schedulers_own(bundle):
    """sampling.step (stateless, used by the detectors and ESD's x_t) against diffusers'
    FlowMatchEulerDiscreteScheduler.step over a whole schedule."""
    from artshield.sampling import schedule, step

    ours_sampler, theirs = schedule(bundle, 5), schedule(bundle, 5)
    g = torch.Generator().manual_seed(0)
    z = ours = torch.randn(2, *bundle.latent_shape, generator=g)
    for i, t in enumerate(theirs.timesteps):
        v = torch.randn(z.shape, generator=g)
        before = ours
        z = theirs.step(v, t, z).prev_sample
        ours, estimate = step(bundle, ours_sampler, i, t, ours, v)
        assert torch.allclose(ours, z, atol=1e-5)
        assert torch.allclose(estimate, before - t / 1000 * v, atol=1e-5)    # x0 = x_t - sigma v


def test_the_memorisation_audit_runs_on_flow_models(folders, tmp_path):
    import json

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("folder icon\ntrash can icon\n")
    for family, folder in folders.items():
        out = tmp_path / family
        assert main(["audit", "--model", str(folder), "--prompts", str(prompts), "--generations", "2",
                     "--min-clique", "2", "--detect-generations", "2", "--steps", "3", "--detect-steps", "2",
                     "--consensus-generations", "2", "-o", str(out), "-q"]) == 0
        rows = json.loads((out / "results.json").read_text())["per_prompt"]
        assert len(rows) == 2
        numbers = [v for row in rows for v in row.values() if isinstance(v, float)]
        assert numbers and all(math.isfinite(v) for v in numbers)


def test_a_flow_folder_missing_a_part_or_holding_nan_is_refused_in_one_line(folders, tmp_path, capsys):
    import shutil

    from safetensors.torch import load_file, save_file

    missing = tmp_path / "missing"
    shutil.copytree(folders["sd3"], missing)
    shutil.rmtree(missing / "transformer")
    broken = tmp_path / "broken"
    shutil.copytree(folders["flux"], broken)
    weights = next((broken / "transformer").glob("*.safetensors"))
    tensors = load_file(str(weights))
    first = next(iter(tensors))
    tensors[first] = torch.full_like(tensors[first], float("nan"))
    save_file(tensors, str(weights))
    for folder, words in ((missing, "missing transformer/"), (broken, "NaN or infinite")):
        assert main(["generate", "--model", str(folder), "--prompt", "x", "-o", str(tmp_path / "g"), "-q"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
        assert not (tmp_path / "g").exists()


def test_the_random_sd3_and_flux_architectures_have_the_published_sizes(tmp_path):
    """The speed bench's SD3 medium and FLUX.1-dev (random weights, built on the meta device here)
    have the published models' parameter counts: SD3 medium's MMDiT, CLIP-L, CLIP-G and VAE
    2,987,080,931 as KerasHub's preset lists them (it counts the position table, which diffusers
    keeps as a buffer); FLUX.1-dev's transformer 11,901,408,320."""
    from accelerate import init_empty_weights

    from artshield.models.sd15 import flow_modules

    def count(parts, buffers=False):
        return sum(sum(p.numel() for p in (m.buffers() if buffers else m.parameters()))
                   for m in parts.values() if isinstance(m, torch.nn.Module))

    with init_empty_weights():
        sd3 = flow_modules("sd3-medium", tmp_path / "sd3")
        flux = flow_modules("flux-dev", tmp_path / "flux")
    assert count(sd3) + sd3["transformer"].pos_embed.pos_embed.numel() == 2_987_080_931
    assert sum(p.numel() for p in flux["transformer"].parameters()) == 11_901_408_320
    assert set(sd3) >= {"text_encoder_2", "tokenizer_2"} and "text_encoder_3" not in sd3
    assert sd3["tokenizer"].model_max_length == 77 and sd3["tokenizer_2"].pad_token == "!"
    assert flux["tokenizer_2"].convert_tokens_to_ids("</s>") < flux["text_encoder_2"].config.vocab_size


def test_the_speed_bench_times_a_random_flow_architecture_at_the_size_asked(monkeypatch):
    """load_for_timing builds the named flow architecture and resizes it; here the architectures are
    shrunk to test widths, the code path is the real one."""
    from artshield.bench import speed
    from artshield.models import sd15

    clip = dict(vocab_size=49408, hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=1,
                projection_dim=8, hidden_act="gelu", max_position_embeddings=77, bos_token_id=0, eos_token_id=2,
                pad_token_id=1)
    vae = dict(down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
               block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=8, sample_size=64,
               use_quant_conv=False, use_post_quant_conv=False)
    small = {
        "sd3-medium": dict(family="sd3", vae=dict(vae, latent_channels=16, scaling_factor=1.5, shift_factor=0.06),
                           transformer=dict(sample_size=32, patch_size=2, in_channels=16, num_layers=1,
                                            attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
                                            caption_projection_dim=16, pooled_projection_dim=16, out_channels=16,
                                            pos_embed_max_size=32),
                           scheduler=dict(shift=3.0)),
        "flux-dev": dict(family="flux", vae=dict(vae, latent_channels=4, scaling_factor=0.36, shift_factor=0.11),
                         transformer=dict(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                          attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16,
                                          pooled_projection_dim=16, guidance_embeds=True, axes_dims_rope=(2, 2, 4)),
                         t5=dict(vocab_size=64, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2),
                         scheduler=dict(shift=3.0, use_dynamic_shifting=True))}
    monkeypatch.setattr(sd15, "FLOW_ARCHITECTURES", small)
    monkeypatch.setattr(sd15, "CLIP_L", clip)
    monkeypatch.setattr(sd15, "CLIP_G", dict(clip, hidden_size=32, intermediate_size=64))
    for name, family in (("sd3-random", "sd3"), ("flux-random", "flux")):
        bundle = speed.load_for_timing(name, "cpu", 32)
        assert bundle.family == family and bundle.image_size == 32 and bundle.spec == f"{speed.RANDOM[name]}-random"
        row = speed.time_steps(bundle, "advdm", batch=1, steps=1)
        assert row["resolution"] == 32 and row["seconds_per_step"] > 0
