"""Does a protection hold? One experiment: artists x conditions x mimicry methods x seeds.

A condition is what the mimic gets: the artist's clean images, or the images protected by a
method at a budget, optionally passed through a purifier first. For every cell the mimic
fine-tunes on those images (same captions, same settings) and generates from the same prompts with
the same seeds; the judge then says whether the generations are in the artist's style.

    mimicry_success   fraction of generations the judge names as the artist's style
    domain_fid        judge-feature FID of the generations against the artist's reference set
    domain_kid        judge-feature KID (unbiased MMD^2, cubic kernel) against the same set
    precision/recall  k-NN manifold precision and recall in judge features (k = 3)
    protection_*      how visible the protection is: PSNR / SSIM / LPIPS of protected vs clean
    purifier_*        the same for purified vs protected

Artists are held-out themes of the corpus (never seen by mini): the mimic trains on the theme's
fine-tuning images, prompts are the theme's reference captions with the trigger in place of the
name, and the reference images are the real distribution. The captions are shuffled once with a
fixed seed (`reference_split`): the first `tuning_prompts` are the tuning split, on which settings
(artist, learning rate, steps) are chosen (scripts/probe_mimicry.py), and the bench never scores
them; it scores the next `prompts_per_artist`, each generated `generations_per_prompt` times with
distinct seeds. (The corpus lists each theme's common concepts first and its application icons
after; taking the first captions as the tuning split made it easier than the scored one: on moka
the same LoRA reached 0.81 on the first 32 captions and 0.45 on the next 64.)
Control cells (clean images through each purifier) show what a purifier does to mimicry by itself.
Each cell keeps its per-generation judge outcomes; bench/stats.py turns them into intervals and
verdicts. Finished cells are stored in OUT/cells/ and the protected and purified images in
OUT/conditions/; both are reused, so an interrupted run goes on where it stopped (OUT/protocol.json
guards against mixing cells of different settings). A cell that fails is reported in results.json
("failed") and the others still run. Several processes may run the same preset on one OUT at once:
each cell is claimed with a lock file (a killed worker's lock is taken over), so they share the work.

A protection's purified cells are not run once its clean and unpurified cells (all seeds) decide
its verdict alone: "does not protect" (or clean mimicry too weak to measure anything). No purifier
can change that verdict, and on the standard preset this saves most of the cost (a LoRA per cell).
They are listed in results.json as "pruned"; `Preset.prune = False` runs the full grid anyway, and
`Preset.full_rows` names rows ("robust@16") whose worst case over every purifier is measured anyway.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .. import corpus
from ..generate import generate
from ..io import grid, write_image, write_json
from ..metrics.distribution import frechet_distance, kernel_distance
from ..metrics.image import visibility
from ..metrics.judge import Judge
from ..metrics.precision_recall import precision_recall
from ..mimic import mimic
from ..models import ModelBundle
from ..protect.transforms import VERSION as EOT_VERSION
from ..protect import protect
from ..purify import purify

TRIGGER = "sks"


@dataclass
class Preset:
    artists: list[str]
    protections: list[str]
    budgets: list[float]
    purifiers: list[str]
    mimicry: list[str]
    seeds: list[int]
    images_per_artist: int = 30
    prompts_per_artist: int = 32       # scored captions, after the tuning split
    tuning_prompts: int = 32           # the first captions: for choosing settings, never scored
    generations_per_prompt: int = 1
    controls: bool = True              # clean images through each purifier
    prune: bool = True                 # skip purified cells of a protection its unpurified cells decide
    full_rows: list = field(default_factory=list)   # "protection@budget" rows never pruned: their worst
                                                    # case is measured over every purifier all the same
    mimicry_steps: dict = field(default_factory=lambda: {"lora": 500, "dreambooth": 300,
                                                          "textual-inversion": 300, "hypernetwork": 300})
    mimicry_lr: dict = field(default_factory=dict)          # method -> rate (default: the model's convention)
    mimicry_batch: dict = field(default_factory=dict)       # method -> batch size (default 8)
    mimicry_options: dict = field(default_factory=dict)     # method -> its other options (rank, lr_schedule, ...)
    # how the mimic's generations are sampled: generate()'s sampler, steps and autocast (default: DDIM
    # at the model's steps, in the model's precision)
    sampling: dict = field(default_factory=dict)
    protect_options: dict = field(default_factory=dict)     # protection -> options (steps ...; "method": a
                                                            # variant's method, e.g. advdm-eot -> advdm)
    purify_options: dict = field(default_factory=dict)      # purifier -> options
    # generation i of training seed s uses noise seed noise_base(s) + i: s x NOISE_STRIDE, so that no two
    # training seeds share a noise seed; seeds below `distinct_noise_from` keep the first scheme, base s
    # (seeds 0, 1, 2 then shared 126 of their 128 noise seeds, shifted by one): the committed standard run
    distinct_noise_from: int = 0
    # Holm's family: "run" (every relative-mimicry test of the run is one family) or "artist-mimicry"
    # (each artist x mimic block is a family of its own: an experiment the size of the standard run,
    # read on its own; family-wise 5 % holds within each block, not over the blocks together)
    holm_family: str = "run"


HOLM_FAMILIES = ("run", "artist-mimicry")


def family_of(preset: "Preset", artist: str, mimicry: str) -> tuple:
    """The Holm family a test of this artist and mimic belongs to under the preset."""
    if preset.holm_family not in HOLM_FAMILIES:
        raise ValueError(f"holm_family must be one of {HOLM_FAMILIES}, not {preset.holm_family!r}")
    return () if preset.holm_family == "run" else (artist, mimicry)


def holm_by_family(tests: list, family, pvalue) -> list[float]:
    """Holm's levels for `tests`, computed within each family (family(test) -> key), in the tests' order."""
    from . import stats

    levels = [0.0] * len(tests)
    groups: dict = {}
    for i, t in enumerate(tests):
        groups.setdefault(family(t), []).append(i)
    for idx in groups.values():
        for i, lev in zip(idx, stats.holm_levels([pvalue(tests[i]) for i in idx])):
            levels[i] = lev
    return levels


def _denoiser(name: str) -> dict:
    """The denoiser purifier's options in a preset: a shipped weights file, bound by its digest (a
    retrained file is another setting: the folder's cells made with the old one are not reused)."""
    from ..purify.denoiser import SHIPPED

    path = SHIPPED / f"{name}.safetensors"
    return {"weights": name, **({"sha256": hashlib.sha256(path.read_bytes()).hexdigest()} if path.is_file() else {})}


