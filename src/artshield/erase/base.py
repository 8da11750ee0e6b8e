"""What every erasure shares: which UNet weights it may change, the prompts it edits, and the
saved edit.

An edit is a folder: edit.safetensors holds only the UNet tensors that changed (named as in the
UNet's state dict) and edit.json says which base model they belong to and how they were made.
`load_model(FOLDER)` recognises such a folder, loads the base model and puts the tensors on it, so
every command (generate, protect, mimic, bench) runs on an erased model like on any other.
"""
from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..errors import ArtshieldError
from ..models import ModelBundle
from ..options import Overridable, registrar

ERASERS: dict[str, type[Eraser]] = {}
register = registrar(ERASERS)
EDIT_FILE, EDIT_INFO = "edit.safetensors", "edit.json"

# Parameter groups by name, valid for every diffusers UNet2DConditionModel (SD 1.x/2.x, SDXL):
# cross-attention lives in `...transformer_blocks.N.attn2.*`; self-attention is attn1.
CROSS_ATTENTION = re.compile(r"\.attn2\.")
CROSS_ATTENTION_KV = re.compile(r"\.attn2\.to_(k|v)\.")
# ESD's original script leaves the time embedding and the output layer alone in ESD-u; their
# diffusers names (SDXL adds add_embedding, its micro-conditioning embedding)
NOT_IN_ESD_U = re.compile(r"^(time_embedding|add_embedding|conv_norm_out|conv_out)\.")

PARAMETER_GROUPS = {
    # all q, k, v and out projections of every cross-attention: prompt-specific, for artists and objects
    "cross-attention": lambda n: bool(CROSS_ATTENTION.search(n)),
    # only the key and value projections, the weights UCE edits ("esd-x-strict")
    "cross-attention-kv": lambda n: bool(CROSS_ATTENTION_KV.search(n)),
    # everything outside cross-attention: global, for broad concepts
    "non-cross-attention": lambda n: not CROSS_ATTENTION.search(n) and not NOT_IN_ESD_U.match(n),
}


def select_parameters(unet: torch.nn.Module, group: str) -> list[str]:
    """Names of the UNet parameters in `group` (see PARAMETER_GROUPS), in the module's order."""
    try:
        keep = PARAMETER_GROUPS[group]
    except KeyError:
        raise ValueError(f"unknown parameter group {group!r}; known: {', '.join(PARAMETER_GROUPS)}") from None
    names = [n for n, _ in unet.named_parameters() if keep(n)]
    if not names:
        raise ArtshieldError(f"this UNet has no parameters in the group {group!r} "
                             "(is it a UNet2DConditionModel with cross-attention?)")
    return names


def concept_prompts(concepts: list[str], templates: list[str]) -> list[list[str]]:
    """For each concept, the prompts that carry it: the concept itself and the templates filled with it.

    A model may declare templates that match its captions (mini: "icon, {}" and "{} icon"); prompt
    variety makes an edit generalise from the bare concept to the sentences users write.
    """
    out = []
    for concept in concepts:
        prompts = [concept] + [t.format(concept) for t in templates if t.format(concept) != concept]
        out.append(list(dict.fromkeys(prompts)))
    return out


@dataclass
class EraseConfig(Overridable):
    templates: list[str] | None = None   # None: the model's "erase_templates" convention, else none
    seed: int = 0

    def __post_init__(self):
        if self.templates is not None and any("{}" not in t for t in self.templates):
            raise ValueError("each template must contain {} where the concept goes")


class Eraser(ABC):
    """One erasure method. `erase` returns an Edit and leaves the given bundle unchanged."""

    name = ""
    Config = EraseConfig

    def __init__(self, config: EraseConfig | None = None):
        self.config = config or self.Config()

    def templates(self, bundle: ModelBundle) -> list[str]:
        if self.config.templates is not None:
            return list(self.config.templates)
        return list(bundle.defaults.get("erase_templates", []))

    @abstractmethod
    def erase(self, bundle: ModelBundle, concepts: list[str], progress=None) -> Edit:
        """Remove `concepts` from a copy of the bundle's UNet and return the changed tensors."""


@dataclass
class Edit:
    method: str
    tensors: dict[str, torch.Tensor]
    info: dict = field(default_factory=dict)

    def save(self, folder: str | Path) -> Path:
        from ..io import write_weights

        return write_weights(self.tensors, self.info, folder, EDIT_FILE, EDIT_INFO, self.method)

    @classmethod
    def load(cls, folder: str | Path) -> Edit:
        folder = Path(folder)
        try:
            info = json.loads((folder / EDIT_INFO).read_text())
            tensors = load_file(str(folder / EDIT_FILE))
            method, base = info["method"], info["base_model"]
        except (OSError, ValueError, KeyError) as e:
            raise ArtshieldError(f"--model {folder}: not a readable artshield edit ({e})") from None
        if not isinstance(base, str) or not base:
            raise ArtshieldError(f"--model {folder}: {EDIT_INFO} names no base model")
        return cls(method, tensors, info)

    def apply(self, bundle: ModelBundle) -> ModelBundle:
        """Put the edited tensors on `bundle`'s UNet, in place, and return the bundle."""
        params = dict(bundle.unet.named_parameters())
        unknown = sorted(set(self.tensors) - set(params))
        if unknown:
            raise ArtshieldError(f"this edit does not fit the model {bundle.spec}: it has no parameter {unknown[0]}")
        with torch.no_grad():
            for name, value in self.tensors.items():
                if params[name].shape != value.shape:
                    raise ArtshieldError(f"this edit does not fit the model {bundle.spec}: {name} is "
                                         f"{tuple(params[name].shape)} there, {tuple(value.shape)} in the edit")
                params[name].copy_(value.to(params[name].dtype))
        return bundle


def is_edit_folder(path: Path) -> bool:
    return (path / EDIT_INFO).is_file() and (path / EDIT_FILE).is_file()


def base_spec(bundle: ModelBundle) -> str:
    """How edit.json names the base model: "mini", a hub id, or an absolute folder path."""
    if bundle.source in ("folder", "edit"):   # an edit of an edit names the first edit's folder
        return str(Path(bundle.spec).expanduser().resolve())
    return bundle.spec


def config_dict(config) -> dict:
    return asdict(config)
