"""Metrics on hand-counted fixtures."""

import numpy as np
import pytest
import torch

from synthfuse.retrain import evaluate, negative_flip_rate
from synthfuse.retrain.metrics import accuracy, disagreement, negative_flips, nll

# 10 samples, counted by hand:
#   idx:   0  1  2  3  4  5  6  7  8  9
Y = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
OLD = [0, 1, 2, 0, 0, 0, 1, 1, 2, 2]  # right on 0,1,2,3,7,8 (6 of 10)
NEW = [0, 2, 2, 1, 1, 2, 0, 0, 2, 0]  # right on 0,2,4,5,6,8,9 (7 of 10)
# negative flips (old right, new wrong): 1, 3, 7 -> 3 / 10; positive flips: 4, 5, 6, 9


def test_negative_flip_rate_hand_counted():
    assert negative_flip_rate(Y, OLD, NEW) == pytest.approx(0.3)
    assert negative_flips(Y, OLD, NEW).nonzero().flatten().tolist() == [1, 3, 7]
    assert negative_flip_rate(Y, NEW, OLD) == pytest.approx(0.4)  # the reverse update
    assert negative_flip_rate(Y, OLD, OLD) == 0.0
    assert accuracy(Y, OLD) == pytest.approx(0.6) and accuracy(Y, NEW) == pytest.approx(0.7)
    assert disagreement(OLD, NEW) == pytest.approx(0.7)  # differ at 1, 3, 4, 5, 6, 7, 9


def test_negative_flip_rate_accepts_tensors_and_arrays():
    assert negative_flip_rate(torch.tensor(Y), np.array(OLD), torch.tensor(NEW)) == pytest.approx(0.3)


@pytest.mark.parametrize("bad", [[0, 1], [[0, 1]] * 10, [0.0] * 10])
def test_negative_flip_rate_rejects_bad_input(bad):
    with pytest.raises((ValueError, TypeError)):
        negative_flip_rate(Y, OLD, bad)


def test_evaluate_counts_and_nll():
    y = torch.tensor(Y)
    logits = torch.nn.functional.one_hot(torch.tensor(NEW), 3).float() * 2.0
    m = evaluate(logits, y, torch.tensor(OLD))
    assert m.n_negative_flips == 3 and m.negative_flip_rate == pytest.approx(0.3)
    assert m.accuracy == pytest.approx(0.7) and m.disagreement == pytest.approx(0.7)
    # NLL by hand: p(correct) = e^2 / (e^2 + 2) on the 7 right, 1 / (e^2 + 2) on the 3 wrong
    z = np.exp(2.0) + 2.0
    expected = -(7 * np.log(np.exp(2.0) / z) + 3 * np.log(1.0 / z)) / 10
    assert m.nll == pytest.approx(expected, rel=1e-6)
    assert nll(y, logits) == pytest.approx(expected, rel=1e-6)


def test_evaluate_rejects_too_few_classes():
    with pytest.raises(ValueError, match="classes"):
        evaluate(torch.zeros(10, 2), torch.tensor(Y), torch.tensor(OLD))
