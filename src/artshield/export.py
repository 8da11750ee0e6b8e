"""export: artshield's results as the files other Stable Diffusion tools open.

    export("mini", "out/mini-diffusers")                               a diffusers folder
    export("out/erased", "out/erased.safetensors", "single-file")      an erasure, as one checkpoint
    export("out/dreambooth", "out/db", "diffusers")                    a DreamBooth result on its base
    export("sd15.safetensors", "out/merged", adapter="out/lora")       a LoRA merged into the weights
    export("out/lora", "out/style.safetensors", "kohya")               a LoRA in kohya's key layout

"diffusers": a folder `StableDiffusionPipeline.from_pretrained` opens (model_index.json, the
components' configs, safetensors weights; artshield.json when the model declares conventions).
"single-file": one .safetensors in Stable Diffusion's original layout, what A1111, ComfyUI and
diffusers' `from_single_file` open; for SD3 and FLUX, the transformer alone in its authors' layout
(models/flow_layout.py), as their fine-tunes ship, on the base model's encoders and VAE. "kohya": a
LoRA's "lora_unet_*" tensors with their alphas.
Outputs are written next to their final place and moved there whole; nothing is replaced.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch

from .errors import ArtshieldError
from .io import _umask, temporary_prefix, write_safetensors
from .models import ModelBundle, load_model

FORMATS = ("diffusers", "single-file", "kohya")


def _check_output(output: Path, fmt: str) -> None:
    if output.exists() or output.is_symlink():
        raise ArtshieldError("already exists; export never replaces a file or folder", param="output",
                             value=str(output))
    if fmt != "diffusers" and output.suffix.lower() != ".safetensors":
        raise ArtshieldError(f"a {fmt} export is one file: name it *.safetensors", param="output", value=str(output))


def _adapter(source: str):
    from .mimic import Adapter

    return Adapter.load(source) if Adapter.is_folder(source) else None


def export(source: str, output: str, fmt: str = "diffusers", adapter: str | None = None,
           dtype: torch.dtype | None = None, device: str = "cpu", config: str | None = None) -> Path:
    """Write `source` (a model spec, an erasure folder, or a mimicry folder) as `fmt` at `output`.
    `adapter`: a LoRA or DreamBooth folder to put into the model's weights first. `dtype`: the
    dtype of the written weights (default: the model's)."""
    if fmt not in FORMATS:
        raise ArtshieldError(f"unknown format (use {', '.join(FORMATS)})", param="format", value=fmt)
    out = Path(output).expanduser()
    _check_output(out, fmt)
    own = _adapter(source)
    if fmt == "kohya":
        if own is None or own.method != "lora":
            raise ArtshieldError("the kohya format holds a LoRA: pass a folder written by mimic --method lora",
                                 param="source", value=source)
        from .mimic.lora import kohya_state

        return write_safetensors(kohya_state(own.tensors, own.info), out, {"ss_network_module": "networks.lora",
                                                                     "ss_network_dim": str(own.info["config"]["rank"]),
                                                                     "ss_network_alpha": str(own.info["config"]["alpha"])})
    if own is not None:           # a mimicry folder: its base model with it
        if adapter is not None:
            raise ArtshieldError("give either a mimicry folder as the source or --adapter, not both",
                                 param="adapter", value=adapter)
        source, adapter = own.info.get("base_model", "mini"), source
        config = config or own.info.get("base_config")
    bundle = load_model(source, device=device, dtype=torch.float32, config=config)
    if adapter is not None:
        bundle = merge_adapter(bundle, adapter)
    if fmt == "single-file":
        from .models.ldm_layout import to_single_file

        if bundle.is_flow:
            return _flow_single_file(bundle, source, out, dtype)
        try:
            state = to_single_file(bundle)
        except ValueError as e:
            raise ArtshieldError(f"has no single-file layout: {e}", param="source", value=source) from None
        # the architecture, where it has a name artshield resolves on any machine (mini's own configs, or
        # a shipped one): --model on this file then needs no --model-config
        from .models.single_file import ARCHITECTURES

        named = config if config in ARCHITECTURES else "mini" if str(source) == "mini" else None
        return write_safetensors({k: v.to(dtype) if dtype and v.is_floating_point() else v for k, v in state.items()},
                                 out, {"artshield_source": str(source), **({"artshield_config": named} if named else {})})
    return _write_folder(bundle, out, dtype)


def _flow_single_file(bundle: ModelBundle, source: str, out: Path, dtype: torch.dtype | None) -> Path:
    """An SD3 or FLUX transformer in its authors' layout (what their fine-tunes ship and ComfyUI
    loads), naming the base model's folder in its metadata when there is one on this machine: the
    text encoders and VAE stay there, and --model on the file finds them."""
    from .models.flow_layout import flux_transformer_to_original, sd3_transformer_to_original
    from .models.single_file import BASE_KEY

    state = bundle.unet.transformer.state_dict()
    state = sd3_transformer_to_original(state) if bundle.family == "sd3" else flux_transformer_to_original(state)
    base = _base_folder(bundle, source)
    return write_safetensors({k: (v.to(dtype) if dtype and v.is_floating_point() else v).contiguous()
                              for k, v in state.items()},
                             out, {"artshield_source": str(source), **({BASE_KEY: str(base)} if base else {})})


def _base_folder(bundle: ModelBundle, source: str) -> Path | None:
    """The diffusers folder whose text encoders, VAE and tokenizers a flow model uses, None for a
    hub id (the user names it with --model-config when loading)."""
    from .models.weights import Edit

    if bundle.architecture and (Path(bundle.architecture) / "model_index.json").is_file():
        return Path(bundle.architecture).resolve()          # a single file's base (or an edit's on one)
    path = Path(source).expanduser()
    for _ in range(8):                                     # an erasure's base, or its base's base
        if (path / "model_index.json").is_file():
            return path.resolve()
        if not (path / Edit.info_file()).is_file():
            return None
        path = Path(Edit.load(path).info["base_model"]).expanduser()
    return None


def merge_adapter(bundle: ModelBundle, folder: str) -> ModelBundle:
    """The bundle with a LoRA folded into its weights, or a DreamBooth UNet in place of its own."""
    from .mimic import Adapter
    from .mimic.lora import merge

    if not Adapter.is_folder(folder):
        raise ArtshieldError("not a folder written by artshield mimic (adapter.json, adapter.safetensors)",
                             param="adapter", value=folder)
    found = Adapter.load(folder)
    if found.method == "lora":
        try:
            merge(bundle, found.tensors, found.info)
        except (KeyError, RuntimeError) as e:
            raise ArtshieldError(f"does not fit the model {bundle.spec}: {str(e).splitlines()[0]}",
                                 param="adapter", value=folder) from None
        return bundle
    if found.method == "dreambooth":
        return found.apply(bundle, folder)
    why = {"textual-inversion": "a textual-inversion embedding is loaded as it is: adapter.safetensors is the "
                                "embedding file diffusers (load_textual_inversion) and A1111 read",
           "hypernetwork": "hypernetworks change the attention's inputs at run time and cannot be folded into "
                           "the weights; they have no format other tools read"}
    raise ArtshieldError(why.get(found.method, f"a {found.method} adaptation cannot be exported"),
                         param="adapter", value=folder)


def _write_folder(bundle: ModelBundle, out: Path, dtype: torch.dtype | None) -> Path:
    from diffusers import DDPMScheduler

    from .models.architecture import model_index

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=temporary_prefix(out), suffix=".part", dir=out.parent))
    try:
        if bundle.is_flow:        # SD3 / FLUX: their own pipeline writes the folder its from_pretrained reads
            pipe = bundle.pipeline()
            if dtype is not None:
                pipe.to(dtype=dtype)
            pipe.save_pretrained(tmp, safe_serialization=True)
        for name in () if bundle.is_flow else ("vae", "unet", "text_encoder", "text_encoder_2"):
            module = getattr(bundle, name)
            if module is None:
                continue
            if dtype is not None:
                module = module.to(dtype)
            module.save_pretrained(tmp / name, safe_serialization=True)
        for name in () if bundle.is_flow else ("tokenizer", "tokenizer_2"):
            if getattr(bundle, name) is not None:
                getattr(bundle, name).save_pretrained(tmp / name)
        if not bundle.is_flow:
            DDPMScheduler.from_config(bundle.scheduler.config).save_pretrained(tmp / "scheduler")
            index = model_index(bundle.is_sdxl, bundle.zero_empty_prompt)
            (tmp / "model_index.json").write_text(json.dumps(index, indent=1) + "\n")
        if bundle.conventions != type(bundle.conventions)():
            (tmp / "artshield.json").write_text(json.dumps(bundle.conventions.to_dict(), indent=1) + "\n")
        for path in [tmp, *tmp.rglob("*")]:
            path.chmod((0o777 if path.is_dir() else 0o666) & ~_umask())
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
