"""Stream facts from ``ffmpeg -hide_banner -i FILE`` (we have no ffprobe).

ffmpeg prints the input's description to stderr and then exits because no output was
given. ``parse_probe`` reads that text; ``probe_media`` runs ffmpeg and parses. Only the
first input (``Input #0``) is read. Cover art ("attached pic") is not a video stream.
Every ffmpeg run prints the same description when it opens its input, so
``describe_run`` reads it from the stderr of a run that also did the work: the extraction
needs no separate probe process.

The text is meant for people, so the parser is deliberately forgiving: a field it does
not recognise is left as ``None`` rather than guessed.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from wavbrivl.ffmpeg_bin import ffmpeg_exe

NO_DESCRIPTION = "ffmpeg printed no input description"


class ProbeError(RuntimeError):
    """ffmpeg could not open or describe the file; the message is the reason."""


@dataclass(frozen=True)
class VideoStream:
    index: int  # absolute stream index in the file (``0:<index>``)
    codec: str
    width: int  # as displayed: pixel aspect ratio and rotation applied
    height: int
    fps: float | None  # average frame rate ("fps" field)
    tbr: float | None  # ffmpeg's guess of the base rate ("tbr" field)
    rotation: int = 0  # degrees from the display matrix, normalised to 0/90/180/270

    @property
    def is_portrait(self) -> bool:
        return self.height > self.width

    @property
    def is_variable_rate(self) -> bool:
        """A heuristic: the average rate differs from the base rate.

        Interlaced streams report tbr = 2 x fps (field rate), which is not VFR.
        """
        if not self.fps or not self.tbr:
            return False
        ratio = self.tbr / self.fps
        return not (_close(ratio, 1.0) or _close(ratio, 2.0))


@dataclass(frozen=True)
class AudioStream:
    index: int
    codec: str
    sample_rate: int | None
    layout: str | None  # ffmpeg's layout name: "mono", "stereo", "5.1(side)", "3 channels"...
    channels: int | None  # from the layout name; None when the name is unknown


@dataclass(frozen=True)
class MediaInfo:
    duration_s: float | None  # None when ffmpeg prints "Duration: N/A"
    start_s: float
    video: VideoStream | None  # the first real video stream
    audio: AudioStream | None  # the first audio stream
    container: str = ""


# Channel counts of ffmpeg's named layouts (libavutil/channel_layout.c).
_LAYOUT_CHANNELS = {
    "mono": 1,
    "stereo": 2,
    "downmix": 2,
    "2.1": 3,
    "3.0": 3,
    "3.0(back)": 3,
    "4.0": 4,
    "quad": 4,
    "quad(side)": 4,
    "3.1": 4,
    "5.0": 5,
    "5.0(side)": 5,
    "4.1": 5,
    "5.1": 6,
    "5.1(side)": 6,
    "6.0": 6,
    "6.0(front)": 6,
    "hexagonal": 6,
    "3.1.2": 6,
    "6.1": 7,
    "6.1(back)": 7,
    "6.1(front)": 7,
    "7.0": 7,
    "7.0(front)": 7,
    "7.1": 8,
    "7.1(wide)": 8,
    "7.1(wide-side)": 8,
    "5.1.2": 8,
    "7.1(top)": 8,
    "octagonal": 8,
    "cube": 8,
    "5.1.4": 10,
    "7.1.2": 10,
    "7.1.4": 12,
    "7.2.3": 12,
    "9.1.4": 14,
    "hexadecagonal": 16,
    "22.2": 24,
}

_INPUT = re.compile(r"^Input #0, (?P<container>[^,]+(?:,[^,\s]+)*), from ")
_DURATION = re.compile(
    r"^\s+Duration: (?:(?P<h>\d+):(?P<m>\d+):(?P<s>\d+(?:\.\d+)?)|N/A)"
    r"(?:, start: (?P<start>-?\d+(?:\.\d+)?))?"
)
_STREAM = re.compile(
    r"^\s+Stream #0:(?P<index>\d+)(?:\[[^\]]*\])?(?:\([^)]*\))?: (?P<kind>\w+): (?P<desc>.*)$"
)
_SIZE = re.compile(r"^(?P<w>\d+)x(?P<h>\d+)(?:\s|$)")
_SAR = re.compile(r"SAR (?P<num>\d+):(?P<den>\d+)")
_RATE = re.compile(r"^(?P<value>\d+(?:\.\d+)?)(?P<k>k?) (?P<unit>fps|tbr)$")
_HZ = re.compile(r"^(?P<rate>\d+) Hz$")
_N_CHANNELS = re.compile(r"^(?P<n>\d+) channels\b")
_ROTATION = re.compile(r"display ?matrix: rotation of (?P<deg>-?\d+(?:\.\d+)?) degrees", re.I)
_OTHER_INPUT = re.compile(r"^Input #[1-9]")


def parse_probe(stderr: str) -> MediaInfo:
    """Parse ffmpeg's description of input #0; raise :class:`ProbeError` if there is none."""
    lines = [split_log_line(raw)[1] for raw in stderr.splitlines()]
    start = next((i for i, line in enumerate(lines) if _INPUT.match(line)), None)
    if start is None:
        raise ProbeError(ffmpeg_failure_reason(stderr) or NO_DESCRIPTION)
    container = _INPUT.match(lines[start]).group("container")

    duration_s: float | None = None
    start_s = 0.0
    streams: list[tuple[int, str, str, list[str]]] = []  # (index, kind, desc, side lines)
    for line in lines[start + 1 :]:
        if _OTHER_INPUT.match(line) or line.startswith("Output #"):
            break
        if m := _DURATION.match(line):
            if m.group("h") is not None:
                duration_s = int(m["h"]) * 3600 + int(m["m"]) * 60 + float(m["s"])
            if m.group("start") is not None:
                start_s = float(m["start"])
        elif m := _STREAM.match(line):
            streams.append((int(m["index"]), m["kind"], m["desc"], []))
        elif streams and line.startswith("    "):
            streams[-1][3].append(line)  # metadata / side data of the last stream

    video = next(
        (v for v in (_parse_video(*s) for s in streams if s[1] == "Video") if v is not None), None
    )
    audio = next((_parse_audio(*s) for s in streams if s[1] == "Audio"), None)
    return MediaInfo(duration_s, start_s, video, audio, container)


