"""Fast memorisation scores: no full sampling.

text_conditional_magnitude  Wen et al. (ICLR 2024): a memorised prompt pulls the noise prediction
    hard towards its training image from the very first step, so
        d = mean over steps and generations of |eps(x_t, prompt) - eps(x_t, "")|_2
    is large. One step with one to four generations reaches AUC 0.98-0.99 on SD 1.4 (a later
    re-measurement; see shared research notes). Cost: 2 UNet evaluations per generation and step.
membership_loss  for candidate images: the denoising loss at fixed timesteps and noise draws; a
    training member is reconstructed better than comparable non-members, so a lower loss means
    "more likely seen in training". The score is minus the loss, so that larger means member.
auc  the area under the ROC curve of scores against labels (Mann-Whitney, ties counted half).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..models import ModelBundle
from ..models.diffusion import denoising_loss, predicted_noise
from ..options import SEED, Limit, Overridable
from ..sampling import guide, model_input, schedule, start_noise_scale, step
from .base import register


@dataclass
class DetectConfig(Overridable):
    generations: int = 4              # seeds per prompt
    steps: int = 1                    # first sampling steps averaged
    sampling_steps: int | None = None # the DDIM schedule (None: the model's)
    guidance: float | None = None     # guidance of the sampling steps (None: the model's)
    seed: int = 0                     # generation g starts from the noise of seed + g
    batch_size: int = 64

    limits = {"generations": Limit(1, 10_000), "steps": Limit(1, 1000), "sampling_steps": Limit(1, 1000),
              "guidance": Limit(0, 100), "seed": SEED, "batch_size": Limit(1, 4096)}


@register("detect")
class Detect:
    """Wen et al.'s detector as a method: one score per prompt, higher for memorised prompts."""

    Config = DetectConfig

    def __init__(self, bundle: ModelBundle, config: DetectConfig | None = None):
        self.bundle = bundle
        self.config = config or self.Config()

    def total_steps(self, n_prompts: int) -> int:
        return n_prompts * self.config.generations

    def run(self, prompts: list[str], generator=None, progress=None) -> np.ndarray:
        """Scores per prompt. The noise of generation g is seeded config.seed + g for every prompt
        (the same starting points for all, so scores compare), so `generator` is not used."""
        c = self.config
        return text_conditional_magnitude(self.bundle, prompts, generations=c.generations, steps=c.steps,
                                          sampling_steps=c.sampling_steps, guidance=c.guidance, seed=c.seed,
                                          batch_size=c.batch_size, progress=progress)


def pure_noise(bundle: ModelBundle, sampler, seeds: list[int]) -> torch.Tensor:
    """The sampler's starting latents, one per seed (drawn on the CPU, so a seed gives the same noise
    on every device), on the model's device and in its dtype."""
    z = torch.stack([torch.randn(bundle.latent_shape, generator=torch.Generator().manual_seed(s)) for s in seeds])
    return z.to(bundle.device, bundle.dtype) * start_noise_scale(sampler)


@torch.no_grad()
def text_conditional_magnitude(bundle: ModelBundle, prompts: list[str], generations: int = 4, steps: int = 1,
                               sampling_steps: int | None = None, guidance: float | None = None, seed: int = 0,
                               batch_size: int = 64, progress=None) -> np.ndarray:
    """Wen et al.'s score per prompt, averaged over `generations` seeds and the first `steps` steps
    of DDIM sampling (guided like a generation, so later steps see realistic x_t)."""
    if generations < 1 or steps < 1:
        raise ValueError("generations and steps must be at least 1")
    sampling_steps = int(sampling_steps or bundle.conventions.steps)
    guidance = float(guidance if guidance is not None else bundle.conventions.guidance)
    sampler = schedule(bundle, sampling_steps)
    unet = bundle.unet
    uncond = bundle.embed([""])
    scores = np.zeros(len(prompts))
    # every (prompt, generation) pair is one row; rows are batched across prompts
    rows = [(i, g) for i in range(len(prompts)) for g in range(generations)]
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        ctx = bundle.embed([prompts[i] for i, _ in chunk])
        z = pure_noise(bundle, sampler, [seed + g for _, g in chunk])
        both = torch.cat([uncond.expand(len(chunk), -1, -1), ctx])
        total = torch.zeros(len(chunk))
        for k, t in enumerate(sampler.timesteps[:steps]):
            p_u, p_c = unet(model_input(sampler, torch.cat([z, z]), t), t,
                            encoder_hidden_states=both).sample.float().chunk(2)
            # the magnitude is defined on noise predictions: a v-, sample- or flow-prediction model's
            # outputs are read as the noise they stand for
            e_u, e_c = (predicted_noise(bundle, p, z.float(), t) for p in (p_u, p_c))
            total += (e_c - e_u).flatten(1).norm(dim=1).cpu()
            z, _ = step(bundle, sampler, k, t, z, guide(bundle, p_u, p_c, guidance))
        for (i, _), value in zip(chunk, total / steps):
            scores[i] += float(value) / generations
        if progress is not None:
            progress(len(chunk))
    return scores


