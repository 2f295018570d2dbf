"""Failure classification: yt-dlp messages, exceptions and downloaded files -> status + reason."""

from __future__ import annotations

import io
import itertools
import subprocess
import sys

import pytest
from httpserver import make_test_mp4
from yt_dlp.networking.common import Response
from yt_dlp.networking.exceptions import HTTPError, TransportError
from yt_dlp.utils import DownloadError, ExtractorError

from wavbrivl import status as st
from wavbrivl.download.classify import (
    REASON_MAX_CHARS,
    Classification,
    classify_exception,
    classify_media,
    classify_message,
    clean_message,
    is_partial_download_refusal,
    media_probe_argv,
    stream_kinds,
)
from wavbrivl.extract.probe import parse_probe
from wavbrivl.ffmpeg_bin import ffmpeg_exe

# Messages as yt-dlp prints them (YouTube's wording, the generic extractor's, our HTTP tests').
MESSAGES = [
    (
        "ERROR: [youtube] abc: Private video. Sign in if you've been granted access to this video",
        st.PRIVATE,
    ),
    (
        "ERROR: [youtube] abc: Sign in to confirm your age. This video may be inappropriate for some users.",
        st.PRIVATE,
    ),
    (
        "ERROR: [youtube] abc: Join this channel to get access to members-only content like this video",
        st.PRIVATE,
    ),
    ("ERROR: [youtube] abc: This video is age-restricted", st.PRIVATE),
    (
        "ERROR: [youtube] abc: Video unavailable. This video has been removed by the uploader",
        st.UNAVAILABLE,
    ),
    ("ERROR: [youtube] abc: Video unavailable", st.UNAVAILABLE),
    (
        "ERROR: [youtube] abc: The uploader has not made this video available in your country",
        st.UNAVAILABLE,
    ),
    ("ERROR: [youtube] abc: This video is not available in your country", st.UNAVAILABLE),
    (
        "ERROR: [youtube] abc: This video is no longer available because the YouTube account "
        "associated with this video has been terminated.",
        st.UNAVAILABLE,
    ),
    ("ERROR: [generic] zz: Unable to download webpage: HTTP Error 404: Not Found", st.UNAVAILABLE),
    ("ERROR: [generic] zz: Unable to download webpage: HTTP Error 410: Gone", st.UNAVAILABLE),
    ("ERROR: Unsupported URL: https://example.com/page", st.UNAVAILABLE),
    ("ERROR: [vimeo] 123: The video does not exist", st.UNAVAILABLE),
    (
        "ERROR: [generic] a: Unable to download webpage: HTTP Error 429: Too Many Requests",
        st.RATE_LIMITED,
    ),
    (
        "ERROR: [youtube] abc: Sign in to confirm you\u2019re not a bot. Use --cookies",
        st.RATE_LIMITED,
    ),
    ("ERROR: [youtube] abc: Sign in to confirm you're not a bot", st.RATE_LIMITED),
    (
        "ERROR: [youtube] abc: This content isn't available, try again later. "
        "Your account has been rate-limited by YouTube for up to an hour.",
        st.RATE_LIMITED,
    ),
    # yt-dlp's other block wordings (extractor/youtube/_video.py), without "rate-limited"
    ("ERROR: [youtube] abc: Please confirm. YouTube is requiring a captcha", st.RATE_LIMITED),
    ("ERROR: [youtube] abc: This content isn't available, try again later.", st.RATE_LIMITED),
    (
        "ERROR: [generic] a: Unable to download webpage: Read timed out. (read timeout=1.0)",
        st.TIMEOUT,
    ),
    ("ERROR: [download] Got error: The read operation timed out", st.TIMEOUT),
    ("ERROR: Did not get any data blocks", st.BAD_MEDIA),
    ("ERROR: [download] Got error: 45467 bytes read, 45467 more expected", st.ERROR),
    ("ERROR: ffmpeg exited with code 183", st.ERROR),
    ("ERROR: [youtube] abc: Requested format is not available. Use --list-formats", st.ERROR),
    ("ERROR: Postprocessing: ffprobe and ffmpeg not found. Please install", st.ERROR),
    ("something nobody has seen before", st.ERROR),
]


@pytest.mark.parametrize(("message", "expected"), MESSAGES)
def test_message_classification(message, expected):
    verdict = classify_message(message)
    assert verdict.status == expected
    assert verdict.reason  # a failure always says why
    assert not verdict.reason.startswith("ERROR:")


def test_every_status_is_in_the_shared_vocabulary():
    assert {classify_message(m).status for m, _ in MESSAGES} <= set(st.ALL_STATUSES)


