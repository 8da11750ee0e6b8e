"""Single-file checkpoints: the one `.safetensors` in Stable Diffusion's original layout that A1111,
ComfyUI and model sites use ("model.diffusion_model.*", "first_stage_model.*",
"cond_stage_model.*").

Loading is diffusers' own `from_single_file`, kept offline: the architecture's diffusers
configuration comes from the ones artshield ships (assets/architectures: sd15, sd2, sd2-base,
sdxl, written by scripts/make_architectures.py) with the CLIP tokenizer's vocabulary built from the BPE
file artshield ships (assets/clip), or from a diffusers folder the caller names. Pickled
checkpoints (.ckpt, .bin, .pt, .pth) are refused before they are opened: unpickling runs code.
"""
from __future__ import annotations

import gzip
import json
import shutil
import tempfile
from pathlib import Path

import torch

from ..errors import ArtshieldError

ASSETS = Path(__file__).resolve().parents[1] / "assets"
ARCHITECTURES = ("sd15", "sd2", "sd2-base", "sdxl")
PICKLED = (".ckpt", ".bin", ".pt", ".pth")

# keys that tell the families apart (the same ones diffusers' own detection reads)
UNET = "model.diffusion_model."
SDXL_PREFIX = "conditioner.embedders.1."     # SDXL's second text encoder (OpenCLIP bigG)
SD2_KEY = "model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"
IN_KEY = "model.diffusion_model.input_blocks.0.0.weight"
V_PRED_KEY = "v_pred"     # ComfyUI's marker of a v-prediction checkpoint; artshield writes it too


def refuse_pickle(path: Path, spec: str) -> None:
    if path.suffix.lower() in PICKLED:
        raise ArtshieldError(
            f"{path.suffix} is a pickled checkpoint, and unpickling a file can run any code, so artshield "
            "never opens one; convert it to .safetensors on a machine where you trust it (for instance "
            "with the diffusers or kohya conversion scripts) and pass that", param="model", value=spec)


def clip_vocabulary(out_dir: Path) -> None:
    """vocab.json and merges.txt of CLIP's tokenizer (49,408 tokens) from the shipped BPE file."""
    from .tokenizer import BOS, EOS, _byte_chars

    lines = gzip.decompress((ASSETS / "clip" / "bpe_simple_vocab_16e6.txt.gz").read_bytes()).decode().split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]
    # CLIP numbers its 256 byte symbols printable ones first (in byte order), then the stand-ins
    by_byte = _byte_chars()
    chars = [c for b, c in enumerate(by_byte) if ord(c) == b] + [c for b, c in enumerate(by_byte) if ord(c) != b]
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges] + [BOS, EOS]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def _header(path: Path, spec: str, shapes: tuple[str, ...] = ()) -> tuple[set[str], dict, dict]:
    """A safetensors file's tensor names, metadata and the shapes of `shapes` (nothing is loaded)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            keys = set(f.keys())
            return keys, f.metadata() or {}, {k: tuple(f.get_slice(k).get_shape()) for k in shapes if k in keys}
    except (SafetensorError, OSError, ValueError) as e:
        raise ArtshieldError(f"not a readable safetensors file ({str(e).splitlines()[0]})", param="model",
                             value=spec) from None


def _component_error() -> type[Exception]:
    """diffusers' error for a part missing from a single file (older diffusers raise ValueError)."""
    try:
        from diffusers.loaders.single_file_utils import SingleFileComponentError
    except ImportError:
        return ValueError
    return SingleFileComponentError


def inspect(path: Path, spec: str) -> dict:
    """What the checkpoint is: {"family": "sd1" | "sd2" | "sdxl", "v_prediction": bool}, read from
    its tensor names and shapes only (nothing is loaded)."""
    keys, _, shape = _header(path, spec, (SD2_KEY, IN_KEY))
    if transformer_checkpoint(keys) is not None:
        raise ArtshieldError("an SD3 or FLUX checkpoint, which load_model reads on its base model's folder, not as "
                             "a Stable Diffusion 1.x/2.x/SDXL file", param="model", value=spec)
    if any(k.startswith(SDXL_PREFIX) for k in keys):
        family = "sdxl"
    elif not any(k.startswith(UNET) for k in keys):
        raise ArtshieldError("not a Stable Diffusion checkpoint (no model.diffusion_model.* tensors); a LoRA or an "
                             "embedding goes to --adapter, a diffusers folder to --model", param="model", value=spec)
    else:
        family = "sd2" if shape.get(SD2_KEY, (0,))[-1] == 1024 else "sd1"
    if shape.get(IN_KEY, (0, 4))[1] != 4:
        raise ArtshieldError(f"an inpainting or other {shape[IN_KEY][1]}-channel UNet; artshield needs a text-to-image "
                             "model (4 latent channels in)", param="model", value=spec)
    return {"family": family, "v_prediction": V_PRED_KEY in keys}


