"""The article's use case: is a product review helpful? Two classifiers to A/B test.

The reviews are synthetic with a known ground truth, so the demo needs no download
and a reward is exactly "was the variant's prediction right". A helpful review talks
about specifics (battery, setup, months of use); an unhelpful one gushes or rants;
both are padded with filler and neither is pure, so even a perfect reader errs
sometimes. The champion is a bag-of-words model on few words and little data; the
challenger reads the whole vocabulary and more data, and is the better variant.

Variants are called as `(data, content_type)` with the article's payload
`{"instances": [texts...], "configuration": {"k": 1}}` and answer like BlazingText:
`[{"label": ["__label__1"], "prob": [0.87]}, ...]` (`__label__1` = helpful).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from abtest.demo.classifier import BagOfWordsClassifier

HELPFUL_WORDS = (
    "battery", "lasted", "months", "compared", "setup", "manual", "detailed", "warranty",
    "measured", "returned", "firmware", "pros", "cons", "tested", "hours", "specs",
    "charging", "screen", "replacement", "install", "update", "volume", "size", "weeks",
    "brightness", "cable", "support", "noise", "heavy", "fits",
)  # fmt: skip
UNHELPFUL_WORDS = (
    "great", "love", "awesome", "amazing", "bad", "terrible", "best", "worst", "wow",
    "perfect", "cool", "nice", "ok", "fine", "happy", "hate", "junk", "super", "fantastic",
    "recommend",
)  # fmt: skip
FILLER_WORDS = (
    "the", "it", "and", "this", "i", "a", "was", "is", "product", "for", "my", "with",
    "to", "of", "but", "so", "very", "on", "in", "after", "really", "just", "one", "we",
)  # fmt: skip

CHAMPION = "Champion1"
CHALLENGER = "Challenger1"
HELPFUL_LABEL = "__label__1"
UNHELPFUL_LABEL = "__label__0"


@dataclass(frozen=True, slots=True)
class Reviews:
    texts: tuple[str, ...]
    labels: tuple[int, ...]  # 1 = helpful (the ground truth)

    def __len__(self) -> int:
        return len(self.texts)


def generate_reviews(n: int, seed: int) -> Reviews:
    """`n` reviews with labels; the same (n, seed) gives the same reviews."""
    rng = np.random.default_rng(seed)
    helpful_p = _zipf(len(HELPFUL_WORDS))
    unhelpful_p = _zipf(len(UNHELPFUL_WORDS))
    texts, labels = [], []
    for _ in range(n):
        label = int(rng.random() < 0.5)
        # The share of specific words: mostly high for helpful reviews, low otherwise.
        specific = rng.beta(6, 2) if label else rng.beta(2, 6)
        n_content = 2 + rng.poisson(6)
        is_specific = rng.random(n_content) < specific
        n_specific = int(is_specific.sum())
        words = [HELPFUL_WORDS[i] for i in rng.choice(len(HELPFUL_WORDS), n_specific, p=helpful_p)]
        words += [
            UNHELPFUL_WORDS[i]
            for i in rng.choice(len(UNHELPFUL_WORDS), n_content - n_specific, p=unhelpful_p)
        ]
        words += [FILLER_WORDS[i] for i in rng.integers(len(FILLER_WORDS), size=3 + n_content)]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return Reviews(tuple(texts), tuple(labels))


@functools.cache  # immutable, and every simulated user reads from it
def held_out_reviews(n: int = 2_000) -> Reviews:
    """Held-out reviews, never seen in training: the offline evaluation and the simulation."""
    return generate_reviews(n, seed=2)


@functools.cache
def classifiers() -> dict[str, BagOfWordsClassifier]:
    """Both variants, trained once per process (deterministic, well under a second)."""
    train = generate_reviews(4_000, seed=1)
    small = Reviews(train.texts[:100], train.labels[:100])
    return {
        CHAMPION: BagOfWordsClassifier.train(small.texts, small.labels, max_features=27),
        CHALLENGER: BagOfWordsClassifier.train(train.texts, train.labels),
    }


def accuracy(variant: str, reviews: Reviews) -> float:
    predicted = classifiers()[variant].predict(reviews.texts)
    return float(np.mean(predicted == np.asarray(reviews.labels)))


def champion(data: Any, content_type: str = "application/json") -> list[dict[str, Any]]:
    return _predict(CHAMPION, data, content_type)


def challenger(data: Any, content_type: str = "application/json") -> list[dict[str, Any]]:
    return _predict(CHALLENGER, data, content_type)


def predicted_labels(predictions: list[dict[str, Any]]) -> list[int]:
    """1/0 per instance from BlazingText-style predictions."""
    return [int(p["label"][0] == HELPFUL_LABEL) for p in predictions]


def _predict(variant: str, data: Any, content_type: str) -> list[dict[str, Any]]:
    texts = _instances(data, content_type)
    probabilities = classifiers()[variant].predict_proba(texts)
    return [
        {"label": [HELPFUL_LABEL], "prob": [round(float(p), 4)]}
        if p >= 0.5
        else {"label": [UNHELPFUL_LABEL], "prob": [round(float(1 - p), 4)]}
        for p in probabilities
    ]


def _instances(data: Any, content_type: str) -> list[str]:
    """Texts from the article's JSON payload, or one text per line of text/plain."""
    if isinstance(data, bytes):
        data = data.decode()
    if isinstance(data, str) and content_type.startswith("text/"):
        return [line for line in data.splitlines() if line.strip()]
    if isinstance(data, str):
        data = json.loads(data)
    instances = data.get("instances") if isinstance(data, dict) else None
    if not isinstance(instances, list) or not all(isinstance(t, str) for t in instances):
        raise ValueError('expected {"instances": [text, ...]}')
    return instances


def _zipf(n: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1)
    return weights / weights.sum()
