"""Text-to-image generation with a model bundle, reproducible image by image.

Image i of a call with seed s always starts from the noise of a CPU generator seeded s + i, so the
same prompt and seed give the same image whatever the batch size or the device.

Two speed levers, off by default: `sampler="dpm-solver++"` (fewer steps for the same quality) and
`autocast="bf16"` (the UNet, VAE and text encoder of a float32 model run their matrix products in
bfloat16; on a CPU with native bfloat16 instructions, AVX-512 BF16 or AMX, about 1.5x faster per
step, elsewhere slower). The bench measured both against DDIM at the model's steps before using
them (artshield.bench.cellcost).
"""
from __future__ import annotations

import contextlib

import torch

from .models import ModelBundle
from .sampling import sampling_settings


AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


@torch.no_grad()
def generate(bundle: ModelBundle, prompts: list[str], seed: int = 0, steps: int | None = None,
             guidance: float | None = None, batch_size: int = 32, size: int | None = None,
             progress=None, sampler: str = "ddim", autocast: str | None = None, mitigate=None,
             records: list | None = None) -> torch.Tensor:
    """One image per prompt, as a (N, 3, H, W) float tensor in [0, 1] on the CPU.

    `mitigate`: an audit.mitigate.MitigateConfig to adjust each prompt's text states against
    memorisation before sampling (Wen et al.); its per-image records are appended to `records`."""
    if not prompts:
        return torch.zeros(0, 3, size or bundle.image_size, size or bundle.image_size)
    steps, guidance = sampling_settings(bundle, steps, guidance)
    if autocast is not None and autocast not in AUTOCAST:
        raise ValueError(f"autocast must be one of {', '.join(AUTOCAST)}, not {autocast!r}")
    size = size or bundle.image_size
    pipe = bundle.pipeline(sampler)
    cast = torch.autocast(bundle.device.type, dtype=AUTOCAST[autocast]) if autocast else contextlib.nullcontext()
    # hypernetworks that leave guidance's unconditional branch to the base model need to know its rows:
    # the first len(chunk) of each batch when the pipeline guides (mimic/hypernetwork.py)
    nets = getattr(bundle.unet, "hypernetworks", None)
    guided = guidance > 1 and getattr(bundle.unet.config, "time_cond_proj_dim", None) is None
    rows = (lambda n: {"unconditional_rows": n}) if nets is not None and guided else (lambda n: None)
    if mitigate is not None:
        from .audit import mitigate as wen

        if bundle.is_sdxl or bundle.is_flow:
            raise ValueError("memorisation mitigation supports Stable Diffusion 1.x and 2.x pipelines, "
                             f"not {bundle.family.upper()} yet")
        target = mitigate.target if mitigate.target is not None else wen.default_target(bundle, size)
        adjuster = pipe.scheduler.__class__.from_config(pipe.scheduler.config)
        adjuster.set_timesteps(steps, device=bundle.device)
    out = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        gens = [torch.Generator("cpu").manual_seed(seed + start + i) for i in range(len(chunk))]
        text = {"prompt": chunk}
        if mitigate is not None:
            noise = wen.starting_noise(bundle, [seed + start + i for i in range(len(chunk))], size)
            context, made = wen.adjust(bundle, bundle.embed(chunk), noise, adjuster, mitigate, target)
            text = {"prompt_embeds": context, "latents": noise}
            if records is not None:
                records.extend({"target": round(target, 5), **r} for r in made)
        with cast:
            if bundle.is_flow:
                images = pipe(**flow_text(bundle, chunk, guidance), generator=gens, num_inference_steps=steps,
                              guidance_scale=guidance, height=size, width=size, output_type="pt").images
            else:
                images = pipe(**text, generator=gens, num_inference_steps=steps, guidance_scale=guidance,
                              height=size, width=size, output_type="pt", cross_attention_kwargs=rows(len(chunk))).images
        out.append(images.float().cpu())
        if progress is not None:
            progress(len(chunk))
    return torch.cat(out)


def flow_text(bundle: ModelBundle, prompts: list[str], guidance: float) -> dict:
    """SD3's and FLUX's pipeline arguments from the bundle's own encoding of the prompts (so an
    edited or extended text encoder acts exactly as in training): the token states and the pooled
    embedding, and for SD3 under guidance those of the empty prompt."""
    context = bundle.embed(prompts)
    out = {"prompt_embeds": bundle.token_states(context), "pooled_prompt_embeds": bundle.pooled(context)}
    if bundle.family == "sd3" and guidance > 1:
        empty = bundle.embed([""] * len(prompts))
        out.update(negative_prompt_embeds=bundle.token_states(empty), negative_pooled_prompt_embeds=bundle.pooled(empty))
    return out
