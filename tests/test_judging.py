"""metrics/judge.py and metrics/judges.py against answers computed here by other means: the icon judge's
network written out from its shipped tensors, the resampling by hand, the CSLS readout and the
discrimination check's cross-validation one image at a time, Wilson's and Hanley and McNeil's
intervals from their definitions; tiny random towers stand in for CLIP and CSD."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from artshield.errors import ArtshieldError
from artshield.metrics import judge as judge_module
from artshield.metrics import judges
from artshield.metrics.judge import Judge, JudgeNet, prepare
from artshield.metrics.judges import Classifier, Prototypes, StyleJudge

from _reference import pil_resize


# --- resampling by hand -------------------------------------------------------------------------

def _area(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """torch's "area" mode (adaptive average pooling): output cell i averages input cells
    floor(i * n / out) to ceil((i + 1) * n / out) - 1, on each axis."""
    def axis(a, out, dim):
        n = a.shape[dim]
        cells = [np.take(a, range(i * n // out, -(-(i + 1) * n // out)), axis=dim).mean(axis=dim) for i in range(out)]
        return np.stack(cells, axis=dim)
    return axis(axis(x, h, -2), w, -1)


def _cubic(x: np.ndarray, h: int, w: int, a: float = -0.75) -> np.ndarray:
    """Keys' cubic convolution with a = -0.75 and half-pixel centres, border pixels repeated (torch's
    bicubic without antialiasing), one axis after the other."""
    def kernel(t):
        t = abs(t)
        if t <= 1:
            return (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1
        return a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a if t < 2 else 0.0

    def axis(arr, out, dim):
        n = arr.shape[dim]
        rows = []
        for i in range(out):
            src = (i + 0.5) * n / out - 0.5
            base = math.floor(src)
            rows.append(sum(kernel(src - j) * np.take(arr, min(max(j, 0), n - 1), axis=dim)
                            for j in range(base - 1, base + 3)))
        return np.stack(rows, axis=dim)
    return axis(axis(x, h, -2), w, -1)


def test_prepare_averages_areas_down_and_interpolates_cubically_up():
    g = torch.Generator().manual_seed(0)
    big = torch.rand(2, 3, 64, 48, generator=g)
    assert torch.allclose(prepare(big), torch.from_numpy(_area(big.numpy(), 32, 32)).float() * 2 - 1, atol=1e-6)
    mixed = torch.rand(1, 3, 40, 20, generator=g)                  # one side over: areas on both axes
    assert torch.allclose(prepare(mixed), torch.from_numpy(_area(mixed.numpy(), 32, 32)).float() * 2 - 1, atol=1e-6)
    wide_over = torch.rand(1, 3, 20, 40, generator=g)              # only the width over: areas too
    assert torch.allclose(prepare(wide_over), torch.from_numpy(_area(wide_over.numpy(), 32, 32)).float() * 2 - 1,
                          atol=1e-6)
    short = torch.rand(1, 3, 20, 32, generator=g)                  # the width right, the height short
    assert torch.allclose(prepare(short), torch.from_numpy(_cubic(short.numpy().astype(np.float64), 32, 32)).float()
                          .clamp(0, 1) * 2 - 1, atol=1e-5)
    small = torch.rand(1, 3, 12, 20, generator=g)
    want = torch.from_numpy(_cubic(small.numpy().astype(np.float64), 32, 32)).float().clamp(0, 1) * 2 - 1
    assert torch.allclose(prepare(small), want, atol=1e-5) and (want.abs() == 1).sum() < want.numel()
    wide = torch.rand(1, 3, 32, 20, generator=g)                   # one side short, one right
    assert torch.allclose(prepare(wide), torch.from_numpy(_cubic(wide.numpy().astype(np.float64), 32, 32)).float()
                          .clamp(0, 1) * 2 - 1, atol=1e-5)
    exact = torch.rand(1, 3, 32, 32, generator=g)
    assert torch.equal(prepare(exact), exact * 2 - 1)
    over = torch.tensor([-0.5, 0.25, 1.5]).view(1, 3, 1, 1).expand(1, 3, 16, 16)
    assert torch.equal(prepare(over, 16)[0, :, 0, 0], torch.tensor([-1.0, -0.5, 1.0]))
    assert prepare(torch.rand(1, 3, 20, 20, dtype=torch.float64), 10).dtype == torch.float32


# --- the icon judge's network written out -----------------------------------------------------------

def _bn(x, t, name):
    return F.batch_norm(x, t[f"{name}.running_mean"], t[f"{name}.running_var"], t[f"{name}.weight"],
                        t[f"{name}.bias"], training=False, eps=1e-5)


def _block(x, t, name, stride):
    y = F.relu(_bn(F.conv2d(x, t[f"{name}.conv1.weight"], stride=stride, padding=1), t, f"{name}.bn1"))
    y = _bn(F.conv2d(y, t[f"{name}.conv2.weight"], padding=1), t, f"{name}.bn2")
    skip = x if f"{name}.skip.0.weight" not in t else _bn(F.conv2d(x, t[f"{name}.skip.0.weight"], stride=stride), t,
                                                          f"{name}.skip.1")
    return F.relu(y + skip)


def _features(x, t, pooling):
    h = F.relu(_bn(F.conv2d(x, t["stem.0.weight"], padding=1), t, "stem.1"))
    outs = []
    for i, stride in enumerate((1, 2, 1, 2, 1, 2)):
        h = _block(h, t, f"body.{i}", stride)
        outs.append(h)
    if pooling == "mean":
        return h.mean(dim=(2, 3))
    return torch.cat([outs[2].mean(dim=(2, 3)), outs[2].std(dim=(2, 3)), h.mean(dim=(2, 3)), h.std(dim=(2, 3))], 1)


def test_the_shipped_icon_judge_is_its_network_written_out_from_its_tensors():
    """The shipped judge's features and logits from its safetensors file, read by safetensors and
    computed layer by layer here; its names and size from judge.json; batching does not matter;
    predict names each image's largest logit."""
    meta = json.loads((judge_module.JUDGE_DIR / "judge.json").read_text())
    t = {k: v.float() for k, v in load_file(str(judge_module.JUDGE_DIR / "judge.safetensors")).items()}
    judge = Judge.load()
    assert (judge.styles, judge.concepts, judge.image_size) == (meta["styles"], meta["concepts"], meta["image_size"])
    assert not judge.net.training and judge.net.pooling == meta.get("pooling", "mean")
    images = torch.rand(5, 3, 48, 40, generator=torch.Generator().manual_seed(1))
    x = prepare(images, meta["image_size"])
    with torch.no_grad():
        f = _features(x, t, judge.net.pooling)
    assert torch.allclose(judge.features(images), f, atol=1e-4)
    assert torch.allclose(judge.features(images, batch_size=2), f, atol=1e-4)
    style, concept = judge.logits(images, batch_size=3)
    assert torch.allclose(style, f @ t["style_head.weight"].T + t["style_head.bias"], atol=1e-4)
    assert torch.allclose(concept, f @ t["concept_head.weight"].T + t["concept_head.bias"], atol=1e-4)
    styles, concepts = judge.predict(images)
    assert styles == [meta["styles"][i] for i in style.argmax(1)]
    assert concepts == [meta["concepts"][i] for i in concept.argmax(1)]


