import json
import sys
from pathlib import Path

import numpy as np
import pytest

# The package is not installed in the venv; import it from the repo root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.maps.metrics import (  # noqa: E402
    ConfusionAccumulator,
    average_precision,
    confusion_matrix,
    mean_average_precision,
    scores,
)


# ---------------------------------------------------------------- references

def naive_confusion(gt, pred, n, ignore_index=255):
    """Per-pixel Python loop: the independent truth for confusion_matrix."""
    m = [[0] * n for _ in range(n)]
    for g, p in zip(np.asarray(gt).ravel().tolist(), np.asarray(pred).ravel().tolist()):
        if g == ignore_index:
            continue
        m[g][p] += 1
    return np.array(m, dtype=np.int64)


def naive_ap(scores_, targets):
    """Sort (stably) by score descending, average precision@k over positives."""
    order = sorted(range(len(scores_)), key=lambda i: -scores_[i])
    hits, precisions = 0, []
    for rank, i in enumerate(order, start=1):
        if targets[i] > 0:
            hits += 1
            precisions.append(hits / rank)
    return sum(precisions) / len(precisions) if precisions else None


def random_maps(rng, shape, n, ignore_frac=0.1, dtype=np.uint8):
    gt = rng.integers(0, n, size=shape).astype(dtype)
    pred = rng.integers(0, n, size=shape).astype(dtype)
    ignored = rng.random(shape) < ignore_frac
    gt[ignored] = 255
    return gt, pred


# ------------------------------------------------------- confusion vs naive

@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n", [1, 2, 5, 21])
@pytest.mark.parametrize("shape", [(7, 9), (13, 4), (2, 5, 3), (31,)])
def test_confusion_matches_naive_loop(seed, n, shape):
    rng = np.random.default_rng(seed)
    gt, pred = random_maps(rng, shape, n)
    cm = confusion_matrix(gt, pred, n)
    assert cm.dtype == np.int64 and cm.shape == (n, n)
    np.testing.assert_array_equal(cm, naive_confusion(gt, pred, n))
    assert cm.sum() == np.count_nonzero(gt != 255)


@pytest.mark.parametrize("n", [64, 65, 100, 300])
def test_confusion_many_classes(n):
    # Past 64 classes the uint8 fast path needs wider indices; past 256 the
    # table needs more rows than uint8 gt values.
    rng = np.random.default_rng(n)
    gt = rng.integers(0, min(n, 255), size=(17, 23)).astype(np.uint8)
    gt[rng.random(gt.shape) < 0.1] = 255
    pred = rng.integers(0, n, size=gt.shape).astype(np.uint16)
    np.testing.assert_array_equal(confusion_matrix(gt, pred, n), naive_confusion(gt, pred, n))


def test_confusion_non_contiguous_and_other_dtypes():
    rng = np.random.default_rng(7)
    gt, pred = random_maps(rng, (40, 30), 6)
    expected_t = naive_confusion(gt.T, pred.T, 6)
    np.testing.assert_array_equal(confusion_matrix(gt.T, pred.T, 6), expected_t)
    np.testing.assert_array_equal(
        confusion_matrix(gt[::3, 1::2], pred[::3, 1::2], 6), naive_confusion(gt[::3, 1::2], pred[::3, 1::2], 6)
    )
    np.testing.assert_array_equal(
        confusion_matrix(gt.astype(np.int64), pred.astype(np.int32), 6), naive_confusion(gt, pred, 6)
    )
    # Signed maps with ignore_index = -1.
    gt_signed = gt.astype(np.int16)
    gt_signed[gt == 255] = -1
    np.testing.assert_array_equal(
        confusion_matrix(gt_signed, pred, 6, ignore_index=-1), naive_confusion(gt_signed, pred, 6, ignore_index=-1)
    )


def test_ignore_index_inside_class_range_and_none():
    rng = np.random.default_rng(3)
    gt = rng.integers(0, 4, size=(9, 11)).astype(np.uint8)
    pred = rng.integers(0, 4, size=(9, 11)).astype(np.uint8)
    cm = confusion_matrix(gt, pred, 4, ignore_index=0)
    np.testing.assert_array_equal(cm, naive_confusion(gt, pred, 4, ignore_index=0))
    assert cm[0].sum() == 0
    np.testing.assert_array_equal(confusion_matrix(gt, pred, 4, ignore_index=None), naive_confusion(gt, pred, 4, None))


def test_pred_out_of_range_allowed_where_gt_ignored():
    gt = np.array([[0, 1, 255]], np.uint8)
    pred = np.array([[0, 1, 200]], np.uint8)
    np.testing.assert_array_equal(confusion_matrix(gt, pred, 2), [[1, 0], [0, 1]])


