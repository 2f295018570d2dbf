"""The per-clip status vocabulary and the count line the stages print at the end of a log."""

from __future__ import annotations

from wavbrivl import status as st


def test_count_summary_counts_each_status_in_vocabulary_order():
    statuses = ["error", "ok", "bad_media", "ok", "timeout", "ok", "error", "unavailable"]
    assert st.count_summary(statuses) == "ok=3 unavailable=1 timeout=1 bad_media=1 error=2"


def test_count_summary_puts_unknown_statuses_last_sorted():
    assert st.count_summary(["zeta", "ok", "alpha", "zeta"]) == "ok=1 alpha=1 zeta=2"


def test_count_summary_of_every_status_and_of_none():
    everything = ["error", "bad_media", "timeout", "rate_limited", "private", "unavailable", "ok"]
    expected = "ok=1 unavailable=1 private=1 rate_limited=1 timeout=1 bad_media=1 error=1"
    assert st.count_summary(everything) == expected
    assert st.count_summary([]) == "no clips"
    assert st.count_summary(iter(["ok"] * 1000)) == "ok=1000"  # any iterable, read once
