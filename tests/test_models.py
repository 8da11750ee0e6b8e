import shutil
import time

import pytest
import torch

from artshield import generate
from artshield.errors import ArtshieldError
from artshield.models import load_model
from artshield.models.architecture import TINY


def test_tiny_folder_loads_as_a_bundle(tiny_bundle):
    b = tiny_bundle
    assert b.source == "folder" and b.image_size == TINY.image_size
    x = torch.rand(2, 3, b.image_size, b.image_size)
    z = b.encode(x)
    assert z.shape == (2, 4, b.image_size // b.latent_scale, b.image_size // b.latent_scale)
    assert b.decode(z).shape == x.shape
    assert b.embed(["a folder icon"]).shape == (1, b.tokenizer.model_max_length, TINY.text_width)


def test_encode_decode_are_differentiable(tiny_bundle):
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    tiny_bundle.decode(tiny_bundle.encode(x)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_generation_is_reproducible_image_by_image(tiny_bundle):
    a = generate(tiny_bundle, ["trash can icon", "folder icon"], seed=5, steps=3)
    b = generate(tiny_bundle, ["trash can icon", "folder icon"], seed=5, steps=3)
    c = generate(tiny_bundle, ["folder icon"], seed=6, steps=3, batch_size=1)
    assert a.shape == (2, 3, 16, 16) and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, b)
    assert torch.allclose(a[1], c[0], atol=1e-4)  # image 1 of seed 5 is image 0 of seed 6
    assert not torch.allclose(a[0], a[1])


def test_folder_missing_parts_is_a_clear_error(tmp_path, tiny_model_dir):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    shutil.rmtree(broken / "unet")
    with pytest.raises(ArtshieldError, match="missing unet/"):
        load_model(str(broken))


def test_pickled_weights_are_refused(tmp_path, tiny_model_dir):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, folder)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save({"not": "loaded"}, folder / "unet" / "diffusion_pytorch_model.bin")
    weights.unlink()
    with pytest.raises(ArtshieldError, match="cannot load"):
        load_model(str(folder))


def test_corrupt_weights_are_a_clear_error(tmp_path, tiny_model_dir):
    folder = tmp_path / "corrupt"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ArtshieldError, match="cannot load"):
        load_model(str(folder))


def test_hub_id_without_network_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))             # an empty cache
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1:9")      # nothing listens there
    start = time.time()
    with pytest.raises(ArtshieldError, match="use mini .the embedded model. or a local diffusers folder"):
        load_model("someone/some-model")
    assert time.time() - start < 10


def test_nonsense_spec_and_bad_device():
    with pytest.raises(ArtshieldError, match="not a hub id"):
        load_model("no such thing")
    with pytest.raises(ArtshieldError, match="device"):
        load_model("mini", device="tpu7")
