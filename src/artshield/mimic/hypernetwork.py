"""Hypernetwork, the AUTOMATIC1111 webui kind (from NovelAI's leaked training setup, as used in the
mimicry dispute this project starts from): small MLPs that rewrite the text context before every
cross-attention's key and value projections,

    k = W_k (c + mlp_k(c)),   v = W_v (c + mlp_v(c)),

one pair of MLPs per context width, shared by all cross-attention layers. Layer structure
"1, 2, 1": Linear(d, 2d) then Linear(2d, d), linear activation (the webui default), the last
layer starting at zero so training starts from the base model. The webui's default learning rate
is 1e-5 (a rate for SD's scale; pass lr for another). Only the MLPs are saved.

`unconditional` (default True, as the webui does): the MLPs rewrite every context, the empty
prompt's under classifier-free guidance too. False leaves the unconditional branch to the base
model: generate() tells the attention which rows of its batch are that branch. On mini the webui's
way is unstable between training seeds (guidance then pushes each image away from a rewritten
unconditional branch that may carry more of the style than the prompt's; docs/results/tuning/
hypernetwork-grid.json has both). It acts where artshield samples with guidance (generate); the
img2img of the purifiers rewrites every context."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import Mimic, MimicConfig, register


@dataclass
class HypernetworkConfig(MimicConfig):
    steps: int = 2000
    structure: tuple[int, ...] = (1, 2, 1)
    unconditional: bool = True         # rewrite the unconditional context too (the webui's way)

    def __post_init__(self):
        super().__post_init__()
        s = self.structure
        if isinstance(s, (str, bytes)) or not hasattr(s, "__len__") or len(s) < 2 or s[0] != 1 or s[-1] != 1 or \
                not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 16 for v in s):
            raise ValueError(f"structure must be layer widths relative to the context, starting and ending "
                             f"with 1, each in (0, 16], e.g. (1, 2, 1); not {s!r}")


class ContextMLP(nn.Module):
    def __init__(self, dim: int, structure=(1, 2, 1)):
        super().__init__()
        widths = [int(dim * s) for s in structure]
        self.layers = nn.Sequential(*[nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])])
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.zeros_(self.layers[-1].bias)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return c + self.layers(c)


class Hypernetworks(nn.Module):
    def __init__(self, dims: list[int], structure=(1, 2, 1), unconditional: bool = True):
        super().__init__()
        self.unconditional = unconditional
        self.k = nn.ModuleDict({str(d): ContextMLP(d, structure) for d in dims})
        self.v = nn.ModuleDict({str(d): ContextMLP(d, structure) for d in dims})


class HypernetworkAttnProcessor:
    """Cross-attention with the context rewritten for keys and values (self-attention unchanged).
    Supports the attention blocks of UNet2DConditionModel (no group or spatial norm)."""

    def __init__(self, nets: Hypernetworks):
        self.nets = nets

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 unconditional_rows: int = 0, **kwargs):
        """`unconditional_rows`: how many leading rows of the batch are classifier-free guidance's
        unconditional branch (diffusers' pipelines put it first); they keep the base context unless
        the hypernetworks rewrite it too."""
        if attn.spatial_norm is not None or attn.group_norm is not None or hidden_states.ndim != 3:
            raise ValueError("hypernetworks support the UNet's transformer attention blocks only")
        b, n, _ = hidden_states.shape
        q = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            ck = cv = hidden_states
        else:
            key = str(encoder_hidden_states.shape[-1])
            keep = 0 if self.nets.unconditional else unconditional_rows
            base, rewritten = encoder_hidden_states[:keep], encoder_hidden_states[keep:]
            ck = torch.cat([base, self.nets.k[key](rewritten)])
            cv = torch.cat([base, self.nets.v[key](rewritten)])
        k, v = attn.to_k(ck), attn.to_v(cv)
        heads = attn.heads
        q, k, v = (t.view(b, -1, heads, t.shape[-1] // heads).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask)
        out = out.transpose(1, 2).reshape(b, n, -1).to(q.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            raise ValueError("hypernetworks support attention blocks without an internal residual")
        return out / attn.rescale_output_factor


def _install(unet, structure, unconditional: bool = True) -> Hypernetworks:
    dim = unet.config.cross_attention_dim
    dims = sorted({dim} if isinstance(dim, int) else set(dim))
    nets = Hypernetworks(dims, structure, unconditional).to(unet.device, unet.dtype)
    processor = HypernetworkAttnProcessor(nets)
    unet.set_attn_processor({name: processor for name in unet.attn_processors})
    unet.hypernetworks = nets
    return nets


@register("hypernetwork")
class Hypernetwork(Mimic):
    Config = HypernetworkConfig
    flow_refusal = ("its networks rewrite the context a UNet's cross-attention reads; SD3's and FLUX's joint "
                    "attention has no such separate input")
    paper_lr = 1e-5

    def prepare(self, bundle):
        bundle.unet.requires_grad_(False)
        nets = _install(bundle.unet, self.config.structure, self.config.unconditional)
        nets.requires_grad_(True)
        return list(nets.parameters())

    def state(self, bundle):
        return bundle.unet.hypernetworks.state_dict()

    @classmethod
    def apply(cls, bundle, tensors, info):
        nets = _install(bundle.unet, tuple(info["config"]["structure"]), info["config"].get("unconditional", True))
        nets.load_state_dict({k: v.to(bundle.dtype) for k, v in tensors.items()})
        nets.requires_grad_(False)
