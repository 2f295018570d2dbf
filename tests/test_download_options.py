"""The download config and the pure yt-dlp options builder (no network, no download)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yt_dlp
from yt_dlp.utils import download_range_func

from wavbrivl.download.options import (
    DEFAULT_FORMAT,
    DownloadConfig,
    build_ydl_options,
    is_file_url,
    js_runtimes_option,
    plan_section,
    span_problem,
    url_problem,
)

HTTP_URL = "http://127.0.0.1:8000/media/a.mp4"
FILE_URL = "file:///data/a.mp4"


def _options(cfg: DownloadConfig | None = None, section=None, tmp_dir=Path("/tmp/x")) -> dict:
    return build_ydl_options(
        cfg or DownloadConfig(), tmp_dir=tmp_dir, section=section, ffmpeg_location="/opt/ffmpeg"
    )


# -- config ----------------------------------------------------------------------------------


def test_from_dict_fills_defaults_and_takes_known_keys():
    cfg = DownloadConfig.from_dict({"max_attempts": 5, "sections": "never"})
    assert cfg.max_attempts == 5
    assert cfg.sections == "never"
    assert cfg.format == DEFAULT_FORMAT
    assert DownloadConfig.from_dict(None) == DownloadConfig()


def test_from_dict_rejects_unknown_keys_by_name():
    with pytest.raises(ValueError, match="max_attempt"):
        DownloadConfig.from_dict({"max_attempt": 3})


@pytest.mark.parametrize(
    "bad",
    [
        {"sections": "sometimes"},
        {"max_attempts": 0},
        {"backoff_s": -1},
        {"socket_timeout_s": 0},
        {"rate_limit": "fast"},
        {"format": ""},
        {"js_runtime": ":/usr/bin/node"},
        {"pace_s": True},
    ],
)
def test_invalid_values_raise_naming_the_key(bad):
    key = next(iter(bad))
    with pytest.raises(ValueError, match=key):
        DownloadConfig.from_dict(bad)


# -- sections --------------------------------------------------------------------------------


def test_cut_requests_exactly_the_clip_span():
    section = plan_section(HTTP_URL, 12.0, 22.0, DownloadConfig())
    assert section == (12.0, 22.0)
    options = _options(section=section)
    assert options["download_ranges"] == download_range_func(None, [(12.0, 22.0)])
    ranges = list(options["download_ranges"]({"duration": 100.0}, None))
    assert ranges == [{"start_time": 12.0, "end_time": 22.0}]


def test_no_cut_means_no_download_ranges():
    assert "download_ranges" not in _options(section=None)


def test_padding_widens_the_cut_but_not_below_zero():
    cfg = DownloadConfig(section_padding_s=1.5)
    assert plan_section(HTTP_URL, 0.5, 10.0, cfg) == (0.0, 11.5)
    assert plan_section(HTTP_URL, 5.0, 10.0, cfg) == (3.5, 11.5)


@pytest.mark.parametrize(
    ("mode", "url", "cut"),
    [
        ("auto", HTTP_URL, True),
        ("auto", FILE_URL, False),  # yt-dlp cannot cut file:// sources
        ("always", FILE_URL, True),
        ("never", HTTP_URL, False),
    ],
)
def test_section_mode_decides_whether_to_cut(mode, url, cut):
    section = plan_section(url, 1.0, 2.0, DownloadConfig(sections=mode))
    assert (section is not None) == cut


# -- urls, spans -----------------------------------------------------------------------------


def test_file_urls_are_refused_unless_allowed():
    refused = url_problem(FILE_URL, DownloadConfig())
    assert refused is not None and "allow_file_urls" in refused
    assert url_problem("FILE:///data/a.mp4", DownloadConfig()) is not None
    assert url_problem(FILE_URL, DownloadConfig(allow_file_urls=True)) is None
    assert url_problem(HTTP_URL, DownloadConfig()) is None
    assert url_problem("", DownloadConfig()) is not None
    assert url_problem(None, DownloadConfig()) is not None


def test_enable_file_urls_follows_the_config():
    assert _options()["enable_file_urls"] is False
    assert _options(DownloadConfig(allow_file_urls=True))["enable_file_urls"] is True


def test_is_file_url():
    assert is_file_url(" file:///x.mp4")
    assert not is_file_url("https://www.youtube.com/watch?v=abc")


@pytest.mark.parametrize(
    ("start", "end", "ok"),
    [
        (0.0, 10.0, True),
        (np.float64(1.5), np.int64(4), True),  # pandas hands out numpy scalars
        (5.0, 5.0, False),
        (-1.0, 3.0, False),
        (1.0, math.nan, False),
        ("1", 2.0, False),
        (None, 2.0, False),
    ],
)
def test_span_problem(start, end, ok):
    assert (span_problem(start, end) is None) == ok


# -- yt-dlp options --------------------------------------------------------------------------


def test_output_lands_in_the_clip_temp_dir(tmp_path):
    options = _options(tmp_dir=tmp_path / ".tmp-abc")
    with yt_dlp.YoutubeDL(options) as ydl:
        name = ydl.prepare_filename({"id": "xyz", "ext": "mp4", "title": "t"})
    assert Path(name).parent == tmp_path / ".tmp-abc"


def test_options_are_accepted_by_youtubedl(tmp_path):
    cfg = DownloadConfig(
        cookies_file=str(tmp_path / "cookies.txt"),
        js_runtime="node",
        rate_limit="2M",
        sleep_requests_s=0.5,
        socket_timeout_s=7,
    )
    options = _options(cfg, section=(1.0, 2.0), tmp_dir=tmp_path)
    with yt_dlp.YoutubeDL(options) as ydl:
        assert ydl.params["js_runtimes"] == {"node": {}}
        assert ydl.params["ratelimit"] == 2 * 1024 * 1024
        assert ydl.params["socket_timeout"] == 7.0
        assert ydl.params["sleep_interval_requests"] == 0.5
        assert ydl.params["noplaylist"] is True


def test_cookies_only_when_configured():
    assert "cookiefile" not in _options()
    assert _options(DownloadConfig(cookies_file="/secrets/c.txt"))["cookiefile"] == "/secrets/c.txt"


def test_js_runtime_with_and_without_path():
    assert "js_runtimes" not in _options()  # yt-dlp's own default (deno) applies
    assert js_runtimes_option("node") == {"node": {}}
    assert js_runtimes_option("deno:/opt/deno/bin/deno") == {"deno": {"path": "/opt/deno/bin/deno"}}
    options = _options(DownloadConfig(js_runtime="deno:/opt/deno"))
    assert options["js_runtimes"] == {"deno": {"path": "/opt/deno"}}


def test_ffmpeg_cut_fails_loudly_and_times_out():
    options = _options(DownloadConfig(socket_timeout_s=2.5))
    assert options["ffmpeg_location"] == "/opt/ffmpeg"
    ffmpeg_args = options["external_downloader_args"]
    assert ffmpeg_args["ffmpeg_o"] == ["-xerror"]
    assert ffmpeg_args["ffmpeg_i"] == ["-rw_timeout", "2500000"]  # microseconds


def test_ytdlp_retries_stay_small():
    options = _options()
    assert options["retries"] <= 2 and options["fragment_retries"] <= 2


# Formats as a YouTube page lists them: video-only and audio-only streams, plus a 720p
# progressive file. The selection must carry audio, and stay at or below 360p when it can.
_FORMATS = [
    {
        "format_id": "v360",
        "url": "http://x/1",
        "ext": "mp4",
        "height": 360,
        "vcodec": "avc1",
        "acodec": "none",
    },
    {
        "format_id": "v720",
        "url": "http://x/2",
        "ext": "mp4",
        "height": 720,
        "vcodec": "avc1",
        "acodec": "none",
    },
    {"format_id": "a128", "url": "http://x/3", "ext": "m4a", "vcodec": "none", "acodec": "mp4a"},
    {
        "format_id": "p720",
        "url": "http://x/4",
        "ext": "mp4",
        "height": 720,
        "vcodec": "avc1",
        "acodec": "mp4a",
    },
]


@pytest.mark.parametrize(
    ("formats", "expected_ids"),
    [
        (_FORMATS, {"v360", "a128"}),
        ([_FORMATS[1], _FORMATS[3]], {"p720"}),  # no small stream: the progressive file, with audio
        ([_FORMATS[3]], {"p720"}),
    ],
)
def test_default_format_keeps_audio(formats, expected_ids):
    with yt_dlp.YoutubeDL({"quiet": True}) as ydl:
        chosen = ydl._select_formats(formats, ydl.build_format_selector(DEFAULT_FORMAT))
    assert chosen, "the default format selected nothing"
    picked = chosen[0].get("requested_formats") or [chosen[0]]
    assert {f["format_id"] for f in picked} == expected_ids
    assert any(f.get("acodec") not in (None, "none") for f in picked)
    assert _options()["merge_output_format"] == "mp4"
