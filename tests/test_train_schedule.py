"""wavbrivl.train.schedule.lr_at: linear warmup, then cosine decay; a pure function."""

from __future__ import annotations

import math

import pytest

from wavbrivl.train.schedule import lr_at

BASE = 3e-4
KW = dict(base_lr=BASE, warmup_steps=10, total_steps=110, min_lr=1e-5)


def test_warmup_is_linear_and_starts_above_zero():
    lrs = [lr_at(s, **KW) for s in range(10)]
    assert lrs[0] == pytest.approx(BASE / 10)
    steps = [b - a for a, b in zip(lrs, lrs[1:], strict=False)]
    assert all(d == pytest.approx(BASE / 10) for d in steps)
    assert lrs[-1] == pytest.approx(BASE)


def test_cosine_starts_at_base_ends_at_min_and_stays_there():
    assert lr_at(10, **KW) == pytest.approx(BASE)
    assert lr_at(110, **KW) == pytest.approx(1e-5)
    assert lr_at(5000, **KW) == pytest.approx(1e-5)
    # Half way through the decay: the mid point of base and min.
    assert lr_at(60, **KW) == pytest.approx((BASE + 1e-5) / 2)
    assert 1e-5 < lr_at(109, **KW) < 1e-5 + 1e-6


def test_monotone_non_increasing_after_warmup():
    lrs = [lr_at(s, **KW) for s in range(10, 200)]
    assert all(b <= a for a, b in zip(lrs, lrs[1:], strict=False))
    assert lrs[0] > lrs[50] > lrs[99]  # strictly decreasing during the decay


def test_pure_same_inputs_same_output_in_any_order():
    forward = [lr_at(s, **KW) for s in range(120)]
    backward = [lr_at(s, **KW) for s in reversed(range(120))][::-1]
    assert forward == backward


def test_no_warmup_and_all_warmup():
    assert lr_at(0, base_lr=1.0, warmup_steps=0, total_steps=4) == 1.0
    assert lr_at(2, base_lr=1.0, warmup_steps=0, total_steps=4) == pytest.approx(
        0.5 * (1 + math.cos(math.pi / 2))
    )
    assert lr_at(3, base_lr=1.0, warmup_steps=4, total_steps=4) == 1.0


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(step=-1),
        dict(warmup_steps=200),
        dict(total_steps=0, warmup_steps=0),
        dict(min_lr=1.0),
    ],
)
def test_bad_arguments_are_refused(kwargs):
    args = dict(KW, step=0) | kwargs
    with pytest.raises(ValueError):
        lr_at(args.pop("step"), **args)
