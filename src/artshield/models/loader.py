"""Load a Stable-Diffusion-family model into one bundle, whatever its source.

    load_model("mini")                     the embedded scale model (the default)
    load_model("/path/to/diffusers/dir")   a local diffusers folder (vae/, unet/, text_encoder/, ...)
    load_model("/path/to/edit")            a folder written by erase: its base model with the edit
    load_model("/path/to/model.safetensors")   a single-file checkpoint (A1111/ComfyUI layout), offline
    load_model("org/name")                 a hub id: from the local cache, else from the hub

SD 1.x, SD 2.x (epsilon or v-prediction, as the scheduler config says), SDXL, and, as diffusers
folders or hub ids, Stable Diffusion 3 / 3.5 and FLUX.1 load; pickled checkpoints are refused in one
sentence (never unpickled).

Errors name the parameter (`model`, `device`); the CLI shows them under its flags.
"""
from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from ..errors import ArtshieldError
from .bundle import ModelBundle
from .conventions import CONVENTION_FILES, ModelConventions
from .weights import Edit

MINI_DIR = Path(__file__).resolve().parents[1] / "assets" / "mini"
REQUIRED_PARTS = ("vae", "unet", "text_encoder", "tokenizer")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":     # CUDA, then Apple's MPS, then the CPU
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ArtshieldError("not a device name (use auto, cpu, cuda or cuda:N)", param="device",
                             value=device) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ArtshieldError("no CUDA device is available on this machine", param="device", value=device)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ArtshieldError(f"this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0",
                                 param="device", value=device)
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ArtshieldError("no MPS (Apple GPU) device is available on this machine", param="device", value=device)
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ArtshieldError("not a device artshield runs on (use auto, cpu, cuda, cuda:N or mps)", param="device",
                             value=device)
    return dev


WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".bin", ".pt", ".pth")


def check_spec(spec: str) -> None:
    """Refuse, before any loading, a model spec that names a local path that is not there."""
    if spec != "mini" and not Path(spec).expanduser().exists() and looks_like_path(spec):
        raise ArtshieldError("no such file or folder", param="model", value=spec)


def looks_like_path(spec: str) -> bool:
    """Whether `spec` names a local path rather than a hub id: it starts with ".", "/" or "~", ends
    in a weight file's suffix, or its first part is a folder that exists here ("models/sd15" where
    ./models exists). Checked before any network call, so a mistyped path is reported as missing."""
    if spec.startswith((".", "/", "~")) or spec.lower().endswith(WEIGHT_SUFFIXES) or os.sep != "/" and os.sep in spec:
        return True
    parts = Path(spec).parts
    return len(parts) > 1 and Path(parts[0]).is_dir()


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub answers a TCP connection within `timeout` seconds."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def load_model(spec: str = "mini", device: str = "auto", dtype: torch.dtype | str | None = None,
               config: str | None = None) -> ModelBundle:
    """Load a model bundle; raises ArtshieldError with one clear sentence when it cannot.

    dtype: a torch dtype, or "auto" / None (fp16 on CUDA and MPS, fp32 on the CPU and for mini),
    "fp32", "fp16", "bf16". config (single files only): the architecture, one of sd15, sd2 (768 px,
    v-prediction), sd2-base (512 px, epsilon), sdxl, or a diffusers folder of the same architecture
    (default: detected from the tensors; SD 2.x files are taken as sd2)."""
    dev = resolve_device(device) if isinstance(device, str) else device
    dtype = resolve_dtype(dtype, dev, spec)
    if spec == "mini":
        if not (MINI_DIR / "unet").is_dir():
            raise ArtshieldError(f"the embedded model is missing from {MINI_DIR}; reinstall artshield")
        return _load_folder(MINI_DIR, "mini", "embedded", dev, dtype)
    path = Path(spec).expanduser()
    if path.is_dir() and (path / Edit.info_file()).is_file():
        return _load_edit(path, spec, dev, dtype)
    if path.exists():
        if not path.is_dir():
            return _load_single_file(path, spec, dev, dtype, config)
        return _load_folder(path, spec, "folder", dev, dtype)
    check_spec(spec)
    if HUB_ID.match(spec):
        return _load_hub(spec, dev, dtype)
    raise ArtshieldError("no such folder, and not a hub id of the form org/name; use mini (the embedded model) "
                         "or a local diffusers folder", param="model", value=spec)


DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_dtype(dtype, device: torch.device, spec: str = "") -> torch.dtype:
    """auto: half precision where it is fast (CUDA, MPS), fp32 on the CPU and for mini (whose
    tiny widths gain nothing from it)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.float16 if device.type in ("cuda", "mps") and spec != "mini" else torch.float32
    if dtype not in DTYPES:
        raise ArtshieldError(f"not a dtype (use auto, {', '.join(DTYPES)})", param="dtype", value=str(dtype))
    return DTYPES[dtype]


def _load_single_file(path: Path, spec: str, device: torch.device, dtype: torch.dtype,
                      config: str | None) -> ModelBundle:
    from .single_file import flow_contents, load_single_file, refuse_pickle

    refuse_pickle(path, spec)
    if path.suffix.lower() != ".safetensors":
        raise ArtshieldError("expected a diffusers folder or a single-file .safetensors checkpoint",
                             param="model", value=spec)
    found = flow_contents(path, spec)
    if found is not None:
        return _load_flow_file(path, spec, found, device, dtype, config)
    parts = load_single_file(path, spec, dtype, config)
    scheduler = parts.pop("scheduler")
    bundle = _finish(parts, scheduler, spec, "single-file", device, dtype)
    bundle.architecture = config
    return bundle


def _load_flow_file(path: Path, spec: str, found: dict, device: torch.device, dtype: torch.dtype,
                    config: str | None) -> ModelBundle:
    """An SD3 or FLUX single file on its base model's diffusers folder (models/single_file.py)."""
    from .single_file import FLOW_NAMES, flow_base, flow_part

    folder = flow_base(found, spec, config)
    if FLOW_FAMILIES.get(transformer_family(folder) or "") != found["family"]:
        name = FLOW_NAMES[found["family"]]
        raise ArtshieldError(f"not a diffusers {name} folder, which a single-file {name} checkpoint needs as its "
                             "base model", param="model_config", value=str(folder))
    if "text_encoder_3" in found["parts"] and not (folder / "tokenizer_3").is_dir():
        raise ArtshieldError(f"the file carries T5 weights, and its base folder {folder} has no T5 tokenizer "
                             "(tokenizer_3/) to read prompts for them", param="model", value=spec)
    from_folder = _folder_loader(folder, dtype)
    conventions = ModelConventions.from_folder(folder)
    declared = any((folder / name).is_file() for name in CONVENTION_FILES)
    bundle = _load_flow(lambda cls, sub: flow_part(path, found, folder, dtype, cls, sub, from_folder),
                        found["family"], spec, "single-file", device, dtype, conventions if declared else None,
                        has=lambda sub: (folder / sub).is_dir())
    bundle.architecture = str(folder)
    return bundle


def _load_edit(path: Path, spec: str, device: torch.device, dtype: torch.dtype, depth: int = 0) -> ModelBundle:
    """A folder written by artshield erase: its base model with the edited UNet tensors on it."""
    edit = Edit.load(path)
    base = edit.info["base_model"]
    if depth > 8 or Path(base).expanduser().resolve() == path.resolve():
        raise ArtshieldError(f"its {Edit.info_file()} names a chain of base models that does not end",
                             param="model", value=spec)
    base_path = Path(base).expanduser()
    if base_path.is_dir() and (base_path / Edit.info_file()).is_file():
        bundle = _load_edit(base_path, base, device, dtype, depth + 1)
    else:
        try:
            bundle = load_model(base, device, dtype, config=edit.info.get("base_config"))
        except ArtshieldError as e:
            raise ArtshieldError(f"its base model cannot be loaded: {e}",
                                 param="model", value=spec) from None
    edit.apply(bundle)
    bundle.spec, bundle.source = spec, "edit"
    return bundle


