"""What produced a result: the versions every results.json records."""
from __future__ import annotations

import platform


def environment() -> dict:
    """Versions of artshield, torch, diffusers, transformers and Python, and the platform."""
    import diffusers
    import torch
    import transformers

    from . import __version__

    return {"artshield": __version__, "torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__, "python": platform.python_version(),
            "platform": platform.platform()}
