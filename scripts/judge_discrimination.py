"""Can a style judge tell each artist apart? judges.discrimination for every theme of mini's corpus
(each against all the others) and for photographs posing as an artist (scikit-image's colour photos),
written as JSON for README.

    python scripts/judge_discrimination.py --judge icon --json docs/results/judges/icon.json
"""
import argparse
import sys

import numpy as np
import torch

from artshield import corpus
from artshield.io import write_json
from artshield.metrics.judges import discrimination, load_judge

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
          "colorwheel", "logo", "cat")


def photos(side: int) -> torch.Tensor:
    from skimage import data

    out = []
    for name in PHOTOS:
        a = torch.from_numpy(np.asarray(getattr(data, name)()))[..., :3].float().permute(2, 0, 1)[None] / 255
        out.append(torch.nn.functional.interpolate(a, size=(side, side), mode="area")[0])
    return torch.stack(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--judge", default="icon")
    ap.add_argument("--judge-path", default=None)
    ap.add_argument("--artist-images", type=int, default=30)
    ap.add_argument("--other-images", type=int, default=12)
    ap.add_argument("--json", required=True)
    args = ap.parse_args(argv)
    judge = load_judge(args.judge, args.judge_path)
    side = 64
    themes = sorted({i.theme for i in corpus.items() if i.theme})
    images = {t: corpus.load_images(corpus.items(theme=t)[:max(args.artist_images, args.other_images)], side)
              for t in themes}
    rows = []
    for t in themes:
        others = {o: images[o][:args.other_images] for o in themes if o != t}
        r = discrimination(judge, images[t][:args.artist_images], others)
        rows.append({"artist": t, "held_out": t in corpus.themes(heldout=True), **r})
        print(f"{t}: {'can tell' if r['can_tell'] else 'cannot tell'} ({r['why']})", flush=True)
    others = {o: images[o][:args.other_images] for o in themes}
    for name, sel in (("photographs (the cat and the coffee)", [1, 2]), ("photographs (10)", list(range(10)))):
        r = discrimination(judge, photos(side)[sel], others)
        rows.append({"artist": name, "held_out": None, **r})
        print(f"{name}: {'can tell' if r['can_tell'] else 'cannot tell'} ({r['why']})", flush=True)
    write_json({"what": "can the judge tell each artist apart (metrics.judges.discrimination): cross-validated "
                        "prototypes, the artist's images vs every other corpus theme and colour-only decoys",
                "command": "python scripts/judge_discrimination.py " + " ".join(argv or sys.argv[1:]),
                "judge": args.judge, "artist_images": args.artist_images, "other_images": args.other_images,
                "rows": rows}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
