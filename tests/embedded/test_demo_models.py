"""The demo's variants: real classifiers, trained deterministically, with different accuracies."""

from __future__ import annotations

import json

import numpy as np
import pytest

from abtest.demo.classifier import BagOfWordsClassifier
from abtest.demo.reviews import (
    CHALLENGER,
    CHAMPION,
    accuracy,
    challenger,
    champion,
    generate_reviews,
    held_out_reviews,
    predicted_labels,
)


def test_the_challenger_is_really_better_on_reviews_it_never_saw() -> None:
    # Held-out reviews, and a fresh sample from another seed: the gap is a property of the
    # models, not of one test set (binomial sd of each accuracy on 2,000 reviews ~0.01).
    for reviews in (held_out_reviews(), generate_reviews(2_000, seed=99)):
        champion_accuracy = accuracy(CHAMPION, reviews)
        challenger_accuracy = accuracy(CHALLENGER, reviews)
        assert 0.6 < champion_accuracy < challenger_accuracy - 0.08
        assert challenger_accuracy < 0.95  # not trivially separable: the test has something to find


def test_the_corpus_and_training_are_deterministic() -> None:
    assert generate_reviews(50, seed=5) == generate_reviews(50, seed=5)
    assert generate_reviews(50, seed=5) != generate_reviews(50, seed=6)
    data = generate_reviews(300, seed=1)
    one = BagOfWordsClassifier.train(data.texts, data.labels)
    two = BagOfWordsClassifier.train(data.texts, data.labels)
    assert one.vocabulary == two.vocabulary
    assert np.array_equal(one.weights, two.weights)


def test_the_labels_are_balanced_ground_truth() -> None:
    reviews = held_out_reviews()
    assert 0.45 < np.mean(reviews.labels) < 0.55
    assert len(set(reviews.texts)) > 0.99 * len(reviews)


def test_variants_answer_the_articles_payload_like_blazingtext() -> None:
    reviews = held_out_reviews(40)
    payload = json.dumps({"instances": list(reviews.texts), "configuration": {"k": 1}})
    for model, variant in ((champion, CHAMPION), (challenger, CHALLENGER)):
        predictions = model(payload, "application/json")
        assert len(predictions) == 40
        assert all(p["label"][0] in ("__label__0", "__label__1") for p in predictions)
        assert all(0.5 <= p["prob"][0] <= 1.0 for p in predictions)
        expected = accuracy(variant, reviews)
        right = np.mean(np.array(predicted_labels(predictions)) == np.array(reviews.labels))
        assert right == pytest.approx(expected)
    # one review per line as text/plain
    text = "\n".join(reviews.texts[:3])
    assert len(challenger(text, "text/plain")) == 3


def test_a_payload_without_instances_is_refused() -> None:
    with pytest.raises(ValueError, match="instances"):
        champion(json.dumps({"text": "hello"}), "application/json")