def split_description(stderr: str) -> tuple[str, str]:
    """``(input description, other lines)`` of the stderr of any ffmpeg run on one input.

    The description is the ``Input #0`` line and the indented lines under it ("" when the
    run printed none); the other lines, joined by newlines, are the run's own messages,
    where its errors are.
    """
    lines = stderr.splitlines()
    texts = [split_log_line(raw)[1] for raw in lines]
    first = next((i for i, text in enumerate(texts) if _INPUT.match(text)), len(lines))
    end = first + 1
    while end < len(texts) and texts[end].startswith(" "):
        end += 1
    return "\n".join(lines[first:end]), "\n".join(lines[:first] + lines[end:])


def describe_run(stderr: str) -> MediaInfo:
    """Stream facts from the description in an ffmpeg run's stderr; :class:`ProbeError`
    with ffmpeg's reason (the whole stderr's) when it printed none."""
    description, _ = split_description(stderr)
    return parse_probe(description or stderr)


def probe_argv(path: str | os.PathLike, ffmpeg: str) -> list[str]:
    """``ffmpeg -i`` with the path behind ``file:`` so a name like ``-x.mp4`` is not an option."""
    return [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "level+info",
        "-i",
        f"file:{Path(path)}",
    ]


def probe_media(
    path: str | os.PathLike, *, ffmpeg: str | None = None, timeout_s: float = 60.0
) -> MediaInfo:
    """Describe ``path``; raise :class:`ProbeError` with ffmpeg's reason if it cannot.

    ffmpeg exits non-zero here even for good files ("At least one output file must be
    specified"), so success is judged from the parsed text, not the exit code.
    A time-out propagates as :class:`subprocess.TimeoutExpired`.
    """
    if not Path(path).is_file():
        raise ProbeError(f"no such file: {path}")
    result = subprocess.run(  # noqa: S603 - argv list, no shell
        probe_argv(path, ffmpeg or ffmpeg_exe()),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout_s,
    )
    return parse_probe(result.stderr.decode("utf-8", errors="replace"))


# ``-loglevel level+info`` prefixes: "[in#0 @ 0x55...] [error] moov atom not found".
_LOG_PREFIX = re.compile(
    r"^(?:\[[^\]]+ @ 0x[0-9a-f]+\] )*"
    r"(?:\[(?P<level>trace|debug|verbose|info|warning|error|fatal|panic)\] )?"
)
_ERROR_LEVELS = {"error", "fatal", "panic"}
# Lines that only say "something failed" without saying what: never picked as a reason.
_GENERIC = (
    "Error opening input file ",
    "Error opening input files:",
    "Error opening output file",
    "Conversion failed!",
    "Exiting with exit code",
    "At least one output file must be specified",
    "Nothing was written into output file",
)


