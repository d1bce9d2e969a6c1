"""A bag-of-words logistic regression in numpy: small, deterministic, trained in milliseconds."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_TOKEN = re.compile(r"[a-z']+")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


@dataclass
class BagOfWordsClassifier:
    """P(helpful | text) from log(1 + word counts) over a fixed vocabulary."""

    vocabulary: dict[str, int]
    weights: np.ndarray  # one per vocabulary word, then the bias

    @classmethod
    def train(
        cls,
        texts: Sequence[str],
        labels: Sequence[int],
        *,
        max_features: int | None = None,
        l2: float = 1e-3,
        steps: int = 400,
        learning_rate: float = 1.0,
    ) -> BagOfWordsClassifier:
        """Full-batch gradient descent; the same data gives the same model, bit for bit."""
        counts = Counter(word for text in texts for word in set(tokens(text)))
        ranked = sorted(counts, key=lambda word: (-counts[word], word))[:max_features]
        model = cls({word: i for i, word in enumerate(ranked)}, np.zeros(len(ranked) + 1))
        x = model.features(texts)
        y = np.asarray(labels, dtype=float)
        for _ in range(steps):
            p = 1.0 / (1.0 + np.exp(-(x @ model.weights)))
            gradient = x.T @ (p - y) / len(y) + l2 * np.r_[model.weights[:-1], 0.0]
            model.weights -= learning_rate * gradient
        return model

    def features(self, texts: Sequence[str]) -> np.ndarray:
        rows, columns, counts = [], [], []
        for row, text in enumerate(texts):
            for word, n in Counter(tokens(text)).items():
                column = self.vocabulary.get(word)
                if column is not None:
                    rows.append(row)
                    columns.append(column)
                    counts.append(n)
        x = np.zeros((len(texts), len(self.vocabulary) + 1))
        x[rows, columns] = np.log1p(counts)
        x[:, -1] = 1.0
        return x

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.features(texts) @ self.weights)))

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return (self.predict_proba(texts) >= 0.5).astype(int)
