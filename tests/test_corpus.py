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
            assert im.size == (64, 64) and im.mode == "RGB", r["file"]
            assert hashlib.sha256(im.tobytes()).hexdigest() == r["sha256"], r["file"]


def test_files_and_captions_are_unique():
    items = corpus.items()
    assert len({i.file for i in items}) == len(items)
    assert len({i.caption for i in items}) == len(items)
    assert len({r["sha256"] for r in corpus.manifest()["images"]}) == len(items)


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
    assert {i.split for i in items} == {"train", "finetune", "reference"}
    assert all(i.judge_split is None for i in items if i.split == "finetune")
    assert all(i.judge_split in ("train", "test") for i in items if i.split != "finetune")
    train_files = {i.file for i in corpus.items(judge_split="train")}
    assert not train_files & {i.file for i in corpus.items(judge_split="test")}


def test_concepts_are_shared_across_many_themes():
    concepts = corpus.concepts()
    assert len(concepts) >= 50
    per_concept = Counter(i.concept for i in corpus.items(split="train") if i.concept)
    assert set(per_concept) == set(concepts)
    assert min(per_concept.values()) >= 12
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
