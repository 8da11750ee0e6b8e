"""Train the embedded scale model ("mini") on the icon corpus; resumable, fixed seed.

Stages, each resumable from its checkpoint in --state (outside git):
    vae     AutoencoderKL on the training themes (held-out themes measure its PSNR)
    unet    UNet2DConditionModel and CLIPTextModel jointly, on the VAE's latents
    decoder the VAE decoder alone, encoder frozen: sharper decodes, same latent space, so the
            UNet stays valid (Stable Diffusion's ft-MSE decoder was made the same way)
    export  a diffusers StableDiffusionPipeline folder, weights in safetensors (fp16 on disk)

    python scripts/train_mini.py vae --minutes 25
    python scripts/train_mini.py unet --minutes 90
    python scripts/train_mini.py export --out src/artshield/assets/mini

Each stage runs until its step budget or --minutes, whichever comes first, checkpointing every
few minutes; running it again continues where it stopped. Learning rates follow a cosine over the
whole step budget, so a run split over several sessions trains exactly like one long run.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from artshield import corpus
from artshield.metrics.image import psnr_per_image as psnr
from artshield.models.architecture import (MINI, build_text_encoder, build_unet, build_vae,
                                           noise_scheduler, sampling_scheduler)
from artshield.models.tokenizer import write_tokenizer

SEED = 20261121
# How the algorithms should talk to mini (read by load_model into ModelConventions): its generic
# caption (Stable Diffusion's is "a painting"), how to name a style, the styles it knows, and
# fine-tuning learning rates for its scale (SD's rates move a model this small too little). The
# rates were chosen with scripts/probe_mimicry.py (judge style accuracy of the generations
# after 300 steps on gartoon): lora 1e-4 -> 0.19, 1e-3 -> 0.56; dreambooth 1e-4 -> 0.47,
# 3e-4 -> 0.41; hypernetwork 1e-3 -> 0.47; textual inversion 5e-3 -> 0.28, 2e-2 -> 0.38 (base
# model 0.09; 32 prompts each, so +-0.09).
CONVENTIONS = {"generic_prompt": "icon", "style_prompt": "icon, {} style", "init_word": "icon",
               "styles": corpus.themes(heldout=False),
               "learning_rates": {"lora": 1e-3, "dreambooth": 1e-4, "textual-inversion": 2e-2, "hypernetwork": 1e-3,
                                  # ESD on mini (measured: docs/results/erase/): 200 iterations; ESD-x at
                                  # 1e-4 erases a style, ESD-u at 1e-4 wrecks every style, at 1e-5 (the
                                  # paper's rate) it is usable
                                  "esd-x": 1e-4, "esd-x-strict": 1e-4, "esd-u": 1e-5},
               "esd_iterations": 200, "esd_ddim_steps": 30,
               "corpus": True}     # trained on the icon corpus: its judge and captions apply
# KL weight relative to a per-pixel mean loss: SD's 1e-6 multiplies a loss summed over pixels
VAE_STEPS, VAE_BATCH, VAE_LR, VAE_KL = 4500, 32, 1e-3, 1e-8
DECODER_STEPS, DECODER_LR = 3000, 3e-4
UNET_STEPS, UNET_BATCH, UNET_LR = 12000, 64, 3e-4
CAPTION_DROPOUT, MIN_SNR_GAMMA, EMA_DECAY = 0.1, 5.0, 0.9995
CHECKPOINT_SECONDS = 240
SAMPLING_STEPS, SAMPLING_GUIDANCE = 30, 5.0  # defaults recorded with the exported model


def lr_at(step: int, total: int, peak: float, warmup: int = 200) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def optimise(opt: torch.optim.Optimizer, params: list, loss: torch.Tensor) -> None:
    """One optimiser step with the gradient norm clipped to 1."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()


@torch.no_grad()
def ema_update(pairs, step: int, decay: float) -> None:
    """Move each (ema, live) module's averaged weights toward the live ones (warm-up: (1+n)/(10+n))."""
    d = min(decay, (1 + step) / (10 + step))
    for ema, live in pairs:
        for pe, pl in zip(ema.parameters(), live.parameters()):
            pe.lerp_(pl, 1 - d)


