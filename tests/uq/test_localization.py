"""Boxes from confidence maps and masks, onset steps, IoU and the DeepTraceReward-style score."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from world_monitor.uq.localization import (
    box_center_distance,
    box_from_confidence,
    box_from_mask,
    box_iou,
    box_to_pixels,
    onset_step,
    onset_time_distance,
    overall_score,
    score_localization,
)


def _map_with_square() -> torch.Tensor:
    q = torch.full((4, 16, 16), 0.9)
    q[:, 4:8, 10:14] = 0.1  # rows 4..7, cols 10..13: the low-confidence square
    q[:, 0, 0] = 0.1  # a smaller, isolated low-confidence cell (must lose to the square)
    return q


def test_box_from_confidence_square_and_stride() -> None:
    box = box_from_confidence(_map_with_square(), threshold=0.5)
    assert box == pytest.approx((10 / 16, 4 / 16, 14 / 16, 8 / 16))
    # ground-truth mask at 64×64 pixels (VAE stride 4): the same square in pixels
    mask = np.zeros((64, 64), dtype=bool)
    mask[16:32, 40:56] = True
    gt = box_from_mask(mask)
    assert box_iou(box, gt) == pytest.approx(1.0)
    assert box_center_distance(box, gt) == pytest.approx(0.0)
    assert box_to_pixels(gt, (64, 64)) == (40, 16, 56, 32)
    # padded encoder: the image is 80×80 but 16 latent cells × stride 4 cover its first 64 px
    b2 = box_from_confidence(_map_with_square()[0], 0.5, stride=4, image_size=(80, 80))
    assert b2 == pytest.approx((40 / 80, 16 / 80, 56 / 80, 32 / 80))
    assert box_from_confidence(torch.ones(2, 8, 8), 0.5) is None
    rollout = torch.ones(3, 4, 16, 16)
    rollout[2] = _map_with_square()  # only the last step doubts the square
    assert box_from_confidence(rollout, 0.5) == pytest.approx(box)
    assert box_from_mask(np.zeros((4, 4), bool)) is None


def test_iou_partial_overlap() -> None:
    a, b = (0.0, 0.0, 0.5, 0.5), (0.25, 0.25, 0.75, 0.75)
    # intersection 0.25² = 0.0625; union 0.25 + 0.25 − 0.0625 = 0.4375
    assert box_iou(a, b) == pytest.approx(0.0625 / 0.4375)
    assert box_iou(a, None) == 0.0


def test_onset_and_time_distance() -> None:
    conf = [0.9, 0.8, 0.6, 0.3, 0.2, 0.7]
    assert onset_step(conf, 0.5) == 3
    assert onset_step([0.1, 0.6, 0.7], 0.5, direction="above") == 1
    assert onset_step(conf, 0.1) is None
    assert onset_time_distance(3, 5, 40) == pytest.approx(5.0)
    assert onset_time_distance(None, 5, 40) == 100.0


def test_overall_score_and_aggregate() -> None:
    assert overall_score(80.0, 40.0, 20.0, explanation=60.0) == pytest.approx(
        (80 + 60 + 40 + 80) / 4
    )
    s = score_localization(
        detected=[True, False],
        pred_boxes=[(0.0, 0.0, 0.5, 0.5), None],
        true_boxes=[(0.0, 0.0, 0.5, 0.5), (0.5, 0.5, 1.0, 1.0)],
        pred_onsets=[10, None],
        true_onsets=[12, 5],
        episode_lengths=[40, 40],
    )
    # IoU (1 + 0)/2 = 50 ; time distance (5 + 100)/2 = 52.5 ; accuracy 50
    assert (s.accuracy, s.iou, s.time_distance) == pytest.approx((50.0, 50.0, 52.5))
    assert s.overall == pytest.approx((50 + 50 + 47.5) / 3)