def _load_parts(load, spec: str) -> dict:
    try:
        parts = {
            "vae": load(AutoencoderKL, "vae"),
            "unet": load(UNet2DConditionModel, "unet"),
            "text_encoder": load(CLIPTextModel, "text_encoder"),
            "tokenizer": load(CLIPTokenizer, "tokenizer"),
        }
        if is_sdxl_unet(parts["unet"]):           # SDXL: the second text encoder and its tokenizer
            from transformers import CLIPTextModelWithProjection

            parts["text_encoder_2"] = load(CLIPTextModelWithProjection, "text_encoder_2")
            parts["tokenizer_2"] = load(CLIPTokenizer, "tokenizer_2")
        return parts
    except ArtshieldError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ArtshieldError(f"cannot load it: {first}", param="model", value=spec) from None


def is_sdxl_unet(unet) -> bool:
    return unet.config.get("addition_embed_type") == "text_time"


def _scheduler(load) -> DDPMScheduler:
    try:
        return DDPMScheduler.from_config(load(DDPMScheduler, "scheduler").config)
    except (OSError, ValueError, KeyError):
        # a folder without a scheduler: Stable Diffusion 1.x's training schedule
        return DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                             num_train_timesteps=1000, clip_sample=False)


def _finish(parts: dict, scheduler, spec: str, source: str, device: torch.device, dtype: torch.dtype,
            conventions: ModelConventions | None = None, zero_empty_prompt: bool = True) -> ModelBundle:
    sdxl = is_sdxl_unet(parts["unet"])
    if sdxl and "text_encoder_2" not in parts:
        raise ArtshieldError("an SDXL UNet without SDXL's second text encoder", param="model", value=spec)
    # SDXL's VAE overflows in fp16 (its config says force_upcast): it stays in fp32
    _place(parts, spec, device, lambda name, module: torch.float32 if name == "vae" and sdxl and
           module.config.get("force_upcast") else dtype)
    if sdxl:
        from .bundle import sdxl_conditioning

        sdxl_conditioning(parts["unet"], 2 ** (len(parts["vae"].config.block_out_channels) - 1))
    return ModelBundle(**parts, scheduler=scheduler, spec=spec, source=source, device=device, dtype=dtype,
                       conventions=conventions or ModelConventions(), zero_empty_prompt=sdxl and zero_empty_prompt,
                       family="sdxl" if sdxl else "sd")


def _place(parts: dict, spec: str, device: torch.device, dtype_of, unet_name: str = "unet") -> None:
    """Check each network of a bundle's parts for NaN, cast it (`dtype_of(name, module)`), move it to
    `device` and freeze it for inference. `unet_name`: how errors call the denoiser."""
    for name in ("vae", "unet", "text_encoder", "text_encoder_2", "text_encoder_3"):
        module = parts.get(name)
        if module is None:
            continue
        check_finite(module, f"{unet_name if name == 'unet' else name} weights", spec)
        want = dtype_of(name, module)
        if module.dtype != want:
            module.to(dtype=want)
        module.to(device).eval().requires_grad_(False)


def check_finite(module: torch.nn.Module, what: str, spec: str) -> None:
    """Refuse weights with NaN or infinite values (a diverged fine-tune, a corrupt download): every
    result made with them would be black or NaN."""
    from ..io import nonfinite

    bad = nonfinite(module.state_dict())
    if bad:
        raise ArtshieldError(f"its {what} hold NaN or infinite values (tensor {bad[0]})", param="model", value=spec)


def weightless(cls) -> bool:
    """Tokenizers and schedulers: loaded without a dtype or weight files."""
    from diffusers import SchedulerMixin
    from transformers import PreTrainedTokenizerBase

    return isinstance(cls, type) and issubclass(cls, (PreTrainedTokenizerBase, SchedulerMixin))


def _folder_loader(path: Path, dtype: torch.dtype):
    # only safetensors weights are read: use_safetensors=True refuses pickled .bin/.ckpt files
    def load(cls, sub):
        if weightless(cls):
            return cls.from_pretrained(path / sub)
        return cls.from_pretrained(path / sub, torch_dtype=dtype, use_safetensors=True, variant=variant(path / sub))
    return load


