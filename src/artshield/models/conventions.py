"""How the algorithms talk to a model: typed conventions, each fallback written once.

A Stable Diffusion checkpoint says nothing about how it likes to be prompted or fine-tuned, so the
defaults below are Stable Diffusion 1.x's, from the papers and scripts the methods come from. A
model far from that scale (mini) declares its own in a JSON file next to its weights:
`artshield_mini.json` for the embedded model, `artshield.json` for any other diffusers folder,
with a "sampling" object (steps, guidance) and a "conventions" object (every other field below).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from ..errors import ArtshieldError

CONVENTION_FILES = ("artshield.json", "artshield_mini.json")


@dataclass(frozen=True)
class ModelConventions:
    steps: int = 30                       # sampling steps (DDIM)
    guidance: float = 7.5                 # classifier-free guidance scale
    generic_prompt: str = "a painting"    # AdvDM's and Mist's condition when none is given
    style_prompt: str = "an artwork in the style of {}"   # how to ask for a style ({} = its name)
    init_word: str = "art"                # the word a new textual-inversion token starts from
    styles: tuple[str, ...] = ()          # styles the model knows by name (glaze candidates, UCE keeps)
    learning_rates: dict = field(default_factory=dict)    # method name -> fine-tuning rate for this model
    esd_iterations: int | None = None     # ESD's iterations for this model (None: the paper's)
    esd_ddim_steps: int | None = None     # ESD's sampling schedule for this model (None: the paper's)
    erase_templates: tuple[str, ...] = () # sentences with {} that carry a concept, for erasure
    attack_settings: dict = field(default_factory=dict)   # erase attack name -> its options on this model
    erase_settings: dict = field(default_factory=dict)    # erase method name -> its settings on this model
    corpus: bool = False                  # trained on artshield's icon corpus: its judge and captions apply

    def learning_rate(self, method: str, paper: float) -> float:
        """The rate this model declares for `method`, else the paper's."""
        return float(self.learning_rates.get(method, paper))

    def style(self, name: str) -> str:
        return self.style_prompt.format(name)

    @classmethod
    def from_dict(cls, data: dict, source: str = "conventions") -> ModelConventions:
        """From the "sampling" and "conventions" objects of a conventions file; unknown keys are refused."""
        values = {**data.get("sampling", {}), **data.get("conventions", {})}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ArtshieldError(f"{source}: unknown convention(s) {', '.join(unknown)} "
                                 f"(known: {', '.join(sorted(known))})")
        for name in ("styles", "erase_templates"):
            if name in values:
                values[name] = tuple(values[name])
        try:
            return replace(cls(), **values)
        except TypeError as e:
            raise ArtshieldError(f"{source}: {e}") from None

    def to_dict(self) -> dict:
        """The conventions-file form: what `from_dict` reads back."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
        return {"sampling": {"steps": values.pop("steps"), "guidance": values.pop("guidance")},
                "conventions": values}

    @classmethod
    def from_folder(cls, folder: Path) -> ModelConventions:
        """The conventions a model folder declares, or Stable Diffusion's when it declares none."""
        for name in CONVENTION_FILES:
            path = Path(folder) / name
            if path.is_file():
                try:
                    data = json.loads(path.read_text())
                except (OSError, ValueError) as e:
                    raise ArtshieldError(f"{path}: not readable JSON ({e})") from None
                return cls.from_dict(data, str(path))
        return cls()