def test_empty_input():
    cm = confusion_matrix(np.zeros((0, 5), np.uint8), np.zeros((0, 5), np.uint8), 3)
    np.testing.assert_array_equal(cm, np.zeros((3, 3)))


# ------------------------------------------------------------------ errors

def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        confusion_matrix(np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.uint8), 2)


def test_pred_value_too_large_is_named():
    gt = np.array([[0, 1], [1, 0]], np.uint8)
    pred = np.array([[0, 7], [1, 0]], np.uint8)
    with pytest.raises(ValueError, match=r"\b7\b"):
        confusion_matrix(gt, pred, 3)
    with pytest.raises(ValueError, match="-2"):
        confusion_matrix(gt.astype(np.int8), np.array([[0, -2], [1, 0]], np.int8), 3)


def test_gt_value_out_of_range_raises():
    with pytest.raises(ValueError, match=r"\b9\b"):
        confusion_matrix(np.array([[0, 9]], np.uint8), np.array([[0, 1]], np.uint8), 3)
    with pytest.raises(ValueError, match=r"\b9\b"):
        confusion_matrix(np.array([[0, 9]], np.int64), np.array([[0, 1]], np.int64), 3)


def test_bad_arguments():
    ok = np.zeros((2, 2), np.uint8)
    with pytest.raises(TypeError):
        confusion_matrix(ok.astype(float), ok, 2)
    with pytest.raises(ValueError):
        confusion_matrix(ok, ok, 0)


# ------------------------------------------------------- hand-computed case

def test_hand_computed_case():
    gt = np.array([[0, 0, 1],
                   [1, 1, 255],
                   [2, 2, 0]], np.uint8)
    pred = np.array([[0, 1, 1],
                     [1, 0, 2],
                     [2, 0, 0]], np.uint8)
    # Non-ignored (gt, pred) pairs, row by row:
    #   (0,0) (0,1) (1,1) | (1,1) (1,0) [ignored] | (2,2) (2,0) (0,0)
    # Class 3 never occurs.
    cm = confusion_matrix(gt, pred, 4)
    np.testing.assert_array_equal(cm, [[2, 1, 0, 0],
                                       [1, 2, 0, 0],
                                       [1, 0, 1, 0],
                                       [0, 0, 0, 0]])
    # row sums (gt)   = [3, 3, 2, 0];  col sums (pred) = [4, 3, 1, 0]
    # class 0: TP 2, FP 2, FN 1 -> IoU 2/5;  precision 2/4; recall 2/3
    # class 1: TP 2, FP 1, FN 1 -> IoU 2/4;  precision 2/3; recall 2/3
    # class 2: TP 1, FP 0, FN 1 -> IoU 1/2;  precision 1/1; recall 1/2
    # class 3: TP+FP+FN = 0 -> None, left out of the mean
    # mIoU = (2/5 + 1/2 + 1/2) / 3 = 7/15;  pixel accuracy = 5/8
    # fg: TP = cm[1:,1:].sum() = 3; pred fg = cm[:,1:].sum() = 4; gt fg = cm[1:,:].sum() = 5
    s = scores(cm, class_names=["bg", "cat", "dog", "cow"])
    assert s["iou"] == {"bg": 0.4, "cat": 0.5, "dog": 0.5, "cow": None}
    assert s["miou"] == pytest.approx(7 / 15, rel=1e-12, abs=0)
    assert s["pixel_accuracy"] == 0.625
    assert s["precision"] == {"bg": 0.5, "cat": 2 / 3, "dog": 1.0, "cow": None}
    assert s["recall"] == {"bg": 2 / 3, "cat": 2 / 3, "dog": 0.5, "cow": None}
    assert s["fg_precision"] == 0.75
    assert s["fg_recall"] == 0.6


def test_scores_are_json_serialisable_with_nulls():
    s = scores(np.array([[3, 1, 0], [0, 2, 0], [0, 0, 0]], np.int64))
    assert list(s["iou"]) == ["0", "1", "2"]
    text = json.dumps(s)
    assert json.loads(text)["iou"]["2"] is None
    for value in s["iou"].values():
        assert value is None or type(value) is float


def test_scores_degenerate_matrices():
    s = scores(np.zeros((3, 3), np.int64))
    assert s["miou"] is None and s["pixel_accuracy"] is None
    assert s["fg_precision"] is None and s["fg_recall"] is None
    # Only background present: foreground precision/recall undefined.
    s = scores(np.array([[5, 0], [0, 0]]))
    assert s["miou"] == 1.0 and s["fg_precision"] is None and s["fg_recall"] is None
    with pytest.raises(ValueError):
        scores(np.zeros((2, 3)))
    with pytest.raises(ValueError):
        scores(np.zeros((2, 2)), class_names=["a"])


