"""Style judges: the registry, CLIP and CSD loaded from safetensors on tiny random towers, the CSLS
readout on embeddings with a known answer, and the discrimination check that must pass before a
judge may judge (accepting mini's held-out icon artists, refusing photographs under the icon judge)."""
import numpy as np
import pytest
import torch
import torch.nn as nn
from safetensors.torch import save_file

from artshield import corpus
from artshield.errors import ArtshieldError
from artshield.io import write_image
from artshield.metrics import judges
from artshield.metrics.judges import Prototypes, StyleJudge, discrimination, load_judge


class _Identity(StyleJudge):
    """A judge whose 'images' are already embeddings (N, D, 1, 1)."""
    name = "identity"

    def features(self, images):
        return images.flatten(1).float()

    def embed(self, images, batch_size=64):
        return torch.nn.functional.normalize(self.features(images), dim=1)


def test_csls_takes_a_hub_prototypes_crowd_away_from_it():
    # two tight styles, and a "hub": images that mix every direction, so its mean lies near the others
    g = torch.Generator().manual_seed(0)
    u = torch.nn.functional.normalize(torch.randn(4, 16, generator=g), dim=1)
    b = torch.nn.functional.normalize(u[0] + 0.1 * torch.randn(5, 16, generator=g), dim=1)
    c = torch.nn.functional.normalize(u[1] + 0.1 * torch.randn(5, 16, generator=g), dim=1)
    hub = torch.nn.functional.normalize(u.sum(0) / 2 + 0.3 * torch.randn(8, 16, generator=g), dim=1)
    proto = Prototypes(_Identity(), {"hub": hub, "b": b, "c": c}, k=3, embedded=True)
    r = torch.stack([(proto.means[i] @ torch.cat(rest).T).topk(3).values.mean()
                     for i, rest in enumerate([(b, c), (hub, c), (hub, b)])])
    assert torch.allclose(proto.hubness, r, atol=1e-6) and r[0] > r[1] + 0.01      # the hub is the hub
    # from b's mean toward the hub's: the first point where plain cosine prefers the hub
    x = next(x for a in np.arange(0, 1, 1e-3) if ((x := torch.nn.functional.normalize(
        a * proto.means[0] + (1 - a) * proto.means[1], dim=0)[None]) @ proto.means.T).argmax() == 0)
    cos = x @ proto.means.T
    assert torch.allclose(proto.scores_of(x), 2 * cos - r[None], atol=1e-6)
    assert cos.argmax().item() == 0                                                 # plain cosine: the hub
    assert proto.predict(x[:, :, None, None]) == ["b"]                              # CSLS: the style it is near


def test_an_unknown_or_absent_judge_is_one_line_naming_what_to_download(tmp_path):
    with pytest.raises(ArtshieldError, match="unknown judge"):
        load_judge("dino")
    for name, needs in (("clip", "clip-vit-large-patch14"), ("csd", "yuxi-liu-wired/CSD")):
        with pytest.raises(ArtshieldError, match=needs) as e:
            load_judge(name)
        assert "\n" not in str(e.value) and "downloaded" in str(e.value)
    (tmp_path / "checkpoint.pth").write_bytes(b"\x80\x04not read")
    with pytest.raises(ArtshieldError, match="pickles"):
        load_judge("csd", str(tmp_path / "checkpoint.pth"))


