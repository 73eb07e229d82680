"""Dealing a task mix over samples: exact shares, interleaved, bad mixes refused."""

from collections import Counter

import pytest

from omni_core.errors import OmniError
from omni_core.tasks import TASKS, deal_tasks

PAPER = {"r2av": 4, "rv2av": 3, "ra2v": 3}


def test_every_prefix_holds_the_mix_within_one():
    seq = deal_tasks(PAPER, 200)
    for n in range(1, 201):
        counts = Counter(seq[:n])
        for t in TASKS:
            assert abs(counts[t] - n * PAPER[t] / 10) < 1, (n, t, counts)
    assert Counter(seq[:10]) == PAPER


def test_zero_weights_and_bad_mixes():
    assert set(deal_tasks({"r2av": 1, "rv2av": 0, "ra2v": 2}, 30)) == {"r2av", "ra2v"}
    for bad in ({"r2av": 0}, {"t2v": 1}, {"r2av": -1, "ra2v": 2}, {}):
        with pytest.raises(OmniError):
            deal_tasks(bad, 3)