def test_judgenet_pools_means_or_feature_statistics_and_loads_only_what_fits(tmp_path):
    torch.manual_seed(0)
    for pooling, width in (("mean", 4), ("stats", 4)):
        net = JudgeNet(3, 5, width, pooling).eval()
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2)
        x = torch.rand(2, 3, 32, 32) * 2 - 1
        t = dict(net.state_dict())
        with torch.no_grad():
            f = net.features(x)
            assert torch.allclose(f, _features(x, t, pooling), atol=1e-5)
            assert f.shape == (2, 4 * width if pooling == "mean" else 12 * width)
            s, c = net(x)
        assert s.shape == (2, 3) and c.shape == (2, 5)
    assert net.dropout.p == 0.2
    # a judge folder: its metadata and tensors; the pooling defaults to means when the metadata is silent
    folder = tmp_path / "judge"
    folder.mkdir()
    mean_net = JudgeNet(2, 3, 4)
    save_file(mean_net.state_dict(), str(folder / "judge.safetensors"))
    (folder / "judge.json").write_text(json.dumps({"styles": ["a", "b"], "concepts": ["x", "y", "z"], "width": 4,
                                                   "image_size": 24}))
    loaded = Judge.load(folder)
    assert loaded.net.pooling == "mean" and loaded.image_size == 24 and loaded.styles == ["a", "b"]
    (folder / "judge.json").write_text(json.dumps({"styles": ["a"], "concepts": ["x", "y", "z"], "width": 4,
                                                   "image_size": 24}))
    for broken in ('{"styles": ["a"]}', "not json", json.dumps({"styles": ["a"], "concepts": ["x", "y", "z"],
                                                                 "width": 4, "image_size": 24})):
        (folder / "judge.json").write_text(broken)
        with pytest.raises(ArtshieldError, match="cannot load the judge"):
            Judge.load(folder)
    with pytest.raises(ArtshieldError, match="cannot load the judge"):
        Judge.load(tmp_path / "none")


# --- the style judges' call shape ---------------------------------------------------------------------

class _Recording(StyleJudge):
    """A judge whose features are each image's channel means and spreads; it keeps what it was given."""
    name = "recording"

    def __init__(self):
        self.seen = []

    def features(self, images):
        self.seen.append(images.clone())
        return torch.cat([images.mean(dim=(2, 3)), images.std(dim=(2, 3))], 1)


def test_embed_takes_rgb_grey_and_rgba_in_batches_clamped_and_returns_unit_rows():
    judge = _Recording()
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(5, 3, 6, 6, generator=g) * 1.4 - 0.2
    out = judge.embed(rgb, batch_size=2)
    assert [len(s) for s in judge.seen] == [2, 2, 1] and all(s.min() >= 0 and s.max() <= 1 for s in judge.seen)
    want = F.normalize(judge.features(rgb.clamp(0, 1)), dim=1)
    assert torch.allclose(out, want, atol=1e-6) and torch.allclose(out.norm(dim=1), torch.ones(5))
    grey, rgba = torch.rand(2, 1, 6, 6, generator=g), torch.rand(2, 4, 6, 6, generator=g)
    assert torch.allclose(judge.embed(grey), judge.embed(grey.expand(-1, 3, -1, -1)))
    assert torch.allclose(judge.embed(rgba), judge.embed(rgba[:, :3]))
    assert judge.embed(rgb.double()).dtype == torch.float32
    for shape in ((3, 6, 6), (2, 2, 6, 6), (1, 5, 6, 6)):
        with pytest.raises(ValueError, match="judges take"):
            judge.embed(torch.rand(shape))
    assert judge.describe() == {"judge": "recording", "input_size": 32, "sees": ""}


