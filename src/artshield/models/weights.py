"""Saved weight changes: one folder type for what mimicry and erasure produce.

A folder holds the changed tensors in safetensors (`<kind>.safetensors`) and a JSON description
(`<kind>.json`: the method, the base model, the settings). `WeightChange` writes and reads such
folders; each kind says how its tensors go onto a model:

- `Edit` (erasure): tensors named as in the UNet's state dict, or, for a text encoder, "text_encoder."
  ("text_encoder_2." on SDXL) and the name its weight files give, copied over the base model's;
  `load_model(FOLDER)` recognises an edit folder and loads its base model with the edit on it.
- `Adapter` (mimicry, in artshield.mimic): tensors the fine-tuning method puts on a model its own
  way (a LoRA, a token embedding, hypernetworks, a UNet).
"""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import ArtshieldError
from .bundle import ModelBundle


@dataclass
class WeightChange(ABC):
    method: str
    tensors: dict[str, torch.Tensor]
    info: dict = field(default_factory=dict)

    kind = "weights"              # file stem: <kind>.safetensors and <kind>.json
    param = "folder"              # the parameter a bad folder is reported under
    what = "artshield weights"    # how errors name the folder's content

    @classmethod
    def weights_file(cls) -> str:
        return f"{cls.kind}.safetensors"

    @classmethod
    def info_file(cls) -> str:
        return f"{cls.kind}.json"

    @classmethod
    def is_folder(cls, path: str | Path) -> bool:
        path = Path(path)
        return (path / cls.info_file()).is_file() and (path / cls.weights_file()).is_file()

    def save(self, folder: str | Path) -> Path:
        from ..io import write_weights

        return write_weights(self.tensors, self.info, folder, self.weights_file(), self.info_file(), self.method,
                             self.file_metadata())

    def file_metadata(self) -> dict[str, str]:
        """Extra entries for the safetensors header (what other tools read to load the file)."""
        return {}

    @classmethod
    def load(cls, folder: str | Path):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = Path(folder)
        try:
            info = json.loads((folder / cls.info_file()).read_text())
            tensors = load_file(str(folder / cls.weights_file()))
            method = info["method"]
        except (OSError, ValueError, KeyError, TypeError, SafetensorError) as e:
            raise ArtshieldError(f"not a readable {cls.what} ({e})", param=cls.param, value=str(folder)) from None
        from ..io import nonfinite

        bad = nonfinite(tensors)
        if bad:
            raise ArtshieldError(f"{cls.weights_file()} holds NaN or infinite values (tensor {bad[0]})",
                                 param=cls.param, value=str(folder))
        change = cls(method, tensors, info)
        change.check(folder)
        return change

    def check(self, folder: Path) -> None:
        """Refuse a folder whose description lacks what this kind needs."""

    @abstractmethod
    def apply(self, bundle: ModelBundle) -> ModelBundle:
        """Put the change on `bundle`, in place, and return it."""


@dataclass
class Edit(WeightChange):
    kind = "edit"
    param = "model"
    what = "artshield edit"

    @classmethod
    def check_destination(cls, folder: str | Path, model: str) -> None:
        """Refuse to write an edit where it would destroy something: a folder that holds other files
        (an earlier edit may be replaced), or the very model being edited."""
        out = Path(folder)
        if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / cls.info_file()).is_file())):
            raise ArtshieldError("exists and is not an empty folder or an earlier edit", param="output", value=folder)
        if Path(model).expanduser().resolve() == out.resolve():
            raise ArtshieldError("is the model being edited; write the edit to a new folder", param="output",
                                 value=folder)

    def check(self, folder: Path) -> None:
        base = self.info.get("base_model")
        if not isinstance(base, str) or not base:
            raise ArtshieldError(f"{self.info_file()} names no base model", param=self.param, value=str(folder))

    def apply(self, bundle: ModelBundle) -> ModelBundle:
        """Copy the edited tensors onto `bundle`'s UNet and text encoders, in place, and return the bundle."""
        params = {}
        for name, module in edited_modules(bundle).items():
            if name == "unet":
                params.update(module.named_parameters())
            else:
                params.update({f"{name}.{text_name(n)}": p for n, p in module.named_parameters()})
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


TEXT_ENCODERS = ("text_encoder", "text_encoder_2")
_CLIP_TEXT_PARTS = ("embeddings.", "encoder.", "final_layer_norm.")


def text_name(name: str) -> str:
    """A CLIP text encoder's parameter as its weight files name it ("text_model.encoder.layers.0...").
    transformers 5 drops the "text_model." level from the module tree, transformers 4 keeps it; an
    edit stores the file's name so that it loads under either."""
    return f"text_model.{name}" if name.startswith(_CLIP_TEXT_PARTS) else name


def edited_modules(bundle: ModelBundle) -> dict[str, torch.nn.Module]:
    """The modules an edit may change, by the prefix their tensors carry in it: the UNet's names are
    bare (as in every edit before text encoders could be edited), a text encoder's follow its name."""
    out = {"unet": bundle.unet}
    out.update({name: getattr(bundle, name) for name in TEXT_ENCODERS if getattr(bundle, name, None) is not None})
    return out


def base_spec(bundle: ModelBundle) -> str:
    """How a saved change names its base model: "mini", a hub id, or an absolute folder or file path."""
    if bundle.source in ("folder", "edit", "single-file"):   # an edit of an edit names the first edit's folder
        return str(Path(bundle.spec).expanduser().resolve())
    return bundle.spec


def base_fields(bundle: ModelBundle) -> dict:
    """What a saved change records of its base model: its spec, and for a single file loaded with a
    named configuration, that configuration (so the change loads on the same architecture)."""
    out = {"base_model": base_spec(bundle)}
    if bundle.architecture:
        arch = bundle.architecture
        out["base_config"] = arch if "/" not in arch and not Path(arch).exists() else str(Path(arch).resolve())
    return out