def _load_folder(path: Path, spec: str, source: str, device: torch.device, dtype: torch.dtype) -> ModelBundle:
    missing = [p for p in REQUIRED_PARTS if not (path / p).is_dir()]
    family = transformer_family(path)
    load = _folder_loader(path, dtype)
    conventions = ModelConventions.from_folder(path)
    declared = any((path / name).is_file() for name in CONVENTION_FILES)
    if family in FLOW_FAMILIES:
        absent = [sub for sub in FLOW_PARTS if not (path / sub).is_dir()]
        if absent:
            raise ArtshieldError(f"not a complete diffusers {family} folder (missing {', '.join(absent)}/)",
                                 param="model", value=spec)
        return _load_flow(load, FLOW_FAMILIES[family], spec, source, device, dtype, conventions if declared else None,
                          has=lambda sub: (path / sub).is_dir())
    if family is not None:
        raise ArtshieldError(f"a {family} folder of a family artshield does not know (it runs Stable Diffusion "
                             "1.x, 2.x, SDXL, SD3 and FLUX)", param="model", value=spec)
    if missing:
        raise ArtshieldError(f"not a diffusers Stable Diffusion folder (missing {', '.join(missing)}/)",
                             param="model", value=spec)
    return _finish(_load_parts(load, spec), _scheduler(load), spec, source, device, dtype, conventions,
                   zero_empty_prompt(path))