@dataclass
class AnisotropyConfig(Overridable):
    generations: int = 1              # noise draws per prompt (the authors' detection runs use 1)
    low_step: int = 3                 # the cosine's timestep: this many steps from the end of the schedule
    norm_weight: float = 1.0          # the authors' weights for SD 1.x (detect_eval.py: gamma_1 = 1, gamma_2 = 2)
    cosine_weight: float = 2.0
    sampling_steps: int | None = None # the DDIM schedule (None: the model's)
    seed: int = 0
    batch_size: int = 64

    limits = {"generations": Limit(1, 10_000), "low_step": Limit(1, 1000), "norm_weight": Limit(-1e6, 1e6),
              "cosine_weight": Limit(-1e6, 1e6), "sampling_steps": Limit(2, 1000), "seed": SEED,
              "batch_size": Limit(1, 4096)}


@register("anisotropy")
class Anisotropy:
    """Asthana and Belagiannis's detector (ICLR 2026, arXiv 2601.20642): one score per prompt from
    pure noise, two forward passes each (conditional and unconditional in one batch), no sampling.

    norm    |eps(x_T, prompt) - eps(x_T, "")| at the schedule's first timestep: Wen et al.'s
            magnitude at step one, large where the log-density is isotropic (high noise);
    cosine  at a low-noise timestep (`low_step` from the end of the sampling schedule), the same
            pure-noise latent fed in: at each latent position, the cosine over channels between
            the unconditional prediction and the guidance direction (conditional minus
            unconditional), averaged over positions. Memorised prompts align the two where the
            log-density is anisotropic (low noise), which the norm alone misses;
    score   norm_weight x norm + cosine_weight x cosine (the authors' SD 1.x weights by default).

    A v- or sample-prediction model's outputs are read as the noise they stand for, as in
    `text_conditional_magnitude`."""

    Config = AnisotropyConfig

    def __init__(self, bundle: ModelBundle, config: AnisotropyConfig | None = None):
        self.bundle = bundle
        self.config = config or self.Config()

    def total_steps(self, n_prompts: int) -> int:
        return n_prompts * self.config.generations

    @torch.no_grad()
    def parts(self, prompts: list[str], progress=None) -> dict[str, np.ndarray]:
        """{"norm", "cosine", "score"}: one value per prompt each, averaged over generations."""
        c, bundle = self.config, self.bundle
        steps = int(c.sampling_steps or bundle.conventions.steps)
        if c.low_step >= steps:
            raise ValueError(f"low_step {c.low_step} must be smaller than the schedule's {steps} steps")
        sampler = schedule(bundle, steps)
        high, low = sampler.timesteps[0], sampler.timesteps[-c.low_step]
        unet = bundle.unet
        uncond = bundle.embed([""])
        norm, cosine = np.zeros(len(prompts)), np.zeros(len(prompts))
        rows = [(i, g) for i in range(len(prompts)) for g in range(c.generations)]
        for start in range(0, len(rows), c.batch_size):
            chunk = rows[start:start + c.batch_size]
            ctx = bundle.embed([prompts[i] for i, _ in chunk])
            z = pure_noise(bundle, sampler, [c.seed + g for _, g in chunk])
            both = torch.cat([uncond.expand(len(chunk), -1, -1), ctx])
            values = {}
            for name, t in (("high", high), ("low", low)):
                p_u, p_c = unet(model_input(sampler, torch.cat([z, z]), t), t,
                                encoder_hidden_states=both).sample.float().chunk(2)
                values[name] = [predicted_noise(bundle, p, z.float(), t) for p in (p_u, p_c)]
            e_u, e_c = values["high"]
            n = (e_c - e_u).flatten(1).norm(dim=1).cpu()
            e_u, e_c = values["low"]
            cos = torch.nn.functional.cosine_similarity(e_u, e_c - e_u, dim=1).flatten(1).mean(1).cpu()
            for (i, _), a, b in zip(chunk, n, cos):
                norm[i] += float(a) / c.generations
                cosine[i] += float(b) / c.generations
            if progress is not None:
                progress(len(chunk))
        return {"norm": norm, "cosine": cosine, "score": c.norm_weight * norm + c.cosine_weight * cosine}

    def run(self, prompts: list[str], generator=None, progress=None) -> np.ndarray:
        """Scores per prompt, higher for memorised prompts (noise seeded config.seed + g, as Detect)."""
        return self.parts(prompts, progress)["score"]