def split_log_line(raw: str) -> tuple[str | None, str]:
    """``(level or None, text)`` of one ffmpeg stderr line, context prefixes removed."""
    m = _LOG_PREFIX.match(raw)
    return m["level"], raw[m.end() :]


def ffmpeg_failure_reason(stderr: str, n_lines: int = 2) -> str:
    """The last ``n_lines`` distinct meaningful stderr lines, joined by ``"; "``.

    With level tags (``-loglevel level+...``) only error lines count; generic wrappers
    ("Conversion failed!") never do. For a truncated mp4 the reason reads "moov atom not
    found; Error opening input: Invalid data found when processing input".
    """
    tagged = [split_log_line(raw) for raw in stderr.splitlines()]
    errors = [text for level, text in tagged if level in _ERROR_LEVELS]
    return _last_distinct(errors or [text for _, text in tagged], n_lines)


def ffmpeg_errors(stderr: str, n_lines: int = 2) -> str:
    """Like :func:`ffmpeg_failure_reason` but only error-tagged lines; "" when there are none.

    For a run that succeeded: errors here mean damaged data was skipped.
    """
    tagged = [split_log_line(raw) for raw in stderr.splitlines()]
    return _last_distinct([text for level, text in tagged if level in _ERROR_LEVELS], n_lines)


def _last_distinct(lines: list[str], n_lines: int) -> str:
    picked: list[str] = []
    for text in lines:
        text = text.strip()
        if not text or text.startswith(_GENERIC):
            continue
        if text in picked:
            picked.remove(text)
        picked.append(text)
    return "; ".join(picked[-n_lines:])


_SHOWINFO_PTS = re.compile(
    r"^\[Parsed_showinfo_\d+ @ 0x[0-9a-f]+\] .*\bpts_time:(?P<t>-?\d+(?:\.\d+)?)"
)


def last_showinfo_time(stderr: str) -> float | None:
    """``pts_time`` of the last frame the ``showinfo`` filter logged, if any."""
    last = None
    for line in stderr.splitlines():
        if m := _SHOWINFO_PTS.match(line):
            last = float(m["t"])
    return last


def _parse_video(index: int, kind: str, desc: str, side: list[str]) -> VideoStream | None:
    if "(attached pic)" in desc:
        return None  # cover art inside an audio file, not a video
    fields = _split_fields(desc)
    size = None
    sar = 1.0
    fps = tbr = None
    for field in fields[1:]:
        if m := _SIZE.match(field):
            size = int(m["w"]), int(m["h"])
        # The container's SAR, printed last, overrides the codec's (what ffmpeg decodes with).
        for m in _SAR.finditer(field):
            if int(m["num"]) and int(m["den"]):
                sar = int(m["num"]) / int(m["den"])
        if m := _RATE.match(field):
            value = float(m["value"]) * (1000 if m["k"] else 1)
            if m["unit"] == "fps":
                fps = value
            else:
                tbr = value
    if size is None:
        return None
    codec = fields[0].split()[0]  # a size was found, so there are fields
    width, height = size
    rotation = 0
    for line in side:
        if m := _ROTATION.search(line):
            rotation = round(float(m["deg"])) % 360
    width = round(width * sar)  # square pixels, as displayed
    if rotation in (90, 270):
        width, height = height, width
    return VideoStream(index, codec, width, height, fps, tbr, rotation)


def _parse_audio(index: int, kind: str, desc: str, side: list[str]) -> AudioStream:
    fields = _split_fields(desc)
    codec = fields[0].split()[0] if fields else ""
    sample_rate = layout = channels = None
    for i, field in enumerate(fields):
        if m := _HZ.match(field):
            sample_rate = int(m["rate"])
            if i + 1 < len(fields):
                layout = fields[i + 1]
                channels = _channels_of(layout)
            break
    return AudioStream(index, codec, sample_rate, layout, channels)


def _channels_of(layout: str) -> int | None:
    if layout in _LAYOUT_CHANNELS:
        return _LAYOUT_CHANNELS[layout]
    if m := _N_CHANNELS.match(layout):
        return int(m["n"])
    # A custom order is printed as "FL+FR+LFE": one name per channel.
    if re.fullmatch(r"[A-Za-z0-9]+(\+[A-Za-z0-9]+)+", layout):
        return layout.count("+") + 1
    return None


def _split_fields(desc: str) -> list[str]:
    """Split a stream description on top-level ", " (commas inside () and [] stay)."""
    fields, depth, current = [], 0, []
    for ch in desc:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            fields.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    fields.append("".join(current).strip())
    return [f for f in fields if f]


def _close(a: float, b: float, rel: float = 0.01) -> bool:
    return abs(a - b) <= rel * b
