"""Attacks that try to bring an erased concept back: erase's robustness evaluation runs each of them.

Every attack gets the erased model, the base model it was made from, and the evaluation's target
prompts, and returns what it generates those prompts with: a prompt per target (what an attacker
types) and the model that reads them. The evaluation then generates with the same seeds as
before the erasure and asks the judge, so the attacks are compared on one footing.

concept-inversion (Pham et al., ICLR 2024; "Circumventing Concept Erasure Methods")
    Textual inversion of a new word on real images of the erased concept, against the edited
    model; the word then takes the concept's place in each target prompt. White-box (gradients of
    the edited model) and needs images of the concept: 40 real images, `steps` of textual
    inversion (800 on mini: what textual inversion needs there to learn a style).
ring-a-bell (Tsai, Hsu et al., ICLR 2024; chiayi-hsu/Ring-A-Bell)
    Model-agnostic and black-box: it never queries the erased model. A concept vector is the
    mean difference of the base text encoder's outputs for prompts with and without the concept
    (Get_Concept_Vector.ipynb: 30 pairs). For each target prompt the goal is its own embedding
    plus eta times that vector, and a genetic search finds K tokens whose embedding is nearest in
    squared L2 (InversePrompt.ipynb: eta 3, K 16, population 200, 3000 generations, mutation
    0.25, crossover 0.5, the best half kept each generation). The prompts found depend only on the
    base model and the targets, so one search serves every erasure of that model.
p4d (Chin, Jiang, Huang, Chen, Chiu; ICML 2024; joycenerd/P4D, P4D-N)
    White-box on both models: `length` free token embeddings make the whole prompt; each step they
    are projected to their nearest vocabulary tokens (cosine), the erased model reads the projected
    tokens, and the loss is the distance of its noise prediction from the base model's for the
    target prompt, on the base model's image of that prompt noised at a random timestep; the
    gradient at the projected tokens updates the free embeddings (AdamW, lr 0.1, weight decay
    0.1). Every `eval_every` steps the projected tokens are decoded and generated with the erased
    model, and the prompt whose image is nearest the base model's image is kept (P4D uses CLIP
    ViT-H similarity; here LPIPS, so the selection never consults the judge that scores). Authors'
    defaults: 16 tokens, 3000 steps, evaluation every 50. P4D-K (tokens between the prompt's words)
    is not here: P4D reports the union of both, so this row is a lower bound on P4D.
random-prefix (the control for unlearndiffatk; Diffusion-MU-Attack's `random` attacker)
    Random tokens before the prompt, tried until the judge names the target, as many tries as
    unlearndiffatk has timesteps: an attack with the judge as its oracle and no optimisation.
unlearndiffatk (Zhang, Jia et al., ECCV 2024; OPTML-Group/Diffusion-MU-Attack, `text_grad`)
    White-box on the erased model alone, which serves as its own classifier: k tokens put before
    the prompt, each a distribution over the vocabulary kept on the simplex, are optimised with
    Adam (lr 0.01, weight decay 0.1) so that the erased model denoises a target image well under
    the prompt; the target image is the base model's generation of the same prompt and seed (the
    authors' dataset). One-hot tokens are drawn from the distributions with a straight-through
    gradient. Timesteps are visited in order (50 spread over [0, T), 40 iterations each); after
    each, the most likely tokens are tried and the attack stops at the first generation the judge
    names as the target (the authors stop on their classifier's success). Style configuration:
    k 3 before the prompt.

On mini the searches are shorter than the authors' (the model's `attack_settings` convention says by
how much; docs/erase.md records the runs that set them). Every attack reports its settings, its
seconds and its prompts.
"""
from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch

from ..errors import ArtshieldError
from ..models import ModelBundle
from ..options import AT_LEAST_ONE, FRACTION, POSITIVE, SEED, Limit, Overridable, Registry

ATTACKS = Registry("erase attack")
register = ATTACKS.register