PRESETS = {
    # gartoon: of the three held-out artists, the one a short LoRA learns on mini, chosen on the
    # tuning split (docs/results/tuning/lora.json: LoRA 500 steps at 3e-3 -> gartoon 0.70, moka 0.45
    # (0.52 at 1000 steps), sugar 0.06 style accuracy)
    # quick: a smoke test of the whole path (4 cells, one seed, 32 generations): its intervals are
    # too wide to support a verdict other than "inconclusive" or "does not protect"
    "quick": Preset(artists=["gartoon"], protections=["advdm"], budgets=[16], purifiers=["jpeg"], mimicry=["lora"],
                    seeds=[0], mimicry_lr={"lora": 3e-3}),
    # standard: the committed evidence. Every protection at 8 and 16/255, the cheap purifiers, DiffPure
    # and noisy upscaling (mini's own x4 upscaler), LoRA, 5 training seeds (3 at first: with 3, the
    # intervals of #27's analysis decided 2 of 20 rows), 64 scored captions x 2 generations = 128 per
    # cell, control cells; 840 cells before pruning. Only gartoon (see above). LoRA 500 steps
    # at 3e-3: 0.70 on the tuning split; 800 steps reach 0.78 at 1.6x the training time per cell.
    # robust (protect/robust.py) never sees diffpure or noisy-upscale: the held-out purifiers; advdm-eot and
    # mist-eot are the engine's cheap robustness lever (EOT over jpeg, blur, resize) at the same budgets
    "standard": Preset(artists=["gartoon"], protections=["advdm", "mist", "sds", "sds-minus", "photoguard", "glaze",
                                                      "aspl", "robust", "advdm-eot", "mist-eot"], budgets=[8, 16],
                       purifiers=["jpeg", "gaussian-blur", "gaussian-noise", "median", "bilateral", "diffpure",
                                  "noisy-upscale"], mimicry=["lora"], seeds=[0, 1, 2, 3, 4], prompts_per_artist=64,
                       generations_per_prompt=2, mimicry_lr={"lora": 3e-3},
                       # 25 sampling steps instead of diffusers' 75: a third of the time for 45 purified sets
                       # (2.4 s against 7.2 s per image on one CPU thread, with the first trained upscaler)
                       purify_options={"noisy-upscale": {"upscaler_steps": 25}},
                       # robust at 16/255 is #18's goal: its worst case is measured over every purifier,
                       # held-out ones included, even though its unpurified cells already decide its verdict
                       full_rows=["robust@16"],
                       # seeds 0-2 were generated with noise seeds s + i (shared, shifted by one); seeds
                       # added later get noise of their own
                       distinct_noise_from=3,
                       protect_options={"advdm-eot": {"method": "advdm", "eot": ["jpeg", "blur", "resize"]},
                                        "mist-eot": {"method": "mist", "eot": ["jpeg", "blur", "resize"]}}),
    # mimics: #28's run. Every protection at 8 and 16/255 and the standard purifiers against the mimics on
    # two artists, each mimic at the cheapest setting that reaches clean mimicry 0.4 on every training seed
    # of both artists on the tuning split (docs/results/tuning/*-grid.json): cosine schedules with warm-up,
    # Min-SNR-5 weighting for LoRA and the hypernetwork, whose MLPs leave guidance's unconditional branch
    # to the base model (the webui's way, rewriting it too, is unstable between seeds on mini). Textual
    # inversion is not in it: it learns no held-out style on mini at any setting tried, while it does learn
    # a style mini knows (README; the protections are tested against it there). A mimic can join later (a
    # folder's stored cells bind only the settings of the mimics they used). One generation per scored
    # caption (a caption's two generations were 0.6-correlated: little information for twice the sampling)
    # and DPM-Solver++ at 10 steps in bf16 (docs/results/tuning/sampling.json): a LoRA cell costs about a
    # third of a standard one (docs/results/cell-cost.json).
    # ace and metacloak (the protections issue) joined in session 18, before any of their cells ran: the
    # protocol binds settings, not the list of rows, so the stored cells stay valid; each block's Holm
    # family grows from 20 tests to 24. MetaCloak at a mini scale (600 PGD steps, one trial over a pool
    # of 6 states from 300 DreamBooth steps; docs/results/tuning/metacloak-lora.json), ACE at its own.
    "mimics": Preset(artists=["gartoon", "moka"],
                     protections=["advdm", "mist", "sds", "sds-minus", "photoguard", "glaze", "aspl", "robust",
                                  "advdm-eot", "mist-eot", "ace", "metacloak"], budgets=[8, 16],
                     purifiers=["jpeg", "gaussian-blur", "gaussian-noise", "median", "bilateral", "diffpure",
                                "noisy-upscale", "denoiser"], mimicry=["dreambooth", "lora", "hypernetwork"],
                     seeds=[0, 1, 2, 3, 4],
                     prompts_per_artist=64, generations_per_prompt=1,
                     mimicry_steps={"lora": 200, "dreambooth": 150, "hypernetwork": 400},
                     mimicry_lr={"lora": 1e-2, "dreambooth": 3e-4, "hypernetwork": 1e-3},
                     mimicry_options={"lora": {"lr_schedule": "cosine", "warmup_steps": 15, "snr_gamma": 5.0},
                                      "dreambooth": {"lr_schedule": "cosine", "warmup_steps": 15},
                                      "hypernetwork": {"lr_schedule": "cosine", "warmup_steps": 15, "snr_gamma": 5.0,
                                                       "unconditional": False}},
                     sampling={"sampler": "dpm-solver++", "steps": 10, "autocast": "bf16"},
                     purify_options={"noisy-upscale": {"upscaler_steps": 25}, "denoiser": _denoiser("robust-16")},
                     protect_options={"advdm-eot": {"method": "advdm", "eot": ["jpeg", "blur", "resize"]},
                                      "mist-eot": {"method": "mist", "eot": ["jpeg", "blur", "resize"]},
                                      "metacloak": {"steps": 600, "trials": 1, "pool_steps": 300, "interval": 60}},
                     # 5 training seeds and Holm within each artist x mimic block: with 3 seeds (about 2
                     # df) and Holm over the whole run (160 tests and more), the first 164 cells' adjusted
                     # intervals were [0, inf] for 37 of 40 rows: the run could not decide. Declared before
                     # seeds 3-4 and the other blocks were run; README says so
                     holm_family="artist-mimicry"),
    # smoke: seconds per cell, for tests and the Ray scaling measurement (bench/scale.py); it measures nothing
    "smoke": Preset(artists=["gartoon"], protections=["advdm"], budgets=[16], purifiers=["jpeg"], mimicry=["lora"],
                    seeds=[0, 1], images_per_artist=6, prompts_per_artist=4, generations_per_prompt=1,
                    mimicry_steps={"lora": 20}, mimicry_lr={"lora": 3e-3}, protect_options={"advdm": {"steps": 5}},
                    prune=False),
    "full": Preset(artists=corpus.themes(heldout=True) if corpus.CORPUS_DIR.exists() else [],
                   protections=["advdm", "mist", "sds", "sds-minus", "photoguard", "glaze", "aspl"], budgets=[8, 16],
                   purifiers=["bilateral", "jpeg", "gaussian-noise", "gaussian-blur", "median", "noisy-redraw",
                              "diffpure", "noisy-upscale", "impress"],
                   mimicry=["lora", "textual-inversion", "dreambooth", "hypernetwork"], seeds=[0],
                   purify_options={}),      # IMPRESS at its paper's 3000 iterations
}


