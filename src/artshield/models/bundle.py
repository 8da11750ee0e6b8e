"""ModelBundle: the parts of a latent text-to-image diffusion model that artshield's algorithms use.

Every algorithm is written once against it, so SD-1.5 on a GPU and mini on a CPU run the same code.

SDXL has a second text encoder, and its UNet also takes the pooled text embedding and "time ids"
(image sizes and crop). So that every algorithm stays one tensor of context per prompt, `embed`
returns SDXL's context with one extra row at the end that carries the pooled embedding, and a
forward pre-hook on the UNet (installed by `sdxl_conditioning`) turns that row, and the size of
the latents, into the UNet's `added_cond_kwargs`. Contexts concatenate, repeat and split along the
batch as before; `token_states` gives the token rows alone (UCE edits keys and values of those).

Stable Diffusion 3 and FLUX (family "sd3", "flux") keep the same shape: `unet` is a
`flow.FlowDenoiser` around their transformer, `scheduler` a `flow.FlowSchedule`, and `embed`
returns their text tokens plus the same kind of pooled row (see models/flow.py).
"""
from __future__ import annotations

import copy as _copy
import re
from dataclasses import dataclass, field, replace

import torch

from .conventions import ModelConventions

SAMPLERS = ("ddim", "dpm-solver++")