@torch.no_grad()
def membership_loss(bundle: ModelBundle, images: torch.Tensor, captions: list[str] | None = None,
                    timesteps: tuple[int, ...] = (100, 200, 300, 400, 500), draws: int = 4, seed: int = 0,
                    batch_size: int = 32) -> np.ndarray:
    """Minus the mean denoising loss of each image (N, 3, H, W in [0, 1], at the model's size) under
    fixed noise draws at `timesteps`; with captions, conditioned on them (members were trained so)."""
    out = []
    captions = captions or [""] * len(images)
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        z = bundle.encode(x)
        ctx = bundle.embed(captions[start:start + batch_size])
        losses = torch.zeros(len(x))
        g = torch.Generator().manual_seed(seed)
        for t_value in timesteps:
            for _ in range(draws):
                t = torch.full((len(x),), t_value, dtype=torch.long)
                losses += denoising_loss(bundle, z, ctx, g, t).cpu()
        out.append(-(losses / (len(timesteps) * draws)))
    return torch.cat(out).numpy()


def auc(scores, labels) -> float:
    """P(score of a random positive > score of a random negative), ties counted half."""
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("AUC needs at least one positive and one negative")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def tpr_at_fpr(scores, labels, fpr: float = 0.01) -> dict:
    """The true-positive rate at a false-positive rate of at most `fpr`: the share of positives
    scoring above the threshold that lets through at most floor(fpr x negatives) negatives (with
    fewer than 1 / fpr negatives: none). Wilson 95 % interval; and the AUC with Hanley and McNeil's."""
    from ..metrics.judges import _auc_interval, _wilson

    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("a true-positive rate needs at least one positive and one negative")
    allowed = int(np.floor(fpr * len(neg) + 1e-9))
    threshold = float(np.sort(neg)[::-1][allowed]) if allowed < len(neg) else -np.inf
    hits = int((pos > threshold).sum())
    low, high = _wilson(hits, len(pos))
    a, a_low, a_high = _auc_interval(pos, neg)
    return {"tpr": hits / len(pos), "tpr_interval": [round(low, 4), round(high, 4)], "at_fpr": fpr,
            "false_positives_allowed": allowed, "threshold": threshold, "auc": round(a, 4),
            "auc_interval": [round(a_low, 4), round(a_high, 4)]}



@dataclass
class ConsensusConfig(Overridable):
    # both chosen on a tuning split of mini's captions (scripts/consensus_tuning.py, its record in
    # docs/results/audit-consensus-tuning): 4 seeds, step 7 of 30, the earliest setting that separated
    # each half of the planted captions from 48 tuning captions perfectly, in both halves
    generations: int = 4              # seeds per prompt whose predicted images are compared
    fraction: float = 7 / 30          # where on the sampling schedule: step round(fraction x steps), at least 1
    sampling_steps: int | None = None # the DDIM schedule (None: the model's)
    guidance: float | None = None     # guidance of the sampling steps (None: the model's)
    seed: int = 0
    batch_size: int = 64

    limits = {"generations": Limit(2, 10_000), "fraction": Limit(0, 1, low_open=True), "sampling_steps": Limit(1, 1000),
              "guidance": Limit(0, 100), "seed": SEED, "batch_size": Limit(1, 4096)}