def test_the_icon_style_judge_is_the_icon_judges_features():
    icon = judges.load_judge("icon")
    images = torch.rand(3, 3, 40, 40, generator=torch.Generator().manual_seed(2))
    assert icon.image_size == Judge.load().image_size and icon.name == "icon" and "32 x 32" in icon.sees
    assert torch.allclose(icon.features(images), Judge.load().features(images), atol=1e-6)
    assert torch.allclose(judges.load_judge("icon", str(judge_module.JUDGE_DIR)).features(images),
                          icon.features(images))


def test_clips_preprocessing_is_the_shorter_side_resized_then_the_centre_cropped():
    g = torch.Generator().manual_seed(3)
    for h, w, size, crop in ((30, 50, 20, 16), (50, 30, 20, 16), (40, 40, 16, 16), (9, 15, 10, 12)):
        x = torch.rand(3, h, w, generator=g)
        s = size / min(h, w)
        nh, nw = max(crop, round(h * s)), max(crop, round(w * s))
        big = pil_resize(x, nh, nw, resample=__import__("PIL.Image").Image.BICUBIC)
        top, left = (nh - crop) // 2, (nw - crop) // 2
        want = big[:, top:top + crop, left:left + crop].clamp(0, 1)
        got = judges._resize_crop(x[None], size, crop)[0]
        assert got.shape == (3, crop, crop) and (got - want).abs().max() < 2e-3, (h, w, size, crop)