@dataclass
class Context:
    """What an attack may use. `base`: the model before the erasure; `erased`: after it; `target`:
    the evaluation's Target; `items`: the target prompts' corpus items (caption, theme, concept);
    `prompt`: the prompt the evaluation writes for an item; `pairs`: n, seed -> up to n prompt pairs
    (with the concept, without it) that are not target prompts; `seed`: the evaluation's (item j is
    generated from seed + j); `base_images`: the base model's generations of the targets, seed for
    seed; `hits`: images, items -> 1.0 where the judge names the target; `real`: real images of the
    target and their items (for attacks that learn from images), or None; `steps`, `guidance`:
    sampling settings of the evaluation."""
    base: ModelBundle
    erased: ModelBundle
    target: object
    items: list
    prompt: Callable
    seed: int
    base_images: torch.Tensor
    hits: Callable
    pairs: Callable | None = None
    real: Callable | None = None
    steps: int | None = None
    guidance: float | None = None
    progress: Callable | None = None


@dataclass
class Attacked:
    """The attack's outcome: one prompt per target item, the model that reads them, and a record."""
    bundle: ModelBundle
    prompts: list[str]
    info: dict = field(default_factory=dict)


@dataclass
class AttackConfig(Overridable):
    seed: int = 0

    limits = {"seed": SEED}


class Attack(ABC):
    name = ""
    access = ""          # what it needs: "white-box (erased model)", "black-box", ...
    Config = AttackConfig

    def __init__(self, bundle: ModelBundle | None = None, config: AttackConfig | None = None):
        self.config = config or self.Config()

    @abstractmethod
    def run(self, ctx: Context) -> Attacked:
        """The prompts (and model) that the evaluation generates the targets with."""

    def record(self, start: float, **extra) -> dict:
        return {"method": self.name, "access": self.access, "config": asdict(self.config),
                "seconds": round(time.time() - start, 1), **extra}


def make_attack(name: str, bundle: ModelBundle, **options) -> Attack:
    """Attack `name` with the model's declared settings for it (the `attack_settings` convention),
    then `options`, over the authors' defaults."""
    declared = dict(bundle.conventions.attack_settings.get(name, {})) if bundle is not None else {}
    return ATTACKS.create(name, bundle, **{**declared, **{k: v for k, v in options.items() if v is not None}})


# --- concept inversion ----------------------------------------------------------------------------

TRIGGER = "sks"


@dataclass
class ConceptInversionConfig(AttackConfig):
    steps: int = 800
    images: int = 40

    limits = {**AttackConfig.limits, "steps": AT_LEAST_ONE, "images": Limit(2)}


@register("concept-inversion")
class ConceptInversion(Attack):
    access = "white-box (gradients of the erased model) and real images of the concept"
    Config = ConceptInversionConfig

    def run(self, ctx: Context) -> Attacked:
        from ..mimic import mimic

        if ctx.real is None:
            raise ArtshieldError("concept-inversion needs real images of the erased concept")
        start, cfg = time.time(), self.config
        images, real_items = ctx.real(cfg.images, cfg.seed)
        swap = ctx.target.swap
        adapter = mimic(ctx.erased, list(images), [swap(i.caption, TRIGGER) for i in real_items], "textual-inversion",
                        steps=cfg.steps, seed=cfg.seed, trigger=TRIGGER, progress=ctx.progress)
        attacked = adapter.apply(ctx.erased.copy(unet=False, text=True))
        prompts = [adapter.prompt(swap(ctx.prompt(it), TRIGGER)) for it in ctx.items]
        return Attacked(attacked, prompts, self.record(start, real_images=len(real_items),
                                                       description="textual inversion of a new word on the erased "
                                                       "model, the word in the concept's place"))


# --- Ring-A-Bell ------------------------------------------------------------------------------------

@dataclass
class RingABellConfig(AttackConfig):
    eta: float = 3.0              # the concept vector's weight
    length: int = 16              # K: tokens the search places
    population: int = 200
    generations: int = 3000
    mutation: float = 0.25
    crossover: float = 0.5
    pairs: int = 30               # prompt pairs the concept vector averages

    limits = {**AttackConfig.limits, "eta": Limit(0), "length": AT_LEAST_ONE, "population": Limit(4),
              "generations": AT_LEAST_ONE, "mutation": FRACTION, "crossover": FRACTION, "pairs": AT_LEAST_ONE}