# ----------------------------------------------------------------- identity

def test_identity_gives_miou_one_and_absent_class_is_null():
    rng = np.random.default_rng(11)
    gt = rng.choice(np.array([0, 1, 2, 4], np.uint8), size=(20, 30))  # class 3 absent
    gt[rng.random(gt.shape) < 0.1] = 255
    pred = np.where(gt == 255, 0, gt).astype(np.uint8)
    s = scores(confusion_matrix(gt, pred, 5))
    assert s["miou"] == 1.0
    assert s["pixel_accuracy"] == 1.0
    assert s["iou"]["3"] is None
    assert all(s["iou"][k] == 1.0 for k in ("0", "1", "2", "4"))
    assert s["fg_precision"] == 1.0 and s["fg_recall"] == 1.0


# -------------------------------------------------------------- accumulator

def test_accumulator_equals_confusion_of_concatenation():
    rng = np.random.default_rng(5)
    shapes = [(37, 50), (50, 37), (8, 9), (1, 13)]
    pairs = [random_maps(rng, shape, 21) for shape in shapes]
    acc = ConfusionAccumulator(21)
    for gt, pred in pairs:
        acc.add(gt, pred)
    all_gt = np.concatenate([g.ravel() for g, _ in pairs])
    all_pred = np.concatenate([p.ravel() for _, p in pairs])
    np.testing.assert_array_equal(acc.matrix, confusion_matrix(all_gt, all_pred, 21))
    np.testing.assert_array_equal(acc.matrix, naive_confusion(all_gt, all_pred, 21))

    # merge: two halves give the same totals as one pass.
    first, second = ConfusionAccumulator(21), ConfusionAccumulator(21)
    for gt, pred in pairs[:2]:
        first.add(gt, pred)
    for gt, pred in pairs[2:]:
        second.add(gt, pred)
    np.testing.assert_array_equal(first.merge(second).matrix, acc.matrix)


def test_accumulator_matrix_is_a_copy_and_merge_checks():
    acc = ConfusionAccumulator(3)
    acc.add(np.array([0, 1, 2], np.uint8), np.array([0, 1, 1], np.uint8))
    m = acc.matrix
    m[:] = 0
    assert acc.matrix.sum() == 3
    with pytest.raises(ValueError):
        acc.merge(ConfusionAccumulator(4))
    with pytest.raises(ValueError):
        acc.merge(ConfusionAccumulator(3, ignore_index=0))


# --------------------------------------------------------- average precision

def test_average_precision_hand_computed():
    # Ranking: +, -, +, -  -> precision at positives 1/1 and 2/3.
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx((1 + 2 / 3) / 2, rel=1e-15)
    # Input order does not matter, only the scores.
    assert average_precision([0.7, 0.6, 0.9, 0.8], [1, 0, 1, 0]) == pytest.approx(5 / 6, rel=1e-15)
    # Ties keep input order: [-, +, -] -> positive at rank 2 -> 1/2.
    assert average_precision([0.5, 0.5, 0.5], [0, 1, 0]) == 0.5
    assert average_precision([0.5, 0.5, 0.5], [1, 0, 0]) == 1.0
    assert average_precision([0.1, 0.2], [0, 0]) is None
    # -1/1 labels: only > 0 is positive.
    assert average_precision([0.9, 0.8], [-1, 1]) == 0.5


@pytest.mark.parametrize("seed", range(10))
def test_average_precision_against_naive(seed):
    rng = np.random.default_rng(seed)
    size = int(rng.integers(1, 60))
    s = np.round(rng.random(size), 1)  # coarse rounding -> many ties
    t = (rng.random(size) < 0.3).astype(int)
    expected = naive_ap(s.tolist(), t.tolist())
    got = average_precision(s, t)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, rel=1e-12)


def test_mean_average_precision():
    rng = np.random.default_rng(1)
    score_m = rng.random((40, 5))
    target_m = (rng.random((40, 5)) < 0.3).astype(int)
    target_m[:, 2] = 0  # no positives -> None, excluded
    m, aps = mean_average_precision(score_m, target_m)
    expected = [naive_ap(score_m[:, c].tolist(), target_m[:, c].tolist()) for c in range(5)]
    assert aps[2] is None
    for got, want in zip(aps, expected):
        assert got == pytest.approx(want, rel=1e-12) if want is not None else got is None
    defined = [a for a in expected if a is not None]
    assert m == pytest.approx(sum(defined) / len(defined), rel=1e-12)
    json.dumps({"map": m, "aps": aps})
    assert mean_average_precision(score_m, np.zeros_like(target_m)) == (None, [None] * 5)
    with pytest.raises(ValueError):
        mean_average_precision(score_m, target_m[:, :4])