FLOW_FAMILIES = {"Stable Diffusion 3": "sd3", "FLUX": "flux"}
FLOW_PARTS = ("vae", "transformer", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")
# what their pipelines sample with by default (StableDiffusion3Pipeline: 28 steps, guidance 7.0;
# FluxPipeline: 28 steps, embedded guidance 3.5), for a folder that declares no conventions
FLOW_SAMPLING = {"sd3": (28, 7.0), "flux": (28, 3.5)}


def _load_flow(load, family: str, spec: str, source: str, device: torch.device, dtype: torch.dtype,
               conventions: ModelConventions | None, has=lambda sub: True) -> ModelBundle:
    """An SD3 or FLUX model: its transformer wrapped to the UNet's call shape (models/flow.py)."""
    from dataclasses import replace

    from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel, SD3Transformer2DModel
    from transformers import CLIPTextModelWithProjection, T5EncoderModel, T5TokenizerFast

    from .flow import FlowDenoiser, FlowSchedule

    try:
        parts = {"vae": load(AutoencoderKL, "vae"), "tokenizer": load(CLIPTokenizer, "tokenizer")}
        if family == "sd3":
            transformer = load(SD3Transformer2DModel, "transformer")
            parts.update(text_encoder=load(CLIPTextModelWithProjection, "text_encoder"),
                         text_encoder_2=load(CLIPTextModelWithProjection, "text_encoder_2"),
                         tokenizer_2=load(CLIPTokenizer, "tokenizer_2"))
            if has("text_encoder_3"):      # SD3 runs without its T5 (zeros in its place), as its pipeline does
                parts.update(text_encoder_3=load(T5EncoderModel, "text_encoder_3"),
                             tokenizer_3=load(T5TokenizerFast, "tokenizer_3"))
        else:
            transformer = load(FluxTransformer2DModel, "transformer")
            parts.update(text_encoder=load(CLIPTextModel, "text_encoder"),
                         text_encoder_2=load(T5EncoderModel, "text_encoder_2"),
                         tokenizer_2=load(T5TokenizerFast, "tokenizer_2"))
        sampler = load(FlowMatchEulerDiscreteScheduler, "scheduler")
    except ArtshieldError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ArtshieldError(f"cannot load it: {first}", param="model", value=spec) from None
    if conventions is None:
        steps, guidance = FLOW_SAMPLING[family]
        conventions = replace(ModelConventions(), steps=steps, guidance=guidance)
    parts["unet"] = FlowDenoiser(transformer, family, guidance=conventions.guidance)
    _place(parts, spec, device, lambda name, module: dtype, unet_name="transformer")
    return ModelBundle(**parts, scheduler=FlowSchedule(dict(sampler.config), family), spec=spec, source=source,
                       device=device, dtype=dtype, conventions=conventions, family=family)


TRANSFORMER_PIPELINES = {"StableDiffusion3Pipeline": "Stable Diffusion 3", "FluxPipeline": "FLUX"}


def transformer_family(folder: Path) -> str | None:
    """The name of the transformer family a diffusers folder holds (its model_index.json's pipeline,
    or a transformer/ part in place of unet/), else None."""
    import json

    try:
        name = json.loads((folder / "model_index.json").read_text()).get("_class_name", "")
    except (OSError, ValueError, AttributeError):
        name = ""
    for pipeline, family in TRANSFORMER_PIPELINES.items():
        if name.startswith(pipeline):
            return family
    if (folder / "transformer").is_dir() and not (folder / "unet").is_dir():
        return "diffusion-transformer"
    return None


def variant(folder: Path) -> str | None:
    """"fp16" for a component saved only as fp16-variant weights (*.fp16.safetensors), as many hub
    folders are; they load (and are cast to the run's dtype) like the others."""
    if any(folder.glob("*.fp16.safetensors")) and not any(
            f for f in folder.glob("*.safetensors") if not f.name.endswith(".fp16.safetensors")):
        return "fp16"
    return None


def zero_empty_prompt(path: Path) -> bool:
    """SDXL pipelines' force_zeros_for_empty_prompt (true unless the folder's model_index says not)."""
    import json

    try:
        return bool(json.loads((path / "model_index.json").read_text()).get("force_zeros_for_empty_prompt", True))
    except (OSError, ValueError, AttributeError):
        return True


def _load_hub(spec: str, device: torch.device, dtype: torch.dtype) -> ModelBundle:
    def loader(local_only: bool):
        def load(cls, sub):
            kw = {"subfolder": sub, "local_files_only": local_only}
            if not weightless(cls):
                kw.update(torch_dtype=dtype, use_safetensors=True)
            return cls.from_pretrained(spec, **kw)
        load.local_only = local_only
        return load

    def finish(load):
        family = FLOW_FAMILIES.get(hub_family(spec, load.local_only))
        if family is not None:
            return _load_flow(load, family, spec, "hub", device, dtype, None, has=lambda sub: has_part(spec, sub))
        return _finish(_load_parts(load, spec), _scheduler(load), spec, "hub", device, dtype)

    try:  # the local Hugging Face cache first: works offline
        return finish(loader(True))
    except ArtshieldError:
        pass
    # a name like "models/sd15" is a hub id in form and a relative path too: say what is not there as a path
    as_path = f"no folder {Path(spec).absolute()} exists, and " if not Path(spec).exists() else ""
    if not hub_reachable():
        raise ArtshieldError(f"{as_path}the Hugging Face hub cannot be reached from this machine and the model is not "
                             "in the local cache; use mini (the embedded model) or a local diffusers folder",
                             param="model", value=spec)
    return finish(loader(False))


def hub_family(spec: str, local_only: bool) -> str | None:
    """The transformer family a hub repository's model_index.json names (None: a UNet model, or no index)."""
    import json

    from huggingface_hub import hf_hub_download

    try:
        index = json.loads(Path(hf_hub_download(spec, "model_index.json", local_files_only=local_only)).read_text())
    except Exception:       # noqa: BLE001 - no index (or no network): the UNet loader reports what is missing
        return None
    name = index.get("_class_name", "") if isinstance(index, dict) else ""
    return next((family for pipeline, family in TRANSFORMER_PIPELINES.items() if name.startswith(pipeline)), None)


def has_part(spec: str, sub: str) -> bool:
    """Whether a hub repository's model_index.json lists `sub` with a class (SD3 without T5 lists it as null)."""
    import json

    from huggingface_hub import hf_hub_download

    try:
        index = json.loads(Path(hf_hub_download(spec, "model_index.json", local_files_only=True)).read_text())
    except Exception:       # noqa: BLE001
        return True
    entry = index.get(sub)
    return isinstance(entry, list) and entry[0] is not None