def word_ids(tokenizer) -> np.ndarray:
    """Token ids an attacker may type: the vocabulary without special tokens."""
    special = set(tokenizer.all_special_ids)
    return np.array([i for i in range(len(tokenizer)) if i not in special])


def word_mask(tokenizer, size: int) -> torch.Tensor:
    """A (size,) boolean mask over the vocabulary: True at the ids of word_ids."""
    mask = torch.zeros(size, dtype=torch.bool)
    mask[torch.as_tensor(word_ids(tokenizer))] = True
    return mask


def decode(tokenizer, ids) -> str:
    return tokenizer.decode([int(i) for i in ids], skip_special_tokens=True).strip()


def sequence_ids(tokenizer, rows: np.ndarray, device) -> torch.Tensor:
    """Token rows (N, K) as full input ids: start token, the K tokens, end token, padding."""
    length = tokenizer.model_max_length
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = np.full((len(rows), length), pad, dtype=np.int64)
    out[:, 0] = tokenizer.bos_token_id
    out[:, 1:1 + rows.shape[1]] = rows
    out[:, 1 + rows.shape[1]] = tokenizer.eos_token_id
    return torch.from_numpy(out).to(device)


def concept_vector(bundle: ModelBundle, pairs: list[tuple[str, str]]) -> torch.Tensor:
    """Mean over (with, without) prompt pairs of the difference of their text contexts."""
    with torch.no_grad():
        a = bundle.embed([p for p, _ in pairs]).float()
        b = bundle.embed([q for _, q in pairs]).float()
    return (a - b).mean(0)


