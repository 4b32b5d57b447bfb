"""The evaluator against pycocotools' COCOeval: the same 12 numbers on hand-made and random
cases."""
import contextlib
import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from utils.core.metrics import (
    ImageDetections,
    accumulate,
    coco_evaluate,
    f1_curves,
    match_detections,
    match_images,
    summarize,
)


def _image(image_id, gts=(), dets=()):
    """gts: (class, x, y, w, h); dets: (class, x, y, w, h, score); boxes xywh top-left."""
    gts, dets = np.array(gts, float).reshape(-1, 5), np.array(dets, float).reshape(-1, 6)

    def xyxy(rows):
        return np.stack([rows[:, 0], rows[:, 1], rows[:, 0] + rows[:, 2],
                         rows[:, 1] + rows[:, 3]], 1)

    return ImageDetections(image_id, xyxy(gts[:, 1:5]), gts[:, 0].astype(int),
                           xyxy(dets[:, 1:5]), dets[:, 5], dets[:, 0].astype(int)), gts, dets


def pycocotools_stats(images, num_classes=3):
    """COCOeval's 12 numbers for the same cases, built as COCO json would hold them."""
    gt = {"images": [], "annotations": [],
          "categories": [{"id": c + 1, "name": str(c)} for c in range(num_classes)]}
    results = []
    for image_id, gts, dets in images:
        gt["images"].append({"id": image_id, "width": 640, "height": 640})
        for c, x, y, w, h in gts:
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": image_id,
                                      "category_id": int(c) + 1, "bbox": [x, y, w, h],
                                      "area": w * h, "iscrowd": 0})
        results += [{"image_id": image_id, "category_id": int(c) + 1, "bbox": [x, y, w, h],
                     "score": s} for c, x, y, w, h, s in dets]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


def _compare(cases):
    ours = coco_evaluate([c[0] for c in cases]).stats
    theirs = pycocotools_stats([(c[0].image_id, c[1], c[2]) for c in cases])
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    return ours


def test_two_overlapping_objects_two_true_positives():
    """The case where the old IoU-first matching found one true positive: detection A overlaps
    both labels, B only the first; in score order A takes the first label, B the second."""
    image = _image(1, gts=[(0, 0, 0, 10, 10), (0, 5, 0, 10, 10)],
                   dets=[(0, 2, 0, 10, 10, 0.9), (0, 5, 0, 10, 10, 0.8)])
    stats = _compare([image])
    assert stats[1] == pytest.approx(1.0)


def test_area_ranges_ties_and_an_image_without_detections():
    cases = [_image(1, gts=[(0, 0, 0, 20, 20), (1, 50, 50, 100, 120)],
                    dets=[(0, 0, 0, 20, 20, 0.5), (0, 1, 1, 20, 20, 0.5),
                          (1, 50, 50, 100, 110, 0.5)]),
             _image(2, gts=[(0, 10, 10, 40, 40)]),
             _image(3, dets=[(2, 0, 0, 5, 5, 0.9)])]  # a class with no ground truth anywhere
    stats = _compare(cases)
    assert stats[3] > -1 and stats[5] > -1


def test_more_than_100_detections_in_an_image():
    rng = np.random.default_rng(0)
    dets = [(0, float(x), float(y), 12.0, 12.0, float(s))
            for x, y, s in zip(rng.integers(0, 200, 150), rng.integers(0, 200, 150),
                               rng.random(150))]
    gts = [(0, float(x), float(y), 12.0, 12.0) for x, y, *_ in [d[1:] for d in dets[::3]]]
    _compare([_image(1, gts=gts, dets=dets)])


coords = st.integers(0, 150)
sizes = st.integers(1, 140)
scores = st.sampled_from([0.1, 0.3, 0.5, 0.5, 0.7, 0.9, 0.95])  # ties on purpose


@st.composite
def cases(draw):
    images = []
    for image_id in range(1, draw(st.integers(1, 4)) + 1):
        gts = draw(st.lists(st.tuples(st.integers(0, 2), coords, coords, sizes, sizes),
                            max_size=6))
        dets = []
        for c, x, y, w, h in gts:  # detections near the objects: crowded matches
            for _ in range(draw(st.integers(0, 2))):
                dx, dy = draw(st.integers(-4, 4)), draw(st.integers(-4, 4))
                dets.append((draw(st.integers(0, 2)) if draw(st.booleans()) else c,
                             x + dx, y + dy, w + draw(st.integers(0, 6)),
                             h + draw(st.integers(0, 6)), draw(scores)))
        dets += draw(st.lists(st.tuples(st.integers(0, 2), coords, coords, sizes, sizes, scores),
                              max_size=4))
        images.append(_image(image_id, gts, dets))
    return images


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_random_cases_equal_pycocotools(images):
    if not any(len(d) for _, _, d in images):
        # pycocotools cannot load an empty result list; with no detections every AP and AR
        # with ground truth to find is 0.
        stats = coco_evaluate([im for im, _, _ in images]).stats
        assert set(stats.tolist()) <= {0.0, -1.0}
        return
    _compare(images)