def transformer_checkpoint(keys: set[str]) -> str | None:
    """The transformer family a checkpoint's tensor names give away, "sd3" (SD3's joint blocks) or
    "flux" (FLUX's double and single blocks), else None."""
    if any(".joint_blocks." in k or k.startswith("joint_blocks.") for k in keys):
        return "sd3"
    if any(k.startswith(("double_blocks.", "single_blocks.")) or ".double_blocks." in k for k in keys):
        return "flux"
    return None


FLOW_NAMES = {"sd3": "Stable Diffusion 3", "flux": "FLUX"}
# the parts an SD3 or FLUX single file may carry besides its transformer, by the prefixes the
# authors' and ComfyUI's files use (diffusers' from_single_file reads the same ones)
FLOW_TEXT_PREFIXES = {"sd3": {"text_encoder": "text_encoders.clip_l.transformer.",
                              "text_encoder_2": "text_encoders.clip_g.transformer.",
                              "text_encoder_3": "text_encoders.t5xxl.transformer."},
                      "flux": {"text_encoder": "text_encoders.clip_l.transformer.",
                               "text_encoder_2": "text_encoders.t5xxl.transformer."}}
VAE_PREFIX = "first_stage_model."
BASE_KEY = "artshield_base"        # the metadata entry naming the base model's folder (artshield export)


def flow_contents(path: Path, spec: str) -> dict | None:
    """{"family": "sd3" | "flux", "parts": the parts the file carries, "base": the base folder its
    metadata names} for an SD3 or FLUX single file, None for any other checkpoint."""
    keys, metadata, _ = _header(path, spec)
    family = transformer_checkpoint(keys)
    if family is None:
        return None
    parts = {"transformer"} | {part for part, prefix in FLOW_TEXT_PREFIXES[family].items()
                               if any(k.startswith(prefix) for k in keys)}
    if any(k.startswith(VAE_PREFIX) for k in keys):
        parts.add("vae")
    return {"family": family, "parts": parts, "base": metadata.get(BASE_KEY)}


def flow_base(found: dict, spec: str, config: str | None) -> Path:
    """The diffusers folder of the model an SD3 or FLUX single file belongs to: --model-config, or
    the folder its artshield metadata names. Its tokenizers, scheduler and the parts the file does
    not carry (for a FLUX transformer file: VAE, CLIP and T5) come from there; the loader checks
    that it is a folder of the file's family."""
    chosen = config or (found["base"] if found["base"] and Path(found["base"]).is_dir() else None)
    if chosen is None:
        raise ArtshieldError(f"a single-file {FLOW_NAMES[found['family']]} checkpoint holding "
                             f"{', '.join(sorted(found['parts']))}: pass --model-config with the diffusers folder of "
                             "its base model (its tokenizers, scheduler and the parts the file lacks come from there)",
                             param="model", value=spec)
    return Path(chosen).expanduser()


