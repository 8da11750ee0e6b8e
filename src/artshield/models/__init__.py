"""models: the bottom layer every method family stands on, importing none of them.

- bundle.py       ModelBundle: VAE, UNet, text encoder, tokenizer, noise schedule, and how to call them
- conventions.py  ModelConventions: typed per-model defaults (sampling, prompts, learning rates)
- loader.py       load_model: "mini", a diffusers folder, an edit folder, or a hub id
- diffusion.py    noise draws, the training target of each prediction type, the one denoising loss
- views.py        the model's view of an image of any size, and the canvas it redraws on
- weights.py      saved weight changes (WeightChange, Edit): one folder type for adapters and edits
- architecture.py, tiny.py, sd15.py, tokenizer.py: mini's and the tests' architectures
"""
from .bundle import ModelBundle
from .conventions import ModelConventions
from .loader import load_model, resolve_device

__all__ = ["ModelBundle", "ModelConventions", "load_model", "resolve_device"]
