"""Integrity of the embedded icon corpus and of mini's training set."""
import hashlib
import json
from collections import Counter

import numpy as np
from PIL import Image

from artshield import corpus
from artshield.models.loader import MINI_DIR


def test_every_listed_image_exists_with_its_recorded_pixels():
    for r in corpus.manifest()["images"]:
        with Image.open(corpus.CORPUS_DIR / r["file"]) as im:
            assert im.mode == "RGB", r["file"]
            if r["file"].startswith("judge/"):     # the judge pool is stored at 32x32
                assert im.size == (32, 32), r["file"]
            else:                                 # the rest at 64x64, exactly as hashed
                assert im.size == (64, 64), r["file"]
                assert hashlib.sha256(im.tobytes()).hexdigest() == r["sha256"], r["file"]


def test_files_and_captions_are_unique():
    items = corpus.items()
    assert len({i.file for i in items}) == len(items)
    assert len({i.caption for i in items}) == len(items)
    # identical drawings: only across two themes (a theme ships each drawing once), and rare
    by_digest = Counter(i.sha256 for i in items)
    twins = [d for d, n in by_digest.items() if n > 1]
    assert max(by_digest.values()) <= 2 and len(twins) <= 3
    for d in twins:
        assert len({i.theme for i in items if i.sha256 == d}) == 2


def test_heldout_themes_never_reach_the_training_split():
    heldout = set(corpus.themes(heldout=True))
    assert len(heldout) >= 3
    assert not heldout & {i.theme for i in corpus.items(split="train")}
    for t in heldout:
        splits = Counter(i.split for i in corpus.items(theme=t))
        assert set(splits) == {"finetune", "reference"}
        assert splits["finetune"] >= 40 and splits["reference"] >= 40


def test_splits_are_disjoint_and_the_judge_never_sees_finetuning_images():
    items = corpus.items()
    assert {i.split for i in items} == {"train", "finetune", "reference", "judge"}
    assert all(i.judge_split is None for i in items if i.split == "finetune")
    assert all(i.judge_split == "train" for i in items if i.split == "judge")
    assert all(i.judge_split in ("train", "test") for i in items if i.split != "finetune")
    train_files = {i.file for i in corpus.items(judge_split="train")}
    assert not train_files & {i.file for i in corpus.items(judge_split="test")}


def test_judge_pool_holds_no_near_copy_of_a_judge_test_image():
    test = corpus.load_images(corpus.items(judge_split="test"), 32).flatten(1)
    pool = corpus.load_images(corpus.items(split="judge")[::7], 32).flatten(1)
    mse = (pool.pow(2).sum(1, keepdim=True) - 2 * pool @ test.T + test.pow(2).sum(1)) / test.shape[1]
    assert float(10 * np.log10(1 / mse.min().clamp_min(1e-10))) <= 20.5
    concept_only = [i for i in corpus.items(split="judge") if i.theme is None]
    assert concept_only and all(i.concept for i in concept_only)


def test_concepts_are_shared_across_many_themes():
    concepts = corpus.concepts()
    assert len(concepts) >= 50
    per_concept = Counter(i.concept for i in corpus.items(split="train") if i.concept)
    assert set(per_concept) == set(concepts)
    assert min(per_concept.values()) >= 8
    assert len(corpus.themes()) >= 19


def test_duplicates_manifest_is_consistent():
    dups = corpus.manifest()["duplicates"]
    assert len(dups) >= 20
    by_file = {i.file: i for i in corpus.items()}
    for d in dups:
        it = by_file[d["file"]]
        assert it.split == "train" and it.copies == d["copies"] >= 50 and it.caption == d["caption"]
    assert sum(i.copies > 1 for i in corpus.items()) == len(dups)


def test_notice_names_every_theme_and_its_licence_file():
    notice = (corpus.CORPUS_DIR / "NOTICE").read_text()
    for style, info in corpus.manifest()["themes"].items():
        assert f"- {style}:" in notice and info["package"] in notice
        assert (corpus.CORPUS_DIR / "licenses" / f"{info['package']}.copyright").exists()


def test_mini_was_trained_on_exactly_this_training_split():
    info = json.loads((MINI_DIR / "artshield_mini.json").read_text())
    files = sorted(i.file for i in corpus.items(split="train"))
    assert info["train_split_sha256"] == hashlib.sha256("\n".join(files).encode()).hexdigest()
    vocab = json.loads((MINI_DIR / "tokenizer" / "vocab.json").read_text())
    for theme in corpus.themes(heldout=True):   # no held-out theme name is a learnt word
        assert f"{theme}</w>" not in vocab


def test_load_images_resamples_to_the_requested_size():
    x = corpus.load_images(corpus.items(split="reference")[:3], 32)
    assert x.shape == (3, 3, 32, 32) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert np.isfinite(x.numpy()).all()
