"""Metrics of the lab's tasks, on NumPy arrays or tensors (computed in float64)."""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor

ArrayLike = np.ndarray | Tensor


def _np(a: ArrayLike) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, Tensor) else np.asarray(a)


def regression(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float]:
    """``mse``, ``mae`` and ``r2`` (coefficient of determination) of two 1-D series."""
    t, p = _np(y_true).astype(np.float64).ravel(), _np(y_pred).astype(np.float64).ravel()
    mse = float(np.mean((t - p) ** 2))
    variance = float(np.mean((t - t.mean()) ** 2))
    return {
        "mse": mse,
        "mae": float(np.mean(np.abs(t - p))),
        "r2": 1.0 - mse / variance if variance > 0 else float("nan"),
    }


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, classes: int) -> np.ndarray:
    """(classes, classes) counts; row = true class, column = predicted class."""
    t, p = _np(y_true).astype(np.int64), _np(y_pred).astype(np.int64)
    return np.bincount(t * classes + p, minlength=classes * classes).reshape(classes, classes)


def classification(
    y_true: ArrayLike, y_pred: ArrayLike, names: list[str]
) -> tuple[dict[str, float], dict]:
    """``accuracy`` and ``macro_f1``, plus a report: confusion matrix and per-class scores."""
    cm = confusion_matrix(y_true, y_pred, len(names)).astype(np.float64)
    tp = np.diag(cm)
    support, predicted = cm.sum(1), cm.sum(0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    scores = {"accuracy": float(tp.sum() / cm.sum()), "macro_f1": float(f1.mean())}
    report = {
        "classes": names,
        "confusion_matrix": cm.astype(np.int64).tolist(),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(names)
        },
        **scores,
    }
    return scores, report


def bits_per_char(mean_nll_nats: float) -> float:
    """Convert a mean cross-entropy in nats per character to bits per character."""
    return mean_nll_nats / math.log(2)


def exact_match(pred: Tensor, target: Tensor) -> dict[str, float]:
    """Token-id tensors (N, L): ``exact_match`` (all L right) and ``char_accuracy``."""
    right = pred == target
    return {
        "exact_match": float(right.all(dim=1).double().mean()),
        "char_accuracy": float(right.double().mean()),
    }


def majority_baseline(y_train: ArrayLike, y_test: ArrayLike) -> float:
    """Accuracy of always predicting the most frequent training class."""
    counts = np.bincount(_np(y_train).astype(np.int64))
    return float(np.mean(_np(y_test) == counts.argmax()))


def clearly_above(rate: float, baseline: float, n: int) -> bool:
    """Whether a success rate (accuracy, exact match) measured on ``n`` examples is clearly above
    ``baseline``'s: by at least a point, and by two standard errors of a rate at the baseline
    (a binomial test at about 2.5 % one-sided), so chance on a small test set does not count."""
    spread = math.sqrt(max(baseline * (1.0 - baseline), 1e-12) / max(n, 1))
    return rate - baseline > max(0.01, 2.0 * spread)