def flow_part(path: Path, found: dict, folder: Path, dtype: torch.dtype, cls, sub: str, from_folder):
    """One part of an SD3 or FLUX single file: the transformer and a carried VAE through diffusers'
    own `from_single_file` (the folder giving their configs), a carried text encoder as the folder's
    encoder with the file's tensors in it, any other part from the folder (`from_folder`)."""
    if sub == "transformer" or (sub == "vae" and sub in found["parts"]):
        try:
            return cls.from_single_file(str(path), config=str(folder), subfolder=sub, local_files_only=True,
                                        torch_dtype=dtype)
        except (_component_error(), IndexError, AttributeError) as e:
            # diffusers' converters index and chunk the file's tensors as they find them: a malformed file
            # fails there (ValueError, KeyError and RuntimeError pass to the caller as they are)
            raise ValueError(str(e) or type(e).__name__) from None
    module = from_folder(cls, sub)
    prefix = FLOW_TEXT_PREFIXES[found["family"]].get(sub)
    if prefix is None or sub not in found["parts"]:
        return module
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        state = {k[len(prefix):]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
    missing, unexpected = module.load_state_dict(state, strict=False)
    # CLIP-L in SD3's files has no projection (the folder's stays); T5's input embedding is tied to "shared"
    missing = [k for k in missing if k not in ("text_projection.weight", "encoder.embed_tokens.weight")]
    if missing or unexpected:
        raise ValueError(f"its {sub} tensors do not fit the base model's ({len(missing)} missing, "
                         f"{len(unexpected)} unknown, first: {(missing + unexpected)[0]})")
    return module


def default_architecture(found: dict) -> str:
    """The shipped configuration for a checkpoint: SD 2.x is taken as the 768-px v-prediction model
    (2.0-v, 2.1), as diffusers does; a 2.x-base (512 px, epsilon) needs config "sd2-base"."""
    return {"sd1": "sd15", "sd2": "sd2", "sdxl": "sdxl"}[found["family"]]


def recorded_architecture(path: Path) -> str | None:
    """The architecture `artshield export --format single-file` recorded in the file's metadata
    ("mini" or a shipped configuration), None when it recorded none (a file from elsewhere)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            named = (f.metadata() or {}).get("artshield_config")
    except (SafetensorError, OSError, ValueError):
        return None
    return named if named in (*ARCHITECTURES, "mini") else None


def _config_folder(config: str, tmp: Path) -> Path:
    if config == "mini":
        return ASSETS / "mini"
    if config in ARCHITECTURES:
        out = tmp / config
        shutil.copytree(ASSETS / "architectures" / config, out)
        for tokenizer in ("tokenizer", "tokenizer_2"):
            if (out / tokenizer).is_dir():
                clip_vocabulary(out / tokenizer)
        return out
    folder = Path(config).expanduser()
    if not (folder / "model_index.json").is_file():
        raise ArtshieldError(f"not one of {', '.join(ARCHITECTURES)} nor a diffusers folder with a model_index.json",
                             param="model_config", value=config)
    return folder


def load_single_file(path: Path, spec: str, dtype: torch.dtype, config: str | None = None) -> dict:
    """The parts of a single-file checkpoint: vae, unet, text_encoder, tokenizer, scheduler (and
    SDXL's text_encoder_2 and tokenizer_2)."""
    from diffusers import DDPMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers.utils import logging as dlogging
    SingleFileComponentError = _component_error()

    found = inspect(path, spec)
    architecture = config or recorded_architecture(path) or default_architecture(found)
    sdxl = found["family"] == "sdxl"
    pipeline = StableDiffusionXLPipeline if sdxl else StableDiffusionPipeline
    extra = {} if sdxl else {"safety_checker": None, "requires_safety_checker": False}
    with tempfile.TemporaryDirectory(prefix="artshield-config-") as tmp:
        folder = _config_folder(architecture, Path(tmp))
        bars = dlogging.is_progress_bar_enabled()
        dlogging.disable_progress_bar()           # diffusers' "Loading pipeline components" bar: not ours
        try:
            pipe = pipeline.from_single_file(str(path), config=str(folder), local_files_only=True, torch_dtype=dtype,
                                             **extra)
        except (OSError, ValueError, KeyError, RuntimeError, TypeError, SingleFileComponentError) as e:
            # SingleFileComponentError: a part (text encoder, VAE) is not in the file
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ArtshieldError(f"cannot load it as a {architecture} checkpoint: {first}", param="model",
                                 value=spec) from None
        finally:
            if bars:
                dlogging.enable_progress_bar()
        scheduler = DDPMScheduler.from_pretrained(folder / "scheduler")
    if found["v_prediction"] and scheduler.config.prediction_type != "v_prediction":
        scheduler = DDPMScheduler.from_config(scheduler.config, prediction_type="v_prediction")
    parts = {"vae": pipe.vae, "unet": pipe.unet, "text_encoder": pipe.text_encoder, "tokenizer": pipe.tokenizer,
             "scheduler": scheduler}
    if sdxl:
        parts.update(text_encoder_2=pipe.text_encoder_2, tokenizer_2=pipe.tokenizer_2)
    return parts
