"""Train mini's x4 upscaler: a StableDiffusionUpscalePipeline that is not the attacked model.

Hönig et al.'s noisy upscaling purifies with stabilityai/stable-diffusion-x4-upscaler, a model
separate from the one the mimic fine-tunes. mini has no such model, so this script trains one in
the same wiring (`architecture.build_upscaler_*`, SD's x4 recipe: v-prediction latents, the
low-resolution image concatenated to the latents after noise augmentation, its noise level as a
class label), on icons of mini's training themes only (never the held-out artists), rendered
from the Debian packages at 4x mini's resolution (128 px). Stages, each resumable from --state:

    data    render the 'train' split's source icons at 128 px (vector files, and raster files drawn
            at 128 px or more); 1 in 20 is kept aside to measure the upscaler
    vae     the AutoencoderKL (x4), on random 64 px crops; then its latents are rescaled so that
            SD's upscaler scaling factor (0.08333) gives them unit variance
    decoder the VAE's decoder alone on whole 128 px icons, the encoder frozen (the latents, and so the
            unet trained on them, do not change). Trained on crops only, the VAE shifts whole icons'
            colours: its group norms see mostly white margins there (mean colour error 7.8/255 on whole
            icons against 1.6/255 on crops, 32 kept-aside icons, after the vae stage)
    unet    UNet and text encoder jointly, on 64 px crops (16 px low-resolution views), then on whole
            128 px icons from step UNET_CROP_STEPS on
    export  a diffusers folder (fp16 weights on disk) and its PSNR against bicubic on the kept-aside icons

    python scripts/train_upscaler.py data
    python scripts/train_upscaler.py vae --minutes 20
    python scripts/train_upscaler.py decoder --minutes 30
    python scripts/train_upscaler.py unet --minutes 60
    python scripts/train_upscaler.py export --out src/artshield/assets/mini-x4
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_mini import (ema_update, load_state, lr_at, optimise, prefixed, save_state,  # noqa: E402
                        save_unet, unprefixed)

from artshield import corpus  # noqa: E402
from artshield.models.architecture import (MINI_X4, X4_SCALING_FACTOR, build_upscaler_text_encoder,  # noqa: E402
                                           build_upscaler_unet, build_upscaler_vae, upscaler_index,
                                           upscaler_schedulers)
from artshield.models.tokenizer import write_tokenizer  # noqa: E402

SEED = 20261129
SIZE, CROP = 128, 64
VAE_STEPS, VAE_BATCH, VAE_LR, VAE_KL = 4500, 16, 1e-3, 1e-8
DECODER_STEPS, DECODER_BATCH, DECODER_LR = 600, 8, 1e-4
UNET_STEPS, UNET_BATCH, UNET_LR = 6000, 32, 3e-4   # mini-x4's first 2,000 steps ran on a 2,000-step schedule
UNET_CROP_STEPS = 3600     # after these, whole icons (batch UNET_BATCH / 4: the same pixels a step), as
                           # noisy-upscale feeds it: a crop's group-norm statistics are not a whole icon's
CAPTION_DROPOUT, MIN_SNR_GAMMA, EMA_DECAY = 0.1, 5.0, 0.999
CHECKPOINT_SECONDS = 240


def render_data(state: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import build_corpus as bc
    from PIL import Image

    manifest = json.loads((corpus.CORPUS_DIR / "manifest.json").read_text())
    records = sorted({r["source"]: r for r in manifest["images"] if r["split"] == "train"}.values(),
                     key=lambda r: r["source"])
    bc.ensure_packages(sorted({r["package"] for r in records}))
    images, captions, skipped = [], [], 0
    for r in records:
        path = bc.ICON_ROOT / r["source"]
        if path.suffix == ".png" and min(Image.open(path).size) < SIZE:
            skipped += 1               # drawn smaller than 128 px: no true detail to learn from
            continue
        images.append(np.asarray(bc.render(path, SIZE)))
        captions.append(r["caption"])
    rng = np.random.default_rng(SEED)
    held = np.zeros(len(images), bool)
    held[rng.choice(len(images), len(images) // 20, replace=False)] = True
    state.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(state / "data.npz", images=np.stack(images), held=held)
    (state / "captions.json").write_text(json.dumps(captions))
    print(f"{len(images)} icons at {SIZE} px ({held.sum()} kept aside), {skipped} raster files under {SIZE} px skipped")


def load_data(state: Path) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    if not (state / "data.npz").exists():
        raise SystemExit("run the data stage first")
    d = np.load(state / "data.npz")
    images = torch.from_numpy(d["images"]).permute(0, 3, 1, 2).contiguous()    # uint8 N,3,128,128
    return images, d["held"], json.loads((state / "captions.json").read_text())


def crops(images: torch.Tensor, idx: np.ndarray, rng: np.random.Generator, size: int = CROP) -> torch.Tensor:
    """Random size-px crops on a 4-pixel grid (so the 4x-smaller view aligns), random flips, in [0, 1]."""
    out = []
    for i in idx:
        y, x = (rng.integers(0, (SIZE - size) // 4 + 1, 2) * 4).tolist()
        c = images[i, :, y:y + size, x:x + size]
        out.append(c.flip(2) if rng.random() < 0.5 else c)
    return torch.stack(out).float() / 255


def downscale(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=0.25, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)


def train_vae(state: Path, minutes: float) -> None:
    torch.manual_seed(SEED)
    images, held, _ = load_data(state)
    train_idx, test = np.flatnonzero(~held), images[held][:64].float() / 255
    vae = build_upscaler_vae(MINI_X4)
    opt = torch.optim.AdamW(vae.parameters(), lr=VAE_LR, weight_decay=0.0)
    step, path, rng = 0, state / "vae", np.random.default_rng(SEED)
    if (st := load_state(path)) is not None:
        vae.load_state_dict(unprefixed("vae", st[0]))
        opt.load_state_dict(st[2])
        step = st[1]["step"]
        rng = np.random.default_rng(SEED + step)
        print(f"resumed vae at step {step}", flush=True)
    start = last = time.time()
    while step < VAE_STEPS and time.time() - start < minutes * 60:
        x = crops(images, rng.choice(train_idx, VAE_BATCH), rng)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, VAE_STEPS, VAE_LR)
        post = vae.encode(x * 2 - 1).latent_dist
        rec = (vae.decode(post.sample()).sample + 1) / 2
        kl = post.kl().mean()
        loss = F.mse_loss(rec, x) + 0.1 * F.l1_loss(rec, x) + VAE_KL * kl
        optimise(opt, list(vae.parameters()), loss)
        step += 1
        if step % 100 == 0:
            print(f"vae step {step} loss {loss.item():.5f} held-out psnr {vae_psnr(vae, test):.2f} dB "
                  f"{(time.time() - start):.0f}s", flush=True)
        if time.time() - last > CHECKPOINT_SECONDS:
            save_state(path, prefixed("vae", vae), {"step": step}, opt)
            last = time.time()
    save_state(path, prefixed("vae", vae), {"step": step}, opt)


def trained_vae(state: Path):
    """The vae stage's AutoencoderKL, with the decoder stage's decoder when there is one."""
    st = load_state(state / "vae")
    if st is None:
        raise SystemExit("train the vae stage first")
    vae = build_upscaler_vae(MINI_X4)
    vae.load_state_dict(unprefixed("vae", st[0]))
    if (dec := load_state(state / "decoder")) is not None:
        vae.load_state_dict(unprefixed("vae", dec[0]), strict=False)
    return vae, st[1]["step"], (dec[1]["step"] if dec else 0)


DECODER_PARTS = ("post_quant_conv", "decoder")     # what the decoder stage trains and saves


def decoder_params(vae) -> list:
    return [q for part in DECODER_PARTS for q in getattr(vae, part).parameters()]


def train_decoder(state: Path, minutes: float) -> None:
    torch.manual_seed(SEED)
    images, held, _ = load_data(state)
    train_idx, test = np.flatnonzero(~held), images[held][:32].float() / 255
    vae, _, step = trained_vae(state)
    vae.requires_grad_(False)
    params = decoder_params(vae)
    for q in params:
        q.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=DECODER_LR, weight_decay=0.0)
    path, rng = state / "decoder", np.random.default_rng(SEED + step)
    if (st := load_state(path)) is not None:
        opt.load_state_dict(st[2])
        print(f"resumed decoder at step {step}", flush=True)
    else:
        print(f"decoder from the vae stage: {whole_icon_scores(vae, test)}", flush=True)
    start = last = time.time()
    while step < DECODER_STEPS and time.time() - start < minutes * 60:
        x = images[rng.choice(train_idx, DECODER_BATCH)].float() / 255
        for g in opt.param_groups:
            g["lr"] = lr_at(step, DECODER_STEPS, DECODER_LR, warmup=50)
        with torch.no_grad():
            z = vae.encode(x * 2 - 1).latent_dist.sample()
        rec = (vae.decode(z).sample + 1) / 2
        loss = F.mse_loss(rec, x) + 0.1 * F.l1_loss(rec, x)
        optimise(opt, params, loss)
        step += 1
        if step % 50 == 0:
            print(f"decoder step {step} loss {loss.item():.5f} {whole_icon_scores(vae, test)} "
                  f"{(time.time() - start):.0f}s", flush=True)
        if time.time() - last > CHECKPOINT_SECONDS:
            save_state(path, decoder_tensors(vae), {"step": step}, opt)
            last = time.time()
    save_state(path, decoder_tensors(vae), {"step": step}, opt)


def whole_icon_scores(vae, x: torch.Tensor) -> str:
    rec = vae_reconstruction(vae, x)
    return f"whole-icon psnr {psnr(rec, x):.2f} dB, colour error {colour_error(rec, x):.2f}/255"


def decoder_tensors(vae) -> dict[str, torch.Tensor]:
    return {k: v for k, v in prefixed("vae", vae).items() if k.startswith(tuple(f"vae.{p}." for p in DECODER_PARTS))}


def colour_error(y: torch.Tensor, x: torch.Tensor) -> float:
    """Mean |difference| of each picture's mean red, green and blue, in /255: a shift of colour
    (a green icon drawn grey) that PSNR on mostly white icons hardly sees."""
    return round(float((y.mean((2, 3)) - x.mean((2, 3))).abs().mean() * 255), 2)


@torch.no_grad()
def vae_reconstruction(vae, x: torch.Tensor) -> torch.Tensor:
    return ((vae.decode(vae.encode(x * 2 - 1).latent_dist.mode()).sample + 1) / 2).clamp(0, 1)


@torch.no_grad()
def vae_psnr(vae, x: torch.Tensor) -> float:
    was = vae.training
    vae.eval()
    rec = vae_reconstruction(vae, x)
    vae.train(was)
    return psnr(rec, x)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(1 / mse)).mean())


def rescaled_vae(state: Path, images: torch.Tensor, train_idx: np.ndarray):
    """The trained VAE with its latent space rescaled so that latents x 0.08333 have unit standard
    deviation, as SD's x4 upscaler reads them: the mean half of quant_conv is multiplied by s (its
    log-variance half shifted by 2 log s) and post_quant_conv divided by s, so decodes are unchanged."""
    vae, vae_steps, decoder_steps = trained_vae(state)
    vae.eval().requires_grad_(False)
    sample = images[train_idx[:512]].float() / 255
    with torch.no_grad():
        std = float(torch.cat([vae.encode(c * 2 - 1).latent_dist.mean for c in sample.split(64)]).std())
        s = 1.0 / (X4_SCALING_FACTOR * std)
        q, pq = vae.quant_conv, vae.post_quant_conv
        q.weight[:4] *= s
        q.bias[:4] *= s
        q.bias[4:] += 2 * math.log(s)
        pq.weight /= s
    return vae, vae_steps, decoder_steps


def tokenizer_for(state: Path, captions: list[str]):
    return write_tokenizer(captions, state / "tokenizer", num_merges=1500, max_length=MINI_X4.max_tokens)


def train_unet(state: Path, minutes: float, total: int = UNET_STEPS) -> None:
    torch.manual_seed(SEED)
    images, held, captions = load_data(state)
    train_idx = np.flatnonzero(~held)
    vae, _, _ = rescaled_vae(state, images, train_idx)
    tok = tokenizer_for(state, captions)
    ids = tok(captions, padding="max_length", max_length=tok.model_max_length, truncation=True,
              return_tensors="pt").input_ids
    empty = tok([""], padding="max_length", max_length=tok.model_max_length, return_tensors="pt").input_ids

    def text_encoder():
        return build_upscaler_text_encoder(MINI_X4, len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)

    unet, text = build_upscaler_unet(MINI_X4), text_encoder()
    ema_unet, ema_text = build_upscaler_unet(MINI_X4), text_encoder()
    for ema, live in ((ema_unet, unet), (ema_text, text)):
        ema.load_state_dict(live.state_dict())
        ema.requires_grad_(False)
    params = list(unet.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=UNET_LR, weight_decay=0.01)
    sched, low_res = upscaler_schedulers()
    snr = sched.alphas_cumprod / (1 - sched.alphas_cumprod)
    step, path, rng = 0, state / "unet", np.random.default_rng(SEED)
    if (st := load_state(path)) is not None:
        for prefix, m in (("unet", unet), ("text", text), ("ema_unet", ema_unet), ("ema_text", ema_text)):
            m.load_state_dict(unprefixed(prefix, st[0]))
        opt.load_state_dict(st[2])
        step = st[1]["step"]
        rng = np.random.default_rng(SEED + step)
        torch.manual_seed(SEED + step)
        print(f"resumed unet at step {step}", flush=True)
    start = last = time.time()
    first, running = step, []
    while step < total and time.time() - start < minutes * 60:
        whole = step >= UNET_CROP_STEPS
        idx = rng.choice(train_idx, UNET_BATCH // 4 if whole else UNET_BATCH)
        x = crops(images, idx, rng, SIZE if whole else CROP)
        with torch.no_grad():
            z = vae.encode(x * 2 - 1).latent_dist.sample() * X4_SCALING_FACTOR
        n = len(idx)
        level = torch.from_numpy(rng.integers(0, MINI_X4.max_noise_level + 1, n))
        small = downscale(x) * 2 - 1
        small = low_res.add_noise(small, torch.randn_like(small), level)
        cap = ids[idx].clone()
        cap[torch.from_numpy(rng.random(n) < CAPTION_DROPOUT)] = empty
        t = torch.randint(0, sched.config.num_train_timesteps, (n,))
        noise = torch.randn_like(z)
        noisy = sched.add_noise(z, noise, t)
        target = sched.get_velocity(z, noise, t)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total, UNET_LR)
        pred = unet(torch.cat([noisy, small], 1), t, text(cap)[0], class_labels=level).sample
        w = torch.clamp(snr[t], max=MIN_SNR_GAMMA) / (snr[t] + 1)   # min-SNR-gamma weighting, v target
        loss = (w * (pred - target).pow(2).flatten(1).mean(1)).mean()
        optimise(opt, params, loss)
        step += 1
        ema_update(((ema_unet, unet), (ema_text, text)), step, EMA_DECAY)
        running.append(loss.item())
        if step % 50 == 0:
            print(f"unet step {step} loss {np.mean(running):.4f} lr {opt.param_groups[0]['lr']:.2e} "
                  f"{(time.time() - start) / max(1, step - first):.2f}s/step", flush=True)
            running = []
        if time.time() - last > CHECKPOINT_SECONDS:
            save_unet(path, unet, text, ema_unet, ema_text, opt, step, X4_SCALING_FACTOR)
            last = time.time()
    save_unet(path, unet, text, ema_unet, ema_text, opt, step, X4_SCALING_FACTOR)


def export(state: Path, out: Path, evaluate: int) -> None:
    from diffusers import DDIMScheduler, StableDiffusionUpscalePipeline

    images, held, captions = load_data(state)
    train_idx = np.flatnonzero(~held)
    vae, vae_steps, decoder_steps = rescaled_vae(state, images, train_idx)
    tok = tokenizer_for(state, captions)
    st = load_state(state / "unet")
    if st is None:
        raise SystemExit("train the unet stage first")
    unet = build_upscaler_unet(MINI_X4)
    text = build_upscaler_text_encoder(MINI_X4, len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    unet.load_state_dict(unprefixed("ema_unet", st[0]))
    text.load_state_dict(unprefixed("ema_text", st[0]))
    latents, low_res = upscaler_schedulers()
    pipe = StableDiffusionUpscalePipeline(vae=vae.half(), text_encoder=text.half(), tokenizer=tok, unet=unet.half(),
                                          low_res_scheduler=low_res, scheduler=DDIMScheduler.from_config(latents.config),
                                          max_noise_level=MINI_X4.max_noise_level)
    pipe.save_pretrained(out, safe_serialization=True)
    (out / "model_index.json").write_text(json.dumps(upscaler_index(MINI_X4.max_noise_level), indent=1) + "\n")
    for name in ("vocab.json", "merges.txt"):
        (out / "tokenizer" / name).write_bytes((state / "tokenizer" / name).read_bytes())
    info = {"what": "x4 upscaler of the embedded model (StableDiffusionUpscalePipeline), trained by "
                    "scripts/train_upscaler.py on icons of mini's training themes at 128 px; never on the "
                    "held-out artists",
            "vae_steps": vae_steps, "decoder_steps": decoder_steps, "unet_steps": st[1]["step"], "seed": SEED, "size": SIZE,
            "training_icons": int((~held).sum()), "weights_on_disk": "float16 (loaded as float32)",
            "evaluation": evaluate_upscaler(out, images[held][:evaluate], [c for c, h in zip(captions, held) if h])}
    (out / "artshield_upscaler.json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info, indent=1))


@torch.no_grad()
def evaluate_upscaler(folder: Path, images: torch.Tensor, captions: list[str]) -> dict:
    """PSNR at 128 px of the upscaled 32 px view against the icon, next to bicubic upscaling, on icons
    kept aside from training (diffusers' defaults but 25 steps)."""
    from diffusers import StableDiffusionUpscalePipeline

    pipe = StableDiffusionUpscalePipeline.from_pretrained(folder, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    x = images.float() / 255
    small = downscale(x)
    out = torch.cat([pipe(prompt=list(captions[i:i + 16]), image=small[i:i + 16], num_inference_steps=25,
                          generator=torch.Generator().manual_seed(i), output_type="pt").images
                     for i in range(0, len(x), 16)])
    bicubic = F.interpolate(small, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)

    return {"icons": len(x), "psnr_upscaler_db": round(psnr(out.clamp(0, 1), x), 2),
            "psnr_bicubic_db": round(psnr(bicubic, x), 2), "colour_error_upscaler": colour_error(out.clamp(0, 1), x),
            "colour_error_bicubic": colour_error(bicubic, x), "noise_level": 20, "steps": 25}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["data", "vae", "decoder", "unet", "export"])
    ap.add_argument("--state", type=Path, default=Path.home() / ".cache" / "artshield-upscaler",
                    help="checkpoints and rendered data (outside git; every stage resumes from it)")
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "src/artshield/assets/mini-x4")
    ap.add_argument("--evaluate", type=int, default=64, help="kept-aside icons to score at export")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--unet-steps", type=int, default=UNET_STEPS,
                    help="the unet stage's total steps (its cosine schedule's length); raising it on a finished "
                         "state resumes with the rate of that point of the longer schedule")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.stage == "data":
        render_data(args.state)
    elif args.stage == "vae":
        train_vae(args.state, args.minutes)
    elif args.stage == "decoder":
        train_decoder(args.state, args.minutes)
    elif args.stage == "unet":
        train_unet(args.state, args.minutes, args.unet_steps)
    else:
        export(args.state, args.out, args.evaluate)


if __name__ == "__main__":
    main()
