"""The audit family's registry: extract and detect, each built from a bundle and a config and run
on prompts, like every other method family."""
from __future__ import annotations

from ..options import Registry

AUDITS = Registry("audit")
register = AUDITS.register
