"""Dataset inference: was this model, or this adapter, trained on a set of images?

Telling whether one image was in a large model's training set does not work reliably (CopyMark,
arXiv 2410.03640); telling whether a *set* of an owner's images was does (CDI, Dubiński et al.,
arXiv 2411.12858): many weak membership signals, each image's signals combined by a scoring model,
and a statistical test over the whole set. The owner brings two sets drawn the same way: SUSPECT,
the images they think were trained on (a published portfolio), and HELD-OUT, images the model
cannot have seen (unpublished work, or work made after the model). If the model never saw either,
nothing but chance separates them; if it trained on SUSPECT, it reconstructs those images better.

Features (`membership_features`, gradient-free, so a CPU runs them): at each of `timesteps`, the
model's denoising error on the image with its caption, with the empty prompt, and the difference
(conditional minus unconditional: the conditional-likelihood discrepancy of CLiD, Zhai et al.,
NeurIPS 2024), each averaged over a few noise draws that are the same for every image, so an
image's features do not depend on which set it is in.

Reference calibration: when the model under test is a known base plus an adapter (a LoRA, a
DreamBooth or hypernetwork fine-tune, a textual inversion), some images are simply easier to
denoise than others, for the base and the adapted model alike; that spread hides a light fine-tune.
With `reference` features (the same images and draws on the base model), each image also gets its
features on the adapted model minus those on the base: what the adaptation changed, image by image
(the reference-model calibration of membership attacks, e.g. LiRA, Carlini et al. 2022). The test
stays exact: under the null neither set was trained on, by the base or the adapter, so the
calibrated features are as exchangeable as the raw ones.

Test (`dataset_inference`): a ridge logistic regression (standardised features) learns, on all
but one fold of the images, to tell SUSPECT from HELD-OUT, and scores the fold it did not see; the
statistic is the AUC of those out-of-fold scores. Its p-value comes from a permutation test: the
same procedure (same folds) re-run with the two sets' labels shuffled, `permutations` times,
p = (1 + shuffles at least as separable) / (1 + permutations). When the two sets are exchangeable
(drawn the same way, and the model trained on neither) every labelling is equally likely, so the
p-value is exact: under that null, p <= alpha happens with probability at most alpha, however the
features behave. The test can only be as fair as the held-out set: images of a different kind
(another period, another medium, other subjects) can differ from the suspect set for reasons other
than training, and the test cannot tell those reasons apart.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..models import ModelBundle
from ..models.diffusion import diffusion_target

TIMESTEPS = (50, 150, 300, 500, 750)
DRAWS = 4
FOLDS = 5
PERMUTATIONS = 999
MIN_IMAGES = 10          # per set: two of each set per fold, at least
RIDGE = 1.0
KINDS = ("conditional", "unconditional", "difference")


def feature_names(timesteps=TIMESTEPS, calibrated: bool = False) -> list[str]:
    names = [f"{kind} loss @ t={t}" if kind != "difference" else f"conditional - unconditional @ t={t}"
             for kind in KINDS for t in timesteps]
    return names + ([f"{n}, adapted - base" for n in names] if calibrated else [])


@torch.no_grad()
def membership_features(bundle: ModelBundle, images: torch.Tensor, captions: list[str], timesteps=TIMESTEPS,
                        draws: int = DRAWS, seed: int = 0, batch_size: int = 32, progress=None) -> np.ndarray:
    """(N, 3 T) features of (N, 3, H, W) images in [0, 1] at the model's size: for each kind (with the
    caption, with the empty prompt, their difference) and each timestep, the squared error of the
    model's prediction averaged over `draws` noise draws (draw d is seeded seed + d and the same for
    every image and timestep)."""
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images and {len(captions)} captions")
    steps = bundle.scheduler.config.num_train_timesteps
    if not timesteps or any(not 0 <= int(t) < steps for t in timesteps):
        raise ValueError(f"timesteps must lie in [0, {steps}), not {list(timesteps)}")
    unet = bundle.unet
    empty = bundle.embed([""])
    out = np.zeros((len(images), 3, len(timesteps)))
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(bundle.device)
        n = len(x)
        z = bundle.encode(x)
        context = torch.cat([bundle.embed(captions[start:start + n]), empty.expand(n, -1, -1)])
        for j, t_value in enumerate(timesteps):
            t = torch.full((n,), int(t_value), dtype=torch.long, device=bundle.device)
            for d in range(draws):
                noise = torch.randn(tuple(z.shape[1:]), generator=torch.Generator().manual_seed(seed + d))
                noise = noise.to(bundle.device, z.dtype).expand_as(z)
                noisy = bundle.scheduler.add_noise(z, noise, t)
                pred = unet(torch.cat([noisy, noisy]).to(unet.dtype), torch.cat([t, t]),
                            encoder_hidden_states=context.to(unet.dtype)).sample.float()
                target = diffusion_target(bundle, z, noise, t).float()
                error = (pred - torch.cat([target, target])).pow(2).flatten(1).mean(1).cpu().numpy()
                out[start:start + n, 0, j] += error[:n] / draws
                out[start:start + n, 1, j] += error[n:] / draws
        if progress is not None:
            progress(n)
    out[:, 2] = out[:, 0] - out[:, 1]
    return out.reshape(len(images), -1)


def fit_logistic(x: np.ndarray, y: np.ndarray, ridge: float = RIDGE, iterations: int = 50) -> np.ndarray:
    """Weights (intercept first) of a logistic regression of y (0/1) on the columns of x, with an L2
    penalty `ridge` on every weight but the intercept, by Newton's method."""
    design = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(design.shape[1])
    penalty = np.full(design.shape[1], float(ridge))
    penalty[0] = 0.0
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(design @ w)))
        gradient = design.T @ (p - y) + penalty * w
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def out_of_fold_scores(features: np.ndarray, labels: np.ndarray, folds: np.ndarray, ridge: float = RIDGE) -> np.ndarray:
    """Each image's score from a model fitted on the other folds (features standardised by the
    training folds' means and deviations): the log-odds that it is a SUSPECT image, less the
    intercept. The intercept says only how the training folds happened to balance the two sets, so
    it would shift a whole fold's scores against the others' (and an uninformative feature set
    would still separate the sets a little, through the folds' balance)."""
    scores = np.zeros(len(features))
    for f in np.unique(folds):
        train, test = folds != f, folds == f
        mean, sd = features[train].mean(0), features[train].std(0)
        sd[sd == 0] = 1.0
        w = fit_logistic((features[train] - mean) / sd, labels[train], ridge)
        scores[test] = ((features[test] - mean) / sd) @ w[1:]
    return scores


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """P(a random SUSPECT image's score > a random HELD-OUT image's), ties counted half."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    return float(((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum())
                 / (len(pos) * len(neg)))


def needed(folds: int = FOLDS) -> int:
    """Images each set needs: MIN_IMAGES, and two per fold."""
    return max(MIN_IMAGES, 2 * folds)


def check_sizes(suspect: int, heldout: int, folds: int = FOLDS) -> None:
    """A ValueError saying how many images are needed when either set has fewer."""
    least = needed(folds)
    if suspect < least or heldout < least:
        raise ValueError(f"dataset inference needs at least {least} images in each set ({suspect} suspect, "
                         f"{heldout} held-out given); 30 or more each make a real effect far easier to find")


def dataset_inference(suspect: np.ndarray, heldout: np.ndarray, folds: int = FOLDS, permutations: int = PERMUTATIONS,
                      seed: int = 0, ridge: float = RIDGE) -> dict:
    """The permutation test of the module's docstring on (n, F) feature arrays: p-value, the AUC of
    the out-of-fold scores, the AUCs of the shuffled labellings, and the out-of-fold scores."""
    check_sizes(len(suspect), len(heldout), folds)
    if permutations < 1:
        raise ValueError(f"permutations must be at least 1, not {permutations}")
    x = np.vstack([suspect, heldout]).astype(float)
    if not np.isfinite(x).all():
        raise ValueError("the features hold NaN or infinite values")
    y = np.r_[np.ones(len(suspect)), np.zeros(len(heldout))]
    rng = np.random.default_rng(seed)
    fold = rng.permutation(len(y)) % folds          # fixed for the observed and every shuffled labelling
    scores = out_of_fold_scores(x, y, fold, ridge)
    observed = auc(scores, y)
    null = np.array([auc(out_of_fold_scores(x, shuffled, fold, ridge), shuffled)
                     for shuffled in (rng.permutation(y) for _ in range(permutations))])
    p = (1 + int((null >= observed - 1e-12).sum())) / (1 + permutations)
    return {"p_value": p, "auc": observed, "null_auc_mean": float(null.mean()), "null_auc_sd": float(null.std()),
            "null_auc": np.round(null, 4).tolist(),
            "suspect": len(suspect), "heldout": len(heldout), "folds": folds, "permutations": permutations,
            "seed": seed, "scores": scores.tolist()}


def effect_sizes(suspect: np.ndarray, heldout: np.ndarray) -> np.ndarray:
    """Per feature, the difference of the means in pooled standard deviations (Cohen's d): negative
    where the suspect images have the lower error."""
    n1, n0 = len(suspect), len(heldout)
    pooled = np.sqrt(((n1 - 1) * suspect.var(0, ddof=1) + (n0 - 1) * heldout.var(0, ddof=1)) / (n1 + n0 - 2))
    return (suspect.mean(0) - heldout.mean(0)) / np.where(pooled > 0, pooled, 1.0)


def explain(p_value: float) -> str:
    """A p-value in one sentence for someone who is not a statistician."""
    return (f"p = {p_value:.2g}: if the model had never seen either set, a difference between them at least this "
            f"large would turn up by chance about once in {round(1 / p_value):,} tries")


def verdict(p_value: float, alpha: float) -> str:
    """The result in words."""
    if p_value <= alpha:
        return f"evidence that the model was trained on the suspect images ({explain(p_value)}; the bar is {alpha:g})"
    return (f"no evidence at {alpha:g} ({explain(p_value)}). This does not show that the images were not used: "
            f"fewer images, a light fine-tune or a large training set can hide them")


def images_features(bundle: ModelBundle, suspect: list[torch.Tensor], suspect_captions: list[str],
                    heldout: list[torch.Tensor], heldout_captions: list[str], timesteps=TIMESTEPS, draws: int = DRAWS,
                    seed: int = 0, progress=None) -> np.ndarray:
    """`membership_features` of SUSPECT then HELD-OUT (lists of (C, H, W) in [0, 1], any size: each
    is read at the model's square view)."""
    from ..models.views import model_views

    views = model_views(list(suspect) + list(heldout), bundle.image_size)
    return membership_features(bundle, views, list(suspect_captions) + list(heldout_captions), timesteps, draws,
                               seed, progress=progress)


def run(bundle: ModelBundle, suspect: list[torch.Tensor], suspect_captions: list[str], heldout: list[torch.Tensor],
        heldout_captions: list[str], alpha: float = 0.01, folds: int = FOLDS, permutations: int = PERMUTATIONS,
        seed: int = 0, timesteps=TIMESTEPS, draws: int = DRAWS, progress=None,
        reference: np.ndarray | None = None) -> dict:
    """Dataset inference of SUSPECT against HELD-OUT images (lists of (C, H, W) in [0, 1], any size:
    each is read at the model's square view) on `bundle` as it is (with an adapter applied, if any).
    The record results.json keeps: the verdict and p-value, the statistic, each image's features and
    out-of-fold score, and each feature's effect size. `reference`: the same images' features on the
    base model the adaptation was made from (`images_features`, same timesteps, draws and seed),
    to add the calibrated features of the module's docstring."""
    import time

    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), not {alpha}")
    check_sizes(len(suspect), len(heldout), folds)
    if 1 / (1 + permutations) > alpha:
        raise ValueError(f"{permutations} permutations cannot give a p-value at or under alpha {alpha:g} "
                         f"(the smallest is 1 / {permutations + 1}): use at least {math.ceil(1 / alpha) - 1}")
    start = time.time()
    features = images_features(bundle, suspect, suspect_captions, heldout, heldout_captions, timesteps, draws, seed,
                               progress)
    if reference is not None:
        if reference.shape != features.shape:
            raise ValueError(f"reference features of shape {reference.shape} for features of shape {features.shape}")
        features = np.hstack([features, features - reference])
    n = len(suspect)
    result = dataset_inference(features[:n], features[n:], folds, permutations, seed)
    names = feature_names(timesteps, calibrated=reference is not None)
    d = effect_sizes(features[:n], features[n:])
    return {"verdict": verdict(result["p_value"], alpha), "trained_on": result["p_value"] <= alpha, "alpha": alpha,
            "explained": explain(result["p_value"]), **{k: v for k, v in result.items() if k != "scores"},
            "features": [{"name": name, "suspect_mean": round(float(features[:n, j].mean()), 6),
                          "heldout_mean": round(float(features[n:, j].mean()), 6), "effect_size": round(float(d[j]), 4)}
                         for j, name in enumerate(names)],
            "timesteps": [int(t) for t in timesteps], "draws": draws, "calibrated_by_base": reference is not None,
            "scores": {"suspect": [round(s, 5) for s in result["scores"][:n]],
                       "heldout": [round(s, 5) for s in result["scores"][n:]]},
            "image_features": {"suspect": np.round(features[:n], 6).tolist(),
                               "heldout": np.round(features[n:], 6).tolist()},
            "seconds": round(time.time() - start, 2)}