def test_reason_keeps_ytdlp_words_without_colour_and_trimmed():
    coloured = "\x1b[0;31mERROR:\x1b[0m [youtube] abc: \rVideo unavailable " + "x" * 1000
    reason = clean_message(coloured)
    assert reason.startswith("[youtube] abc: Video unavailable")
    assert "\x1b" not in reason and "\r" not in reason
    assert len(reason) <= REASON_MAX_CHARS
    assert classify_message(coloured).status == st.UNAVAILABLE


def test_ffmpeg_exit_reason_explains_the_cut():
    reason = classify_message("ERROR: ffmpeg exited with code 183").reason
    assert "ffmpeg exited with code 183" in reason
    assert "cutting" in reason


def test_http_status_overrides_the_text():
    assert classify_message("whatever", http_status=404).status == st.UNAVAILABLE
    assert classify_message("whatever", http_status=429).status == st.RATE_LIMITED
    assert classify_message("whatever", http_status=500).status == st.ERROR
    assert classify_message("HTTP Error 404", timed_out=True).status == st.TIMEOUT


def _http_error(code: int) -> HTTPError:
    return HTTPError(Response(io.BytesIO(b""), "http://127.0.0.1/x", {}, status=code))


def _wrapped(cause: BaseException, message: str) -> DownloadError:
    """A DownloadError as YoutubeDL raises it: the original exception in exc_info."""
    try:
        raise cause
    except BaseException:
        return DownloadError(message, sys.exc_info())


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            _wrapped(_http_error(404), "ERROR: [generic] x: Unable to download webpage"),
            st.UNAVAILABLE,
        ),
        (
            _wrapped(_http_error(429), "ERROR: [generic] x: Unable to download webpage"),
            st.RATE_LIMITED,
        ),
        (_wrapped(_http_error(403), "ERROR: [generic] x: Unable to download webpage"), st.ERROR),
        (_wrapped(TimeoutError(), "ERROR: [download] Got error"), st.TIMEOUT),
        (_wrapped(TransportError("Read timed out."), "ERROR: unable to download"), st.ERROR),
        (DownloadError("ERROR: [youtube] abc: Private video"), st.PRIVATE),
        (subprocess.TimeoutExpired(["ffmpeg"], 60), st.TIMEOUT),
        (OSError(28, "No space left on device"), st.ERROR),
    ],
)
def test_exception_classification_follows_the_cause(exc, expected):
    assert classify_exception(exc).status == expected


def test_exception_cause_chain_is_followed():
    try:
        try:
            raise TimeoutError("socket")
        except TimeoutError as inner:
            raise RuntimeError("fetch failed") from inner
    except RuntimeError as outer:
        assert classify_exception(outer).status == st.TIMEOUT


def test_partial_download_refusal():
    assert is_partial_download_refusal(
        "ERROR: This format cannot be partially downloaded. Aborting"
    )
    assert not is_partial_download_refusal("ERROR: HTTP Error 404: Not Found")


# -- downloaded files (real ffmpeg on synthesised media) -------------------------------------


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("classify_media")
    garbage = root / "garbage.mp4"
    garbage.write_bytes(b"<html>not a video</html>" * 50)
    return {
        "av": make_test_mp4(root / "av.mp4", 2.0),
        "video_only": make_test_mp4(root / "v.mp4", 2.0, audio=False),
        "audio_only": make_test_mp4(root / "a.mp4", 2.0, video=False),
        "garbage": garbage,
    }


def _probe(path) -> str:
    return subprocess.run(
        media_probe_argv(ffmpeg_exe(), path), capture_output=True, text=True
    ).stderr


def test_media_with_audio_and_video_is_ok(media):
    stderr = _probe(media["av"])
    assert stream_kinds(stderr) == {"audio", "video"}
    assert parse_probe(stderr).duration_s == pytest.approx(2.0, abs=0.1)
    assert classify_media(media["av"].stat().st_size, stderr).status == st.OK


def test_media_without_audio_is_bad(media):
    verdict = classify_media(media["video_only"].stat().st_size, _probe(media["video_only"]))
    assert verdict.status == st.BAD_MEDIA
    assert "audio" in verdict.reason


def test_audio_only_is_ok_only_when_video_is_not_required(media):
    stderr = _probe(media["audio_only"])
    size = media["audio_only"].stat().st_size
    assert classify_media(size, stderr).status == st.BAD_MEDIA
    assert classify_media(size, stderr, require_video=False).status == st.OK


def test_garbage_and_empty_files_are_bad_media(media):
    verdict = classify_media(media["garbage"].stat().st_size, _probe(media["garbage"]))
    assert verdict.status == st.BAD_MEDIA
    assert "no media streams" in verdict.reason
    assert classify_media(0, "").status == st.BAD_MEDIA