def test_matching_prefers_regular_over_ignored_and_the_best_iou():
    ious = np.array([[0.6, 0.9, 0.72]])  # the 0.9 box is outside the area range: ignored
    matched, on_ignored = match_detections(ious, np.array([False, True, False]))
    # Up to IoU 0.70 the regular box of 0.72 is taken; above, only the ignored one reaches.
    assert matched[:, 0].tolist() == [True] * 9 + [False]
    assert on_ignored[:, 0].tolist() == [False] * 5 + [True] * 4 + [False]


def test_the_best_f1_point_by_hand():
    # One class, 2 labels: TP at 0.9, FP at 0.8, TP at 0.7. Best F1 at threshold just above
    # 0.7... below 0.7 all are in: P 2/3, R 1, F1 0.8; above 0.8: P 1, R 0.5, F1 0.667.
    p, r, f1, best = f1_curves([(np.array([True, False, True]), np.array([0.9, 0.8, 0.7]),
                                 2)])
    p, r, f1 = p[:, best], r[:, best], f1[:, best]
    assert p[0] == pytest.approx(2 / 3, abs=0.01) and r[0] == pytest.approx(1.0)
    assert f1[0] == pytest.approx(0.8, abs=0.01)


def _greedy_reference(ious, gt_ignore, thresholds):
    """COCOeval's loop, written out: each detection in turn takes the free ground truth it
    prefers (regular first, then the highest IoU, the last of equal ones)."""
    matched = np.zeros((len(thresholds), len(ious)), dtype=bool)
    on_ignored = np.zeros_like(matched)
    order = sorted(range(ious.shape[1]), key=lambda g: gt_ignore[g])  # ignored last
    for t, threshold in enumerate(thresholds):
        taken = set()
        for d in range(len(ious)):
            best, limit = None, min(threshold, 1 - 1e-10)
            for g in order:
                if g in taken:
                    continue
                if best is not None and not gt_ignore[best] and gt_ignore[g]:
                    break
                if ious[d, g] < limit:
                    continue
                best, limit = g, ious[d, g]
            if best is not None:
                taken.add(best)
                matched[t, d], on_ignored[t, d] = True, gt_ignore[best]
    return matched, on_ignored


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 9), st.integers(1, 7), st.integers(0, 2**32 - 1))
def test_vectorized_matching_equals_the_greedy_loop(num_dets, num_gts, seed):
    """All detections at once (rounds of proposals) give what the one-by-one walk gives,
    crowded cases and tied IoUs included."""
    rng = np.random.default_rng(seed)
    ious = rng.choice([0.0, 0.45, 0.5, 0.55, 0.7, 0.7, 0.8, 0.93, 1.0], (num_dets, num_gts))
    ious = np.where(rng.random(ious.shape) < 0.3, rng.random(ious.shape), ious)
    gt_ignore = rng.random(num_gts) < 0.3
    ours = match_detections(ious, gt_ignore)
    theirs = _greedy_reference(ious, gt_ignore, np.linspace(0.5, 0.95, 10))
    np.testing.assert_array_equal(ours[0], theirs[0])
    np.testing.assert_array_equal(ours[1], theirs[1])


def _random_images(seed, count=12, tied=False):
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        gts = [(int(rng.integers(0, 3)), *rng.integers(0, 150, 2), *rng.integers(4, 120, 2))
               for _ in range(rng.integers(0, 6))]
        dets = [(c if rng.random() < 0.8 else int(rng.integers(0, 3)),
                 x + rng.integers(-4, 5), y + rng.integers(-4, 5), w + rng.integers(0, 6),
                 h + rng.integers(0, 6),
                 float(rng.choice([0.3, 0.6, 0.9]) if tied else rng.random()))
                for c, x, y, w, h in gts for _ in range(rng.integers(0, 3))]
        images.append(_image(i + 1, gts, dets)[0])
    return images


def test_unit_weights_give_the_evaluation_itself():
    images = _random_images(0)
    table = match_images(images)
    np.testing.assert_array_equal(summarize(*accumulate(table, np.ones(len(images)))),
                                  coco_evaluate(images).stats)
    np.testing.assert_array_equal(summarize(*accumulate(table, summary_only=True)),
                                  coco_evaluate(images).stats)


@pytest.mark.parametrize("seed", range(5))
def test_weights_count_an_image_as_often_as_a_resample_draws_it(seed):
    """Weights w: the evaluation of the images repeated w times (as copies under ids of their
    own, next to each other), to the last bit; weight 0 leaves an image out."""
    images = _random_images(seed)
    weights = np.random.default_rng(seed).multinomial(len(images), np.ones(len(images)) /
                                                       len(images))
    copies = [ImageDetections(im.image_id * 100 + c, im.gt_boxes, im.gt_classes, im.boxes,
                              im.scores, im.classes)
              for im, w in zip(images, weights) for c in range(w)]
    table = match_images(images)
    np.testing.assert_array_equal(summarize(*accumulate(table, weights)),
                                  coco_evaluate(copies).stats)
    np.testing.assert_array_equal(summarize(*accumulate(table, weights, summary_only=True)),
                                  coco_evaluate(copies).stats)
