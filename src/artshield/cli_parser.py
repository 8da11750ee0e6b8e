"""The command line's arguments: every command, flag and help text (cli.py runs them)."""
from __future__ import annotations

import argparse

from . import __version__, names


class _Parser(argparse.ArgumentParser):
    def error(self, message):        # one line, as every usage error; not argparse's usage block
        self.exit(2, f"artshield: error: {self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars or messages")
    common.add_argument("--json", action="store_true", help="also print results.json to stdout")
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--model", default="mini",
                       help="'mini' (embedded, default), a local diffusers folder, a single-file .safetensors "
                       "checkpoint (A1111/ComfyUI), an erase output folder, or a hub id org/name")
    model.add_argument("--device", default="auto", help="auto (default: cuda, then mps, then cpu), cpu, cuda, cuda:N, mps")
    model.add_argument("--dtype", default="auto", choices=("auto", "fp32", "fp16", "bf16"),
                       help="weights' precision (default auto: fp16 on CUDA and MPS, fp32 on the CPU and for mini)")
    model.add_argument("--model-config", default=None, metavar="ARCH",
                       help="a single-file --model's architecture: sd15, sd2 (768 px, v-prediction; the default for "
                       "SD 2.x files), sd2-base (512 px, epsilon), sdxl, or a diffusers folder of the same "
                       "architecture (default: detected); for an SD3 or FLUX file, the diffusers folder of its base model, "
                       "which gives the text encoders, VAE and tokenizers the file does not carry")
    memory = argparse.ArgumentParser(add_help=False)
    memory.add_argument("--gradient-checkpointing", action="store_true",
                        help="recompute activations in the backward pass: less memory, about a third slower")
    memory.add_argument("--attention-slicing", action="store_true",
                        help="compute attention a slice at a time: less memory on large images")
    memory.add_argument("--vae-tiling", action="store_true",
                        help="encode and decode large images in tiles: less memory above the model's size")
    model.add_argument("--seed", type=int, default=0, help="base seed; image i uses seed+i (default 0)")
    batch = argparse.ArgumentParser(add_help=False)
    batch.add_argument("images", nargs="+", help="image files or folders of images")
    batch.add_argument("--format", choices=("keep", "png"), default="keep",
                       help="keep each input's format (default), or write PNG (lossless)")
    batch.add_argument("--overwrite", action="store_true", help="redo images whose output already exists")
    cluster = argparse.ArgumentParser(add_help=False)
    cluster.add_argument("--ray", nargs="?", const="auto", default=None, metavar="ADDRESS",
                         help="run on a Ray cluster (pip install 'artshield[ray]'): the one this machine runs, else a "
                         "new local one; or the cluster at ADDRESS (host:port of its head)")
    cluster.add_argument("--ray-cpus", type=int, default=1, metavar="N",
                         help="CPUs per Ray task (default 1; a task also takes one GPU when the cluster has GPUs)")
    sampling = argparse.ArgumentParser(add_help=False)
    sampling.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    sampling.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale")

    ap = _Parser(prog="artshield", description="Copyright protection around text-to-image "
                                 "diffusion models: protect, purify, mimic, measure, erase, audit.")
    ap.add_argument("--version", action="version", version=f"artshield {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    g = sub.add_parser("generate", parents=[common, model, sampling], help="generate images from text prompts")
    g.add_argument("--prompt", action="append", required=True, help="text prompt (repeat for several)")
    g.add_argument("-n", type=int, default=4, help="images per prompt (default 4)")
    g.add_argument("-o", "--output", required=True, help="output folder (PNG files and results.json)")
    g.add_argument("--adapter", default=None, help="a folder written by artshield mimic, applied to the model")
    g.add_argument("--sampler", default="ddim", choices=["ddim", "dpm-solver++"],
                   help="ddim (default) or dpm-solver++ (as good in 10-15 steps as DDIM in 30)")
    g.add_argument("--autocast", default=None, choices=["bf16", "fp16"],
                   help="run the model's matrix products in this precision (bf16: faster on CPUs with "
                        "AVX-512 BF16 or AMX, and on GPUs)")
    g.add_argument("--mitigate-memorization", action="store_true",
                   help="before sampling each image, adjust the prompt's text states until the first step's "
                        "text-conditional noise magnitude is at most --mitigate-target (Wen et al., ICLR 2024): "
                        "memorised prompts are pulled less towards their training image (on mini they still "
                        "reproduce it, only slightly noisier: docs/audit.md#mitigation); ordinary prompts under "
                        "the target are left exactly as they are")
    g.add_argument("--mitigate-target", type=float, default=None,
                   help="the magnitude to reach (default: the authors' 3 on SD 1.4, rescaled by the square root "
                        "of the latent's size; better, one measured on the model's own non-memorised prompts)")
    g.add_argument("--mitigate-iterations", type=int, default=None, help="most AdamW steps per image (default 10)")
    g.add_argument("--mitigate-lr", type=float, default=None, help="AdamW's learning rate (default 0.05)")
    g.set_defaults(func="generate")

    b = sub.add_parser("bench", parents=[common, model, sampling, cluster], help="run a measured experiment, write results.json")
    b.add_argument("--preset", default="model-quality", help=f"one of: {', '.join(names.BENCH_PRESETS)}")
    b.add_argument("--per-theme", type=int, default=16, help="generations per training theme (default 16)")
    b.add_argument("-o", "--output", required=True, help="report folder")
    b.add_argument("--summarise", action="store_true",
                   help="run no cell: write results.json and report.html from the cells already stored in -o "
                        "(a long run under way, or one shared by several workers)")
    b.add_argument("--judge", default="icon",
                   help="who says a generation is the artist's: icon (the icon judge's style head, default), or a "
                        "style judge (clip, csd) reading CSLS prototypes of every corpus theme")
    b.add_argument("--judge-path", default=None, help="clip: a transformers CLIP folder; csd: model.safetensors")
    b.set_defaults(func="bench")

    ck = sub.add_parser("check", parents=[common, model], help="does a protection hold on my art? (the bench on your images)",
                        description="The bench with your images as the artist: first whether the style judge can tell "
                        "your style apart (else it stops and says so), then clean vs protected vs purified mimicry "
                        "(LoRA) on distinct prompts, judged against a held-out third of your images.")
    ck.add_argument("images", help="a folder of your images (at least 10 for the judge to prove itself)")
    ck.add_argument("-o", "--output", required=True, help="report folder (report.html, results.json, cells)")
    ck.add_argument("--method", default="advdm", help=f"the protection, one of: {', '.join(names.PROTECT)}")
    ck.add_argument("--budget", type=float, default=16.0, help="L-infinity budget in 0-255 units (default 16)")
    ck.add_argument("--purifiers", default="jpeg,noisy-upscale", help="comma-separated (default jpeg,noisy-upscale)")
    ck.add_argument("--level", default="quick", choices=["quick", "standard"],
                    help="quick: one training seed (no verdict, a first look); standard: 3 seeds")
    ck.add_argument("--judge", default="icon", help="the style judge: icon (mini's, default), clip, csd")
    ck.add_argument("--judge-path", default=None,
                    help="clip: a transformers CLIP folder; csd: CSD's model.safetensors (nothing is downloaded)")
    ck.add_argument("--others", default=None, metavar="DIR",
                    help="images of other styles, one sub-folder per style (default: the corpus's icon themes)")
    ck.add_argument("--prompts", default=None, metavar="FILE",
                    help="a text file, one prompt per line, with the trigger word sks (default: built-in subjects)")
    ck.set_defaults(func="check")

    pr = sub.add_parser("protect", parents=[common, model, memory, batch, cluster], help="protect images against fine-tuning mimicry",
                        description="Protect artworks with an adversarial perturbation. Defaults of each method "
                        "are its paper's; README's Protect section lists them.")
    pr.add_argument("-o", "--output", required=True, help="output folder (protected copies and results.json)")
    pr.add_argument("--method", default="advdm", help=f"one of: {', '.join(names.PROTECT)} (default advdm)")
    pr.add_argument("--budget", type=float, default=None,
                    help="L-infinity budget in 0-255 pixel units (default: the method's paper value)")
    pr.add_argument("--steps", type=int, default=None, help="optimisation steps (default: the method's)")
    pr.add_argument("--step", type=float, default=None, help="PGD step size in 0-255 units")
    pr.add_argument("--eot", default=None, help="robustness: EOT transforms, comma-separated (jpeg,blur,resize)")
    pr.add_argument("--prompt", default=None, help="text condition (default: the model's generic prompt)")
    pr.add_argument("--target", default=None, help="mist/photoguard/ace target: texture, grey, zero, or an image file")
    pr.add_argument("--target-style", default=None, help="glaze: the target style (default: chosen automatically)")
    pr.add_argument("--surrogate-images", default=None, metavar="DIR",
                    help="aspl: a folder of other clean images of the artist for the surrogate to learn (the "
                    "authors' clean set A; default: the images being protected)")
    pr.add_argument("--batch", type=int, default=4, help="images optimised together (default 4; aspl, ace, metacloak: all)")
    pr.add_argument("--option", action="append", metavar="KEY=VALUE",
                    help="any other setting of the method's config (e.g. metacloak pool_steps=200, ace rank=8; "
                    "README's Protect table and each method's docstring list them); repeatable")
    pr.set_defaults(func="protect")

    pu = sub.add_parser("purify", parents=[common, model, batch], help="strip protections the way a mimic would",
                        description="Purify images: filters (bilateral, jpeg, gaussian-noise, gaussian-blur, median) "
                        "or diffusion redraws (noisy-redraw and diffpure with the model, noisy-upscale with an x4 upscaler "
                        "that is not the model: mini's own on mini, else upscaler=DIR; impress), or a denoiser trained to "
                        "undo one protection (denoiser, weights=FILE.safetensors or a shipped name: robust-16).")
    pu.add_argument("-o", "--output", required=True, help="output folder (purified copies and results.json)")
    pu.add_argument("--method", required=True, help=f"one of: {', '.join(names.PURIFY)}")
    pu.add_argument("--option", action="append", metavar="KEY=VALUE",
                    help="override a default of the purifier, e.g. quality=50, sigma=0.1, upscaler=DIR (repeatable)")
    pu.set_defaults(func="purify")

    mi = sub.add_parser("mimic", parents=[common, model, memory], help="fine-tune a model on an artist's images",
                        description="Fine-tune the model on a folder of images (captions from NAME.txt beside "
                        "each image, else --caption) and save the adaptation in safetensors.")
    mi.add_argument("images", help="a folder of images, with optional .txt captions")
    mi.add_argument("-o", "--output", required=True, help="output folder (adapter.safetensors, adapter.json)")
    mi.add_argument("--method", default="lora", help=f"one of: {', '.join(names.MIMIC)} (default lora)")
    mi.add_argument("--steps", type=int, default=None, help="training steps (default: the method's)")
    mi.add_argument("--lr", type=float, default=None, help="learning rate (default: the method's)")
    mi.add_argument("--batch-size", type=int, default=None)
    mi.add_argument("--trigger", default="sks", help="the word that stands for the artist (default sks)")
    mi.add_argument("--caption", default=None,
                    help="caption template for images without a .txt; {trigger} and {name} (the file name) "
                    "are filled in (default: the model's style prompt, e.g. 'icon, {trigger} style')")
    mi.add_argument("--option", action="append", metavar="KEY=VALUE",
                    help="override a default of the method, e.g. rank=16, lr_schedule=cosine, warmup_steps=15, "
                    "snr_gamma=5, max_grad_norm=1 (repeatable)")
    mi.set_defaults(func="mimic")

    de = sub.add_parser("demo", parents=[common, model], help="the main job on bundled sample images, with mini",
                        description="Protect bundled sample artworks and photos and write before/after/difference "
                        "images and an HTML page.")
    de.add_argument("-o", "--output", required=True, help="output folder")
    de.add_argument("--method", default="advdm", help=f"one of: {', '.join(names.PROTECT)} (default advdm)")
    de.add_argument("--budget", type=float, default=None, help="L-infinity budget, 0-255 units (default: the method's)")
    de.add_argument("--steps", type=int, default=None, help="optimisation steps (default: the method's)")
    de.set_defaults(func="demo")

    er = sub.add_parser("erase", parents=[common, model, memory, sampling], help="remove a concept or style from the weights",
                        description="Erase concepts from the model's weights (ESD-x, ESD-u: the UNet, fine-tuned "
                        "without data; uce: closed form, seconds; rece: uce, then the embeddings that would bring the "
                        "concept back, erased too; advunlearn: ESD's objective on the text encoder, trained against "
                        "prompts optimised to undo it). Writes the changed tensors to OUT/edit.safetensors; "
                        "--model OUT then loads the erased model in every command. On mini the erasure is "
                        "evaluated (before, after, after each recovery attack and in the worst case) into "
                        "OUT/results.json.")
    er.add_argument("--concept", action="append", default=None,
                    help="text of the concept, e.g. 'faenza style' or 'trash can' (repeat for several)")
    er.add_argument("--concepts-file", default=None, metavar="FILE",
                    help="a text file of concepts, one per line (with --concept or instead of it)")
    er.add_argument("--method", default="esd-x", help=f"one of: {', '.join(names.ERASE)} (default esd-x)")
    er.add_argument("-o", "--output", required=True, help="output folder (edit.safetensors, edit.json, results.json)")
    er.add_argument("--iterations", type=int, default=None, help="esd, advunlearn: iterations (default: the model's, else 1000)")
    er.add_argument("--lr", type=float, default=None, help="esd, advunlearn: learning rate (default: the model's, else 1e-5)")
    er.add_argument("--eta", type=float, default=None, help="esd, advunlearn: negative guidance strength (default 1)")
    er.add_argument("--guide", default=None, help="uce, rece: what the concept should read as (default: nothing)")
    er.add_argument("--preserve", action="append", default=None,
                    help="uce, rece, advunlearn: a prompt to keep as it is (repeatable; default on mini: captions of the other "
                    "styles or concepts)")
    er.add_argument("--option", action="append", metavar="KEY=VALUE",
                    help="any other setting of the method's config (e.g. advunlearn attack_steps=30, "
                    "attack_method=fast-at; docs/erase.md lists them); repeatable")
    er.add_argument("--template", action="append", default=None,
                    help="a sentence with {} for the concept, to edit it in context (repeatable; default: the model's)")
    er.add_argument("--judge", default="icon", help="the evaluation's judge: icon (mini's styles and concepts, default), "
                    "clip or csd (styles only, read by CSLS prototypes after a discrimination check)")
    er.add_argument("--judge-path", default=None,
                    help="clip: a transformers CLIP folder; csd: CSD's model.safetensors (nothing is downloaded)")
    er.add_argument("--references", default=None, metavar="DIR",
                    help="with --judge clip/csd on a model other than mini: images of the erased style")
    er.add_argument("--others", default=None, metavar="DIR",
                    help="with --references: images of other styles, one sub-folder per style (its name is the "
                    "style's, as prompts write it); specificity is measured on them")
    er.add_argument("--no-eval", action="store_true", help="skip the evaluation")
    er.add_argument("--eval-prompts", type=int, default=32, help="evaluation: prompts with the concept (default 32)")
    er.add_argument("--recovery-steps", type=int, default=800,
                    help="evaluation: textual-inversion steps of the recovery attack (default 800, what textual "
                    "inversion needs to learn a style on mini; 0 skips every attack)")
    er.add_argument("--attack", default=",".join(names.ERASE_ATTACKS),
                    help=f"evaluation: attacks that try to bring the concept back, comma-separated, from "
                    f"{', '.join(names.ERASE_ATTACKS)} (default: all); the worst case over them is reported")
    er.add_argument("--attack-option", action="append", default=None, metavar="ATTACK.KEY=VALUE",
                    help="an attack's option, e.g. ring-a-bell.generations=3000 or unlearndiffatk.timesteps=50 "
                    "(repeatable; default: the model's attack settings, else the authors')")
    er.set_defaults(func="erase")

    au = sub.add_parser("audit", parents=[common, model, sampling], help="find training images a model memorised",
                        description="Memorisation audit: the generate-and-filter extraction attack and the "
                        "text-conditional noise magnitude detector, on prompts from a file, or on mini on its "
                        "planted-duplicate captions mixed with as many ordinary ones (then with precision, recall "
                        "and AUC). Writes results.json and report.html.")
    au.add_argument("-o", "--output", required=True, help="report folder")
    au.add_argument("--prompts", default=None, help="a text file, one prompt per line (default on mini: its corpus)")
    au.add_argument("--control", choices=("novel", "training"), default="novel",
                    help="mini's built-in set: the negatives beside the planted duplicates are captions no "
                    "training image has (novel, default) or ordinary training captions (training)")
    au.add_argument("--method", default="extract,detect", help="extract, detect, anisotropy, consensus, "
                    "comma-separated (default: extract,detect)")
    au.add_argument("--generations", type=int, default=500, help="extract: generations per prompt (default 500)")
    au.add_argument("--threshold", default="0.15",
                    help="extract: delta, normalised L2 (default 0.15, the paper's), or 'auto': the 5 %% quantile "
                    "of distances between distinct training images (needs them: mini)")
    au.add_argument("--min-clique", type=int, default=10, help="extract: clique size that flags a prompt (default 10)")
    au.add_argument("--grid", type=int, default=4, help="extract: tiles per side for the tiled L2 (default 4)")
    au.add_argument("--detect-generations", type=int, default=4, help="detect and anisotropy: seeds per prompt "
                    "(default 4)")
    au.add_argument("--detect-steps", type=int, default=1, help="detect: first sampling steps averaged (default 1)")
    au.add_argument("--consensus-generations", type=int, default=None,
                    help="consensus: seeds whose predicted images are compared (default 4)")
    au.add_argument("--candidates", default=None,
                    help="a folder of images to score for training membership (captions from NAME.txt)")
    au.add_argument("--adapter", default=None, help="a folder written by artshield mimic, applied to the model first "
                    "(the model under audit is then the base model with this adaptation)")
    ds = au.add_argument_group("dataset inference (was this model trained on my images?)")
    ds.add_argument("--dataset", default=None, metavar="DIR",
                    help="the images you think were trained on (e.g. your published portfolio); with --heldout, "
                    "runs dataset inference instead of the memorisation audit")
    ds.add_argument("--heldout", default=None, metavar="DIR",
                    help="images of the same kind the model cannot have seen (unpublished, or made after it)")
    ds.add_argument("--caption", default=None,
                    help="the caption of images without a NAME.txt beside them (default: the model's generic prompt)")
    ds.add_argument("--alpha", type=float, default=0.01, help="the p-value at or under which it reports evidence "
                    "(default 0.01)")
    ds.add_argument("--permutations", type=int, default=999, help="label shufflings of the test (default 999)")
    ds.add_argument("--folds", type=int, default=5, help="cross-fitting folds (default 5)")
    ds.add_argument("--calibrate", action="store_true",
                    help="with --adapter: also give each image its adapted-minus-base features (the base model's "
                    "per-image difficulty taken away; twice the work; on mini it has not yet shown more power)")
    au.set_defaults(func="audit")

    ex = sub.add_parser("export", parents=[common], help="write a model, an erasure or an adaptation as files "
                        "other SD tools open", description="Export for diffusers (from_pretrained), A1111, ComfyUI and "
                        "kohya: a model, an erase output folder or a DreamBooth folder as a diffusers folder or one "
                        "single-file .safetensors; a LoRA folder in kohya's key layout, or merged into its base model.")
    ex.add_argument("source", help="a model (mini, a diffusers folder, a single file, a hub id), an erase output "
                    "folder, or a mimic output folder (lora, dreambooth)")
    ex.add_argument("-o", "--output", required=True, help="the folder (diffusers) or .safetensors file to write")
    ex.add_argument("--format", choices=("diffusers", "single-file", "kohya"), default="diffusers",
                    help="diffusers (a folder, default), single-file (A1111/ComfyUI; for SD3 and FLUX the transformer "
                    "alone, in its authors' layout), kohya (a LoRA file)")
    ex.add_argument("--adapter", default=None, help="a LoRA or DreamBooth folder to merge into the model first")
    ex.add_argument("--dtype", default=None, choices=("fp32", "fp16", "bf16"),
                    help="precision of the written weights (default: fp32)")
    ex.add_argument("--model-config", default=None, metavar="ARCH",
                    help="a single-file source's architecture (SD3, FLUX: its base model's diffusers folder)")
    ex.set_defaults(func="export")

    st = sub.add_parser("study", parents=[common], help="a human A/B study of a bench or check run (after Hönig et al.)",
                        description="Three steps. 1: artshield study RUN -o STUDY makes a study from a bench or check "
                        "folder: pairs of generations (mimicry from a condition vs from clean art, same prompt and "
                        "seed), the artist's originals as reference, attention checks. 2: artshield study --serve "
                        "STUDY serves it on this machine; each answer goes to STUDY/answers.csv as it is clicked. "
                        "3: artshield study --analyse STUDY/answers.csv gives success rates with intervals "
                        "(50 %% = indistinguishable).")
    st.add_argument("run", nargs="?", default=None, help="a bench or check output folder (to make a study)")
    st.add_argument("-o", "--output", default=None, help="the study folder to make (with RUN), or where --analyse "
                    "writes its results.json")
    st.add_argument("--pairs", type=int, default=12, help="pairs per condition (default 12; every condition gets "
                    "the same number)")
    st.add_argument("--conditions", nargs="+", default=None, help="only these conditions (default: every one but clean)")
    st.add_argument("--baseline", default="clean", choices=("clean", "matched"),
                    help="compare with mimicry from the clean images (default, Hönig et al.) or, for a purified "
                    "condition, from the clean images through the same purifier")
    st.add_argument("--attention", type=int, default=4, help="attention checks per artist and mimic (default 4)")
    st.add_argument("--seed", type=int, default=0, help="seed of the pairs drawn and of each rater's arrangement")
    st.add_argument("--serve", default=None, metavar="STUDY", help="serve a study folder to raters")
    st.add_argument("--host", default="127.0.0.1", help="--serve's address (default 127.0.0.1: this machine only; "
                    "0.0.0.0 lets raters on your network in)")
    st.add_argument("--port", type=int, default=8765, help="--serve's port (default 8765)")
    st.add_argument("--analyse", default=None, metavar="CSV", help="analyse a study's answers.csv")
    st.add_argument("--min-attention", type=float, default=1.0,
                    help="--analyse keeps raters who passed at least this share of attention checks (default 1: all)")
    st.set_defaults(func="study")

    ui = sub.add_parser("ui", parents=[common], help="a local web app: protect, check, erase and audit in a browser",
                        description="Serve artshield's app (Gradio; the [ui] extra) on this machine: drop images, "
                        "protect them, see before and after, download them; check whether a protection holds on "
                        "your own art; erase and audit models. Also answers gradio_client scripts.")
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    ui.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    ui.add_argument("--share", action="store_true", help="also open a public gradio.live link (off unless asked)")
    ui.add_argument("--model", default="mini", help="the model the app starts with (default mini)")
    ui.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N, mps")
    ui.add_argument("--jobs", default=None, help="folder for the jobs' files (default: a new temporary folder)")
    ui.set_defaults(func="ui")

    return ap