def _tiny_clip(folder, projection=16):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    config = CLIPVisionConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=2,
                              image_size=16, patch_size=4, projection_dim=projection)
    model = CLIPVisionModelWithProjection(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    return model


def test_the_clip_judge_reads_a_transformers_folder_of_safetensors_and_nothing_pickled(tmp_path):
    model = _tiny_clip(tmp_path / "clip")
    judge = load_judge("clip", str(tmp_path / "clip"))
    images = torch.rand(3, 3, 40, 30, generator=torch.Generator().manual_seed(1))
    got = judge.embed(images)
    assert got.shape == (3, 16) and judge.image_size == 16 and "16 x 16" in judge.describe()["sees"]
    with torch.no_grad():
        want = model(pixel_values=judge.pixels(images)).image_embeds
    assert torch.allclose(got, torch.nn.functional.normalize(want, dim=1), atol=1e-5)
    for f in (tmp_path / "clip").glob("*.safetensors"):
        f.rename(f.with_suffix(".bin"))
    with pytest.raises(ArtshieldError, match="no .safetensors"):
        load_judge("clip", str(tmp_path / "clip"))


class _OpenAIBlock(nn.Module):
    """OpenAI CLIP's residual attention block, written from torch's own MultiheadAttention."""

    def __init__(self, width, heads):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.mlp = nn.ModuleDict({"c_fc": nn.Linear(width, 2 * width), "c_proj": nn.Linear(2 * width, width)})

    def forward(self, x):
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        h = self.mlp["c_fc"](self.ln_2(x))
        return x + self.mlp["c_proj"](h * torch.sigmoid(1.702 * h))


class _OpenAIVisual(nn.Module):
    def __init__(self, width=128, layers=2, patch=4, side=16):
        super().__init__()
        g = side // patch
        self.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(width) * 0.1)
        self.positional_embedding = nn.Parameter(torch.randn(g * g + 1, width) * 0.1)
        self.ln_pre, self.ln_post = nn.LayerNorm(width), nn.LayerNorm(width)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.ModuleList([_OpenAIBlock(width, width // 64) for _ in range(layers)])

    def forward(self, x):
        x = self.conv1(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.expand(len(x), 1, -1), x], 1) + self.positional_embedding
        x = self.ln_pre(x)
        for block in self.transformer.resblocks:
            x = block(x)
        return self.ln_post(x[:, 0])


def test_the_csd_judge_reads_openai_layout_weights_and_matches_the_original_tower(tmp_path):
    torch.manual_seed(0)
    tower = _OpenAIVisual().eval()
    for p in tower.parameters():                      # LayerNorms away from the identity, too
        p.data += 0.05 * torch.randn_like(p)
    style = torch.randn(128, 24)
    tensors = {f"backbone.{k}": v.detach().clone() for k, v in tower.state_dict().items()}
    tensors["last_layer_style"], tensors["last_layer_content"] = style, torch.randn(128, 24)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    judge = load_judge("csd", str(tmp_path))                     # a folder holding model.safetensors
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = torch.nn.functional.normalize(tower(judge.pixels(images)) @ style, dim=1)
    assert torch.allclose(judge.embed(images), want, atol=1e-4)
    assert judge.image_size == 16 and "24 numbers" in judge.describe()["sees"]
    del tensors["last_layer_style"]
    save_file(tensors, str(tmp_path / "other.safetensors"))
    with pytest.raises(ArtshieldError, match="not a CSD checkpoint"):
        load_judge("csd", str(tmp_path / "other.safetensors"))


def _icons(theme, n):
    return corpus.load_images(corpus.items(theme=theme)[:n], 64)


@pytest.fixture(scope="module")
def icon_judge():
    return load_judge("icon")


@pytest.fixture(scope="module")
def other_styles(icon_judge):
    return {t: _icons(t, 12) for t in icon_judge.judge.styles if t != "gartoon"}


def test_the_icon_judge_can_tell_a_held_out_icon_artist(icon_judge, other_styles):
    r = discrimination(icon_judge, _icons("gartoon", 30), other_styles)
    assert r["can_tell"], r["why"]
    assert r["auc_interval"][0] >= judges.MIN_AUC and r["fpr_decoys"]["images"] == 120
    assert r["fpr_other_styles"]["interval"][1] <= r["tpr_interval"][0] / 3


def _photos():
    from skimage import data

    out = []
    for name in ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
                 "colorwheel", "logo", "cat"):
        a = torch.from_numpy(np.asarray(getattr(data, name)()))[..., :3].float().permute(2, 0, 1)[None] / 255
        out.append(torch.nn.functional.interpolate(a, size=(64, 64), mode="area")[0])
    return torch.stack(out)


def test_the_icon_judge_refuses_photographs_as_an_artist(icon_judge, other_styles):
    photos = _photos()
    two = discrimination(icon_judge, photos[1:3], other_styles)             # the cat and the coffee
    assert not two["can_tell"] and "too few" in two["why"]
    ten = discrimination(icon_judge, photos, other_styles)
    # it separates photos from icons, but calls colour blobs of the photos "the artist": it sees colour
    assert not ten["can_tell"] and "colour-only decoys" in ten["why"]
    assert ten["fpr_decoys"]["rate"] > 0.5


def test_the_auc_interval_keeps_a_width_when_few_images_separate_perfectly():
    auc, low, high = judges._auc_interval(np.array([3.0, 4.0]), np.array([0.0, 1.0, 2.0]))
    assert auc == 1.0 and high == 1.0 and low < 0.8
    auc, low, _ = judges._auc_interval(np.arange(40.0) + 500, np.arange(400.0))
    assert auc == 1.0 and low > 0.95


def test_the_bench_judges_with_a_style_judge_and_binds_its_folder_to_it(tmp_path, mini_bundle, monkeypatch):
    import json

    from artshield.bench import experiment
    from artshield.cli import main

    _tiny_clip(tmp_path / "clip")
    smoke = experiment.PRESETS["smoke"]
    one = experiment.Preset(**{**smoke.__dict__, "seeds": [0], "mimicry_steps": {"lora": 2}})
    monkeypatch.setitem(experiment.PRESETS, "smoke", one)
    judge = experiment.corpus_classifier(load_judge("clip", str(tmp_path / "clip")), one, str(tmp_path / "clip"))
    assert "gartoon" in judge.prototypes.names and len(judge.prototypes.names) > 10
    results = experiment.run_preset(mini_bundle, "smoke", tmp_path / "run", log=lambda m: None, judge=judge)
    cell = results["cells"][0]
    assert cell["models"]["judge"]["name"].startswith("clip judge") and len(cell["models"]["judge"]["sha256"]) == 16
    protocol = json.loads((tmp_path / "run" / "protocol.json").read_text())
    assert protocol["judge"]["name"] == "clip"
    # the outcomes are the style judge's: the share of generations its readout names gartoon
    styles, _ = judge.predict(torch.rand(2, 3, 32, 32))
    assert all(s in judge.prototypes.names for s in styles)
    with pytest.raises(ValueError, match="other settings"):                   # cells judged otherwise
        experiment.run_preset(mini_bundle, "smoke", tmp_path / "run", log=lambda m: None)
    assert main(["bench", "--preset", "smoke", "-o", str(tmp_path / "x"), "--judge", "csd", "-q"]) == 2


def test_the_clip_judge_reads_a_whole_clip_model_folder_as_the_hub_ships_it(tmp_path):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(text_config={"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1,
                                     "num_attention_heads": 2, "vocab_size": 99},
                        vision_config={"hidden_size": 64, "intermediate_size": 37, "num_hidden_layers": 2,
                                       "num_attention_heads": 2, "image_size": 16, "patch_size": 4},
                        projection_dim=12)
    model = CLIPModel(config).eval()
    model.save_pretrained(tmp_path / "clip", safe_serialization=True)
    judge = load_judge("clip", str(tmp_path / "clip"))
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = model.get_image_features(pixel_values=judge.pixels(images))
    want = getattr(want, "image_embeds", getattr(want, "pooler_output", want))
    assert torch.allclose(judge.embed(images), torch.nn.functional.normalize(want, dim=1), atol=1e-5)


def test_erase_reads_styles_with_a_style_judge_after_its_discrimination_check(tmp_path, tiny_bundle, mini_bundle,
                                                                               icon_judge, capsys):
    """erase --judge: on mini, a style judge knows the corpus's styles and no concepts; on any other
    model it knows the style whose images the user gives. A judge that cannot tell the style apart
    skips the evaluation and says why; one that can measures the target and the other styles."""
    import json

    from artshield.cli import main
    from artshield.erase import erase
    from artshield.erase.evaluate import StyleSet, Target, default_preserve, evaluate_all, judged_targets

    on_mini = judged_targets(mini_bundle, ["faenza style", "trash can"], style_judge=True)
    assert on_mini["faenza style"] == Target("style", "faenza") and "not concepts" in on_mini["trash can"]
    assert "--references and --others" in judged_targets(tiny_bundle, ["van gogh"])["van gogh"]
    mine = _icons("gartoon", 20)
    styles = StyleSet(mine, {t: _icons(t, 12) for t in ("moka", "faenza", "tango")})
    targets = judged_targets(tiny_bundle, ["Gartoon style"], style_judge=True, styles=styles)
    assert targets == {"Gartoon style": Target("style", "gartoon")}
    keep = default_preserve(targets, 0, 4, 2, styles)
    assert len(keep) == 3 * 6 and not any("gartoon" in p for p in keep)
    edit = erase(tiny_bundle, ["gartoon style"], "uce", preserve=keep)
    [(record, sheet)] = evaluate_all(tiny_bundle, edit, targets, ["Gartoon style"], n_target=4, per_other=2,
                                     recovery_steps=0, steps=2, judge=icon_judge, styles=styles)
    assert record["judge_check"]["can_tell"] and "skipped" not in record
    assert set(record["before"]["others_by_name"]) == {"moka", "faenza", "tango"}
    assert record["prompts"]["target"][0].endswith(", gartoon style") and sheet.shape[-1] > 0
    # through the command: flat colours as the style, which no judge can tell from its colour decoys
    for name, colour in (("refs", (0.9, 0.2, 0.1)), ("others/blue", (0.1, 0.2, 0.9)), ("others/green", (0.1, 0.8, 0.2))):
        for i in range(12):
            write_image(torch.tensor(colour)[:, None, None].expand(3, 32, 32) * (0.8 + 0.02 * i),
                        tmp_path / name / f"{i}.png")
    _tiny_clip(tmp_path / "clip")
    out = tmp_path / "erased"
    assert main(["erase", "--model", str(tiny_bundle.spec), "--concept", "red style", "--method", "uce", "-o",
                 str(out), "-q", "--judge", "clip", "--judge-path", str(tmp_path / "clip"), "--references",
                 str(tmp_path / "refs"), "--others", str(tmp_path / "others"), "--eval-prompts", "4",
                 "--recovery-steps", "0", "--steps", "2"]) == 0
    [e] = json.loads((out / "results.json").read_text())["evaluations"]
    assert e["skipped"].startswith("the clip judge cannot tell this style apart") and not e["judge_check"]["can_tell"]
    assert "cannot tell" in (out / "report.html").read_text()
    capsys.readouterr()
    for argv, words in ((["--judge", "clip", "--judge-path", str(tmp_path / "clip"), "--references", str(tmp_path)],
                         "go together"), (["--references", str(tmp_path / "refs")], "go with --judge clip or csd")):
        assert main(["erase", "--model", str(tiny_bundle.spec), "--concept", "x", "-o", str(tmp_path / "n"), "-q",
                     *argv]) == 2
        assert words in capsys.readouterr().err