# adaptive: the adaptive attack on robust (the protections issue), a part of the mimics run computed
# first: robust@16 through a denoiser trained on robust's own outputs for icons of mini's training
# themes (bench/adaptive.py, docs/results/adaptive/), and the same denoiser on the clean images (the
# control), against LoRA and DreamBooth on gartoon. Its cells are cells of the mimics run (same
# settings: it may share the mimics folder) and robust@16 is a full row here, so they run although
# robust's unpurified cells already say it does not protect.
PRESETS["adaptive"] = replace(PRESETS["mimics"], artists=["gartoon"], protections=["robust"], budgets=[16],
                              purifiers=["denoiser"], mimicry=["lora", "dreambooth"], full_rows=["robust@16"])


NOISE_STRIDE = 1_000_000


def noise_base(preset: "Preset", seed: int) -> int:
    """The first noise seed of training seed `seed`'s generations (see Preset.distinct_noise_from)."""
    return seed if seed < preset.distinct_noise_from else seed * NOISE_STRIDE


@dataclass(frozen=True)
class Cell:
    artist: str
    protection: str      # "none" or a method
    budget: float        # 0 for "none"
    purifier: str        # "none" or a purifier
    mimicry: str
    seed: int

    @property
    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return f"{self.artist}-{self.protection}-{self.budget:g}-{self.purifier}-{self.mimicry}-{self.seed}-" \
               + hashlib.sha256(text.encode()).hexdigest()[:8]

    @property
    def condition(self) -> str:
        if self.protection == "none":
            return "clean" if self.purifier == "none" else f"clean + {self.purifier}"
        label = f"{self.protection}@{self.budget:g}"
        return label if self.purifier == "none" else f"{label} + {self.purifier}"


def cells(preset: Preset) -> list[Cell]:
    """Every cell, purifier by purifier: first clean and every protection unpurified (all seeds) for
    every artist and mimic, then the same through the first purifier, and so on. A partial run thus
    answers the first question ("does the protection hold at all?") for every method, artist and
    mimic before any purification."""
    out = []
    for q in ["none", *preset.purifiers]:
        for artist in preset.artists:
            for m in preset.mimicry:
                if q == "none" or preset.controls:
                    out.extend(Cell(artist, "none", 0, q, m, seed) for seed in preset.seeds)
                for p in preset.protections:
                    for b in preset.budgets:
                        out.extend(Cell(artist, p, float(b), q, m, seed) for seed in preset.seeds)
    return out


@dataclass
class ArtistData:
    images: list[torch.Tensor]
    captions: list[str]
    prompts: list[str]
    reference: torch.Tensor


SPLIT_SEED = 0


def reference_split(artist: str, tuning: int, scored: int) -> tuple[list, list]:
    """The artist's reference items in a fixed shuffled order, cut into the tuning split (the first
    `tuning`) and the scored split (the next `scored`); the two never overlap."""
    reference = corpus.items(split="reference", theme=artist)
    if len(reference) < tuning + scored:
        raise ValueError(f"artist {artist!r} has {len(reference)} reference captions: not enough for "
                         f"{tuning} tuning and {scored} scored prompts")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(reference))
    shuffled = [reference[i] for i in order]
    return shuffled[:tuning], shuffled[tuning:tuning + scored]


def trigger_caption(caption: str, artist: str) -> str:
    return caption.replace(f"{artist} style", f"{TRIGGER} style")


def artist_data(artist: str, preset: Preset) -> ArtistData:
    if artist not in corpus.themes(heldout=True):
        raise ValueError(f"artist {artist!r} is not a held-out theme of the corpus ({', '.join(corpus.themes(True))})")
    finetune = corpus.items(split="finetune", theme=artist)[:preset.images_per_artist]
    reference = corpus.items(split="reference", theme=artist)
    _, scored = reference_split(artist, preset.tuning_prompts, preset.prompts_per_artist)
    swap = (lambda c: trigger_caption(c, artist))
    return ArtistData(list(corpus.load_images(finetune, 64)), [swap(i.caption) for i in finetune],
                      [swap(i.caption) for i in scored], corpus.load_images(reference, 64))