def save_state(path: Path, tensors: dict[str, torch.Tensor], meta: dict, optimizer: torch.optim.Optimizer) -> None:
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(path / "weights.tmp"))
    torch.save(optimizer.state_dict(), path / "optimizer.tmp")
    (path / "meta.tmp").write_text(json.dumps(meta))
    for name in ("weights", "optimizer", "meta"):
        (path / f"{name}.tmp").replace(path / {"weights": "weights.safetensors", "optimizer": "optimizer.pt",
                                               "meta": "meta.json"}[name])


def load_state(path: Path) -> tuple[dict[str, torch.Tensor], dict, dict] | None:
    if not (path / "meta.json").exists():
        return None
    return (load_file(str(path / "weights.safetensors")), json.loads((path / "meta.json").read_text()),
            torch.load(path / "optimizer.pt", weights_only=True))


def prefixed(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def train_vae(state_dir: Path, minutes: float, decoder_only: bool = False, init_from: Path | None = None) -> None:
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    train = corpus.load_images(corpus.items(split="train"), MINI.image_size)
    test = corpus.load_images([i for s in ("finetune", "reference") for i in corpus.items(split=s)], MINI.image_size)
    vae = build_vae(MINI)
    total, peak, name = (DECODER_STEPS, DECODER_LR, "decoder") if decoder_only else (VAE_STEPS, VAE_LR, "vae")
    if decoder_only:
        vae.load_state_dict(load_trained_vae(state_dir, init_from=init_from).state_dict())
        vae.encoder.requires_grad_(False)
        vae.quant_conv.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in vae.parameters() if p.requires_grad], lr=peak, weight_decay=0.0)
    step, path = 0, state_dir / name
    if (st := load_state(path)) is not None:
        vae.load_state_dict(unprefixed("vae", st[0]))
        opt.load_state_dict(st[2])
        step = st[1]["step"]
        rng = np.random.default_rng(SEED + step)
        print(f"resumed {name} at step {step}", flush=True)
    start = last_ckpt = time.time()
    while step < total and time.time() - start < minutes * 60:
        idx = rng.integers(0, len(train), VAE_BATCH)
        x = train[idx]
        # icons are drawn upright, but the autoencoder only has to reproduce pixels: flips and
        # quarter turns show it more kinds of stroke at no cost
        if rng.random() < 0.5:
            x = x.flip(3)
        x = torch.rot90(x, int(rng.integers(0, 4)), (2, 3))
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total, peak)
        post = vae.encode(x * 2 - 1).latent_dist
        rec = (vae.decode(post.sample()).sample + 1) / 2
        kl = post.kl().mean()
        loss = F.mse_loss(rec, x) + 0.1 * F.l1_loss(rec, x) + VAE_KL * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 100 == 0 or step == total:
            with torch.no_grad():
                vae.eval()
                sub = test[:256]
                rec = (vae.decode(vae.encode(sub * 2 - 1).latent_dist.mode()).sample + 1) / 2
                p = float(psnr(rec.clamp(0, 1), sub).mean())
                vae.train()
            print(f"{name} step {step} loss {loss.item():.5f} kl {kl.item():.1f} heldout_psnr {p:.2f}", flush=True)
        if time.time() - last_ckpt > CHECKPOINT_SECONDS or step == total:
            save_state(path, prefixed("vae", vae), {"step": step}, opt)
            last_ckpt = time.time()
    save_state(path, prefixed("vae", vae), {"step": step}, opt)


def load_trained_vae(state_dir: Path, prefer_decoder: bool = False, init_from: Path | None = None):
    """The trained VAE; with prefer_decoder, the decoder-stage weights where they exist (same encoder).
    Without a checkpoint, the VAE of an exported model (init_from) when one is named."""
    st = load_state(state_dir / "decoder") if prefer_decoder else None
    st = st or load_state(state_dir / "vae")
    vae = build_vae(MINI)
    if st is not None:
        vae.load_state_dict(unprefixed("vae", st[0]))
    elif init_from is not None:
        weights = load_file(str(init_from / "vae" / "diffusion_pytorch_model.safetensors"))
        vae.load_state_dict({k: v.float() for k, v in weights.items()})
        print(f"vae from {init_from}", flush=True)
    else:
        raise SystemExit("train the vae stage first")
    return vae.eval().requires_grad_(False)


