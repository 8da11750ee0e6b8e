"""artshield: copyright protection around text-to-image diffusion models.

The Python API:

    import artshield
    model = artshield.load_model("mini")          # or a diffusers folder, or a hub id
    images = artshield.generate(model, ["trash can icon, papirus style"], seed=0)
    result = artshield.protect(model, [image], method="advdm")   # image: (3, H, W) in [0, 1]
    cleaned = artshield.purify(model, [image], "diffpure")       # purify(None, ...) for filters
    adapter = artshield.mimic(model, images, captions, "lora")   # adapter.apply(model.copy())
    edit = artshield.erase(model, ["faenza style"], method="esd-x")   # edit.save(folder)
    report = artshield.audit(model, prompts)                     # report.to_dict(), report.flagged

Every method of every family has one shape: `make_method(family, name, bundle, **options)` builds
it, `.run(inputs, generator=..., progress=...)` runs it. The registries: artshield.protect.METHODS,
artshield.purify.PURIFIERS, artshield.mimic.MIMICS, artshield.erase.ERASERS, artshield.audit.AUDITS.

Importing artshield is cheap: the names below are loaded on first use (PEP 562), so the command
line answers --help without importing torch, diffusers or transformers.
"""
from __future__ import annotations

import importlib
import sys
import types
from importlib.metadata import PackageNotFoundError, version

from .errors import ArtshieldError, InputError

try:
    __version__ = version("artshield")
except PackageNotFoundError:       # running from a source tree that was never installed
    __version__ = "0+unknown"

# public name -> (module, attribute)
_LAZY = {
    "load_model": ("artshield.models", "load_model"),
    "ModelBundle": ("artshield.models", "ModelBundle"),
    "ModelConventions": ("artshield.models", "ModelConventions"),
    "generate": ("artshield.generate", "generate"),
    "protect": ("artshield.protect", "protect"),
    "purify": ("artshield.purify", "purify"),
    "mimic": ("artshield.mimic", "mimic"),
    "erase": ("artshield.erase", "erase"),
    "audit": ("artshield.audit", "audit"),
    "make_method": ("artshield.options", "make_method"),
}

__all__ = ["ArtshieldError", "InputError", "__version__", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'artshield' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """Six public functions share their names with the subpackages that hold them (artshield.protect
    is both). Importing a subpackage makes Python bind it on this package; the public name keeps
    meaning the function, as it always has."""

    def __setattr__(self, name, value):
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
