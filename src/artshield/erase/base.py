"""What every erasure shares: which UNet weights it may change and the prompts it edits.

An erasure returns an Edit (models.weights): a folder whose edit.safetensors holds only the UNet
tensors that changed (named as in the UNet's state dict) and whose edit.json says which base model
they belong to and how they were made. `load_model(FOLDER)` recognises such a folder, loads the
base model and puts the tensors on it, so every command (generate, protect, mimic, bench) runs on
an erased model like on any other.
"""
from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass

import torch

from ..errors import ArtshieldError
from ..models import ModelBundle
from ..models.weights import Edit
from ..options import SEED, Overridable, Registry

ERASERS = Registry("erase")
register = ERASERS.register

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


# The same groups in SD3's and FLUX's transformers (models/flow.py's wrapper names them
# "transformer.<diffusers name>"). Text reaches the image only inside attention: the joint
# attention of the double-stream blocks ("transformer_blocks", both streams' projections) and, on
# FLUX, the single-stream blocks' attention over text and image tokens together; these stand for
# cross-attention. The text stream's key and value projections (add_k_proj, add_v_proj) stand for
# UCE's to_k / to_v. ESD-u leaves the embedders and the output layers alone, as on a UNet.
JOINT_ATTENTION = re.compile(r"^transformer\.(single_)?transformer_blocks\.\d+\.attn\."
                             r"(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|add_v_proj|to_add_out)\.")
JOINT_ATTENTION_KV = re.compile(r"^transformer\.transformer_blocks\.\d+\.attn\.add_(k|v)_proj\.")
NOT_IN_FLOW_ESD_U = re.compile(r"^transformer\.(time_text_embed|pos_embed|x_embedder|context_embedder|norm_out|proj_out)\.")
FLOW_PARAMETER_GROUPS = {
    "cross-attention": lambda n: bool(JOINT_ATTENTION.search(n)),
    "cross-attention-kv": lambda n: bool(JOINT_ATTENTION_KV.search(n)),
    "non-cross-attention": lambda n: not JOINT_ATTENTION.search(n) and not NOT_IN_FLOW_ESD_U.match(n),
}


def select_parameters(unet: torch.nn.Module, group: str) -> list[str]:
    """Names of the UNet parameters in `group` (see PARAMETER_GROUPS; SD3 / FLUX: FLOW_PARAMETER_GROUPS),
    in the module's order."""
    from ..models.flow import FlowDenoiser

    try:
        keep = (FLOW_PARAMETER_GROUPS if isinstance(unet, FlowDenoiser) else PARAMETER_GROUPS)[group]
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
    templates: list[str] | None = None   # None: the model's erase_templates convention (none by default)
    seed: int = 0

    limits = {"seed": SEED}

    def __post_init__(self):
        super().__post_init__()
        if self.templates is not None and (isinstance(self.templates, str) or any(
                not isinstance(t, str) or t.count("{}") != 1 or t.replace("{}", "").count("{") or
                t.replace("{}", "").count("}") for t in self.templates)):
            raise ValueError("each template must contain {} once, where the concept goes, and no other braces")


FLOW_ERASERS = ("esd-x", "esd-u", "esd-x-strict")


def refuse_flow(bundle: ModelBundle, method: str) -> None:
    """On SD3 / FLUX only ESD runs: UCE and RECE solve for a UNet's cross-attention keys and values,
    which read the text encoder's states directly (in a joint block they read text states that
    the earlier blocks have transformed), and AdvUnlearn attacks one CLIP encoder."""
    if bundle.is_flow and method not in FLOW_ERASERS:
        raise ArtshieldError(f"{method} does not run on {bundle.family.upper()}: it edits or attacks what a UNet's "
                             "cross-attention reads, which SD3's and FLUX's joint attention does not have in that "
                             f"form; use {', '.join(FLOW_ERASERS)}")


class Eraser(ABC):
    """One erasure method, built from a bundle and a config. `run` returns an Edit and leaves the
    bundle unchanged."""

    name = ""
    Config = EraseConfig

    def __init__(self, bundle: ModelBundle, config: EraseConfig | None = None):
        refuse_flow(bundle, self.name)
        self.bundle = bundle
        self.config = config or self.Config()

    def templates(self) -> list[str]:
        if self.config.templates is not None:
            return list(self.config.templates)
        return list(self.bundle.conventions.erase_templates)

    @abstractmethod
    def run(self, concepts: list[str], generator: torch.Generator | None = None, progress=None) -> Edit:
        """Remove `concepts` from a copy of the bundle's UNet and return the changed tensors; random
        draws from `generator` (else one seeded with config.seed)."""

    @abstractmethod
    def total_steps(self, n_concepts: int) -> int:
        """Progress units `run` reports."""


def preserve_prompts(bundle: ModelBundle, concepts: list[str], given: list[str] | None) -> list[str]:
    """The prompts an erasure keeps as they were: `given`, else the model's own styles (its styles
    convention) in its style prompt, never one that carries an erased concept (erasing "faenza
    style" must not keep "icon, faenza style")."""
    if given is not None:
        return list(given)
    lowered = {c.lower() for c in concepts}
    keep = [bundle.conventions.style(s) for s in bundle.conventions.styles]
    return [p for p in keep if not any(c in p.lower() for c in lowered)]


def check_concepts(concepts: list[str]) -> None:
    if not concepts or any(not c.strip() for c in concepts):
        raise ArtshieldError("give at least one concept, none of them empty", param="concepts", value=concepts)


def config_dict(config) -> dict:
    return asdict(config)
