"""How well does a short mimicry run learn a held-out artist? One number, for choosing settings.

    python scripts/probe_mimicry.py --theme gartoon --method lora --steps 300 --lr 1e-3

Fine-tunes the model on the theme's fine-tuning images (captions with "sks style" in place of the
theme's name), generates --generations images per caption of the bench's tuning split (never
scored by the bench), and prints the judge's style accuracy on them, before and after, as one JSON line. This is how
mini's fine-tuning rates (artshield_mini.json, "conventions") were chosen.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from artshield import corpus
from artshield.bench.experiment import reference_split, trigger_caption
from artshield.generate import generate
from artshield.metrics.judge import Judge
from artshield.mimic import mimic
from artshield.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mini")
    ap.add_argument("--theme", default="gartoon", choices=corpus.themes(heldout=True))
    ap.add_argument("--method", default="lora")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--prompts", type=int, default=32, help="the bench's tuning split (the first N of its shuffled reference captions)")
    ap.add_argument("--images", type=int, default=None, help="fine-tune on the first N images (the bench uses 30)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--generations", type=int, default=1, help="images per caption, distinct seeds (the bench: 2)")
    args = ap.parse_args()
    bundle, judge, theme = load_model(args.model, "cpu"), Judge.load(), args.theme
    finetune = corpus.items(split="finetune", theme=theme)[:args.images]
    captions = [trigger_caption(i.caption, theme) for i in finetune]
    tuning, _ = reference_split(theme, args.prompts, 0)
    prompts = [trigger_caption(i.caption, theme) for i in tuning for _ in range(args.generations)]

    def accuracy(model, adapter=None) -> float:
        styles, _ = judge.predict(generate(model, [adapter.prompt(p) if adapter else p for p in prompts], seed=args.seed))
        return sum(s == theme for s in styles) / len(styles)

    start = time.time()
    adapter = mimic(bundle, list(corpus.load_images(finetune, 64)), captions, args.method, steps=args.steps,
                    lr=args.lr, batch_size=args.batch_size, seed=args.seed)
    seconds = time.time() - start
    print(json.dumps({"theme": theme, "method": args.method, "steps": args.steps, "lr": adapter.info["config"]["lr"],
                      "images": len(finetune), "seed": args.seed,
                      "prompts": len(prompts), "style_accuracy_before": accuracy(bundle),
                      "style_accuracy_after": accuracy(adapter.apply(load_model(args.model, "cpu")), adapter),
                      "train_seconds": round(seconds, 1), "torch_threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
