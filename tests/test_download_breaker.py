"""The shard's circuit breaker: blocked by the source -> `deferred`, one line, retried later.

Unit tests of wavbrivl.download.breaker, the bot-check text as yt-dlp builds it, and a shard
whose every answer is a bot check. (Real yt-dlp against a loopback server that answers 429
after K clips: tests/test_download_breaker_http.py.)
"""

from __future__ import annotations

import io
import os
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
from yt_dlp.extractor.youtube import YoutubeIE
from yt_dlp.utils import DownloadError, ExtractorError

from wavbrivl import status as st
from wavbrivl.download import DownloadConfig, download_shard, worker
from wavbrivl.download.breaker import (
    CircuitBreaker,
    blocked_advice,
    mark_for_retry,
    retry_marker,
    settle_retry_marker,
)
from wavbrivl.download.classify import classify_exception, classify_message
from wavbrivl.download.journal import JOURNAL_NAME, read_journal

# YouTube's own words (the playability reason; yt-dlp passes it through and adds its hint).
BOT_CHECK_REASON = "Sign in to confirm you\u2019re not a bot"


def bot_check_error(video_id: str = "dQw4w9WgXcQ") -> DownloadError:
    """The exception yt-dlp raises for a bot check, built the way yt-dlp builds it.

    ``_video.py``: a reason containing "sign in" becomes ``f"{reason}. {_youtube_login_hint}"``
    and goes to ``raise_no_formats`` (an expected ``ExtractorError``); ``YoutubeDL`` reports it
    as ``DownloadError("ERROR: " + message)`` carrying the original in ``exc_info``.
    """
    message = f"{BOT_CHECK_REASON}. {YoutubeIE()._youtube_login_hint}"
    try:
        raise ExtractorError(message, expected=True, video_id=video_id, ie="youtube")
    except ExtractorError as exc:
        return DownloadError(f"ERROR: {exc}", sys.exc_info())


def rows_of(*clips) -> pd.DataFrame:
    return pd.DataFrame(clips, columns=["clip_id", "url", "start_s", "end_s"])


# -- the breaker alone -------------------------------------------------------------------------


def test_trips_exactly_at_the_nth_rate_limit_in_a_row():
    breaker = CircuitBreaker(3)
    assert [breaker.record(st.RATE_LIMITED, f"429 #{i}") for i in (1, 2, 3)] == [
        False,
        False,
        True,
    ]
    assert breaker.tripped and breaker.in_a_row == 3
    assert breaker.last_reason == "429 #3"


def test_answers_from_a_serving_source_reset_the_count():
    for reset in (st.OK, st.UNAVAILABLE, st.PRIVATE, st.BAD_MEDIA):
        breaker = CircuitBreaker(2)
        assert breaker.record(st.RATE_LIMITED, "429") is False
        assert breaker.record(reset, "") is False
        assert breaker.in_a_row == 0, reset
        assert breaker.record(st.RATE_LIMITED, "429") is False, reset  # 1 again, not 2
        assert not breaker.tripped


def test_timeouts_and_errors_neither_count_nor_reset():
    breaker = CircuitBreaker(2)
    breaker.record(st.RATE_LIMITED, "first 429")
    for other in (st.TIMEOUT, st.ERROR, st.DEFERRED):
        assert breaker.record(other, "timed out") is False
        assert breaker.in_a_row == 1
    assert breaker.last_reason == "first 429"  # only rate-limit answers name the block
    assert breaker.record(st.RATE_LIMITED, "second 429") is True


def test_once_tripped_it_stays_tripped_for_the_run():
    breaker = CircuitBreaker(1)
    assert breaker.record(st.RATE_LIMITED, "bot check") is True
    assert breaker.record(st.OK, "") is True
    assert breaker.record(st.RATE_LIMITED, "a later 429") is True
    assert breaker.tripped and breaker.last_reason == "bot check"


def test_zero_turns_it_off():
    breaker = CircuitBreaker(0)
    assert not any(breaker.record(st.RATE_LIMITED, "429") for _ in range(500))
    assert not breaker.tripped and breaker.in_a_row == 500


def test_fresh_breaker_is_closed_with_no_reason():
    breaker = CircuitBreaker(5)
    assert (breaker.tripped, breaker.in_a_row, breaker.last_reason) == (False, 0, "")


@pytest.mark.parametrize("bad", [-1, True, 2.5, "5", None])
def test_bad_threshold_is_refused_naming_the_key(bad):
    with pytest.raises(ValueError, match=r"download\.breaker_after must be an integer >= 0"):
        CircuitBreaker(bad)


def test_counts_every_answer_from_many_threads():
    breaker = CircuitBreaker(0)
    barrier = threading.Barrier(8)

    def hammer() -> None:
        barrier.wait()
        for _ in range(2000):
            breaker.record(st.RATE_LIMITED, "429")

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert breaker.in_a_row == 16000


def test_deferred_reason_and_the_advice_line():
    breaker = CircuitBreaker(2)
    breaker.record(st.RATE_LIMITED, "HTTP Error 429: Too Many Requests")
    breaker.record(st.RATE_LIMITED, "HTTP Error 429: Too Many Requests")
    assert breaker.deferred_reason() == (
        "not asked: 2 rate-limit/bot-check answers in a row stopped this shard; "
        "last answer: HTTP Error 429: Too Many Requests"
    )
    line = blocked_advice("results/download/vgg/007", 6, breaker, "results/x/007.status.parquet")
    assert "\n" not in line
    # The whole line, pinned: what a user reads in the job log.
    assert line == (
        "download: results/download/vgg/007: BLOCKED after 2 rate-limit/bot-check answers in a "
        "row (last: HTTP Error 429: Too Many Requests); 6 clip(s) deferred, none marked "
        "unavailable. To do: wait (often an hour) and run snakemake again: it reruns this shard "
        "(results/x/007.status.parquet), asking only for the clips not yet ok; if it "
        "persists, set download.cookies_file (cookies.txt of a logged-in browser) and "
        "download.js_runtime (deno or node), and raise download.pace_s."
    )


