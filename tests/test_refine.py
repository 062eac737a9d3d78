"""Refinement: dense CRF, PAMR and saliency-guided completion against hand-made truth."""
import numpy as np
import pytest
import torch

import pydensecrf.densecrf as dcrf

from pipeline.maps.crf import crf_labels, crf_softmax, softmax_unary
from pipeline.refine.pamr import pamr
from pipeline.refine.pseudo_labels import IGNORE, active_steps, load_saliency, refine_image, saliency_complete, with_background

RING = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def two_regions(h=40, w=60, edge=30):
    image = np.zeros((h, w, 3), np.uint8)
    image[:, :edge] = (30, 60, 90)
    image[:, edge:] = (200, 180, 40)
    truth = np.zeros((h, w), np.int64)
    truth[:, edge:] = 1
    return image, truth


def test_softmax_crf_recovers_the_region_edge_from_a_noisy_unary():
    image, truth = two_regions()
    rng = np.random.default_rng(0)
    # a unary that is right on average but wrong on ~30% of pixels, and blurred at the edge
    p1 = np.clip(np.where(truth == 1, 0.6, 0.4) + rng.normal(0, 0.2, truth.shape), 0.01, 0.99)
    p1[:, 24:36] = 0.5 + rng.normal(0, 0.05, (40, 12))
    noisy = np.stack([1 - p1, p1]).astype(np.float32)
    assert (noisy.argmax(0) != truth).mean() > 0.2
    refined = crf_softmax(image, noisy).argmax(0)
    assert (refined == truth).mean() > 0.99
    assert np.allclose(crf_softmax(image, noisy).sum(0), 1, atol=1e-4)


def test_softmax_unary_clips_scores_to_the_unit_interval_by_hand():
    probs = np.array([2.0, 1.0, 0.5, 0.0, 1e-7], np.float32).reshape(5, 1, 1)
    expected = [0.0, 0.0, np.log(2.0), np.log(1e5), np.log(1e5)]    # -log(clip(p, 1e-5, 1))
    np.testing.assert_allclose(softmax_unary(probs)[:, 0], expected, rtol=1e-6, atol=1e-7)


def naive_softmax_crf(image, probs, upper):
    """The reference unary (-log of the scores clipped to [1e-5, upper]) through pydensecrf with the
    softmax-mode defaults written out: Gaussian(3, 3), Bilateral(80, 13, 10), 10 iterations."""
    k, h, w = probs.shape
    unary = np.zeros((k, h * w), np.float32)
    for c in range(k):
        for i, p in enumerate(probs[c].ravel()):
            unary[c, i] = -np.log(min(max(float(p), 1e-5), upper))
    crf = dcrf.DenseCRF2D(w, h, k)
    crf.setUnaryEnergy(unary)
    crf.addPairwiseGaussian(sxy=3, compat=3)
    crf.addPairwiseBilateral(sxy=80, srgb=13, rgbim=np.ascontiguousarray(image), compat=10)
    return np.asarray(crf.inference(10), np.float32).reshape(k, h, w)


def test_softmax_crf_clips_scores_above_one_as_the_reference():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (20, 30, 3)).astype(np.uint8)
    # scores above 1 on both classes: the reference treats 1.3 and 2.5 alike (energy 0)
    probs = rng.uniform(0.0, 2.5, (2, 20, 30)).astype(np.float32)
    got = crf_softmax(image, probs)
    np.testing.assert_allclose(got, naive_softmax_crf(image, probs, 1.0), atol=1e-5)
    # without the upper clip the marginals differ, so the check above can fail
    assert np.abs(got - naive_softmax_crf(image, probs, np.inf)).max() > 0.1


def test_label_crf_recovers_the_region_edge_from_noisy_labels():
    image, truth = two_regions()
    rng = np.random.default_rng(1)
    noisy = truth.copy()
    flip = rng.random(truth.shape) < 0.25
    noisy[flip] = 1 - noisy[flip]
    noisy[:, 26:30] = 1          # the edge drawn 4 px too far left
    assert (crf_labels(image, noisy, 2).argmax(0) == truth).mean() > 0.99


def test_crf_refuses_a_label_outside_its_labels():
    image, truth = two_regions()
    bad = truth.copy()
    bad[3, 4] = 5
    with pytest.raises(ValueError, match=r"label 5, outside 0\.\.1"):
        crf_labels(image, bad, 2)
    with pytest.raises(ValueError, match="does not match the image"):
        crf_softmax(image, np.ones((2, 10, 10), np.float32))


def naive_pamr(image, masks, iterations, dilations, temperature, centre_in_std=True):
    """PAMR pixel by pixel, as 1-stage-wseg defines it: ring neighbours with border replication;
    sigma over the 3x3 window of every dilation, centre included once per dilation (with
    centre_in_std=False, over the ring only, a variant that differs from 1-stage-wseg)."""
    I, M = image.astype(np.float64), masks.astype(np.float64)
    _, h, w = I.shape

    def at(y, x):
        return I[:, min(max(y, 0), h - 1), min(max(x, 0), w - 1)]

    window = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)] if centre_in_std else RING
    weights = {}
    for y in range(h):
        for x in range(w):
            near = [(min(max(y + dy * d, 0), h - 1), min(max(x + dx * d, 0), w - 1))
                    for d in dilations for dy, dx in RING]
            values = np.array([I[:, j, i] for j, i in near])
            sigma = np.array([at(y + dy * d, x + dx * d) for d in dilations for dy, dx in window]).std(0, ddof=1)
            k = np.array([-(np.abs(I[:, y, x] - v) / (temperature * sigma + 1e-8)).mean() for v in values])
            e = np.exp(k - k.max())
            weights[y, x] = (near, e / e.sum())
    for _ in range(iterations):
        new = np.zeros_like(M)
        for (y, x), (near, a) in weights.items():
            for (j, i), aj in zip(near, a):
                new[:, y, x] += aj * M[:, j, i]
        M = new
    return M


