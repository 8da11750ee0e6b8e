"""Train a DiT mini: a small flow-matching transformer in Stable Diffusion 3's layout, on the icon
corpus, on mini's own (frozen) VAE latents; resumable, fixed seed.

    python scripts/train_dit_mini.py train --minutes 120 --state /work/dit-state   # run again to go on
    python scripts/train_dit_mini.py export --state /work/dit-state --out /work/dit-mini
    artshield bench --preset model-quality --model /work/dit-mini -o out/dit-quality

The layout is SD3's without T5 (as StableDiffusion3Pipeline allows): two CLIP text encoders with
projections, trained jointly with the transformer as mini's UNet stage trains its encoder, and an
SD3Transformer2DModel on mini's 8 x 8 x 4 latents in 2 x 2 patches. The training step is the one
artshield's own code defines for SD3 (a ModelBundle over the modules being trained;
models.diffusion.denoising_loss: x_t = (1 - s) z + s eps, target eps - z, logit-normal times), so
the model learns exactly what every command will ask of it. The flow shift is 1: SD3's 3.0 is for
1024-px images (64 x 64 patches), mini's latents have 16 patches.

The export is a diffusers StableDiffusion3Pipeline folder with an artshield.json (sampling
defaults and the corpus conventions), written outside the package: it is committed only if it
reaches mini's quality figures (issue #34).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from train_mini import (CAPTION_DROPOUT, CONVENTIONS, EMA_DECAY, SEED, ema_update, load_state, lr_at, optimise,
                        prefixed, save_state, tokenizer_for, unprefixed)

from artshield import corpus
from artshield.models import load_model
from artshield.models.bundle import ModelBundle
from artshield.models.conventions import ModelConventions
from artshield.models.diffusion import denoising_loss
from artshield.models.flow import FlowDenoiser, FlowSchedule

STEPS, BATCH, LR = 12000, 64, 3e-4
WIDTH, LAYERS, HEADS, HEAD_DIM = 128, 6, 4, 64            # text width; transformer depth and attention
SCHEDULER = {"num_train_timesteps": 1000, "shift": 1.0}
SAMPLING_STEPS, SAMPLING_GUIDANCE = 30, 5.0
CHECKPOINT_SECONDS = 240


def build(vocab: int, tok) -> dict:
    from diffusers import SD3Transformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    def encoder():
        return CLIPTextModelWithProjection(CLIPTextConfig(
            vocab_size=vocab, hidden_size=WIDTH, intermediate_size=4 * WIDTH, num_hidden_layers=4,
            num_attention_heads=4, max_position_embeddings=tok.model_max_length, projection_dim=WIDTH,
            hidden_act="gelu", bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id))

    transformer = SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=4, num_layers=LAYERS,
                                        attention_head_dim=HEAD_DIM, num_attention_heads=HEADS,
                                        joint_attention_dim=2 * WIDTH, caption_projection_dim=HEADS * HEAD_DIM,
                                        pooled_projection_dim=2 * WIDTH, out_channels=4, pos_embed_max_size=8)
    return {"transformer": transformer, "text_encoder": encoder(), "text_encoder_2": encoder()}


def bundle_over(vae, tok, parts: dict) -> ModelBundle:
    return ModelBundle(vae=vae, unet=FlowDenoiser(parts["transformer"], "sd3"), text_encoder=parts["text_encoder"],
                       tokenizer=tok, text_encoder_2=parts["text_encoder_2"], tokenizer_2=tok,
                       scheduler=FlowSchedule(SCHEDULER, "sd3"), spec="dit-mini", source="training",
                       device=torch.device("cpu"), dtype=torch.float32, family="sd3",
                       conventions=ModelConventions())


def train(state_dir: Path, minutes: float) -> None:
    torch.manual_seed(SEED)
    mini = load_model("mini", device="cpu")
    vae = mini.vae
    tok = tokenizer_for(state_dir)
    items = corpus.items(split="train")
    with torch.no_grad():
        dists = [vae.encode(chunk * 2 - 1).latent_dist for chunk in corpus.load_images(items, 32).split(256)]
    mean, std = torch.cat([d.mean for d in dists]), torch.cat([d.std for d in dists])
    captions = [i.caption for i in items]
    weights = np.array([i.copies for i in items], dtype=np.float64)
    weights /= weights.sum()
    parts, ema = build(len(tok), tok), build(len(tok), tok)
    for name in parts:
        ema[name].load_state_dict(parts[name].state_dict())
        ema[name].requires_grad_(False)
    params = [p for m in parts.values() for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.01)
    step, path = 0, state_dir / "dit"
    rng = np.random.default_rng(SEED)
    if (st := load_state(path)) is not None:
        for name in parts:
            parts[name].load_state_dict(unprefixed(name, st[0]))
            ema[name].load_state_dict(unprefixed(f"ema_{name}", st[0]))
        opt.load_state_dict(st[2])
        step = st[1]["step"]
        rng = np.random.default_rng(SEED + step)
        torch.manual_seed(SEED + step)
        print(f"resumed at step {step}", flush=True)
    bundle = bundle_over(vae, tok, parts)
    g = torch.Generator().manual_seed(SEED + step)
    start = last = time.time()
    first, running = step, []
    while step < STEPS and time.time() - start < minutes * 60:
        idx = torch.from_numpy(rng.choice(len(items), BATCH, p=weights))
        z = (mean[idx] + std[idx] * torch.randn_like(mean[idx]) - mini.shift_factor) * mini.scaling_factor
        drop = rng.random(BATCH) < CAPTION_DROPOUT
        context = bundle.embed(["" if d else captions[i] for i, d in zip(idx.tolist(), drop)])
        for group in opt.param_groups:
            group["lr"] = lr_at(step, STEPS, LR)
        loss = denoising_loss(bundle, z, context, g, reduction="mean")
        optimise(opt, params, loss)
        step += 1
        ema_update([(ema[n], parts[n]) for n in parts], step, EMA_DECAY)
        running.append(loss.item())
        if step % 50 == 0:
            print(f"dit step {step} loss {np.mean(running):.4f} lr {opt.param_groups[0]['lr']:.2e} "
                  f"{(time.time() - start) / max(1, step - first):.2f}s/step", flush=True)
            running = []
        if time.time() - last > CHECKPOINT_SECONDS:
            checkpoint(path, parts, ema, opt, step)
            last = time.time()
    checkpoint(path, parts, ema, opt, step)


def checkpoint(path: Path, parts: dict, ema: dict, opt, step: int) -> None:
    tensors = {}
    for name in parts:
        tensors.update(prefixed(name, parts[name]))
        tensors.update(prefixed(f"ema_{name}", ema[name]))
    save_state(path, tensors, {"step": step}, opt)


def export(state_dir: Path, out: Path) -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline

    st = load_state(state_dir / "dit")
    if st is None:
        raise SystemExit(f"no DiT checkpoint in {state_dir}: run the train stage first")
    tok = tokenizer_for(state_dir)
    parts = build(len(tok), tok)
    for name in parts:
        parts[name].load_state_dict(unprefixed(f"ema_{name}", st[0]))
    vae = load_model("mini", device="cpu").vae
    vae.register_to_config(shift_factor=0.0)      # SD3's pipeline adds the VAE's shift: mini's has none
    pipe = StableDiffusion3Pipeline(transformer=parts["transformer"], vae=vae,
                                    text_encoder=parts["text_encoder"], tokenizer=tok,
                                    text_encoder_2=parts["text_encoder_2"], tokenizer_2=tok, text_encoder_3=None,
                                    tokenizer_3=None, scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER))
    pipe.save_pretrained(out, safe_serialization=True)
    conventions = {k: v for k, v in CONVENTIONS.items() if k not in ("learning_rates", "esd_iterations",
                                                                      "esd_ddim_steps")}
    info = {"sampling": {"steps": SAMPLING_STEPS, "guidance": SAMPLING_GUIDANCE}, "conventions": conventions}
    (out / "artshield.json").write_text(json.dumps(info, indent=1) + "\n")
    (out / "dit_mini.json").write_text(json.dumps({"steps": st[1]["step"], "seed": SEED, "planned_steps": STEPS,
                                                   "trained_on": "artshield icon corpus, split 'train'",
                                                   "vae": "mini's (frozen)"}, indent=1) + "\n")
    print(f"exported step {st[1]['step']} to {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["train", "export"])
    ap.add_argument("--state", type=Path, required=True, help="checkpoint folder (outside git)")
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.stage == "train":
        train(args.state, args.minutes)
    else:
        export(args.state, args.out or args.state / "export")


if __name__ == "__main__":
    main()
