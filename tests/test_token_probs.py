"""speechlib.ctc.greedy_token_probs: each greedy token's CTC posterior (the api's confidences)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from speechlib.ctc import greedy_decode, greedy_token_probs


def test_each_token_gets_the_mean_posterior_of_its_run():
    rng = np.random.default_rng(3)
    V = 6
    # best path: 0 0 3 3 3 0 5 5 0 3 (blank 0): tokens 3 (frames 2-4), 5 (6-7), 3 (9)
    path = [0, 0, 3, 3, 3, 0, 5, 5, 0, 3]
    logits = rng.normal(0, 1, (len(path), V)).astype(np.float32)
    for t, label in enumerate(path):
        logits[t, label] += 6.0 + t * 0.3  # the label wins, by a margin that varies per frame
    ids, _ = greedy_decode(logits)
    assert ids.tolist() == [3, 5, 3]
    post = softmax(logits.astype(np.float64), axis=-1)
    expected = [post[2:5, 3].mean(), post[6:8, 5].mean(), post[9, 3]]
    np.testing.assert_allclose(greedy_token_probs(logits), expected, rtol=1e-5)


def test_confident_and_unsure_frames_and_edge_cases():
    sure = np.full((3, 4), -20.0, np.float32)
    sure[:, 2] = 20.0
    assert greedy_token_probs(sure)[0] > 0.999
    unsure = np.zeros((2, 4), np.float32)
    unsure[:, 1] = 0.01  # label 1 barely wins over three others: posterior ~ 1/4
    assert abs(float(greedy_token_probs(unsure)[0]) - 0.2519) < 1e-3
    assert greedy_token_probs(np.zeros((0, 4), np.float32)).shape == (0,)
    blanks = np.zeros((5, 4), np.float32)
    blanks[:, 0] = 5.0
    assert greedy_token_probs(blanks).shape == (0,)


def test_confidence_is_the_geometric_mean_of_the_posteriors():
    from speechlib.ctc import confidence_of

    assert confidence_of([0.5, 0.5]) == pytest.approx(0.5)
    assert confidence_of([1.0, 0.25]) == pytest.approx(0.5)  # not the arithmetic 0.625
    assert confidence_of([0.9, 0.0]) == pytest.approx(np.sqrt(0.9e-12))  # one impossible token sinks it
    assert confidence_of([]) is None and confidence_of([0.9, None]) is None
