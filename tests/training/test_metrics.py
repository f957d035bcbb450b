import numpy as np
import torch
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from hotrec.training.metrics import binary_metrics


def test_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    labels = (rng.random(5000) < 0.3).astype(np.float32)
    logits = (rng.normal(0, 1, 5000) + 1.2 * labels).astype(np.float32)
    ties = np.round(logits, 1)  # ties exercise AUC's tie handling
    for lg in (logits, ties):
        m = binary_metrics(torch.from_numpy(lg), torch.from_numpy(labels))
        probs = 1 / (1 + np.exp(-lg.astype(np.float64)))
        assert abs(m["auc"] - roc_auc_score(labels, probs)) < 1e-6
        assert abs(m["logloss"] - log_loss(labels, probs)) < 1e-5
        assert abs(m["accuracy"] - accuracy_score(labels, probs > 0.5)) < 1e-6
        assert m["rows"] == 5000


def test_single_class_has_no_auc():
    m = binary_metrics(torch.full((4,), 2.0), torch.ones(4))
    assert np.isnan(m["auc"]) and m["accuracy"] == 1.0