@register("consensus")
class Consensus:
    """Seed consensus of the predicted image: a memorised prompt sends every starting noise to the same
    training image, and the sampler's prediction of the final image (DDIM's x0 estimate, in latent
    space, no decoding) already agrees across seeds a few steps in, while an ordinary prompt's
    predictions still differ. Score: minus the mean pairwise RMS distance between the `generations`
    seeds' predictions at the chosen step, higher for memorised prompts. The cheap cousin of the
    generate-and-filter attack (which compares finished images) and of Webster's one-step black-box
    attack (which compares edges after one step); cost: generations x step x 2 UNet evaluations."""

    Config = ConsensusConfig

    def __init__(self, bundle: ModelBundle, config: ConsensusConfig | None = None):
        self.bundle = bundle
        self.config = config or self.Config()

    def step(self) -> int:
        steps = int(self.config.sampling_steps or self.bundle.conventions.steps)
        return min(steps, max(1, round(self.config.fraction * steps)))

    def total_steps(self, n_prompts: int) -> int:
        return n_prompts * self.config.generations

    def run(self, prompts: list[str], generator=None, progress=None) -> np.ndarray:
        """Scores per prompt (the noise of generation g seeded config.seed + g for every prompt)."""
        c = self.config
        return consensus_trajectory(self.bundle, prompts, c.generations, self.step(), c.sampling_steps, c.guidance,
                                    c.seed, c.batch_size, progress)[:, -1]


@torch.no_grad()
def consensus_trajectory(bundle: ModelBundle, prompts: list[str], generations: int = 8, last_step: int = 6,
                         sampling_steps: int | None = None, guidance: float | None = None, seed: int = 0,
                         batch_size: int = 64, progress=None, first: int | None = None) -> np.ndarray:
    """(prompts, last_step): column k is the consensus score after k + 1 guided DDIM steps, over the
    first `first` seeds (default all `generations`)."""
    if generations < 2 or last_step < 1:
        raise ValueError("consensus needs at least 2 generations and 1 step")
    first = first or generations
    sampling_steps = int(sampling_steps or bundle.conventions.steps)
    if last_step > sampling_steps:
        raise ValueError(f"step {last_step} lies beyond the schedule's {sampling_steps} steps")
    guidance = float(guidance if guidance is not None else bundle.conventions.guidance)
    sampler = schedule(bundle, sampling_steps)
    uncond = bundle.embed([""])
    per_chunk = max(1, batch_size // generations)
    scores = np.zeros((len(prompts), last_step))
    for start in range(0, len(prompts), per_chunk):
        chunk = prompts[start:start + per_chunk]
        n = len(chunk) * generations
        ctx = bundle.embed([p for p in chunk for _ in range(generations)])
        z = pure_noise(bundle, sampler, [seed + g for _ in chunk for g in range(generations)])
        both = torch.cat([uncond.expand(n, -1, -1), ctx])
        for k, t in enumerate(sampler.timesteps[:last_step]):
            p_u, p_c = unet_pair(bundle, sampler, z, t, both)
            z, estimate = step(bundle, sampler, k, t, z, guide(bundle, p_u, p_c, guidance))
            x0 = estimate.float().reshape(len(chunk), generations, -1)[:, :first]
            d = torch.cdist(x0, x0) / x0.shape[-1] ** 0.5           # RMS distances, (prompts, first, first)
            scores[start:start + len(chunk), k] = (-d.sum((1, 2)) / (first * (first - 1))).cpu().numpy()
        if progress is not None:
            progress(n)
    return scores


def unet_pair(bundle: ModelBundle, sampler, z: torch.Tensor, t, both: torch.Tensor):
    """The UNet's unconditional and conditional outputs at (z, t) in one batch (`both`: the unconditional
    contexts, then the conditional ones)."""
    return bundle.unet(model_input(sampler, torch.cat([z, z]), t), t, encoder_hidden_states=both).sample.chunk(2)