def test_cover_art_is_not_video():
    stderr = (
        "  Stream #0:0: Audio: aac (LC), 44100 Hz, stereo, fltp, 128 kb/s\n"
        "  Stream #0:1: Video: mjpeg (Baseline), yuvj420p, 300x300, 90k tbn (attached pic)\n"
    )
    assert stream_kinds(stderr) == {"audio"}


MISSING_FILE = (
    "ERROR: [generic] nope: Unable to download webpage: [Errno 2] No such file or directory: "
    "'/data/nope.mp4' (caused by TransportError(\"[Errno 2] No such file or directory: "
    "'/data/nope.mp4'\"))"
)


def test_a_missing_source_file_is_unavailable_not_retriable():
    result = classify_message(MISSING_FILE)
    assert result.status == st.UNAVAILABLE
    assert result.reason.startswith("source file /data/nope.mp4 does not exist (yt-dlp: [generic]")
    # Our own I/O error with the same errno is not the source's fault.
    own = classify_message("[Errno 2] No such file or directory: '/out/.tmp-x.part'")
    assert own.status == st.ERROR


def test_long_messages_are_cut_to_exactly_the_limit_without_a_dangling_space():
    limit = 20
    assert clean_message("x" * limit, limit=limit) == "x" * limit  # at the limit: kept whole
    cut = clean_message("x" * (limit + 5), limit=limit)
    assert cut == "x" * (limit - 1) + "…" and len(cut) == limit
    # the cut lands just after a space: the space goes, not the text before it
    assert clean_message("y" * (limit - 2) + " " + "z" * 9, limit=limit) == "y" * (limit - 2) + "…"


def test_the_media_probe_never_reads_stdin_and_prints_no_banner():
    # -nostdin: a probe inside a thread pool must not take the terminal's input
    assert media_probe_argv("ffmpeg", "/data/a b.mp4") == [
        "ffmpeg",
        "-hide_banner",
        "-nostdin",
        "-i",
        "/data/a b.mp4",
    ]


# -- exact reasons: a log reader searches for these words ------------------------------------

NO_MESSAGE = "unknown error (yt-dlp gave no message)"


def test_a_failure_without_words_still_says_why():
    # yt-dlp sometimes raises with an empty message, or one that is only colour codes
    for message in ("", "\x1b[0;31m \r\x1b[0m  "):
        assert classify_message(message) == Classification(st.ERROR, NO_MESSAGE)


def test_ffmpeg_exit_reason_is_the_message_then_the_explanation():
    assert classify_message("ERROR: ffmpeg exited with code -22").reason == (
        "ffmpeg exited with code -22 (ffmpeg failed while cutting the section: "
        "unreadable, truncated or stalled input)"
    )


def test_time_outs_and_http_statuses_keep_the_cleaned_message_as_reason():
    assert classify_message("ERROR: [download] Got error: x", timed_out=True) == Classification(
        st.TIMEOUT, "[download] Got error: x"
    )
    assert classify_message("ERROR: [generic] z: fetch failed", http_status=410) == Classification(
        st.UNAVAILABLE, "[generic] z: fetch failed"
    )


def test_a_missing_source_without_a_quoted_path_names_no_path():
    message = (
        "ERROR: [generic] nope: Unable to download video data: [Errno 2] No such file or directory"
    )
    assert classify_message(message) == Classification(
        st.UNAVAILABLE,
        "source file does not exist (yt-dlp: [generic] nope: Unable to download video data: "
        "[Errno 2] No such file or directory)",
    )


# -- exceptions: which HTTP status, which link of the chain ----------------------------------


class _StatusError(Exception):
    """An error that carries an HTTP status, as yt-dlp's network errors do."""

    def __init__(self, status: object):
        super().__init__("fetch failed")  # words that no rule matches
        self.status = status


def _chained(*errors: BaseException) -> BaseException:
    """errors[0], whose explicit cause is errors[1], whose cause is errors[2], ..."""
    for outer, inner in itertools.pairwise(errors):
        outer.__cause__ = inner
    return errors[0]


def test_the_outermost_http_status_wins():
    # 404 outside, 429 inside: the outer one is what the request that failed got
    assert classify_exception(_chained(_StatusError(404), _StatusError(429))).status == (
        st.UNAVAILABLE
    )
    assert classify_exception(_chained(_StatusError(429), _StatusError(404))).status == (
        st.RATE_LIMITED
    )


