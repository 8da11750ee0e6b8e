"""artshield: copyright protection around text-to-image diffusion models.

The Python API:

    import artshield
    model = artshield.load_model("mini")          # or a diffusers folder, or a hub id
    images = artshield.generate(model, ["trash can icon, papirus style"], seed=0)
    result = artshield.protect(model, [image], method="advdm")   # image: (3, H, W) in [0, 1]
    cleaned = artshield.purify([image], "diffpure", bundle=model)
    adapter = artshield.mimic(model, images, captions, "lora")          # adapter.apply(model)
    edit = artshield.erase(model, ["faenza style"], method="esd-x")       # edit.save(folder)
    results, flagged = artshield.audit(model, prompts)

The functions share their names with the subpackages that hold the methods; import from those
with `from artshield.protect import METHODS`, `from artshield.purify import PURIFIERS`,
`from artshield.erase import ERASERS`.
"""
from __future__ import annotations

from .errors import ArtshieldError, InputError
from .audit import audit
from .erase import erase
from .generate import generate
from .mimic import mimic
from .models import ModelBundle, load_model
from .protect import protect
from .purify import purify

__version__ = "0.1.0"
__all__ = ["ArtshieldError", "InputError", "ModelBundle", "__version__", "audit", "erase", "generate", "load_model",
           "mimic", "protect", "purify"]
