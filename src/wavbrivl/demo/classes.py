"""The demo's audio-visual classes: each pairs a sound with a picture that goes with it.

An audio encoder trained to match frozen image embeddings can only learn from the demo if
sound and picture co-vary, so every class has one distinct sound and one distinct look
(hum <-> red, whistle <-> blue, noise <-> grey static, ...). Where a class has a rate (drum
tempo, sweep period, siren speed), picture and sound share it, so the pairing holds inside a
class too.

Each class is three small pure functions:
- ``draw(rng)``: the per-clip random variation (pitch, colour, speed, pattern scale, seeds);
- ``video(params, width, height, fps)``: a lavfi video chain (a source and its filters);
- ``audio(params, sample_rate)``: a lavfi chain producing a *mono* signal at ``sample_rate``.

Only lavfi sources and filters found in ordinary ffmpeg builds (4.4 and later) are used;
``DemoClass.filters`` lists them so a missing one is reported by name before any work.
Expressions are wrapped in single quotes (:func:`quoted`), which shields their commas from
the filtergraph parser; they contain no ``:``, so one level of quoting is enough.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

ParamValue = float | int | str
Params = Mapping[str, ParamValue]  # one clip's draw, read by its video/audio builders


@dataclass(frozen=True)
class DemoClass:
    """One demo class: a label (VGGSound style), an AudioSet-style MID and how to make a clip."""

    key: str  # short slug used in seeds and logs
    name: str  # display name = VGGSound label; may contain a comma like real labels
    mid: str  # AudioSet machine id, e.g. "/m/0demo01"
    sound: str  # what it sounds like (for demo_info.json and the README)
    picture: str  # what it looks like
    draw: Callable[[random.Random], dict[str, ParamValue]]
    video: Callable[[Params, int, int, int], str]
    audio: Callable[[Params, int], str]
    filters: tuple[str, ...]  # lavfi sources and filters the two chains use


def num(x: float) -> str:
    """A number for a filtergraph: fixed point (no exponent, which ffmpeg could misread)."""
    text = f"{x:.4f}".rstrip("0").rstrip(".")
    return "0" if text in {"", "-0"} else text


def quoted(expr: str) -> str:
    """Quote an ffmpeg expression so its commas do not split the filtergraph."""
    if any(ch in expr for ch in "'\\:"):
        raise ValueError(f"expression cannot be quoted safely: {expr!r}")
    return f"'{expr}'"


def hex_rgb(r: float, g: float, b: float) -> str:
    """``0xRRGGBB`` from 0-255 floats (clamped)."""
    return "0x" + "".join(f"{max(0, min(255, round(c))):02X}" for c in (r, g, b))


def _u(rng: random.Random, low: float, high: float, digits: int = 3) -> float:
    # Rounded at draw time so the stored params are exactly what reaches the argv.
    return round(rng.uniform(low, high), digits)


def _seed(rng: random.Random) -> int:
    return rng.randrange(1, 2**31 - 1)


def _source_size(width: int, height: int, fps: int) -> str:
    return f"s={width}x{height}:r={fps}"


def _jittered_colour(p: Params, base: tuple[int, int, int]) -> str:
    return hex_rgb(*(c + p[f"d{ch}"] for c, ch in zip(base, "rgb", strict=True)))


def _luma_noise(strength: float | int | str, flags: str, seed: float | int | str) -> str:
    # Noise on luma only (in YUV), so grey stays grey and brown stays brown.
    return f"format=yuv420p,noise=c0s={strength}:c0f={flags}:all_seed={seed}"


def _draw_colour_jitter(rng: random.Random, spread: float) -> dict[str, float]:
    return {f"d{ch}": _u(rng, -spread, spread, 1) for ch in "rgb"}


# --- 1. engine idling: low hum with harmonics <-> red field with a soft vignette ----------


def _draw_hum(rng: random.Random) -> dict[str, ParamValue]:
    return {
        "freq": _u(rng, 60.0, 130.0, 2),
        "wobble_hz": _u(rng, 1.5, 6.0),
        "vignette": _u(rng, 0.35, 0.75),
        **_draw_colour_jitter(rng, 25.0),
    }


def _video_hum(p: Params, width: int, height: int, fps: int) -> str:
    colour = _jittered_colour(p, (200, 30, 30))
    return (
        f"color=c={colour}:{_source_size(width, height, fps)},vignette=angle={num(p['vignette'])}"
    )


def _audio_hum(p: Params, sample_rate: int) -> str:
    f = num(p["freq"])
    expr = (
        f"(0.45*sin(2*PI*{f}*t)+0.25*sin(4*PI*{f}*t)+0.12*sin(6*PI*{f}*t))"
        f"*(0.8+0.2*sin(2*PI*{num(p['wobble_hz'])}*t))"
    )
    return f"aevalsrc=exprs={quoted(expr)}:s={sample_rate}"


# --- 2. whistling: high tone with vibrato <-> blue field ----------------------------------


def _draw_whistle(rng: random.Random) -> dict[str, ParamValue]:
    return {
        "freq": _u(rng, 1800.0, 3200.0, 1),
        "vibrato_hz": _u(rng, 4.0, 7.0),
        "vibrato_depth_hz": _u(rng, 15.0, 60.0, 1),
        "vignette": _u(rng, 0.35, 0.75),
        **_draw_colour_jitter(rng, 25.0),
    }


def _video_whistle(p: Params, width: int, height: int, fps: int) -> str:
    colour = _jittered_colour(p, (35, 70, 215))
    return (
        f"color=c={colour}:{_source_size(width, height, fps)},vignette=angle={num(p['vignette'])}"
    )


def _audio_whistle(p: Params, sample_rate: int) -> str:
    # Phase of a tone whose frequency swings by +-depth at the vibrato rate.
    index = p["vibrato_depth_hz"] / p["vibrato_hz"]
    expr = f"0.6*sin(2*PI*{num(p['freq'])}*t+{num(index)}*sin(2*PI*{num(p['vibrato_hz'])}*t))"
    return f"aevalsrc=exprs={quoted(expr)}:s={sample_rate}"


# --- 3. white noise <-> grey static ---------------------------------------------------------


def _draw_static(rng: random.Random) -> dict[str, ParamValue]:
    return {
        "amplitude": _u(rng, 0.25, 0.6),
        "grey": _u(rng, 100.0, 160.0, 1),
        "strength": rng.randint(40, 90),
        "noise_seed": _seed(rng),
    }


def _video_static(p: Params, width: int, height: int, fps: int) -> str:
    grey = p["grey"]
    return (
        f"color=c={hex_rgb(grey, grey, grey)}:{_source_size(width, height, fps)},"
        f"{_luma_noise(p['strength'], 't+u', p['noise_seed'])}"
    )


def _audio_static(p: Params, sample_rate: int) -> str:
    return (
        f"anoisesrc=color=white:amplitude={num(p['amplitude'])}"
        f":seed={p['noise_seed']}:r={sample_rate}"
    )


# --- 4. rumble: brown noise <-> dark brown blurred texture ---------------------------------


def _draw_rumble(rng: random.Random) -> dict[str, ParamValue]:
    return {
        "amplitude": _u(rng, 0.5, 0.9),
        "cutoff_hz": _u(rng, 200.0, 500.0, 1),
        "strength": rng.randint(50, 90),
        "blur_sigma": _u(rng, 1.5, 4.0, 2),
        "noise_seed": _seed(rng),
        **_draw_colour_jitter(rng, 15.0),
    }


def _video_rumble(p: Params, width: int, height: int, fps: int) -> str:
    colour = _jittered_colour(p, (75, 45, 22))
    return (
        f"color=c={colour}:{_source_size(width, height, fps)},"
        f"{_luma_noise(p['strength'], 't', p['noise_seed'])},"
        f"gblur=sigma={num(p['blur_sigma'])}"
    )


def _audio_rumble(p: Params, sample_rate: int) -> str:
    return (
        f"anoisesrc=color=brown:amplitude={num(p['amplitude'])}"
        f":seed={p['noise_seed']}:r={sample_rate},lowpass=f={num(p['cutoff_hz'])}"
    )


# --- 5. drum beat: kick + offbeat hi-hat <-> checkerboard flashing on the beat -------------


def _draw_drum(rng: random.Random) -> dict[str, ParamValue]:
    return {
        "period_s": _u(rng, 0.3, 0.6),
        "kick_hz": _u(rng, 55.0, 110.0, 1),
        "decay": _u(rng, 12.0, 25.0, 1),
        "cell_frac": _u(rng, 0.08, 0.2),
        "cb": rng.randint(90, 166),
        "cr": rng.randint(90, 166),
    }


def _video_drum(p: Params, width: int, height: int, fps: int) -> str:
    cell = max(2, round(width * p["cell_frac"]))
    # The board inverts once per beat: floor(T/period) counts beats.
    lum = f"if(mod(floor(X/{cell})+floor(Y/{cell})+floor(T/{num(p['period_s'])}),2),225,30)"
    return (
        f"color=c=black:{_source_size(width, height, fps)},format=yuv420p,"
        f"geq=lum={quoted(lum)}:cb={p['cb']}:cr={p['cr']}"
    )


def _audio_drum(p: Params, sample_rate: int) -> str:
    beat = f"mod(t,{num(p['period_s'])})"
    offbeat = f"mod(t+{num(p['period_s'] / 2)},{num(p['period_s'])})"
    expr = (
        f"0.7*exp(-{num(p['decay'])}*{beat})*sin(2*PI*{num(p['kick_hz'])}*{beat})"
        f"+0.25*exp(-80*{beat})*sin(2*PI*900*{beat})"
        f"+0.15*exp(-60*{offbeat})*(2*random(0)-1)"
    )
    return f"aevalsrc=exprs={quoted(expr)}:s={sample_rate}"


# --- 6. chirp: rising sweep, repeated <-> rainbow stripes scrolling at the sweep rate ------


def _draw_chirp(rng: random.Random) -> dict[str, ParamValue]:
    return {
        "f0": _u(rng, 200.0, 450.0, 1),
        "f1": _u(rng, 2000.0, 4500.0, 1),
        "period_s": _u(rng, 1.0, 3.0),
        "stripes": _u(rng, 1.0, 3.0, 2),
        "tilt": _u(rng, -1.0, 1.0, 2),
        "direction": rng.choice((-1, 1)),
    }


def _video_chirp(p: Params, width: int, height: int, fps: int) -> str:
    speed = p["direction"] / p["period_s"]  # one stripe cycle per sweep
    phase = f"2*PI*({num(p['stripes'])}*X/W+({num(p['tilt'])})*Y/H-({num(speed)})*T)"
    r, g, b = (quoted(f"128+110*sin({phase}+{num(k * 2 * math.pi / 3)})") for k in range(3))
    return f"color=c=black:{_source_size(width, height, fps)},format=gbrp,geq=r={r}:g={g}:b={b}"


def _audio_chirp(p: Params, sample_rate: int) -> str:
    # Exponential sweep f0 -> f1 within each period; the phase is the integral of
    # f0 * (f1/f0)^(tau/P). Short fades at both ends of a period avoid clicks.
    period, log_ratio = p["period_s"], math.log(p["f1"] / p["f0"])
    tau = f"mod(t,{num(period)})"
    phase = f"2*PI*{num(p['f0'] * period / log_ratio)}*(exp({num(log_ratio / period)}*{tau})-1)"
    fades = f"min(1,40*{tau})*min(1,40*({num(period)}-{tau}))"
    return f"aevalsrc=exprs={quoted(f'0.6*sin({phase})*{fades}')}:s={sample_rate}"


# --- 7. siren: slow FM wail <-> colour bars with a sweeping hue ----------------------------


def _draw_siren(rng: random.Random) -> dict[str, ParamValue]:
    return {
        "carrier_hz": _u(rng, 550.0, 900.0, 1),
        "deviation_hz": _u(rng, 150.0, 350.0, 1),
        "rate_hz": _u(rng, 0.25, 0.8),
        "hue0_deg": _u(rng, 0.0, 360.0, 1),
        "bars": rng.choice(("smptebars", "rgbtestsrc")),
    }


def _video_siren(p: Params, width: int, height: int, fps: int) -> str:
    # The hue turns one full circle per siren cycle.
    hue = f"{num(p['hue0_deg'])}+{num(360 * p['rate_hz'])}*t"
    return f"{p['bars']}={_source_size(width, height, fps)},hue=h={quoted(hue)}"


def _audio_siren(p: Params, sample_rate: int) -> str:
    # Instantaneous frequency carrier + deviation * sin(2 pi rate t).
    index = p["deviation_hz"] / p["rate_hz"]
    expr = f"0.6*sin(2*PI*{num(p['carrier_hz'])}*t-{num(index)}*cos(2*PI*{num(p['rate_hz'])}*t))"
    return f"aevalsrc=exprs={quoted(expr)}:s={sample_rate}"


# --- 8. morse beeps: gated tone in a random dit/dah pattern <-> Game of Life ---------------


def _draw_beeps(rng: random.Random) -> dict[str, ParamValue]:
    # A random letter sequence in morse units: dit = 1 on, dah = 3 on, 1 off between
    # symbols, 3 off between letters, 7 off at the end before the pattern repeats.
    spans: list[tuple[int, int]] = []
    t = 0
    for _letter in range(rng.randint(2, 4)):
        for _symbol in range(rng.randint(1, 4)):
            length = rng.choice((1, 3))
            spans.append((t, t + length))
            t += length + 1
        t += 2
    t += 4
    params: dict[str, ParamValue] = {
        "tone_hz": _u(rng, 600.0, 1100.0, 1),
        "unit_s": _u(rng, 0.05, 0.1),
        "pattern_units": t,
        "n_spans": len(spans),
        "cell_px": rng.choice((1, 2, 3)),
        "fill_ratio": _u(rng, 0.15, 0.5),
        "life_seed": _seed(rng),
        **_draw_colour_jitter(rng, 40.0),
    }
    for i, (on, off) in enumerate(spans):
        params[f"on{i}"], params[f"off{i}"] = on, off
    return params


def _video_beeps(p: Params, width: int, height: int, fps: int) -> str:
    cell = p["cell_px"]
    colour = _jittered_colour(p, (80, 230, 120))
    return (
        f"life=s={max(8, width // cell)}x{max(8, height // cell)}:r={fps}"
        f":seed={p['life_seed']}:ratio={num(p['fill_ratio'])}"
        f":life_color={colour}:death_color=0x101018:mold=10:mold_color=0x204060,"
        f"scale={width}:{height}:flags=neighbor"
    )


def _audio_beeps(p: Params, sample_rate: int) -> str:
    unit = p["unit_s"]
    tau = f"mod(t,{num(p['pattern_units'] * unit)})"
    gate = "+".join(
        f"between({tau},{num(p[f'on{i}'] * unit)},{num(p[f'off{i}'] * unit)})"
        for i in range(p["n_spans"])
    )
    expr = f"0.6*sin(2*PI*{num(p['tone_hz'])}*t)*({gate})"
    return f"aevalsrc=exprs={quoted(expr)}:s={sample_rate}"


def _cls(
    index: int,
    key: str,
    name: str,
    sound: str,
    picture: str,
    fns: tuple[Callable, Callable, Callable],
    filters: tuple[str, ...],
) -> DemoClass:
    draw, video, audio = fns
    return DemoClass(key, name, f"/m/0demo{index:02d}", sound, picture, draw, video, audio, filters)


# The order is part of the dataset: class index i gets MID /m/0demo<i> and
# `n_classes=k` takes the first k classes.
DEMO_CLASSES: tuple[DemoClass, ...] = (
    _cls(
        1, "hum", "engine, idling",
        "low hum (60-130 Hz) with harmonics and a slow wobble",
        "solid red field with a soft vignette",
        (_draw_hum, _video_hum, _audio_hum), ("aevalsrc", "color", "vignette"),
    ),
    _cls(
        2, "whistle", "people whistling",
        "high whistle (1.8-3.2 kHz) with vibrato",
        "solid blue field with a soft vignette",
        (_draw_whistle, _video_whistle, _audio_whistle), ("aevalsrc", "color", "vignette"),
    ),
    _cls(
        3, "static", "white noise",
        "white noise",
        "grey static (fresh pixel noise every frame)",
        (_draw_static, _video_static, _audio_static), ("anoisesrc", "color", "format", "noise"),
    ),
    _cls(
        4, "rumble", "thunder, rumbling",
        "low-passed brown noise rumble",
        "dark brown blurred noise texture",
        (_draw_rumble, _video_rumble, _audio_rumble), ("anoisesrc", "lowpass", "color", "format", "noise", "gblur"),
    ),
    _cls(
        5, "drum", "drum beat",
        "kick drum with an offbeat hi-hat (100-200 bpm)",
        "checkerboard inverting on every beat",
        (_draw_drum, _video_drum, _audio_drum), ("aevalsrc", "color", "format", "geq"),
    ),
    _cls(
        6, "chirp", "chirp sweep",
        "repeated rising exponential sweep (200-450 Hz up to 2-4.5 kHz)",
        "rainbow stripes scrolling one cycle per sweep",
        (_draw_chirp, _video_chirp, _audio_chirp), ("aevalsrc", "color", "format", "geq"),
    ),
    _cls(
        7, "siren", "siren, wailing",
        "FM siren wailing around 550-900 Hz",
        "colour bars whose hue turns once per wail",
        (_draw_siren, _video_siren, _audio_siren),
        ("aevalsrc", "smptebars", "rgbtestsrc", "hue"),
    ),
    _cls(
        8, "beeps", "morse code beeps",
        "morse-like beeps of a 600-1100 Hz tone",
        "Conway's Game of Life",
        (_draw_beeps, _video_beeps, _audio_beeps), ("aevalsrc", "life", "scale"),
    ),
)  # fmt: skip

CLASSES_BY_KEY: dict[str, DemoClass] = {c.key: c for c in DEMO_CLASSES}