def test_the_retry_marker_sits_beside_the_status_table_and_is_dated_after_it(tmp_path):
    table = tmp_path / "vgg" / "007.status.parquet"
    table.parent.mkdir()
    table.write_bytes(b"table")
    os.utime(table, (1_000_000.0, 1_000_000.0))
    assert retry_marker(table) == tmp_path / "vgg" / "007.retry"
    assert retry_marker("results/download/vgg/00a.status.parquet") == Path(
        "results/download/vgg/00a.retry"
    )
    marker = mark_for_retry(table, "download: BLOCKED ...")
    assert marker == tmp_path / "vgg" / "007.retry"
    assert marker.read_text() == "download: BLOCKED ...\n"
    assert marker.stat().st_mtime == 1_000_001.0  # one second after the table, not "now"
    assert [p.name for p in table.parent.iterdir() if p.name.startswith(".")] == []


def test_settling_dates_a_marker_before_the_table_and_creates_none(tmp_path):
    table = tmp_path / "007.status.parquet"
    table.write_bytes(b"table")
    os.utime(table, (2_000_000.0, 2_000_000.0))
    settle_retry_marker(table)  # no marker: nothing is made
    assert sorted(p.name for p in tmp_path.iterdir()) == ["007.status.parquet"]
    marker = mark_for_retry(table, "blocked")
    settle_retry_marker(table)
    assert marker.stat().st_mtime == 1_999_999.0
    assert marker.read_text() == "blocked\n"


# -- YouTube's bot check ----------------------------------------------------------------------


def test_bot_check_text_is_a_rate_limit_and_trips_the_breaker():
    exc = bot_check_error()
    assert "[youtube] dQw4w9WgXcQ: Sign in to confirm you\u2019re not a bot" in str(exc)
    assert "--cookies" in str(exc)  # yt-dlp's own hint came along
    verdict = classify_exception(exc)
    assert verdict.status == st.RATE_LIMITED  # "sign in" must not make it private
    breaker = CircuitBreaker(2)
    breaker.record(verdict.status, verdict.reason)
    assert breaker.record(verdict.status, verdict.reason) is True
    assert "not a bot" in breaker.deferred_reason()


@pytest.mark.parametrize(
    "message",
    [
        # yt-dlp's wording when YouTube asks for a captcha / rate-limits the session
        "ERROR: [youtube] abcdefghijk: Please confirm. YouTube is requiring a captcha challenge"
        " before playback",
        "ERROR: [youtube] abcdefghijk: This content isn't available, try again later.",
    ],
)
def test_other_youtube_blocks_are_rate_limits(message):
    assert classify_message(message).status == st.RATE_LIMITED


def test_bot_checks_in_a_shard_defer_the_rest_never_unavailable(tmp_path, monkeypatch):
    asked: list[str] = []

    def blocked_fetch(self, url, tmp_dir, section):
        asked.append(url)
        raise bot_check_error(url.rsplit("/", 1)[-1])

    monkeypatch.setattr(worker.ClipWorker, "_fetch", blocked_fetch)
    ids = [f"yt{i}" for i in range(5)]
    rows = rows_of(*[(c, f"https://www.youtube.com/watch?v={c}", 0.0, 10.0) for c in ids])
    cfg = DownloadConfig(breaker_after=2, max_attempts=3, backoff_s=0.0)
    log = io.StringIO()

    table = download_shard(rows, tmp_path / "m", tmp_path / "s.parquet", cfg, threads=1, log=log)

    # Retries are answers too: yt0's first two attempts trip the breaker, its third is not made.
    assert asked == [rows["url"][0]] * 2
    statuses = dict(zip(table["clip_id"], table["status"], strict=True))
    assert statuses == {
        "yt0": st.RATE_LIMITED,
        "yt1": st.DEFERRED,
        "yt2": st.DEFERRED,
        "yt3": st.DEFERRED,
        "yt4": st.DEFERRED,
    }
    assert table["attempts"].tolist() == [2, 0, 0, 0, 0]
    lines = log.getvalue().rstrip().splitlines()
    assert sum("BLOCKED" in line for line in lines) == 1
    assert "not a bot" in lines[-2] and "4 clip(s) deferred" in lines[-2]
    assert lines[-1].endswith("rate_limited=1 deferred=4")
    deferred = table[table["status"] == st.DEFERRED]
    assert deferred["reason"].str.contains("not a bot").all()
    # Nothing was journalled for the deferred clips: the next run asks them afresh.
    journalled = [e.clip_id for e in read_journal(tmp_path / "m" / JOURNAL_NAME).entries]
    assert journalled == ["yt0", "yt0"]


@pytest.mark.parametrize("bad", [-1, 1.5, "5"])
def test_config_refuses_a_bad_breaker_after_naming_the_key(bad):
    with pytest.raises(ValueError, match=r"invalid config at 'download\.breaker_after'"):
        DownloadConfig(breaker_after=bad)


def test_the_default_is_five_and_the_worker_builds_its_breaker_from_the_config(tmp_path):
    assert DownloadConfig().breaker_after == 5  # config.schema.yaml's default, by hand
    clip_worker = worker.ClipWorker(
        tmp_path, DownloadConfig(breaker_after=3), None, {}, worker.Pacer(0.0)
    )
    assert clip_worker.breaker.after == 3 and not clip_worker.breaker.tripped