def tokenizer_for(state_dir: Path):
    captions = [i.caption for i in corpus.items(split="train")]
    return write_tokenizer(captions, state_dir / "tokenizer", num_merges=1500, max_length=MINI.max_tokens)


def encode_latents(vae, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    means, stds = [], []
    with torch.no_grad():
        for chunk in images.split(256):
            d = vae.encode(chunk * 2 - 1).latent_dist
            means.append(d.mean)
            stds.append(d.std)
    return torch.cat(means), torch.cat(stds)


def init_from_export(folder: Path, modules: dict) -> int:
    """Start from an exported model (its EMA weights) when the training state was lost."""
    info = json.loads((folder / "artshield_mini.json").read_text())
    unet = load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors"))
    text = load_file(str(folder / "text_encoder" / "model.safetensors"))
    for name, m in modules.items():
        m.load_state_dict({k: v.float() for k, v in (unet if "unet" in name else text).items()})
    print(f"initialised from {folder} at step {info['unet_steps']} (optimizer state starts afresh)", flush=True)
    return int(info["unet_steps"])


def train_unet(state_dir: Path, minutes: float, init_from: Path | None = None) -> None:
    torch.manual_seed(SEED)
    vae = load_trained_vae(state_dir, init_from=init_from)
    tok = tokenizer_for(state_dir)
    train_items = corpus.items(split="train")
    mean, std = encode_latents(vae, corpus.load_images(train_items, MINI.image_size))
    scaling = float(1.0 / mean.std())
    ids = tok([i.caption for i in train_items], padding="max_length", max_length=tok.model_max_length,
              truncation=True, return_tensors="pt").input_ids
    empty = tok([""], padding="max_length", max_length=tok.model_max_length, return_tensors="pt").input_ids
    weights = np.array([i.copies for i in train_items], dtype=np.float64)
    weights /= weights.sum()
    unet = build_unet(MINI)
    text = build_text_encoder(MINI, len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    ema_unet, ema_text = build_unet(MINI), build_text_encoder(MINI, len(tok), tok.bos_token_id,
                                                               tok.eos_token_id, tok.pad_token_id)
    ema_unet.load_state_dict(unet.state_dict())
    ema_text.load_state_dict(text.state_dict())
    ema_unet.requires_grad_(False)
    ema_text.requires_grad_(False)
    params = list(unet.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=UNET_LR, weight_decay=0.01)
    sched = noise_scheduler()
    alphas = sched.alphas_cumprod
    snr = alphas / (1 - alphas)
    step, path = 0, state_dir / "unet"
    rng = np.random.default_rng(SEED)
    if (st := load_state(path)) is not None:
        for prefix, m in (("unet", unet), ("text", text), ("ema_unet", ema_unet), ("ema_text", ema_text)):
            m.load_state_dict(unprefixed(prefix, st[0]))
        opt.load_state_dict(st[2])
        step = st[1]["step"]
        rng = np.random.default_rng(SEED + step)
        torch.manual_seed(SEED + step)
        print(f"resumed unet at step {step}", flush=True)
    elif init_from is not None:
        step = init_from_export(init_from, {"unet": unet, "text": text, "ema_unet": ema_unet, "ema_text": ema_text})
        rng = np.random.default_rng(SEED + step)
        torch.manual_seed(SEED + step)
    start = last_ckpt = time.time()
    first_step = step
    running = []
    while step < UNET_STEPS and time.time() - start < minutes * 60:
        idx = torch.from_numpy(rng.choice(len(train_items), UNET_BATCH, p=weights))
        z = (mean[idx] + std[idx] * torch.randn_like(mean[idx])) * scaling
        cap = ids[idx].clone()
        drop = torch.from_numpy(rng.random(UNET_BATCH) < CAPTION_DROPOUT)
        cap[drop] = empty
        t = torch.randint(0, sched.config.num_train_timesteps, (UNET_BATCH,))
        noise = torch.randn_like(z)
        noisy = sched.add_noise(z, noise, t)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, UNET_STEPS, UNET_LR)
        pred = unet(noisy, t, text(cap)[0]).sample
        w = torch.clamp(snr[t], max=MIN_SNR_GAMMA) / snr[t]  # min-SNR-gamma weighting, epsilon target
        loss = (w * (pred - noise).pow(2).flatten(1).mean(1)).mean()
        optimise(opt, params, loss)
        step += 1
        ema_update(((ema_unet, unet), (ema_text, text)), step, EMA_DECAY)
        running.append(loss.item())
        if step % 50 == 0:
            print(f"unet step {step} loss {np.mean(running):.4f} lr {opt.param_groups[0]['lr']:.2e} "
                  f"{(time.time() - start) / max(1, step - first_step):.2f}s/step", flush=True)
            running = []
        if time.time() - last_ckpt > CHECKPOINT_SECONDS:
            save_unet(path, unet, text, ema_unet, ema_text, opt, step, scaling)
            last_ckpt = time.time()
    save_unet(path, unet, text, ema_unet, ema_text, opt, step, scaling)


def save_unet(path, unet, text, ema_unet, ema_text, opt, step, scaling) -> None:
    tensors = {**prefixed("unet", unet), **prefixed("text", text), **prefixed("ema_unet", ema_unet),
               **prefixed("ema_text", ema_text)}
    save_state(path, tensors, {"step": step, "scaling_factor": scaling}, opt)


def export(state_dir: Path, out: Path, init_from: Path | None = None) -> None:
    from diffusers import StableDiffusionPipeline

    prior = json.loads((init_from / "artshield_mini.json").read_text()) if init_from else {}
    vae = load_trained_vae(state_dir, prefer_decoder=True, init_from=init_from)
    tok = tokenizer_for(state_dir)
    st = load_state(state_dir / "unet")
    if st is None:
        raise SystemExit("train the unet stage first")
    unet = build_unet(MINI)
    text = build_text_encoder(MINI, len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    unet.load_state_dict(unprefixed("ema_unet", st[0]))
    text.load_state_dict(unprefixed("ema_text", st[0]))
    vae.register_to_config(scaling_factor=st[1]["scaling_factor"])
    pipe = StableDiffusionPipeline(vae=vae.half(), text_encoder=text.half(), tokenizer=tok, unet=unet.half(),
                                   scheduler=sampling_scheduler(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(out, safe_serialization=True)
    for name in ("vocab.json", "merges.txt"):  # older transformers read these, not tokenizer.json
        shutil.copyfile(state_dir / "tokenizer" / name, out / "tokenizer" / name)
    files = sorted(i.file for i in corpus.items(split="train"))
    vae_state, decoder = load_state(state_dir / "vae"), load_state(state_dir / "decoder")
    info = {"vae_steps": vae_state[1]["step"] if vae_state else prior.get("vae_steps", 0),
            "decoder_steps": decoder[1]["step"] if decoder else prior.get("decoder_steps", 0),
            "unet_steps": st[1]["step"], "seed": SEED,
            "image_size": MINI.image_size, "trained_on": "artshield icon corpus, split 'train'",
            "train_split_sha256": hashlib.sha256("\n".join(files).encode()).hexdigest(),
            "weights_on_disk": "float16 (loaded as float32)",
            "sampling": {"steps": SAMPLING_STEPS, "guidance": SAMPLING_GUIDANCE},
            "conventions": CONVENTIONS}
    (out / "artshield_mini.json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"exported to {out}: {info}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["vae", "unet", "decoder", "export"])
    ap.add_argument("--state", type=Path, default=Path.home() / ".cache" / "artshield-train")
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "src/artshield/assets/mini")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--init-from", type=Path, default=None,
                    help="start from an exported model where --state holds no checkpoint (unet, decoder, export)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.stage in ("vae", "decoder"):
        train_vae(args.state, args.minutes, decoder_only=args.stage == "decoder", init_from=args.init_from)
    elif args.stage == "unet":
        train_unet(args.state, args.minutes, args.init_from)
    else:
        export(args.state, args.out, args.init_from)


if __name__ == "__main__":
    main()