class Runner:
    """Runs the cells of a preset, reusing finished ones from OUT/cells/."""

    def __init__(self, bundle: ModelBundle, judge: Judge, preset: Preset, out: Path, log=print,
                 artists: dict[str, ArtistData] | None = None):
        """`artists`: data of artists that are not corpus themes (a user's own images), by name."""
        self.bundle, self.judge, self.preset, self.out, self.log = bundle, judge, preset, Path(out), log
        self.data: dict[str, ArtistData] = dict(artists or {})
        self.reference_features: dict[str, np.ndarray] = {}    # the judge's features of each artist's references
        self.conditions: dict[tuple, tuple[list[torch.Tensor], dict]] = {}
        self.failed: list[dict] = []      # cells that raised: reported, the others still run
        self.elsewhere: list[str] = []    # cells another worker on OUT was computing
        self.decisions: dict[tuple, str] = {}   # a row's decision from its finished unpurified cells
        (self.out / "cells").mkdir(parents=True, exist_ok=True)

    def cell_path(self, cell: Cell) -> Path:
        return self.out / "cells" / f"{cell.key}.json"

    def protocol(self) -> dict:
        """What makes cells comparable: a cell stored under other settings must not be reused."""
        p = self.preset
        return {"images_per_artist": p.images_per_artist, "prompts_per_artist": p.prompts_per_artist,
                "tuning_prompts": p.tuning_prompts, "split": f"shuffled, seed {SPLIT_SEED}",
                "generations_per_prompt": p.generations_per_prompt,
                "mimicry_steps": p.mimicry_steps, "mimicry_lr": p.mimicry_lr, "protect_options": p.protect_options,
                "purify_options": p.purify_options, "distinct_noise_from": p.distinct_noise_from,
                "mimicry_batch": p.mimicry_batch, "sampling": p.sampling, "mimicry_options": p.mimicry_options,
                # a judge other than the icon judge's style head binds the folder's cells to it (a folder
                # written before there was a choice has no key: the icon judge)
                **({"judge": self.judge_id()} if self.judge_id() else {})}

    def judge_id(self) -> dict | None:
        """None for the icon judge's style head; else the judge's name and its weights' hash."""
        if isinstance(self.judge, Judge) or not hasattr(self.judge, "describe"):
            return None
        weights = getattr(self.judge, "weights", None)
        return {"name": self.judge.describe()["judge"], "sha256": _cached_hash(Path(weights)) if weights else None}

    def check_protocol(self) -> None:
        """Refuse an OUT whose stored cells were made under other settings; record ours. Options of
        a protection or purifier the stored protocol does not name may be added (a new row)."""
        stored = self.out / "protocol.json"
        if stored.exists() and not compatible(self.stored_protocol(), json.loads(json.dumps(self.protocol())),
                                              self.stored_mimics()):
            raise ValueError(f"{self.out} holds cells made with other settings ({stored}); use a new folder")
        write_json(self.protocol(), stored)

    def stored_mimics(self) -> set:
        """The mimics of the cells stored in OUT/cells/."""
        return {json.loads(p.read_text()).get("mimicry") for p in (self.out / "cells").glob("*.json")}

    def stored_protocol(self) -> dict:
        """OUT/protocol.json, completed where it predates a setting: one written before noise seeds
        were distinct names no scheme (its cells used base s, which is the current scheme's for
        every seed below distinct_noise_from); one written before the mimic's batch size and the
        sampling were settings used their defaults."""
        stored = json.loads((self.out / "protocol.json").read_text())
        if "distinct_noise_from" not in stored:
            seeds = [json.loads(p.read_text()).get("seed", 0) for p in (self.out / "cells").glob("*.json")]
            k = self.preset.distinct_noise_from
            stored["distinct_noise_from"] = k if all(s < k for s in seeds) else "base s for every seed"
        for key in ("mimicry_batch", "sampling", "mimicry_options"):   # runs from before these settings: defaults
            stored.setdefault(key, {})
        return stored

    def run(self) -> list[dict]:
        self.check_protocol()
        todo = cells(self.preset)
        start, done_now = time.time(), 0
        self.failed, self.elsewhere = [], []
        queue, deferred = list(enumerate(todo)), set()
        while queue:
            k, cell = queue.pop(0)
            path = self.cell_path(cell)
            tag = f"[{k + 1}/{len(todo)}] {cell.artist} {cell.condition} {cell.mimicry}"
            if path.exists():
                self.log(f"{tag}: reused")
                continue
            if self.prunable(cell):
                decided = self.decided(cell)
                if decided is None and k not in deferred:
                    deferred.add(k)              # its unpurified cells are still being computed: later
                    queue.append((k, cell))
                    continue
                if decided:
                    self.log(f"{tag}: not run ({decided})")
                    continue
            lock = path.with_suffix(".lock")
            if not _claim(lock):                   # another worker on this folder is computing it
                self.elsewhere.append(cell.condition)
                self.log(f"{tag}: being computed by another worker ({lock.read_text(errors='replace').strip()})")
                continue
            t0 = time.time()
            try:
                record = self.run_cell(cell)
                record["seconds"] = round(time.time() - t0, 1)
                write_json(record, path)
            except (ValueError, RuntimeError, OSError) as e:       # this cell only; the others go on
                self.failed.append({"cell": asdict(cell), "condition": cell.condition,
                                    "error": f"{cell.key}: {type(e).__name__}: {e}"})
                self.log(f"{tag}: FAILED ({e})")
                continue
            finally:
                lock.unlink(missing_ok=True)
            done_now += 1
            eta = (time.time() - start) / done_now * len(queue)
            self.log(f"{tag}: mimicry success {record['mimicry_success']:.3f} ({record['seconds']:.0f}s; "
                     f"at most {eta / 60:.1f} min left for this worker)")
        # every finished cell, including those other workers finished meanwhile
        return [json.loads(self.cell_path(c).read_text()) for c in todo if self.cell_path(c).exists()]

    def prunable(self, cell: Cell) -> bool:
        """A purified cell of a protection, under a preset that prunes, outside its full rows."""
        return (self.preset.prune and cell.protection != "none" and cell.purifier != "none"
                and f"{cell.protection}@{cell.budget:g}" not in self.preset.full_rows)

    def decided(self, cell: Cell) -> str | None:
        """For a purified cell of a protection: the verdict its clean and unpurified cells (every seed)
        reach alone when no purified cell can change it (stats.decided_without_purifiers), "" when
        they do not, None when some of those cells are not finished yet (or failed)."""
        from .stats import decided_without_purifiers

        row = (cell.artist, cell.protection, cell.budget, cell.mimicry)
        if row in self.decisions:
            return self.decisions[row]
        base = [Cell(cell.artist, "none", 0, "none", cell.mimicry, s) for s in self.preset.seeds]
        base += [Cell(cell.artist, cell.protection, cell.budget, "none", cell.mimicry, s) for s in self.preset.seeds]
        paths = [self.cell_path(c) for c in base]
        if not all(p.exists() for p in paths):
            return None
        records = [json.loads(p.read_text()) for p in paths]
        n, per = len(self.preset.seeds), self.preset.generations_per_prompt
        clean = {r["seed"]: outcomes(r) for r in records[:n]}
        protected = {r["seed"]: outcomes(r) for r in records[n:]}
        self.decisions[row] = decided_without_purifiers(*_base_effects(clean, protected, per)) or ""
        return self.decisions[row]

    def pruned(self) -> list[dict]:
        """The cells not run (and not stored) because their protection's verdict was already decided."""
        return [{"cell": asdict(c), "condition": c.condition, "reason": reason} for c in cells(self.preset)
                if self.prunable(c) and not self.cell_path(c).exists() and (reason := self.decided(c))]

    def artist(self, name: str) -> ArtistData:
        if name not in self.data:
            self.data[name] = artist_data(name, self.preset)
        return self.data[name]

    def condition_images(self, cell: Cell) -> tuple[list[torch.Tensor], dict]:
        """The images the mimic gets in this cell, and the visibility figures of how they were made."""
        data = self.artist(cell.artist)
        if cell.protection == "none" and cell.purifier == "none":
            return data.images, {}
        if cell.protection == "none":             # a control: the clean images through the purifier
            def control():
                opts = self.preset.purify_options.get(cell.purifier, {})
                purified = purify(self.bundle, data.images, cell.purifier, seed=cell.seed, **opts)
                return purified, _visibility("purifier", data.images, purified)
            return self.cached((cell.artist, "none", cell.seed, cell.purifier), control)

        def protected_set():
            opts = dict(self.preset.protect_options.get(cell.protection, {}))
            method = opts.pop("method", cell.protection)       # a variant: "advdm-eot" is advdm with EOT
            result = protect(self.bundle, data.images, method=method, budget=cell.budget, seed=cell.seed,
                             score=False, **opts)
            protected = result.protected(data.images)
            return protected, _visibility("protection", data.images, protected)
        key = (cell.artist, cell.protection, cell.budget, cell.seed)
        protected, figures = self.cached(key, protected_set)
        if cell.purifier == "none":
            return protected, dict(figures)

        def purified_set():
            opts = self.preset.purify_options.get(cell.purifier, {})
            purified = purify(self.bundle, protected, cell.purifier, seed=cell.seed, **opts)
            return purified, {**figures, **_visibility("purifier", protected, purified)}
        return self.cached(key + (cell.purifier,), purified_set)

    def condition_path(self, key: tuple) -> Path:
        return self.out / "conditions" / ("-".join(f"{k:g}" if isinstance(k, float) else str(k) for k in key)
                                          + ".safetensors")

    def condition_files(self, cell: Cell) -> list[Path]:
        """Where the condition images this cell reads (or makes) are stored."""
        if cell.protection == "none":
            return [] if cell.purifier == "none" else [self.condition_path((cell.artist, "none", cell.seed, cell.purifier))]
        key = (cell.artist, cell.protection, cell.budget, cell.seed)
        return [self.condition_path(key)] + ([] if cell.purifier == "none" else
                                             [self.condition_path(key + (cell.purifier,))])

    def cached(self, key: tuple, make) -> tuple[list[torch.Tensor], dict]:
        """Condition images by key: from memory, else from OUT/conditions/ (a resumed run does not
        protect or purify again), else made and stored there."""
        from safetensors import safe_open

        from ..io import write_safetensors

        if key in self.conditions:
            return self.conditions[key]
        path = self.condition_path(key)
        if path.exists():
            with safe_open(str(path), "pt") as f:
                images, figures = f.get_tensor("images"), json.loads(f.metadata()["figures"])
            value = (list(images.unbind(0)), figures)
        else:
            images, figures = make()
            path.parent.mkdir(parents=True, exist_ok=True)
            write_safetensors({"images": torch.stack([x.float() for x in images])}, path,
                              {"figures": json.dumps(figures)})
            value = (images, figures)
        self.conditions[key] = value
        return value

    def run_cell(self, cell: Cell) -> dict:
        """One cell: make (or read) its images, fine-tune the mimic, generate, judge. The record's
        phase_seconds times each part ("condition" is near 0 when its images were stored already)."""
        clock = _Phases()
        data = self.artist(cell.artist)
        with clock("condition"):
            images, figures = self.condition_images(cell)
        steps = self.preset.mimicry_steps.get(cell.mimicry, 300)
        with clock("train"):
            adapter = mimic(self.bundle, images, data.captions, cell.mimicry, steps=steps, seed=cell.seed,
                            batch_size=self.preset.mimicry_batch.get(cell.mimicry, 8),
                            lr=self.preset.mimicry_lr.get(cell.mimicry),
                            **self.preset.mimicry_options.get(cell.mimicry, {}))
        with clock("generate"):
            adapted = adapter.apply(self.bundle.copy())
            prompts = [adapter.prompt(p) for p in data.prompts for _ in range(self.preset.generations_per_prompt)]
            generations = generate(adapted, prompts, seed=noise_base(self.preset, cell.seed), **self.preset.sampling)
        with clock("judge"):
            styles, _ = self.judge.predict(generations)
            f_gen = self.judge.features(generations).numpy()
            if cell.artist not in self.reference_features:      # the same for every cell of the artist
                self.reference_features[cell.artist] = self.judge.features(data.reference).numpy()
            f_ref = self.reference_features[cell.artist]
            precision, recall = precision_recall(f_ref, f_gen)
        with clock("write"):
            sample = self.out / "grids" / f"{cell.key}.png"
            write_image(grid(generations[:8], columns=8), sample)
            example = self.out / "inputs" / f"{cell.key}.png"
            write_image(grid(torch.stack([x.expand(3, -1, -1) for x in images[:4]]), columns=4), example)
        with clock("provenance"):
            models = self.provenance(cell, adapter)
        return {**asdict(cell), "condition": cell.condition,
                "mimicry_success": round(float(np.mean([s == cell.artist for s in styles])), 4),
                "outcomes": [int(s == cell.artist) for s in styles],
                "domain_fid": round(frechet_distance(f_gen, f_ref), 3),
                "domain_kid": round(kernel_distance(f_gen, f_ref), 5),
                "precision": round(precision, 4), "recall": round(recall, 4),
                **{k: round(v, 4) for k, v in figures.items()},
                "mimicry_steps": steps, "mimicry_lr": adapter.info["config"]["lr"],
                "mimicry_batch": adapter.info["config"]["batch_size"], "sampling": self.preset.sampling,
                "mimicry_options": self.preset.mimicry_options.get(cell.mimicry, {}),
                "mimicry_final_loss": round(adapter.info["final_loss"], 5), "prompts": len(prompts),
                "eot_version": EOT_VERSION,
                "training_images": len(images), "predicted_styles": _counts(styles),
                "grid": str(sample.relative_to(self.out)), "inputs": str(example.relative_to(self.out)),
                "models": models, "phase_seconds": clock.seconds}

    def provenance(self, cell: Cell, adapter) -> dict:
        """Each model this cell ran, by name and content hash: base, mimic (its trained weights),
        judge, and the upscaler a noisy-upscale purifier used."""
        from ..metrics.judge import JUDGE_DIR
        from ..models.loader import MINI_DIR
        from ..provenance import tensors_hash
        from ..purify.noisy_upscale import default_upscaler

        spec, judge = getattr(self.bundle, "spec", None), self.judge_id()
        base = MINI_DIR if spec == "mini" else Path(spec) if spec and Path(spec).exists() else None
        out = {"base": {"name": spec, "sha256": _cached_hash(base) if base else None},
               "mimic": {"name": cell.mimicry, "sha256": tensors_hash(adapter.tensors)},
               "judge": ({"name": "artshield icon judge", "sha256": _cached_hash(JUDGE_DIR)} if judge is None
                         else {"name": f"{judge['name']} judge, CSLS prototypes of every corpus theme",
                               "sha256": judge["sha256"]})}
        if cell.purifier == "noisy-upscale":
            chosen = self.preset.purify_options.get("noisy-upscale", {}).get("upscaler") or default_upscaler(self.bundle)
            out["upscaler"] = {"name": str(chosen), "sha256": _cached_hash(chosen) if chosen else None}
        return out


