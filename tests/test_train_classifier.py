import json

import pytest
import torch

import pipeline.classifier.train as tc
from conftest import DEMO_CLASSES
from pipeline.data.voc import VOCDataset

CFG = {"backbone": "tf_efficientnet_lite0", "weights": "none", "pooling": "gap", "output_stride": 16, "feature_level": "last",
       "optimizer": "sgd", "lr": 0.01, "weight_decay": 0.0, "momentum": 0.9, "poly_power": 0.9,
       "epochs": 2, "batch_size": 4, "crop_size": 48, "scale_range": [0.7, 1.0], "workers": 0}


def _splits(root):
    return VOCDataset(root, DEMO_CLASSES, "train"), VOCDataset(root, DEMO_CLASSES, "val")


def test_training_writes_a_weights_only_checkpoint_and_report(tmp_path, tiny_voc):
    out = tmp_path / "classifier.pt"
    result = tc.train(*_splits(tiny_voc), CFG, out, "cpu")
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["meta"]["classes"] == DEMO_CLASSES and ckpt["meta"]["backbone"] == CFG["backbone"]
    assert 0.0 <= result["val_map"] <= 1.0 and len(result["history"]) == 2
    assert not (tmp_path / "classifier.pt.partial").exists()
    json.dumps(result)


def test_nan_loss_stops_and_keeps_the_last_good_epoch(tmp_path, tiny_voc, monkeypatch):
    calls = {"n": 0}
    real = tc.classification_loss

    def poisoned(logits, targets):  # finite for the first epoch (2 iterations), NaN after
        calls["n"] += 1
        loss = real(logits, targets)
        return loss if calls["n"] <= 2 else loss * float("nan")

    monkeypatch.setattr(tc, "classification_loss", poisoned)
    out = tmp_path / "classifier.pt"
    with pytest.raises(tc.TrainingDiverged, match=r"epoch 2, iteration 1.*classifier.pt.partial"):
        tc.train(*_splits(tiny_voc), CFG, out, "cpu")
    assert not out.exists()
    kept = torch.load(tmp_path / "classifier.pt.partial", weights_only=True)
    assert kept["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())

    # the rerun (loss healthy again) resumes after epoch 1 instead of starting over
    monkeypatch.setattr(tc, "classification_loss", real)
    result = tc.train(*_splits(tiny_voc), CFG, out, "cpu")
    assert [h["epoch"] for h in result["history"]] == [1, 2] and out.exists()