def test_pamr_matches_a_naive_loop_with_the_centre_in_the_local_std():
    rng = np.random.default_rng(2)
    image = rng.random((3, 9, 11)).astype(np.float32)
    masks = rng.random((2, 9, 11)).astype(np.float32)
    out = pamr(torch.from_numpy(image)[None], torch.from_numpy(masks)[None], 3, [1, 2, 4], 0.1)[0].numpy()
    assert np.abs(out - naive_pamr(image, masks, 3, [1, 2, 4], 0.1)).max() < 1e-5
    # the ring-only sigma is measurably different on this input, so the check above can fail
    assert np.abs(out - naive_pamr(image, masks, 3, [1, 2, 4], 0.1, centre_in_std=False)).max() > 1e-3


def test_pamr_keeps_masks_inside_a_colour_region():
    image, truth = two_regions(20, 30, 15)
    masks = np.stack([truth == 0, truth == 1]).astype(np.float32)
    masks[1, :, 13:15] = 0.9      # a mask that leaks two columns into the other region
    masks[0, :, 13:15] = 0.1
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    out = pamr(x, torch.from_numpy(masks)[None], 10, [1, 2, 4, 8], 0.1)[0].numpy()
    assert (out.argmax(0) == truth).all()


def test_saliency_rules_by_hand():
    ids = np.array([0, 3, 7], np.uint8)
    maps = np.zeros((3, 2, 10), np.float32)
    maps[0] = 0.5
    maps[1, 0, 7:] = [0.8, 0.9, 0.95]   # class 3: 17 zeros below, 90th percentile 0.1 * 0.8 = 0.08
    maps[2, 0, 9] = 0.99                # class 7: 18 zeros below, 90th percentile 0.1 * 0.3 = 0.03
    maps[2, 1, 2] = 0.3
    saliency = np.ones((2, 10), np.float32)
    saliency[0, 8] = 0.0
    label = saliency_complete(maps, ids, saliency, 90)
    # (0,7): claimed by 3 alone -> 3; (0,8): claimed by 3 but saliency 0 -> background;
    # (0,9): claimed by 3 and by 7 -> ignored; (1,2): argmax background (0.5 > 0.3) but claimed by 7 -> 7
    assert label.tolist() == [[0] * 7 + [3, 0, IGNORE], [0, 0, 7] + [0] * 7]


def test_saliency_is_skipped_without_a_directory_and_must_be_last(tmp_path):
    cfg = {"steps": ["crf", "saliency"], "saliency": {"dir": None, "percentile": 90}}
    assert active_steps(cfg) == (["crf"], ["saliency"])
    cfg["saliency"]["dir"] = str(tmp_path)
    assert active_steps(cfg) == (["crf", "saliency"], [])
    with pytest.raises(FileNotFoundError, match="img7.png"):
        load_saliency(tmp_path, "img7", (4, 4))


def test_chain_reports_every_step_and_cams_get_the_constant_background():
    image, truth = two_regions(20, 30, 15)
    cams = (truth[None] == 1).astype(np.float32) * 0.8
    maps, ids = with_background(cams, [4], 0.15)
    assert ids.tolist() == [0, 4] and np.allclose(maps[0], 0.15)
    assert with_background(maps, [0, 4], 0.15)[0] is maps      # random-walk maps already have it
    cfg = {"pamr": {"iterations": 2, "dilations": [1, 2], "temperature": 0.1}, "crf_mode": "label",
           "crf_softmax": {}, "crf_label": {}, "saliency": {"percentile": 90}}
    labels = refine_image(image, maps, ids, ["pamr", "crf"], cfg)
    assert len(labels) == 3 and all((label == truth * 4).all() for label in labels)


def test_refine_stage_with_saliency_scores_its_ignored_pixels_out(tmp_path, tiny_voc):
    # saliency leaves 255 where two classes claim a pixel; the ladder must not score them
    import cv2

    from conftest import DEMO_CLASSES
    from pipeline.data.voc import VOCDataset
    from pipeline.refine.pseudo_labels import refine
    from pipeline.core.shards import tally_report
    from pipeline.core.store import ArtifactReader, ArtifactWriter

    voc = VOCDataset(tiny_voc, DEMO_CLASSES, "train")
    rng = np.random.default_rng(4)
    (tmp_path / "sal").mkdir()
    with ArtifactWriter(tmp_path / "rw.h5") as writer:
        for image_id in voc.ids:
            h, w = voc.load_image(image_id).shape[:2]
            ids = [0, 1, 2]   # two classes that overlap: conflicts are certain
            writer.write(image_id, rng.random((3, h, w)).astype(np.float32), classes=np.asarray(ids))
            cv2.imwrite(str(tmp_path / "sal" / f"{image_id}.png"), np.full((h, w), 200, np.uint8))
    cfg = {"steps": ["saliency"], "crf_mode": "label", "crf_softmax": {}, "crf_label": {}, "pamr": {},
           "saliency": {"dir": str(tmp_path / "sal"), "percentile": 50}}
    tally = refine(ArtifactReader(tmp_path / "rw.h5"), voc, voc, tmp_path / "pseudo.h5", cfg, 0.15, "rw")
    result = tally_report(tally, DEMO_CLASSES)
    assert [row["step"] for row in result["ladder"]] == ["rw", "rw+saliency"]
    labels = ArtifactReader(tmp_path / "pseudo.h5")
    assert all((labels[i] == IGNORE).any() for i in voc.ids)
    assert 0.0 <= result["miou"] <= 1.0