@pytest.mark.parametrize(
    ("outer_status", "expected"),
    [
        # 100 and 599 are HTTP statuses: taken (and they decide nothing, so the text does)
        (100, st.ERROR),
        (599, st.ERROR),
        # 99, 600 and a non-number are not: skipped, so the inner 404 is used
        (99, st.UNAVAILABLE),
        (600, st.UNAVAILABLE),
        ("404", st.UNAVAILABLE),
        (None, st.UNAVAILABLE),
    ],
)
def test_only_integers_from_100_to_599_count_as_http_statuses(outer_status, expected):
    exc = _chained(_StatusError(outer_status), _StatusError(404))
    assert classify_exception(exc) == Classification(expected, "fetch failed")


def test_an_exception_without_a_message_is_named_by_its_type():
    assert classify_exception(ValueError()) == Classification(st.ERROR, "ValueError")


def test_an_implicit_context_is_followed_when_there_is_no_explicit_cause():
    # raised while handling a time-out, without "from": __cause__ is None, __context__ is set
    try:
        try:
            raise TimeoutError("socket")
        except TimeoutError:
            raise RuntimeError("fetch failed")  # noqa: B904 - the implicit chain is the point
    except RuntimeError as outer:
        assert outer.__cause__ is None
        assert classify_exception(outer).status == st.TIMEOUT


def test_an_extractor_errors_cause_attribute_is_followed():
    # ExtractorError(cause=...) keeps the cause only as .cause (no __cause__, no exc_info here)
    gone = ExtractorError("unable to fetch the page", cause=_http_error(410))
    assert gone.__cause__ is None and gone.__context__ is None
    assert classify_exception(gone).status == st.UNAVAILABLE
    # the same words without the cause decide nothing
    assert classify_exception(ExtractorError("unable to fetch the page")).status == st.ERROR


@pytest.mark.parametrize(("depth", "expected"), [(8, st.TIMEOUT), (9, st.ERROR)])
def test_the_cause_chain_is_followed_eight_links_deep(depth, expected):
    # a TimeoutError as the depth-th exception of a straight chain: the walk stops after 8
    errors = [RuntimeError(f"link {i}") for i in range(1, depth)] + [TimeoutError("socket")]
    assert classify_exception(_chained(*errors)) == Classification(expected, "link 1")


# -- downloaded files: exact verdicts on ffmpeg's stream listing -----------------------------

VIDEO_STREAM = (
    "  Stream #0:0[0x1](und): Video: h264 (Constrained Baseline) (avc1 / 0x31637661), "
    "yuv420p(progressive), 64x64, 87 kb/s, 10 fps (default)\n"
)
AUDIO_STREAM = "  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, mono\n"
NO_OUTPUT = "At least one output file must be specified\n"


def test_a_file_of_zero_bytes_is_empty_even_if_the_probe_lists_streams():
    assert classify_media(0, VIDEO_STREAM + AUDIO_STREAM) == Classification(
        st.BAD_MEDIA, "downloaded file is empty"
    )
    # one byte is not empty: the streams decide
    assert classify_media(1, VIDEO_STREAM + AUDIO_STREAM) == Classification(st.OK, "")


def test_missing_streams_are_named_exactly():
    assert classify_media(10, VIDEO_STREAM) == Classification(
        st.BAD_MEDIA, "no audio stream in the file"
    )
    # audio is needed even when video is not
    assert classify_media(10, VIDEO_STREAM, require_video=False) == Classification(
        st.BAD_MEDIA, "no audio stream in the file"
    )
    assert classify_media(10, AUDIO_STREAM) == Classification(
        st.BAD_MEDIA, "no video stream in the file"
    )
    assert classify_media(10, AUDIO_STREAM, require_video=False) == Classification(st.OK, "")


def test_no_streams_reason_quotes_ffmpegs_last_line_before_the_no_output_complaint():
    # a container with only a data track: three useful lines, a blank one, then the complaint
    stderr = (
        "Input #0, mov,mp4,m4a,3gp,3g2,mj2, from '/data/x.mp4':\n"
        "  Duration: 00:00:02.00, start: 0.000000, bitrate: 1 kb/s\n"
        "  Stream #0:0[0x1](und): Data: none (tmcd / 0x64636D74)   \n"
        "      \n" + NO_OUTPUT
    )
    assert classify_media(10, stderr) == Classification(
        st.BAD_MEDIA,
        "no media streams in the file: Stream #0:0[0x1](und): Data: none (tmcd / 0x64636D74)",
    )


def test_no_streams_and_no_words_from_ffmpeg_says_so():
    expected = Classification(st.BAD_MEDIA, "no media streams in the file: ffmpeg printed nothing")
    assert classify_media(10, "") == expected
    assert classify_media(10, "\n   \n" + NO_OUTPUT) == expected