def _tiny_clip(folder, projection=16, side=16):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    config = CLIPVisionConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=2,
                              image_size=side, patch_size=4, projection_dim=projection)
    model = CLIPVisionModelWithProjection(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    return model


def test_the_clip_judge_reads_its_preprocessing_from_the_folder_and_refuses_what_it_cannot_read(tmp_path):
    from artshield.metrics.judges import CLIP_MEAN, CLIP_STD

    model = _tiny_clip(tmp_path / "clip")
    plain = judges.load_judge("clip", str(tmp_path / "clip"))             # no preprocessor_config.json
    assert (plain.size, plain.image_size) == (16, 16)
    assert torch.allclose(plain.mean.flatten(), torch.tensor(CLIP_MEAN)) and torch.allclose(plain.std.flatten(),
                                                                                          torch.tensor(CLIP_STD))
    pre = {"size": {"shortest_edge": 20}, "crop_size": {"height": 16, "width": 16}, "image_mean": [0.5, 0.4, 0.3],
           "image_std": [0.2, 0.25, 0.3]}
    (tmp_path / "clip" / "preprocessor_config.json").write_text(json.dumps(pre))
    judge = judges.load_judge("clip", str(tmp_path / "clip"))
    assert (judge.size, judge.image_size) == (20, 16)
    images = torch.rand(2, 3, 30, 24, generator=torch.Generator().manual_seed(4))
    pixels = (judges._resize_crop(images, 20, 16) - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) / torch.tensor(
        [0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    assert torch.allclose(judge.pixels(images), pixels, atol=1e-6)
    with torch.no_grad():
        want = model(pixel_values=pixels).image_embeds
    assert torch.allclose(judge.features(images), want, atol=1e-5)
    assert "20 px on its shorter side" in judge.sees and "(16 numbers)" in judge.sees
    (tmp_path / "clip" / "preprocessor_config.json").write_text(json.dumps({"size": 18, "crop_size": 16}))
    assert (judges.load_judge("clip", str(tmp_path / "clip")).size,) == (18,)
    (tmp_path / "clip" / "preprocessor_config.json").write_text(json.dumps({"size": {}, "crop_size": {}}))
    assert judges.load_judge("clip", str(tmp_path / "clip")).size == 16
    (tmp_path / "clip" / "preprocessor_config.json").write_text(json.dumps({"size": 20, "crop_size": {"height": 12}}))
    assert judges.load_judge("clip", str(tmp_path / "clip")).image_size == 12
    (tmp_path / "clip" / "preprocessor_config.json").write_text(json.dumps({"crop_size": 14}))
    assert judges.load_judge("clip", str(tmp_path / "clip")).image_size == 14
    (tmp_path / "clip" / "config.json").write_text("{not json")
    with pytest.raises(ArtshieldError) as e:
        judges.load_judge("clip", str(tmp_path / "clip"))
    folder = str(tmp_path / "clip")
    assert str(e.value).startswith(f"judge_path={folder!r}: cannot load a CLIP vision tower: ") and "None" not in str(e.value)
    not_clip = ("not a transformers CLIP folder (config.json and model.safetensors); save one with "
                "CLIPModel.save_pretrained or download openai/clip-vit-large-patch14")
    (tmp_path / "empty").mkdir()
    for folder in (str(tmp_path / "none"), str(tmp_path / "empty")):
        with pytest.raises(ArtshieldError) as e:
            judges.load_judge("clip", folder)
        assert str(e.value) == f"judge_path={folder!r}: {not_clip}"
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(ArtshieldError) as e:
        judges.load_judge("clip", str(tmp_path / "empty"))
    assert str(e.value) == (f"judge_path={str(tmp_path / 'empty')!r}: holds no .safetensors weights (pickled .bin "
                            "weights are never loaded)")


def _transformers_csd(tmp_path, prefix="backbone.", style_key="last_layer_style", width=128, style_dim=24):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(1)
    tower = CLIPVisionModel(CLIPVisionConfig(hidden_size=width, intermediate_size=96, num_hidden_layers=2,
                                             num_attention_heads=width // 64, image_size=16, patch_size=4,
                                             hidden_act="quick_gelu")).eval()
    state = {("" if k.startswith("vision_model.") else "vision_model.") + k: v for k, v in tower.state_dict().items()}
    tensors = {prefix + k: v.clone() for k, v in state.items()}
    tensors[style_key] = torch.randn(width, style_dim)
    path = tmp_path / "csd.safetensors"
    save_file(tensors, str(path))
    return tower, tensors, path


def test_the_csd_judge_reads_transformers_layout_weights_and_checks_its_file(tmp_path):
    tower, tensors, path = _transformers_csd(tmp_path, prefix="module.backbone.", style_key="module.last_layer_style")
    judge = judges.load_judge("csd", str(path))
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        want = tower(pixel_values=judge.pixels(images)).pooler_output @ tensors["module.last_layer_style"]
    assert torch.allclose(judge.features(images), want, atol=1e-4) and judge.image_size == judge.size == 16
    assert "24 numbers" in judge.sees and "16 x 16" in judge.sees
    assert judges.CsdJudge(str(path), heads=1).model.config.num_attention_heads == 1
    assert judges.CsdJudge(str(path)).model.config.num_attention_heads == 2
    bad = dict(tensors)
    bad["module.last_layer_style"] = torch.randn(100, 24)
    save_file(bad, str(tmp_path / "wide.safetensors"))
    with pytest.raises(ArtshieldError, match=r"last_layer_style is \(100, 24\), not \(128, D\)"):
        judges.load_judge("csd", str(tmp_path / "wide.safetensors"))
    short = {k: v for k, v in tensors.items() if "layers.1.mlp.fc2" not in k}
    save_file(short, str(tmp_path / "short.safetensors"))
    with pytest.raises(ArtshieldError, match="does not load .2 missing and 0 unexpected"):
        judges.load_judge("csd", str(tmp_path / "short.safetensors"))
    extra = {**tensors, "module.backbone.vision_model.extra.weight": torch.zeros(2)}
    save_file(extra, str(tmp_path / "extra.safetensors"))
    with pytest.raises(ArtshieldError, match="0 missing and 1 unexpected"):
        judges.load_judge("csd", str(tmp_path / "extra.safetensors"))
    (tmp_path / "model.pth").write_bytes(b"\x80\x04")
    (tmp_path / "junk.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    needs = ("needs CSD's weights as a .safetensors file (model.safetensors from the hub repository "
             "yuxi-liu-wired/CSD); pickles (.pth) are never loaded")
    save_file({"vision.weight": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    for file, words in ((tmp_path / "model.pth", needs), (tmp_path / "gone.safetensors", needs),
                        (tmp_path / "sub", needs), (tmp_path / "junk.safetensors", "not a readable safetensors file ("),
                        (tmp_path / "other.safetensors", "is not a CSD checkpoint (no backbone.* vision tower and "
                                                         "last_layer_style)"),
                        (tmp_path / "short.safetensors", "CSD's vision tower does not load ("),
                        (tmp_path / "wide.safetensors", "last_layer_style is (100, 24), not (128, D)")):
        with pytest.raises(ArtshieldError) as e:
            judges.load_judge("csd", str(file))
        assert str(e.value).startswith(f"judge_path={str(file)!r}: {words}"), str(e.value)


def test_openai_layout_conversion_names_shapes_and_refuses_a_grid_that_is_not_square():
    width, layers, patch, grid = 128, 3, 4, 5
    g = torch.Generator().manual_seed(6)
    t = {"p.conv1.weight": torch.randn(width, 3, patch, patch, generator=g),
         "p.class_embedding": torch.randn(width, generator=g),
         "p.positional_embedding": torch.randn(grid * grid + 1, width, generator=g),
         **{f"p.{n}.{k}": torch.randn(width, generator=g) for n in ("ln_pre", "ln_post") for k in ("weight", "bias")}}
    for i in range(layers):
        a = f"p.transformer.resblocks.{i}."
        t.update({a + "attn.in_proj_weight": torch.randn(3 * width, width, generator=g),
                  a + "attn.in_proj_bias": torch.randn(3 * width, generator=g),
                  a + "attn.out_proj.weight": torch.randn(width, width, generator=g),
                  a + "attn.out_proj.bias": torch.randn(width, generator=g),
                  a + "mlp.c_fc.weight": torch.randn(200, width, generator=g), a + "mlp.c_fc.bias": torch.randn(200),
                  a + "mlp.c_proj.weight": torch.randn(width, 200, generator=g), a + "mlp.c_proj.bias": torch.randn(width),
                  **{a + f"ln_{j}.{k}": torch.randn(width, generator=g) for j in (1, 2) for k in ("weight", "bias")}})
    t["q.ignored"] = torch.zeros(1)
    state, config = judges.openai_to_transformers(t, "p.")
    assert config == {"hidden_size": width, "intermediate_size": 200, "num_hidden_layers": layers,
                      "num_attention_heads": 2, "patch_size": patch, "image_size": patch * grid,
                      "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}
    last = f"p.transformer.resblocks.{layers - 1}."
    b = f"vision_model.encoder.layers.{layers - 1}."
    assert torch.equal(state[b + "self_attn.k_proj.weight"], t[last + "attn.in_proj_weight"][width:2 * width])
    assert torch.equal(state[b + "self_attn.v_proj.bias"], t[last + "attn.in_proj_bias"][2 * width:])
    assert torch.equal(state[b + "self_attn.q_proj.bias"], t[last + "attn.in_proj_bias"][:width])
    assert torch.equal(state[b + "mlp.fc2.weight"], t[last + "mlp.c_proj.weight"])
    assert torch.equal(state[b + "layer_norm2.bias"], t[last + "ln_2.bias"])
    assert torch.equal(state["vision_model.post_layernorm.weight"], t["p.ln_post.weight"])
    assert torch.equal(state["vision_model.pre_layrnorm.bias"], t["p.ln_pre.bias"])
    assert len(state) == 3 + 4 + layers * 16 and all(v.is_contiguous() for v in state.values())
    bare, _ = judges.openai_to_transformers({k[2:]: v for k, v in t.items() if k.startswith("p.")})
    assert bare.keys() == state.keys()                         # no prefix by default
    t["p.positional_embedding"] = torch.randn(grid * grid + 2, width)
    with pytest.raises(ValueError, match="27 positions is not a square grid"):
        judges.openai_to_transformers(t, "p.")


def test_load_judge_names_what_it_needs(tmp_path):
    with pytest.raises(ArtshieldError) as e:
        judges.load_judge("dino")
    assert str(e.value) == "judge='dino': unknown judge (use icon, clip, csd)"
    for name, needs in (("clip", judges.JUDGES["clip"][1]), ("csd", judges.JUDGES["csd"][1])):
        with pytest.raises(ArtshieldError) as e:
            judges.load_judge(name, "")
        assert str(e.value) == f"judge={name!r}: needs local weights: {needs}; nothing is downloaded at run time"
    assert judges.load_judge().name == "icon"
    # the icon judge from another folder: a judge of two made-up styles
    folder = tmp_path / "judge"
    folder.mkdir()
    save_file(JudgeNet(2, 3, 4).state_dict(), str(folder / "judge.safetensors"))
    (folder / "judge.json").write_text(json.dumps({"styles": ["a", "b"], "concepts": ["x", "y", "z"], "width": 4,
                                                   "image_size": 24}))
    assert judges.load_judge("icon", str(folder)).judge.styles == ["a", "b"]


# --- the CSLS readout, the classifier, the squares and the decoys -----------------------------------------------

class _Embedded(StyleJudge):
    """Images that are their own features: (N, D, 1, 1) -> (N, D)."""
    name = "embedded"

    def features(self, images):
        return images.flatten(1).float()


def test_prototypes_are_normalised_class_means_less_their_hubness_one_class_at_a_time():
    g = torch.Generator().manual_seed(7)
    classes = {n: F.normalize(torch.randn(k, 6, generator=g) + shift, dim=1)
               for n, k, shift in (("a", 4, 1.0), ("b", 3, -0.5), ("c", 2, 0.0))}
    for k in (1, 2, 10):
        proto = Prototypes(_Embedded(), classes, k=k, embedded=True)
        for i, (name, v) in enumerate(classes.items()):
            mean = v.mean(0) / v.mean(0).norm()
            assert torch.allclose(proto.means[i], mean, atol=1e-6)
            others = torch.cat([u for n, u in classes.items() if n != name])
            cosines = sorted((others @ mean).tolist(), reverse=True)
            assert proto.hubness[i].item() == pytest.approx(np.mean(cosines[:min(k, len(others))]), abs=1e-6)
        x = F.normalize(torch.randn(5, 6, generator=g), dim=1)
        scores = proto.scores_of(x)
        for j in range(5):
            for i in range(3):
                assert scores[j, i].item() == pytest.approx(2 * float(x[j] @ proto.means[i]) - proto.hubness[i].item(),
                                                            abs=1e-5)
        assert proto.k == k and proto.names == ["a", "b", "c"]
    # images through the judge: the same as their embeddings given
    judge = _Recording()
    pictures = {n: torch.rand(3, 3, 4, 4, generator=g) * (i + 1) / 3 for i, n in enumerate("abc")}
    seen = Prototypes(judge, pictures, k=2)
    given = Prototypes(judge, {n: judge.embed(v) for n, v in pictures.items()}, k=2, embedded=True)
    assert torch.allclose(seen.means, given.means) and torch.allclose(seen.hubness, given.hubness)
    x = torch.rand(4, 3, 4, 4, generator=g)
    assert torch.allclose(seen.scores(x), given.scores_of(judge.embed(x)))
    assert seen.predict(x) == [seen.names[int(i)] for i in seen.scores(x).argmax(1)]
    assert Prototypes(_Embedded(), classes, embedded=True).k == 10
    with pytest.raises(ValueError, match="^a prototype readout needs at least two classes$"):
        Prototypes(_Embedded(), {"a": classes["a"]}, embedded=True)
    with pytest.raises(ValueError, match="^every class needs at least one image$"):
        Prototypes(_Embedded(), {"a": classes["a"], "b": classes["b"][:0]}, embedded=True)


def test_the_classifier_gives_the_bench_style_names_raw_features_and_the_judges_description():
    judge = _Recording()
    g = torch.Generator().manual_seed(8)
    red, blue = torch.zeros(4, 3, 5, 5), torch.zeros(4, 3, 5, 5)
    red[:, 0], blue[:, 2] = 0.9, 0.9
    red, blue = red + torch.rand(red.shape, generator=g) * 0.1, blue + torch.rand(blue.shape, generator=g) * 0.1
    classifier = Classifier(judge, {"red": red, "blue": blue}, weights="w.safetensors")
    assert classifier.image_size == 32 and classifier.weights == "w.safetensors"
    assert classifier.describe() == judge.describe()
    x = torch.cat([red[:2], blue[:1]]) * 1.2 - 0.1
    judge.seen.clear()
    features = classifier.features(x.double(), batch_size=2)
    assert [len(s) for s in judge.seen] == [2, 1] and features.dtype == torch.float32
    assert torch.allclose(features, judge.features(x.clamp(0, 1)).float(), atol=1e-6)
    assert classifier.predict(x) == (["red", "red", "blue"], ["", "", ""])


def test_squares_brings_every_image_to_a_colour_square():
    from PIL import Image

    g = torch.Generator().manual_seed(9)
    images = [torch.rand(3, 20, 30, generator=g), torch.rand(1, 12, 12, generator=g), torch.rand(4, 40, 16, generator=g)]
    out = judges.squares(images, 16)
    assert out.shape == (3, 3, 16, 16)
    for got, x in zip(out, images):
        rgb = x.expand(3, -1, -1) if x.shape[0] == 1 else x[:3]
        assert (got - pil_resize(rgb, 16, 16, Image.BICUBIC).clamp(0, 1)).abs().max() < 2e-3
    assert torch.equal(judges.squares(torch.stack(images[:1]), 16), out[:1])


def test_decoys_are_colour_blobs_and_smooth_noise_around_the_artists_mean_colour():
    g = torch.Generator().manual_seed(10)
    x = torch.rand(2, 3, 12, 12, generator=g)
    d = judges.decoys(x, seed=3)
    blobs = np.concatenate([_cubic(_area(x.numpy().astype(np.float64), s, s), 12, 12) for s in (4, 3)])
    assert torch.allclose(d["colour blobs"], torch.from_numpy(np.clip(blobs, 0, 1)).float(), atol=1e-5)
    noise = _cubic(torch.rand(4, 3, 6, 6, generator=torch.Generator().manual_seed(3)).numpy().astype(np.float64), 12, 12)
    mean = x.numpy().mean(axis=(0, 2, 3)).reshape(1, 3, 1, 1)
    want = np.clip(mean + 0.5 * (noise - 0.5), 0, 1)
    assert torch.allclose(d["smooth colour noise"], torch.from_numpy(want).float(), atol=1e-5)
    assert set(d) == {"colour blobs", "smooth colour noise"} and d["colour blobs"].shape == (4, 3, 12, 12)
    assert all(torch.equal(a, b) for a, b in zip(judges.decoys(x).values(), judges.decoys(x, seed=0).values()))
    # extremes: a black-and-white checkerboard overshoots in the bicubic blobs, a dark artist's noise goes
    # under zero: both are clipped to [0, 1], as the unclipped references show they must be
    board = ((torch.arange(12)[:, None] // 3 + torch.arange(12)[None, :] // 3) % 2).float().expand(1, 3, 12, 12)
    dark = torch.rand(2, 3, 12, 12, generator=g) * 0.05
    clipped = set()
    for images in (board, dark, 1 - dark):
        d = judges.decoys(images, seed=2)
        blobs = np.concatenate([_cubic(_area(images.numpy().astype(np.float64), s, s), 12, 12) for s in (4, 3)])
        noise = _cubic(torch.rand(2 * len(images), 3, 6, 6, generator=torch.Generator().manual_seed(2)).numpy()
                       .astype(np.float64), 12, 12)
        raw = images.numpy().mean(axis=(0, 2, 3)).reshape(1, 3, 1, 1) + 0.5 * (noise - 0.5)
        assert torch.allclose(d["colour blobs"], torch.from_numpy(np.clip(blobs, 0, 1)).float(), atol=1e-5)
        assert torch.allclose(d["smooth colour noise"], torch.from_numpy(np.clip(raw, 0, 1)).float(), atol=1e-5)
        clipped |= {("blobs", blobs.max() > 1, blobs.min() < 0), ("noise", raw.max() > 1, raw.min() < 0)}
    for kind in ("blobs", "noise"):                 # each clip, above and below, was needed somewhere
        assert any(c[0] == kind and c[1] for c in clipped) and any(c[0] == kind and c[2] for c in clipped), clipped


# --- the intervals ---------------------------------------------------------------------------------------

def test_wilsons_interval_is_where_the_score_test_turns():
    """Each bound p solves |k/n - p| = z sqrt(p (1 - p) / n), the score test at 5 %; published
    values for 0/10 and 5/10; no trials is no information."""
    z = 1.959964
    for k, n in ((0, 10), (5, 10), (9, 10), (10, 10), (3, 40), (1, 1)):
        low, high = judges._wilson(k, n)
        for p in (low, high):
            if 1e-9 < p < 1 - 1e-9:
                assert abs(k / n - p) == pytest.approx(z * math.sqrt(p * (1 - p) / n), abs=1e-9), (k, n, p)
        assert low <= k / n <= high
    for k, n in ((0, 10), (1, 1), (1, 10), (10, 10), (7, 7)):
        low, high = judges._wilson(k, n)
        assert (low == 0.0) == (k == 0) and (high == 1.0) == (k == n) and 0 <= low < high <= 1
    assert judges._wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert judges._wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert judges._wilson(0, 0) == (0.0, 1.0)
    assert judges._wilson(2, 10, z=1.0)[1] < judges._wilson(2, 10)[1]


def test_the_auc_and_hanley_mcneils_interval_from_their_definitions():
    from scipy.stats import mannwhitneyu

    pos, neg = np.array([0.3, 0.9, 0.5, 0.5, 1.2]), np.array([0.1, 0.5, 0.2, 0.8, -1.0, 0.5])
    auc = judges._auc(pos, neg)
    assert auc == pytest.approx(mannwhitneyu(pos, neg).statistic / (len(pos) * len(neg)))
    m, n = len(pos), len(neg)
    q1, q2 = auc / (2 - auc), 2 * auc ** 2 / (1 + auc)
    se = math.sqrt((auc * (1 - auc) + (m - 1) * (q1 - auc ** 2) + (n - 1) * (q2 - auc ** 2)) / (m * n))
    assert judges._auc_interval(pos, neg) == pytest.approx((auc, auc - 1.959964 * se, min(1.0, auc + 1.959964 * se)))
    assert auc + 1.959964 * se > 1.0                # the bound is clipped to the AUC's range
    # perfect separation: the standard error of one pair out of order
    a1 = 1 - 1 / 6
    q1, q2 = a1 / (2 - a1), 2 * a1 ** 2 / (1 + a1)
    se = math.sqrt((a1 * (1 - a1) + (q1 - a1 ** 2) + 2 * (q2 - a1 ** 2)) / 6)
    assert judges._auc_interval(np.array([3.0, 4.0]), np.array([0.0, 1.0, 2.0])) == pytest.approx(
        (1.0, 1 - 1.959964 * se, 1.0))
    low = judges._auc_interval(np.array([0.0]), np.array([1.0, 2.0, 3.0]))
    assert low[0] == 0.0 and low[1] == 0.0 and low[2] > 0


# --- the discrimination check ---------------------------------------------------------------------------------

class _Stripes(StyleJudge):
    """Sees how striped an image is across and down (against a constant: flat images point one way)."""
    name = "stripes"

    def features(self, images):
        across = (images[..., :, 1:] - images[..., :, :-1]).abs().mean(dim=(1, 2, 3))
        down = (images[..., 1:, :] - images[..., :-1, :]).abs().mean(dim=(1, 2, 3))
        return torch.stack([across, down, torch.full_like(across, 0.2)], 1)


class _Colour(StyleJudge):
    name = "colour"

    def features(self, images):
        return images.mean(dim=(2, 3))


def _striped(n, seed, vertical=True, colour=(0.8, 0.3, 0.2)):
    g = torch.Generator().manual_seed(seed)
    base = torch.tensor(colour).view(3, 1, 1).expand(3, 16, 16)
    out = []
    for _ in range(n):
        period = int(torch.randint(2, 4, (1,), generator=g))
        line = (torch.arange(16) % period == 0).float() * 0.5
        stripes = line[None, None, :] if vertical else line[None, :, None]
        out.append((base * 0.6 + stripes + torch.rand(3, 16, 16, generator=g) * 0.1).clamp(0, 1))
    return torch.stack(out)


def _by_hand(judge, artist, others, folds, k, seed):
    """The cross-validation one image at a time: each image is scored by prototypes of every
    non-decoy class made without its fold; margin = its artist score minus its best other score."""
    emb = {"artist": judge.embed(artist), **{f"style:{n}": judge.embed(v) for n, v in others.items()},
           **{f"decoy:{n}": judge.embed(v) for n, v in judges.decoys(artist, seed).items()}}
    rng = np.random.default_rng(seed)
    fold = {c: rng.permutation(len(v)) % folds for c, v in emb.items()}
    margins, labels = {}, {}
    for c, v in emb.items():
        for i in range(len(v)):
            f = fold[c][i]
            train = {d: u[torch.from_numpy(fold[d] != f)] for d, u in emb.items() if not d.startswith("decoy:")}
            train = {d: u for d, u in train.items() if len(u)}
            names = list(train)
            means = [F.normalize(u.mean(0), dim=0) for u in train.values()]
            scores = []
            for j, d in enumerate(names):
                pool = torch.cat([u for e, u in train.items() if e != d])
                top = sorted((pool @ means[j]).tolist(), reverse=True)[:max(1, min(k, len(pool)))]
                scores.append(2 * float(v[i] @ means[j]) - float(np.mean(top)))
            a = names.index("artist")
            margins.setdefault(c, []).append(scores[a] - max(s for j, s in enumerate(scores) if j != a))
            labels.setdefault(c, []).append(int(np.argmax(scores)) == a)
    return margins, labels


def test_the_discrimination_check_cross_validates_one_image_at_a_time_and_applies_its_rule():
    artist = _striped(12, 0, vertical=True)
    others = {"flat": _striped(6, 1, vertical=True).mean(dim=(2, 3), keepdim=True).expand(-1, -1, 16, 16).contiguous(),
              "across": _striped(7, 2, vertical=False)}
    few_others = {"across": _striped(10, 3, vertical=False), "pair": _striped(2, 4, vertical=True)}   # 2 < folds
    for judge, folds, k, seed, others in ((_Stripes(), 5, 10, 0, others), (_Stripes(), 3, 2, 1, others),
                                          (_Colour(), 4, 3, 2, others), (_Stripes(), 5, 10, 0, few_others),
                                          (_Colour(), 5, 10, 0, {"across": _striped(10, 3, vertical=False)})):
        r = judges.discrimination(judge, artist, others, folds=folds, k=k, seed=seed)
        margins, labels = _by_hand(judge, artist, others, folds, k, seed)
        pos = np.array(margins["artist"])
        neg = np.concatenate([margins[c] for c in margins if c != "artist"])
        auc, low, high = judges._auc_interval(pos, neg)
        assert (r["auc"], r["auc_interval"]) == (round(auc, 4), [round(low, 4), round(high, 4)]), judge.name
        tp = sum(labels["artist"])
        assert r["tpr"] == round(tp / 12, 4) and r["tpr_interval"] == [round(x, 4) for x in judges._wilson(tp, 12)]
        for kind, key in (("style", "fpr_other_styles"), ("decoy", "fpr_decoys")):
            hits = [h for c in labels if c.startswith(kind + ":") for h in labels[c]]
            assert r[key]["images"] == len(hits) and r[key]["rate"] == round(sum(hits) / len(hits), 4)
            assert r[key]["interval"] == [round(x, 4) for x in judges._wilson(sum(hits), len(hits))]
        limit = judges._wilson(tp, 12)[0] / 3
        expected = low >= judges.MIN_AUC and all(r[key]["interval"][1] <= limit
                                                 for key in ("fpr_other_styles", "fpr_decoys"))
        assert r["can_tell"] == expected and (r["folds"], r["k"], r["judge"]) == (folds, k, judge.name)
        assert r["fpr_decoys"]["images"] == 48 and r["artist_images"] == 12
        assert r["fpr_other_styles"]["images"] == sum(len(v) for v in others.values())
        assert r["why"] == ("; ".join(judges.rule_problems((auc, low, high), judges._wilson(tp, 12),
                                                           {"style": r["fpr_other_styles"], "decoy": r["fpr_decoys"]}))
                            or "it tells the artist's images from the others")
    others = {"flat": _striped(6, 1, vertical=True).mean(dim=(2, 3), keepdim=True).expand(-1, -1, 16, 16).contiguous(),
              "across": _striped(7, 2, vertical=False)}
    default = judges.discrimination(_Colour(), artist, others)        # imperfect: the folds and seed show
    assert default == judges.discrimination(_Colour(), artist, others, folds=5, k=10, seed=0)
    assert default != judges.discrimination(_Colour(), artist, others, seed=1)
    assert default["rule"] == ("at least 10 images; AUC lower bound >= 0.8; every false-positive rate's upper bound "
                               "<= a third of the hit rate's lower bound")
    stripes = judges.discrimination(_Stripes(), artist, others)
    assert stripes["can_tell"] and stripes["why"] == "it tells the artist's images from the others"
    colour = judges.discrimination(_Colour(), artist, others)
    assert not colour["can_tell"] and "calls colour-only decoys of the artist's own images the artist's" in colour["why"]
    blind = judges.discrimination(_Colour(), artist, {"same": _striped(10, 3, vertical=False)})
    assert not blind["can_tell"] and "has its lower bound under 0.8" in blind["why"]
    assert "calls other styles the artist's" in blind["why"]
    few = judges.discrimination(_Stripes(), artist[:9], others)
    assert few["can_tell"] is False and few["artist_images"] == 9 and "needs at least 10" in few["why"]
    assert judges.discrimination(_Stripes(), artist[:10], others)["artist_images"] == 10
    with pytest.raises(ValueError, match="^the discrimination check needs images of other styles$"):
        judges.discrimination(_Stripes(), artist, {})
    assert (judges.MIN_ARTIST_IMAGES, judges.MIN_AUC) == (10, 0.8)


def test_the_discrimination_rule_at_its_boundaries():
    """The AUC's lower bound at exactly MIN_AUC passes, just under fails; a false-positive upper bound
    at exactly a third of the hit rate's lower bound passes, just over fails, and the limit is the
    lower bound, not the upper; a kind with no images is not judged; the reasons in words."""
    def false(style_high, decoy_high=0.0, images=10):
        return {"style": {"rate": 0.1, "images": images, "interval": [0.0, style_high]},
                "decoy": {"rate": 0.0, "images": 40, "interval": [0.0, decoy_high]}}

    tpr = (0.75, 0.9)                                    # a third of 0.75 is 0.25, exactly in binary
    assert judges.rule_problems((0.9, 0.8, 1.0), tpr, false(0.25)) == []
    assert judges.rule_problems((0.9, 0.7999, 1.0), tpr, false(0.2)) == [
        "AUC 0.90 [0.80, 1.00] has its lower bound under 0.8"]
    assert judges.rule_problems((0.9, 0.85, 1.0), tpr, false(0.26)) == [
        "it calls other styles the artist's in 10% of cases (up to 26%), more than a third of its hit rate on the "
        "artist's own (75% at least)"]
    assert judges.rule_problems((0.9, 0.85, 1.0), tpr, false(0.29)) != []        # under a third of 0.9, over 0.25
    assert judges.rule_problems((0.9, 0.85, 1.0), tpr, false(0.5, images=0)) == []
    two = judges.rule_problems((0.6, 0.5, 0.7), tpr, false(0.0, decoy_high=0.3))
    assert len(two) == 2 and two[1].startswith("it calls colour-only decoys of the artist's own images the artist's")