TIMING = ("seconds", "phase_seconds")    # a cell record's fields that differ between runs of the same cell


class _Phases:
    """Wall time per named phase: `with clock("train"): ...`, then clock.seconds."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - t0, 2)


_HASHES: dict[str, str] = {}


def _cached_hash(path) -> str:
    from ..provenance import folder_hash

    key = str(path)
    if key not in _HASHES:
        _HASHES[key] = folder_hash(path)
    return _HASHES[key]


MIMIC_SETTINGS = ("mimicry_steps", "mimicry_lr", "mimicry_batch", "mimicry_options")


def compatible(stored: dict, current: dict, mimics_used: set | None = None) -> bool:
    """Whether cells stored under protocol `stored` are cells of protocol `current`: every setting
    equal, except that `current` may give options for protections or purifiers `stored` did not.
    With `mimics_used` (the mimics of the stored cells), a mimic's settings must be equal only for
    those: a mimic the folder has no cell of may be added, or retuned, later."""
    grows = ("protect_options", "purify_options")
    loose = grows + (MIMIC_SETTINGS if mimics_used is not None else ())
    if {k: v for k, v in stored.items() if k not in loose} != {k: v for k, v in current.items() if k not in loose}:
        return False
    if mimics_used is not None and not all(stored.get(k, {}).get(m) == current.get(k, {}).get(m)
                                           for k in MIMIC_SETTINGS for m in mimics_used):
        return False
    return all(current.get(k, {}).get(name) == value for k in grows for name, value in stored.get(k, {}).items())


def _claim(lock: Path) -> bool:
    """Take a cell for this process: create its lock file, or take over the lock of a process of
    this machine that no longer runs (killed). False when a live worker holds it. Several
    `artshield bench` processes can thus share one output folder, each computing different cells."""
    import os
    import socket

    me = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            host, _, pid = lock.read_text(errors="replace").strip().rpartition(" ")
            if host != socket.gethostname() or not pid.isdigit() or _alive(int(pid)):
                return False
            lock.unlink(missing_ok=True)          # its worker died: the cell is free again
            continue
        with os.fdopen(fd, "w") as f:
            f.write(me + "\n")
        return True
    return False


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _visibility(prefix: str, before: list[torch.Tensor], after: list[torch.Tensor]) -> dict:
    """Mean PSNR, SSIM and LPIPS of each changed image against its original."""
    each = [visibility(b, a, exact=True) for a, b in zip(after, before)]
    return {f"{prefix}_{key}": float(np.mean([v[key] for v in each])) for key in ("psnr_db", "ssim", "lpips")}


def _counts(names: list[str]) -> dict:
    out: dict[str, int] = {}
    for n in names:
        out[n] = out.get(n, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def outcomes(record: dict) -> list[float]:
    """A cell's per-generation judge outcomes (1: the artist's style). Cells stored before they
    were kept give them back from their count: a bootstrap of a mean of 0/1 outcomes depends on
    the count alone."""
    if "outcomes" in record:
        return [float(v) for v in record["outcomes"]]
    n = int(record.get("prompts") or 32)
    k = int(round(record["mimicry_success"] * n))
    return [1.0] * k + [0.0] * (n - k)


def _base_effects(clean: dict, protected: dict, per_prompt: int):
    """(clean's level interval, relative mimicry protected / clean at 95 %) from outcomes by seed."""
    from . import stats

    c = stats.arrange(clean, per_prompt)
    _, (a, b) = stats.paired(stats.arrange(protected, per_prompt), c)
    return _level(c, _count(clean)), stats.ratio(a, b, _count(protected))


def _count(by_seed: dict) -> int:
    return int(sum(len(v) for v in by_seed.values()))


def _level(by_seed: dict, generations: int):
    """A condition's level interval from its per-prompt means by seed (stats.arrange's output)."""
    from . import stats

    return stats.level_interval(np.stack([by_seed[s] for s in sorted(by_seed)]), generations)


def summary(records: list[dict], preset: Preset) -> list[dict]:
    """Per artist, mimicry, protection and budget: each condition's success (level, 95 % interval),
    the paired effects (relative mimicry against clean, and after each purifier against that
    purifier's control, with Holm-adjusted and 95 % intervals; differences in success points), the
    quality axis (paired FID differences over seeds), the worst case and the verdicts of
    bench/stats.py. Holm's family is every relative-mimicry test of these rows; the quality tests
    are a family of their own."""
    from . import stats

    per = preset.generations_per_prompt
    seeds: dict[tuple, dict[int, list[float]]] = {}
    fids: dict[tuple, dict[int, float]] = {}
    kids: dict[tuple, dict[int, float]] = {}
    for r in records:
        key = (r["artist"], r["mimicry"], r["protection"], float(r["budget"]), r["purifier"])
        seeds.setdefault(key, {})[int(r.get("seed", len(seeds.get(key, {}))))] = outcomes(r)
        if r.get("domain_fid") is not None:
            fids.setdefault(key, {})[int(r.get("seed", 0))] = float(r["domain_fid"])
        if r.get("domain_kid") is not None:
            kids.setdefault(key, {})[int(r.get("seed", 0))] = float(r["domain_kid"])
    tables = {k: stats.arrange(v, per) for k, v in seeds.items()}

    def level(key):
        return _level(tables[key], _count(seeds[key]))

    def effect(key, against, kind, lev=stats.LEVEL):
        _, (a, b) = stats.paired(tables[key], tables[against])
        return (stats.ratio if kind == "ratio" else stats.difference)(a, b, _count(seeds[key]), level=lev)

    rows, tests, quality_tests = [], [], []
    for artist, m, p, b in sorted({k[:4] for k in seeds if k[2] != "none"}):
        clean_key, own = (artist, m, "none", 0.0, "none"), (artist, m, p, b, "none")
        if clean_key not in seeds or own not in seeds:
            continue
        against = {"none": clean_key}
        for q in preset.purifiers:
            if (artist, m, p, b, q) in seeds and (artist, m, "none", 0.0, q) in seeds:
                against[q] = (artist, m, "none", 0.0, q)
        keys = {q: (artist, m, p, b, q) for q in against}
        row = {"artist": artist, "mimicry": m, "protection": p, "budget": b,
               "intervals": {"clean": level(clean_key).to_dict(),
                             **{q: level((artist, m, p, b, q)).to_dict() for q in ["none", *preset.purifiers]
                                if (artist, m, p, b, q) in seeds}},
               "relative_unadjusted": {}, "relative": {}, "difference": {}, "quality": {}}
        row["clean"] = row["intervals"]["clean"]["mean"]
        row.update({q: v["mean"] for q, v in row["intervals"].items() if q != "clean"})
        # the comparison #27 asks for: the same ratio from a t interval over the seed means alone
        _, (a, b) = stats.paired(tables[own], tables[clean_key])
        row["relative_seed_level"] = stats.ratio(a.mean(axis=1, keepdims=True), b.mean(axis=1, keepdims=True),
                                                 _count(seeds[own])).to_dict()
        for q, key in keys.items():
            r95 = effect(key, against[q], "ratio")
            row["relative_unadjusted"][q] = r95.to_dict()
            row["difference"][q] = effect(key, against[q], "difference").to_dict()
            tests.append((row, q, key, against[q], r95.p))
            if key in fids and against[q] in fids:
                d = stats.seed_difference(fids[key], fids[against[q]])
                quality_tests.append((row, q, key, against[q], d.p))
        rows.append(row)

    # Holm over the relative-mimicry tests of each family (the run's, or each artist x mimic block's: the
    # preset's holm_family); the adjusted interval is at the judged level
    def fam(t):
        return family_of(preset, t[0]["artist"], t[0]["mimicry"])

    for (row, q, key, base, _), lev in zip(tests, holm_by_family(tests, fam, lambda t: t[4])):
        row["relative"][q] = effect(key, base, "ratio", lev).to_dict()
    for (row, q, key, base, _), lev in zip(quality_tests, holm_by_family(quality_tests, fam, lambda t: t[4])):
        d = stats.seed_difference(fids[key], fids[base], lev)
        row["quality"][q] = {"fid": round(float(np.mean(list(fids[key].values()))), 3),
                             "fid_against": round(float(np.mean(list(fids[base].values()))), 3),
                             "fid_difference": d.to_dict(), "verdict": stats.quality_word(d)}
        common = set(kids.get(key, {})) & set(kids.get(base, {}))
        if len(common) >= 2:         # KID beside FID: 95 %, descriptive (the verdict rests on FID)
            row["quality"][q]["kid_difference"] = stats.seed_difference(
                {s: kids[key][s] for s in common}, {s: kids[base][s] for s in common}).to_dict()

    need = len(preset.seeds)
    for row in rows:
        artist, m, p, b = row["artist"], row["mimicry"], row["protection"], row["budget"]
        clean = _interval(row["intervals"]["clean"])
        relative = {q: _interval(v) for q, v in row["relative"].items()}
        purified = {q: v for q, v in relative.items() if q != "none"}
        decided = stats.verdict(clean, relative["none"], purified)
        alone = stats.decided_without_purifiers(clean, _interval(row["relative_unadjusted"]["none"]))
        # a run under way: a verdict the clean and unpurified cells decide alone stands; every other
        # waits for every purifier's cells and controls, all seeds
        keys = [(artist, m, "none", 0.0, "none"), (artist, m, p, b, "none")]
        keys += [k for q in preset.purifiers for k in ((artist, m, p, b, q), (artist, m, "none", 0.0, q))]
        have = sum(min(need, len(seeds.get(k, {}))) for k in keys)
        base_done = all(len(seeds.get(k, {})) >= need for k in keys[:2])
        if base_done and alone is not None:
            decided = stats.verdict(clean, relative["none"], {})
        elif have < need * len(keys):
            decided = f"pending: {have} of {need * len(keys)} cells done"
        worst = max(relative, key=lambda q: (relative[q].high, relative[q].mean))
        seed_level = stats.decided_without_purifiers(clean, _interval(row["relative_seed_level"]))
        row.update(worst_case=row["relative"][worst]["mean"], worst_purifier=worst, bar=stats.BAR, verdict=decided,
                   quality_verdict=row["quality"].get("none", {}).get("verdict", "not measured"),
                   seed_level_verdict=seed_level or "holds unpurified: purified cells needed")
    return rows


def _interval(d: dict):
    from .stats import Interval

    return Interval(d["mean"] if d["mean"] is not None else float("inf"), d["low"],
                    float("inf") if d["high"] is None else d["high"], d["seeds"], d["generations"],
                    d.get("prompts", 0), d.get("df", 0), d.get("level", 0.95), d.get("p"), d.get("null"))


def analysis(rows: list[dict], holm_family: str = "run") -> dict:
    """How the summary's intervals and verdicts were computed, for results.json and the report."""
    from . import stats

    tests = sum(len(r["relative"]) for r in rows)
    if holm_family == "run":
        multiplicity = f"Holm over the run's {tests} relative-mimicry tests (family-wise 5 %)"
    else:
        blocks: dict = {}
        for r in rows:
            blocks[f"{r['artist']} x {r['mimicry']}"] = blocks.get(f"{r['artist']} x {r['mimicry']}", 0) \
                + len(r["relative"])
        multiplicity = ("Holm within each artist x mimic block, declared before the blocks were complete "
                        "(family-wise 5 % per block): " + ", ".join(f"{k} {v} tests" for k, v in blocks.items()))
    return {"procedure": "paired effects on seeds x prompts tables; two-way crossed random-effects variance "
                         "(method of moments); t quantiles on Satterthwaite df with the seed mean square at its "
                         "75 % upper bound, within [seeds - 1, prompts - 1]; Fieller intervals for ratios",
            "bar": stats.BAR, "min_clean_success": stats.MIN_CLEAN_SUCCESS, "level": stats.LEVEL,
            "multiplicity": multiplicity + "; the quality tests are families of their own, and so are the "
                                           "controls", "holm_family": holm_family,
            "tests": tests, "quality_tests": sum(len(r["quality"]) for r in rows),
            # rows whose verdict a t interval over the seed means alone (95 %, unadjusted) would change:
            # the rows that get more training seeds
            "differs_from_seed_level": [f"{r['protection']}@{r['budget']:g}" for r in rows
                                        if not r["verdict"].startswith("pending")
                                        and r["verdict"].split(":")[0] != r["seed_level_verdict"].split(":")[0]]}


def controls(records: list[dict], per_prompt: int = 1, holm_family: str = "run") -> list[dict]:
    """Per artist and mimicry: clean success and, for each purifier, success on the clean images
    through that purifier (what the purifier does to mimicry by itself), with 95 % intervals, and
    the paired effect of the purifier (control - clean, and control / clean) with Holm-adjusted
    intervals over the controls of the run (or of each artist x mimic block, as `holm_family` says):
    "raises", "lowers" or "no change shown"."""
    from . import stats

    seeds: dict[tuple, dict[int, list[float]]] = {}
    for r in records:
        if r["protection"] == "none":
            key = (r["artist"], r["mimicry"], r["purifier"])
            seeds.setdefault(key, {})[int(r.get("seed", len(seeds.get(key, {}))))] = outcomes(r)
    tables = {k: stats.arrange(v, per_prompt) for k, v in seeds.items()}

    def level(key):
        return _level(tables[key], _count(seeds[key])).to_dict()

    rows, tests = [], []
    for (artist, m, q), groups in sorted(seeds.items()):
        if q == "none":
            continue
        clean = (artist, m, "none")
        row = {"artist": artist, "mimicry": m, "purifier": q, "clean": level(clean) if clean in seeds else None,
               "purified": level((artist, m, q))}
        if clean in seeds:
            _, (a, b) = stats.paired(tables[(artist, m, q)], tables[clean])
            d = stats.difference(a, b, _count(groups))
            row["relative"] = stats.ratio(a, b, _count(groups), null=1.0).to_dict()
            tests.append((row, a, b, d.p, _count(groups)))
        rows.append(row)
    block = Preset([], [], [], [], [], [], holm_family=holm_family)
    for (row, a, b, _, n), lev in zip(tests, holm_by_family(
            tests, lambda t: family_of(block, t[0]["artist"], t[0]["mimicry"]), lambda t: t[3])):
        d = stats.difference(a, b, n, level=lev)
        row["difference"] = d.to_dict()
        row["effect"] = "raises" if d.low > 0 else "lowers" if d.high < 0 else "no change shown"
    return rows


def with_row_verdicts(pruned: list[dict], rows: list[dict]) -> list[dict]:
    """The pruned cells, each with its row's verdict as the reason it was not run (pruning decides on
    95 % intervals; the row's verdict is read off its Holm-adjusted one, which may be less decided)."""
    verdicts = {(r["artist"], r["mimicry"], r["protection"], float(r["budget"])): r["verdict"] for r in rows}
    return [{**p, "reason": verdicts.get((p["cell"]["artist"], p["cell"]["mimicry"], p["cell"]["protection"],
                                         float(p["cell"]["budget"])), p["reason"])} for p in pruned]


def corpus_styles(side: int = 64, per_style: int = 24, skip=()) -> dict[str, torch.Tensor]:
    """The corpus's themes, `per_style` of each one's judge-training images (themes in `skip` left
    out): the other styles a style judge's prototypes are read against."""
    pool = corpus.items(judge_split="train")
    out = {}
    for theme in dict.fromkeys(i.theme for i in pool):
        items = [i for i in pool if i.theme == theme][:per_style]
        if theme not in skip and len(items) >= 2:
            out[theme] = corpus.load_images(items, side)
    return out


def corpus_classifier(style_judge, preset: Preset, weights: str | None = None):
    """A style judge (metrics/judges.py) as the bench's judge: CSLS prototypes of every corpus theme,
    each preset artist's from its reference split (the images its FID is measured against, never
    trained on), every other theme's from 24 of its judge-training images."""
    from ..metrics.judges import Classifier

    classes = {a: artist_data(a, preset).reference for a in preset.artists}
    return Classifier(style_judge, {**classes, **corpus_styles(skip=set(classes))}, weights)


def run_preset(bundle: ModelBundle, name: str, out: Path, log=print, summarise_only: bool = False,
               execute=None, judge=None) -> dict:
    """Run (or resume) the preset `name` with its cells stored in OUT/cells/; the results of every
    cell and the verdict table, as results.json holds them (without the environment). With
    `summarise_only`, no cell is run: the results of the cells already stored (a run under way).
    `execute(runner)` runs the cells and returns the records instead of `runner.run()` (the Ray
    driver, artshield.cluster.run_bench). `judge`: the bench's judge (default: the icon judge's style
    head), e.g. corpus_classifier(load_judge("csd", path), preset, path)."""
    preset = PRESETS[name]
    start = time.time()
    todo = cells(preset)
    runner = Runner(bundle, judge or Judge.load(), preset, Path(out), log=log)
    if summarise_only:
        stored = Path(out) / "protocol.json"
        if not stored.exists() or not compatible(runner.stored_protocol(), json.loads(json.dumps(runner.protocol())),
                                                 runner.stored_mimics()):
            raise ValueError(f"{out} holds no cells of preset {name} with its current settings")
        records = [json.loads(runner.cell_path(c).read_text()) for c in todo if runner.cell_path(c).exists()]
    else:
        log(f"bench {name}: {len(todo)} cells; finished ones in {Path(out) / 'cells'} are reused")
        records = runner.run() if execute is None else execute(runner)
    pruned = runner.pruned()
    if runner.elsewhere:
        log(f"{len(runner.elsewhere)} cell(s) were being computed by other workers on {out}: the results written "
            "now leave them out; the last worker to finish writes them all")
    rows = summary(records, preset)
    return {"command": f"artshield bench --preset {name} -o {out}", "preset_name": name, "preset": asdict(preset),
            "model": bundle.describe(), "summary": rows, "analysis": analysis(rows, preset.holm_family),
            "controls": controls(records, preset.generations_per_prompt, preset.holm_family),
            "cells": records, "cells_planned": len(todo) - len(pruned), "pruned": with_row_verdicts(pruned, rows),
            "failed": runner.failed,
            "in_progress_elsewhere": runner.elsewhere,
            "seconds": round(float(sum(r.get("seconds", 0) for r in records)), 1) if summarise_only
            else round(time.time() - start, 1)}