def genetic_search(bundle: ModelBundle, goal: torch.Tensor, cfg: RingABellConfig, rng: np.random.Generator,
                   batch: int = 256) -> tuple[str, float, list[float]]:
    """Ring-A-Bell's prompt discovery: K tokens whose context is nearest `goal` in squared L2. Returns
    the prompt (the tokens decoded to text, as the authors save them), its distance and the best
    distance every 50 generations. The best row found so far is kept aside (the authors return the
    best of the last generation, which mutation may have touched)."""
    vocab = word_ids(bundle.tokenizer)
    k = min(cfg.length, bundle.tokenizer.model_max_length - 2)
    population = vocab[rng.integers(0, len(vocab), size=(cfg.population, k))].astype(np.int64)
    goal = goal.float()

    known: dict[bytes, float] = {}       # rows seen before (kept parents) are not encoded again

    def fitness(pop: np.ndarray) -> np.ndarray:
        fresh = list(dict.fromkeys(row.tobytes() for row in pop if row.tobytes() not in known))
        rows = np.frombuffer(b"".join(fresh), dtype=pop.dtype).reshape(-1, pop.shape[1]) if fresh else pop[:0]
        with torch.no_grad():
            for s in range(0, len(rows), batch):
                part = rows[s:s + batch]
                ctx = (bundle.embed([decode(bundle.tokenizer, row) for row in part]) if bundle.is_sdxl
                       else bundle.text_encoder(sequence_ids(bundle.tokenizer, part, bundle.device))[0])
                for row, value in zip(part, (ctx.float() - goal).pow(2).flatten(1).sum(1).cpu().numpy()):
                    known[row.tobytes()] = float(value)
        return np.array([known[row.tobytes()] for row in pop])

    best, best_row, trace = np.inf, population[0], []
    for generation in range(cfg.generations):
        score = fitness(population)
        order = np.argsort(score, kind="stable")
        if score[order[0]] < best:
            best, best_row = float(score[order[0]]), population[order[0]].copy()
        if generation % 50 == 0:
            trace.append(round(best, 3))
        parents = population[order[:max(2, len(population) // 2)]]
        if generation == cfg.generations - 1:
            break
        children = [parents]
        for i in range(len(parents)):
            if rng.random() < cfg.crossover:
                j = rng.integers(0, len(parents))
                cut = rng.integers(1, k + 1)
                children.append(np.concatenate([parents[i, :cut], parents[j, cut:]])[None])
                children.append(np.concatenate([parents[j, :cut], parents[i, cut:]])[None])
        population = np.concatenate(children).copy()
        mutate = rng.random(len(population)) < cfg.mutation
        where = rng.integers(0, k, size=len(population))
        population[mutate, where[mutate]] = vocab[rng.integers(0, len(vocab), size=int(mutate.sum()))]
    return decode(bundle.tokenizer, best_row), best, trace


_RING_CACHE: dict = {}


@register("ring-a-bell")
class RingABell(Attack):
    access = "black-box: the base model's text encoder only, never the erased model"
    Config = RingABellConfig

    def run(self, ctx: Context) -> Attacked:
        start, cfg = time.time(), self.config
        pairs = ctx.pairs(cfg.pairs, cfg.seed)
        if len(pairs) < 2:
            raise ArtshieldError(f"ring-a-bell needs prompt pairs with and without {ctx.target.name!r}; found "
                                 f"{len(pairs)}")
        vector = concept_vector(ctx.base, pairs)
        prompts, distances, traces = [], [], []
        for j, it in enumerate(ctx.items):
            text = ctx.prompt(it)
            key = (ctx.base.spec, text, tuple(sorted(asdict(cfg).items())), tuple(pairs), j)
            if key not in _RING_CACHE:
                with torch.no_grad():
                    goal = ctx.base.embed([text]).float()[0] + cfg.eta * vector
                rng = np.random.default_rng([cfg.seed, j])
                _RING_CACHE[key] = genetic_search(ctx.base, goal, cfg, rng)
            found, distance, trace = _RING_CACHE[key]
            prompts.append(found)
            distances.append(distance)
            traces.append(trace)
            if ctx.progress is not None:
                ctx.progress(1)
        return Attacked(ctx.erased, prompts, self.record(
            start, pairs=len(pairs), pair_example=list(pairs[0]), vector_norm=round(float(vector.norm()), 3),
            distances=[round(d, 3) for d in distances], trace_every_50=traces[0],
            description="concept vector from the base text encoder, genetic search for tokens near each target "
                        "prompt plus eta times the vector"))


# --- UnlearnDiffAtk ---------------------------------------------------------------------------------

@dataclass
class UnlearnDiffAtkConfig(AttackConfig):
    k: int = 3                    # tokens put before the prompt
    timesteps: int = 50           # visited in order, spread over [0, T)
    iterations: int = 40          # Adam steps at each timestep
    lr: float = 0.01
    weight_decay: float = 0.1

    limits = {**AttackConfig.limits, "k": AT_LEAST_ONE, "timesteps": AT_LEAST_ONE, "iterations": AT_LEAST_ONE,
              "lr": POSITIVE, "weight_decay": Limit(0)}


def simplex_projection(v: torch.Tensor) -> torch.Tensor:
    """Each row of v projected onto the probability simplex (Euclidean projection, sorting method)."""
    u, _ = torch.sort(v, dim=-1, descending=True)
    cumulative = u.cumsum(-1) - 1
    index = torch.arange(1, v.shape[-1] + 1, device=v.device, dtype=v.dtype)
    rho = ((u - cumulative / index) > 0).to(v.dtype).cumsum(-1).argmax(-1, keepdim=True)
    theta = cumulative.gather(-1, rho) / (rho + 1).to(v.dtype)
    return (v - theta).clamp(min=0)


class _StraightThrough(torch.autograd.Function):
    """A one-hot draw from each row's distribution; the gradient passes through, clipped to [-1, 1]
    (the authors' STERandSelect)."""

    @staticmethod
    def forward(ctx, probs, generator):
        pick = torch.multinomial(probs.clamp(min=0) + 1e-12, 1, generator=generator).squeeze(-1)
        return torch.nn.functional.one_hot(pick, probs.shape[-1]).to(probs.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad.clamp(-1, 1), None


def text_model_of(encoder):
    return getattr(encoder, "text_model", encoder)


def prefix_ids(bundle: ModelBundle, prompt: str, k: int) -> torch.Tensor:
    """Token ids of `prompt` with k placeholder tokens right after the start token, padded (the
    prompt's last words give way if it is too long), shape (1, L)."""
    tokenizer = bundle.tokenizer
    length = tokenizer.model_max_length
    words = tokenizer(prompt, truncation=True, max_length=length).input_ids[1:-1][:max(0, length - 2 - k)]
    ids = [tokenizer.bos_token_id] + [int(word_ids(tokenizer)[0])] * k + words + [tokenizer.eos_token_id]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return torch.tensor([ids + [pad] * (length - len(ids))], device=bundle.device)


def prefixed_context(bundle: ModelBundle, ids: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
    """The context of `ids` (from prefix_ids) with its k placeholders replaced by `prefix`, rows over
    the vocabulary (one-hot or soft, (k, V)): differentiable in `prefix`."""
    table = text_model_of(bundle.text_encoder).embeddings.token_embedding
    return context_with_rows(bundle.text_encoder, ids, prefix.to(table.weight.dtype) @ table.weight)


def context_with_rows(encoder, ids: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """`encoder`'s output for `ids` (sequences from prefix_ids) with the token embeddings of their k
    placeholders replaced by `rows`: (k, width), the same for every sequence, or (n, k, width), one set
    per sequence. Free vectors in the token-embedding space, differentiable."""
    k = rows.shape[-2]
    table = text_model_of(encoder).embeddings.token_embedding

    def swap(module, args, out):
        out = out.clone()
        out[:, 1:1 + k] = rows.to(out.dtype)      # rows (k, width) for every sequence, or (n, k, width)
        return out

    handle = table.register_forward_hook(swap)
    try:
        return encoder(ids)[0]
    finally:
        handle.remove()


@contextlib.contextmanager
def frozen(module: torch.nn.Module):
    """`module` with no parameter asking for gradients, its own flags put back afterwards."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


def try_prefix(ctx: Context, model: ModelBundle, j: int, item, prefix) -> tuple[str, bool]:
    """Target j's prompt with the tokens `prefix` before it, generated from its seed as the
    evaluation does: the prompt, and whether the judge names the target in the image."""
    from ..generate import generate

    chosen = f"{decode(model.tokenizer, prefix)} {ctx.prompt(item)}".strip()
    with torch.no_grad():
        image = generate(model, [chosen], seed=ctx.seed + j, steps=ctx.steps, guidance=ctx.guidance)
    return chosen, bool(ctx.hits(image, [item])[0] > 0)


def first_success(ctx: Context, model: ModelBundle, proposals) -> tuple[list[str], list[int]]:
    """For each target j, the prefixes `proposals(j, item)` yields, tried in turn until the judge names
    the target: the last prompt tried for each target, and how many were tried."""
    prompts, tried = [], []
    for j, it in enumerate(ctx.items):
        chosen, attempts = ctx.prompt(it), 0
        for prefix in proposals(j, it):
            chosen, hit = try_prefix(ctx, model, j, it, prefix)
            attempts += 1
            if hit:
                break
        prompts.append(chosen)
        tried.append(attempts)
        if ctx.progress is not None:
            ctx.progress(1)
    return prompts, tried


@register("unlearndiffatk")
class UnlearnDiffAtk(Attack):
    access = "white-box: gradients of the erased model (no base model, no classifier in the loss)"
    Config = UnlearnDiffAtkConfig

    def run(self, ctx: Context) -> Attacked:
        from ..models.diffusion import diffusion_target

        if ctx.erased.is_sdxl:
            raise ArtshieldError("unlearndiffatk supports one text encoder (Stable Diffusion 1.x, 2.x), not SDXL yet")
        start, cfg, model = time.time(), self.config, ctx.erased
        allowed = word_mask(model.tokenizer, len(model.tokenizer))
        total = model.scheduler.config.num_train_timesteps
        schedule = [int(t) for t in np.linspace(0, total, cfg.timesteps, endpoint=False) + total // cfg.timesteps // 2]
        model.text_encoder.requires_grad_(False)
        model.unet.requires_grad_(False)

        def optimised(j, it):
            """After each timestep's iterations, the likeliest tokens."""
            ids = prefix_ids(model, ctx.prompt(it), cfg.k)
            gen = torch.Generator("cpu").manual_seed(cfg.seed * 100_003 + j)
            with torch.no_grad():
                z0 = model.encode(ctx.base_images[j:j + 1].to(model.device))
            probs = torch.where(allowed, 1.0 / int(allowed.sum()), 0.0).repeat(cfg.k, 1).to(model.device)
            probs.requires_grad_(True)
            opt = torch.optim.Adam([probs], lr=cfg.lr, weight_decay=cfg.weight_decay)
            for t in schedule:
                tt = torch.tensor([t], device=model.device)
                for _ in range(cfg.iterations):
                    noise = torch.randn(z0.shape, generator=gen).to(model.device, z0.dtype)
                    noisy = model.scheduler.add_noise(z0, noise, tt)
                    onehot = _StraightThrough.apply(probs, gen)
                    context = prefixed_context(model, ids, onehot)
                    pred = model.unet(noisy, tt, encoder_hidden_states=context).sample
                    loss = (pred.float() - diffusion_target(model, z0, noise, tt).float()).pow(2).mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    with torch.no_grad():
                        probs.data = simplex_projection(torch.where(allowed.to(probs.device), probs, 0.0))
                yield probs.detach().argmax(-1).cpu()

        prompts, tried = first_success(ctx, model, optimised)
        return Attacked(model, prompts, self.record(
            start, timesteps_tried=tried, description="prefix tokens optimised on the erased model's denoising "
            "loss for the base model's image of each prompt; stops at the judge's first success"))


# --- P4D ----------------------------------------------------------------------------------------------

@dataclass
class P4DConfig(AttackConfig):
    length: int = 16              # tokens optimised; they are the whole prompt (P4D-N)
    iterations: int = 3000
    lr: float = 0.1
    weight_decay: float = 0.1
    eval_every: int = 50          # steps between generations that choose the prompt kept
    batch: int = 1                # targets optimised side by side (the authors': 1); a speed setting

    limits = {**AttackConfig.limits, "length": AT_LEAST_ONE, "iterations": AT_LEAST_ONE, "lr": POSITIVE,
              "weight_decay": Limit(0), "eval_every": AT_LEAST_ONE, "batch": AT_LEAST_ONE}


def nearest_tokens(embeds: torch.Tensor, table: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """For each row of `embeds`, the allowed vocabulary id whose embedding is nearest in cosine."""
    unit = torch.nn.functional.normalize(table.float(), dim=-1)
    scores = torch.nn.functional.normalize(embeds.float(), dim=-1) @ unit.T
    return scores.masked_fill(~allowed.to(scores.device), float("-inf")).argmax(-1)


@register("p4d")
class P4D(Attack):
    access = "white-box: gradients of the erased model and the base model's predictions"
    Config = P4DConfig

    def run(self, ctx: Context) -> Attacked:
        from ..generate import generate
        from ..metrics.image import lpips

        if ctx.erased.is_sdxl:
            raise ArtshieldError("p4d supports one text encoder (Stable Diffusion 1.x, 2.x), not SDXL yet")
        start, cfg, model, base = time.time(), self.config, ctx.erased, ctx.base
        k = min(cfg.length, model.tokenizer.model_max_length - 2)
        table = text_model_of(model.text_encoder).embeddings.token_embedding.weight.detach()
        vocab = torch.as_tensor(word_ids(model.tokenizer))
        allowed = word_mask(model.tokenizer, table.shape[0])
        total = base.scheduler.config.num_train_timesteps
        prompts, distances, traces, changed = [], [], [], []
        with contextlib.ExitStack() as stack:
            for part in (model.unet, model.text_encoder, base.unet):
                stack.enter_context(frozen(part))
            for j0 in range(0, len(ctx.items), cfg.batch):       # targets side by side, each its own tokens
                items = ctx.items[j0:j0 + cfg.batch]
                n = len(items)
                gen = torch.Generator("cpu").manual_seed(cfg.seed * 100_003 + j0)
                ids = prefix_ids(model, "", k).expand(n, -1)
                with torch.no_grad():
                    z0 = model.encode(ctx.base_images[j0:j0 + n].to(model.device))
                    wanted = base.embed([ctx.prompt(it) for it in items])
                start_ids = vocab[torch.randint(0, len(vocab), (n, k), generator=gen)]
                free = table[start_ids.to(table.device)].clone().float().requires_grad_(True)
                opt = torch.optim.AdamW([free], lr=cfg.lr, weight_decay=cfg.weight_decay)
                best, best_text, trace = [float("inf")] * n, [""] * n, [[] for _ in range(n)]
                for step in range(cfg.iterations):
                    chosen = nearest_tokens(free.detach(), table, allowed)
                    rows = table[chosen].clone().float().requires_grad_(True)
                    noise = torch.randn(z0.shape, generator=gen).to(model.device, z0.dtype)
                    t = torch.randint(0, total, (n,), generator=gen).to(model.device)
                    noisy = base.scheduler.add_noise(z0, noise, t)
                    with torch.no_grad():
                        want = base.unet(noisy, t, encoder_hidden_states=wanted).sample.float()
                    pred = model.unet(noisy, t, encoder_hidden_states=context_with_rows(model.text_encoder, ids, rows))
                    # each target's own mean squared error, summed: every row gets the gradient it would alone
                    loss = (pred.sample.float() - want).pow(2).flatten(1).mean(1).sum()
                    free.grad = torch.autograd.grad(loss, rows)[0]
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                    if step % cfg.eval_every == 0 or step == cfg.iterations - 1:
                        texts = [decode(model.tokenizer, row) for row in chosen.cpu()]
                        with torch.no_grad():
                            images = generate(model, texts, seed=ctx.seed + j0, steps=ctx.steps, guidance=ctx.guidance)
                        for i in range(n):
                            distance = lpips(images[i], ctx.base_images[j0 + i])
                            if distance < best[i]:
                                best[i], best_text[i] = distance, texts[i]
                            trace[i].append([step, round(best[i], 4)])
                prompts += best_text
                distances += [round(b, 4) for b in best]
                traces += trace
                changed += [int(c) for c in (chosen.cpu() != start_ids).sum(1)]
                if ctx.progress is not None:
                    ctx.progress(n)
        return Attacked(model, prompts, self.record(
            start, lpips_to_base_image=distances, best_lpips_by_step=traces, tokens_changed=changed,
            description="P4D-N: tokens optimised so that the erased model predicts the base model's noise for the "
                        "prompt; the generation nearest the base image (LPIPS) is kept"))


# --- random prefix: the control for UnlearnDiffAtk's tries ------------------------------------------

@dataclass
class RandomPrefixConfig(AttackConfig):
    k: int = 3                    # tokens put before the prompt (UnlearnDiffAtk's)
    tries: int = 50               # prompts tried until the judge names the target (UnlearnDiffAtk's timesteps)

    limits = {**AttackConfig.limits, "k": AT_LEAST_ONE, "tries": AT_LEAST_ONE}


@register("random-prefix")
class RandomPrefix(Attack):
    """k random tokens before the prompt, up to `tries` draws, stopping at the judge's first success
    (the `random` attacker of Diffusion-MU-Attack, which its nudity config runs with k 5 and 40
    tries). Its defaults are UnlearnDiffAtk's k and number of timesteps, so it is UnlearnDiffAtk
    without the optimisation: what the optimisation earns is what UnlearnDiffAtk adds over this row."""
    access = "black-box: prompts and the judge's verdict only"
    Config = RandomPrefixConfig

    def run(self, ctx: Context) -> Attacked:
        start, cfg, model = time.time(), self.config, ctx.erased
        vocab = word_ids(model.tokenizer)

        def drawn(j, it):
            rng = np.random.default_rng([cfg.seed, j])
            for _ in range(cfg.tries):
                yield vocab[rng.integers(0, len(vocab), size=cfg.k)]

        prompts, tried = first_success(ctx, model, drawn)
        return Attacked(model, prompts, self.record(start, tries_used=tried, description="random prefix tokens, "
                                                    "tried until the judge's first success"))
