import numpy as np
import torch

from artshield import corpus
from artshield.metrics.judge import Judge


def test_judge_names_styles_and_concepts_of_unseen_real_images():
    """On its real test split (no (theme, icon) pair shared with training) the judge is far above chance
    (1/19 for style, 1/65 for concept). The floors guard against regressions of the committed judge."""
    judge = Judge.load()
    assert judge.styles == corpus.themes() and judge.concepts == corpus.concepts()
    test = corpus.items(judge_split="test")
    styles, concepts = judge.predict(corpus.load_images(test, 64))
    style_acc = np.mean([p == i.theme for p, i in zip(styles, test)])
    concept_acc = np.mean([p == i.concept for p, i in zip(concepts, test) if i.concept])
    assert style_acc >= 0.68 and concept_acc >= 0.40


def test_judge_accepts_any_size_and_gives_fixed_width_features():
    judge = Judge.load()
    f32 = judge.features(torch.rand(2, 3, 32, 32))
    f100 = judge.features(torch.rand(3, 3, 100, 100))
    assert f32.shape[1] == f100.shape[1] and f100.shape[0] == 3