@dataclass
class ModelBundle:
    vae: object                       # diffusers AutoencoderKL
    unet: object                      # diffusers UNet2DConditionModel
    text_encoder: object              # transformers CLIPTextModel
    tokenizer: object                 # transformers CLIPTokenizer
    scheduler: object                 # diffusers DDPMScheduler: the training (noising) schedule
    spec: str
    source: str                       # "embedded", "folder", "hub", "edit" or "random"
    device: torch.device
    dtype: torch.dtype
    conventions: ModelConventions = field(default_factory=ModelConventions)
    architecture: str | None = None   # single files: the configuration named at load (None: detected)
    text_encoder_2: object = None     # SDXL: transformers CLIPTextModelWithProjection (OpenCLIP bigG)
    tokenizer_2: object = None        # SDXL: its tokenizer
    zero_empty_prompt: bool = False   # SDXL's force_zeros_for_empty_prompt: "" is a context of zeros
    memory: dict = field(default_factory=dict)   # the memory options in force (save_memory)
    family: str = "sd"                # "sd" (1.x, 2.x), "sdxl", "sd3" or "flux"
    text_encoder_3: object = None     # SD3: the T5 encoder (None: SD3 without T5, zeros in its place)
    tokenizer_3: object = None        # SD3: its tokenizer

    @property
    def latent_scale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def image_size(self) -> int:
        """The native resolution: what the UNet was trained on, in pixels (FLUX's transformer does not
        say: its VAE's)."""
        side = getattr(self.unet.config, "sample_size", None)     # attribute: the speed bench resizes it so
        return int(side) * self.latent_scale if side else int(self.vae.config.sample_size)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(channels, side, side) of one image's latents at the native resolution (the VAE's
        channels: FLUX's transformer reads four times as many, packed)."""
        side = self.image_size // self.latent_scale
        return int(self.vae.config.latent_channels), side, side

    @property
    def shift_factor(self) -> float:
        """SD3's and FLUX's VAEs shift the latents before scaling them (0 elsewhere)."""
        return float(self.vae.config.get("shift_factor") or 0.0)

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    def encode(self, images: torch.Tensor, sample: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Images in [0, 1], (B, 3, H, W) -> scaled latents (B, C, H/f, W/f), in the model's dtype.
        Differentiable. (SDXL's VAE overflows in fp16 and is kept in fp32: its own dtype is used.)"""
        dist = self.vae.encode((images * 2 - 1).to(self.device, self.vae.dtype)).latent_dist
        z = dist.sample(generator) if sample else dist.mean
        return ((z - self.shift_factor) * self.scaling_factor).to(self.dtype)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images in [0, 1]. Differentiable."""
        z = latents.to(self.device, self.vae.dtype) / self.scaling_factor + self.shift_factor
        out = self.vae.decode(z).sample
        return ((out + 1) / 2).clamp(0, 1)

    @property
    def is_sdxl(self) -> bool:
        return self.family == "sdxl"

    @property
    def is_flow(self) -> bool:
        """A flow-matching transformer model (SD3, FLUX)."""
        return self.family in ("sd3", "flux")

    @property
    def classifier_free(self) -> bool:
        """Whether guidance mixes a conditional and an unconditional prediction. FLUX does not: its
        guidance-distilled models (FLUX.1-dev) take the guidance as an input of the transformer,
        and FLUX.1-schnell takes none (as FluxPipeline samples them)."""
        return self.family != "flux"

    def tokenize(self, prompts: list[str], tokenizer=None, max_length: int | None = None) -> torch.Tensor:
        tokenizer = tokenizer or self.tokenizer
        prompts = expand_vectors(prompts, tokenizer)
        return tokenizer(prompts, padding="max_length", max_length=max_length or tokenizer.model_max_length,
                         truncation=True, return_tensors="pt").input_ids.to(self.device)

    def t5_length(self, tokenizer) -> int:
        """T5 tokens per prompt: the pipelines' default max_sequence_length (SD3 256, FLUX 512), or
        fewer where the tokenizer says so."""
        return min(int(tokenizer.model_max_length), 256 if self.family == "sd3" else 512)

    def embed(self, prompts: list[str], encode_empty: bool = False) -> torch.Tensor:
        """Prompts -> the UNet's text context: the text encoder's last hidden states (SD 1.x, 2.x),
        or SDXL's two encoders' penultimate states side by side plus the pooled-embedding row (an
        empty prompt is all zeros there, as SDXL's pipeline makes it, unless `encode_empty`)."""
        if self.is_flow:
            return self._embed_flow(prompts)
        if not self.is_sdxl:
            return self.text_encoder(self.tokenize(prompts))[0]
        first = self.text_encoder(self.tokenize(prompts), output_hidden_states=True).hidden_states[-2]
        second = self.text_encoder_2(self.tokenize(prompts, self.tokenizer_2), output_hidden_states=True)
        states = torch.cat([first, second.hidden_states[-2].to(first.dtype)], dim=-1)
        pooled = second[0].to(states.dtype)
        row = torch.zeros(len(prompts), 1, states.shape[-1], device=states.device, dtype=states.dtype)
        row[:, 0, :pooled.shape[-1]] = pooled
        context = torch.cat([states, row], dim=1)
        if self.zero_empty_prompt and not encode_empty:
            empty = torch.tensor([p == "" for p in prompts], device=context.device)
            context = torch.where(empty[:, None, None], torch.zeros_like(context), context)
        return context

    def _embed_flow(self, prompts: list[str]) -> torch.Tensor:
        """SD3: both CLIP encoders' penultimate states side by side, zero-padded to T5's width, then
        T5's states (zeros where the model has no T5), and the two pooled outputs in the last row;
        FLUX: T5's states and CLIP's pooled output in the last row. As the diffusers pipelines
        (StableDiffusion3Pipeline, FluxPipeline) encode prompts."""
        width = int(self.unet.config.joint_attention_dim)
        if self.family == "sd3":
            clip_states, pooled = [], []
            for tokenizer, encoder in ((self.tokenizer, self.text_encoder), (self.tokenizer_2, self.text_encoder_2)):
                out = encoder(self.tokenize(prompts, tokenizer), output_hidden_states=True)
                clip_states.append(out.hidden_states[-2])
                pooled.append(out[0])
            clip = torch.cat(clip_states, dim=-1)
            clip = torch.nn.functional.pad(clip, (0, width - clip.shape[-1]))
            if self.text_encoder_3 is not None:
                ids = self.tokenize(prompts, self.tokenizer_3, self.t5_length(self.tokenizer_3))
                t5 = self.text_encoder_3(ids)[0].to(clip.dtype)
            else:
                t5 = torch.zeros(len(prompts), self.tokenizer.model_max_length, width, device=clip.device,
                                 dtype=clip.dtype)
            states, pooled = torch.cat([clip, t5], dim=1), torch.cat(pooled, dim=-1).to(clip.dtype)
        else:
            pooled = self.text_encoder(self.tokenize(prompts)).pooler_output
            ids = self.tokenize(prompts, self.tokenizer_2, self.t5_length(self.tokenizer_2))
            states = self.text_encoder_2(ids)[0].to(pooled.dtype)
        row = torch.zeros(len(prompts), 1, width, device=states.device, dtype=states.dtype)
        row[:, 0, :pooled.shape[-1]] = pooled
        return torch.cat([states, row], dim=1)

    def token_states(self, context: torch.Tensor) -> torch.Tensor:
        """The token rows of a context (SDXL's, SD3's and FLUX's pooled row left out)."""
        return context[:, :-1] if self.is_sdxl or self.is_flow else context

    def pooled(self, context: torch.Tensor) -> torch.Tensor:
        """SD3's and FLUX's pooled text embedding, from a context's last row."""
        return context[:, -1, :self.unet.pooled_dim]

    def sampler(self, kind: str = "ddim"):
        """A sampler on the training schedule, with Stable Diffusion's convention (timesteps offset
        by one): "ddim" (no forced final alpha of 1) or "dpm-solver++" (DPM-Solver++ 2M, Lu et
        al. 2022: about as good in 10-15 steps as DDIM in 30; diffusers' defaults). A flow model
        samples with its own scheduler (FlowMatchEulerDiscreteScheduler, as its pipeline does)
        whichever kind is asked."""
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

        if kind not in SAMPLERS:
            raise ValueError(f"unknown sampler {kind!r}: one of {', '.join(SAMPLERS)}")
        if self.is_flow:
            from diffusers import FlowMatchEulerDiscreteScheduler

            return FlowMatchEulerDiscreteScheduler.from_config(self.scheduler.sampler_config)
        if kind == "ddim":
            return DDIMScheduler.from_config(self.scheduler.config, steps_offset=1, set_alpha_to_one=False)
        return DPMSolverMultistepScheduler.from_config(self.scheduler.config, steps_offset=1,
                                                       algorithm_type="dpmsolver++", solver_order=2)

    def pipeline(self, sampler: str = "ddim"):
        """A diffusers StableDiffusionPipeline (SDXL: StableDiffusionXLPipeline) over these very
        modules (no copies), sampling with `sampler` (see `sampler`); SD3's and FLUX's own pipelines
        over their transformer."""
        if self.is_flow:
            from diffusers import FluxPipeline, StableDiffusion3Pipeline

            common = dict(vae=self.vae, text_encoder=self.text_encoder, tokenizer=self.tokenizer,
                          text_encoder_2=self.text_encoder_2, tokenizer_2=self.tokenizer_2,
                          transformer=self.unet.transformer, scheduler=self.sampler(sampler))
            pipe = (StableDiffusion3Pipeline(**common, text_encoder_3=self.text_encoder_3, tokenizer_3=self.tokenizer_3)
                    if self.family == "sd3" else FluxPipeline(**common))
            pipe.set_progress_bar_config(disable=True)
            return pipe
        if self.is_sdxl:
            from diffusers import StableDiffusionXLPipeline

            pipe = StableDiffusionXLPipeline(vae=self.vae, text_encoder=self.text_encoder,
                                             text_encoder_2=self.text_encoder_2, tokenizer=self.tokenizer,
                                             tokenizer_2=self.tokenizer_2, unet=self.unet, scheduler=self.sampler(sampler),
                                             force_zeros_for_empty_prompt=self.zero_empty_prompt)
            pipe.set_progress_bar_config(disable=True)
            return pipe
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline(vae=self.vae, text_encoder=self.text_encoder, tokenizer=self.tokenizer,
                                       unet=self.unet, scheduler=self.sampler(sampler), safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def copy(self, unet: bool = True, text: bool = True) -> ModelBundle:
        """A bundle whose UNet (`unet`) and text encoder and tokenizer (`text`) are copies that may
        change (fine-tuning, an adaptation, an edit); the other parts, the VAE always, are shared."""
        def copied(part):
            if not text or part is None:
                return part
            out = _copy.deepcopy(part)
            # transformers' CLIP tokenizer wraps its backend's decode in __init__ (to turn the "</w>"
            # word ends into spaces); a deep copy keeps the backend but loses the wrapper
            rewrap = getattr(out, "_wrap_decode_method_backend_tokenizer", None)
            if callable(rewrap):
                rewrap()
            return out

        return replace(self,
                       unet=_copy.deepcopy(self.unet) if unet else self.unet,
                       text_encoder=copied(self.text_encoder), tokenizer=copied(self.tokenizer),
                       text_encoder_2=copied(self.text_encoder_2), tokenizer_2=copied(self.tokenizer_2),
                       text_encoder_3=copied(self.text_encoder_3), tokenizer_3=copied(self.tokenizer_3))

    def text_encoders(self) -> list:
        """(tokenizer, text encoder) pairs: one, SDXL's two, SD3's three (T5 last), FLUX's two (CLIP, T5)."""
        pairs = [(self.tokenizer, self.text_encoder), (self.tokenizer_2, self.text_encoder_2),
                 (self.tokenizer_3, self.text_encoder_3)]
        return [(t, e) for t, e in pairs if e is not None]

    def save_memory(self, gradient_checkpointing: bool = False, attention_slicing: bool = False,
                    vae_tiling: bool = False) -> ModelBundle:
        """Trade speed for memory, in place. Gradient checkpointing recomputes the UNet's and the
        VAE's activations during backward passes (protect, mimic, erase); attention slicing computes
        attention one head group at a time; VAE tiling encodes and decodes large images in
        overlapping tiles. Attention already runs through torch's fused SDPA kernel by default."""
        if gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
            self.vae.enable_gradient_checkpointing()
            for _, encoder in self.text_encoders():
                if hasattr(encoder, "gradient_checkpointing_enable"):
                    encoder.gradient_checkpointing_enable()
        if attention_slicing and not self.is_flow:     # the transformers' attention has no slicing
            self.unet.set_attention_slice("auto")
        if vae_tiling:
            self.vae.enable_tiling()
        self.memory = {"gradient_checkpointing": gradient_checkpointing, "attention_slicing": attention_slicing,
                       "vae_tiling": vae_tiling}
        return self

    def describe(self) -> dict:
        out = {"spec": self.spec, "source": self.source, "device": str(self.device), "dtype": str(self.dtype),
               "image_size": self.image_size}
        if self.family != "sd":
            out["family"] = self.family
        if self.memory:
            out["memory_options"] = dict(self.memory)
        return out


def sdxl_conditioning(unet, pixels_per_latent: int) -> None:
    """Let an SDXL UNet take artshield's one-tensor context (see the module's docstring): a forward
    pre-hook splits off the pooled row and adds the time ids (original size, crop (0, 0), target
    size: the image the latents stand for). Calls that pass `added_cond_kwargs` themselves (the
    diffusers pipeline) are left alone. The hook travels with deep copies of the UNet."""
    unet._artshield_pixels_per_latent = pixels_per_latent
    unet.register_forward_pre_hook(_sdxl_hook, with_kwargs=True)


def _sdxl_hook(unet, args, kwargs):
    if kwargs.get("added_cond_kwargs") is not None:
        return None
    context = kwargs["encoder_hidden_states"]
    sample = args[0] if args else kwargs["sample"]
    cfg = unet.config
    pooled_dim = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
    h, w = (side * unet._artshield_pixels_per_latent for side in sample.shape[-2:])
    ids = torch.tensor([h, w, 0, 0, h, w], device=context.device, dtype=context.dtype).repeat(len(context), 1)
    kwargs = {**kwargs, "encoder_hidden_states": context[:, :-1],
              "added_cond_kwargs": {"text_embeds": context[:, -1, :pooled_dim], "time_ids": ids}}
    return args, kwargs


def expand_vectors(prompts: list[str], tokenizer) -> list[str]:
    """Prompts with each multi-vector embedding's token ("<sks>", learnt with "<sks>_1", "<sks>_2")
    written out as all its tokens, as diffusers' pipelines do (maybe_convert_prompt) before they encode
    them; a prompt that already writes them out is left as it is."""
    added = tokenizer.added_tokens_encoder
    rules = []
    for token in (t for t in added if f"{t}_1" in added):
        n = 1
        while f"{token}_{n}" in added:
            n += 1
        words = " ".join([token] + [f"{token}_{i}" for i in range(1, n)])
        # not inside "<sks>_1", and not where the tokens are already written out
        rules.append((re.compile(re.escape(token) + r"(?!_\d)(?!\s*" + re.escape(token) + "_1)"), words))
    for pattern, words in rules:
        prompts = [pattern.sub(lambda m, w=words: w, p) for p in prompts]
    return prompts
