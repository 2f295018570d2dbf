"""The study page: one self-contained HTML file that plays the trials and records answers.

Images (PNG) and audio (WAV) are embedded as ``data:`` URIs, answers live in the browser's
localStorage under the study id, and an export button downloads them as CSV (``study_id,
trial_id, choice, session_id, timestamp``), asking first when trials are left unanswered.
The page holds nothing that tells the sides (or a catch trial's real frames, JPEG) apart:
media get opaque ids in shuffled order; clip ids, runs, kinds and the match side are only in
the answer key (:mod:`wavbrivl.sheets.study`).
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from wavbrivl.sheets.trials import Trial

DEFAULT_TITLE = "Which picture goes with the sound?"


def data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def page_data(
    study_id: str,
    trials: Sequence[Trial],
    audio_uris: dict[str, str],
    image_uris: dict[tuple[str, str], str],
    *,
    show_labels: bool,
    seed: int,
) -> dict[str, Any]:
    """The JSON the page runs on: trials reference media by opaque ids only.

    ``audio_uris`` is keyed by clip id, ``image_uris`` by (source, clip id): the source is a
    run, or :data:`~wavbrivl.sheets.trials.REAL` for the real frames of catch trials. Ids are numbered in
    a seeded shuffled order, so an id says nothing about which clip or side it is.
    """
    rng = np.random.default_rng([seed, 1])
    audio_sorted, image_sorted = sorted(audio_uris), sorted(image_uris)
    audio_keys = [audio_sorted[i] for i in rng.permutation(len(audio_sorted))]
    image_keys = [image_sorted[i] for i in rng.permutation(len(image_sorted))]
    audio_ids = {key: f"a{i}" for i, key in enumerate(audio_keys)}
    image_ids = {key: f"i{i}" for i, key in enumerate(image_keys)}
    page_trials = []
    for t in trials:
        entry = {
            "trial_id": t.trial_id,
            "audio": audio_ids[t.clip_id],
            "left": image_ids[(t.left_source, t.left_clip_id)],
            "right": image_ids[(t.right_source, t.right_clip_id)],
        }
        if show_labels:
            entry["label"] = t.label
        page_trials.append(entry)
    return {
        "study_id": study_id,
        "show_labels": show_labels,
        "trials": page_trials,
        "audio": {audio_ids[k]: audio_uris[k] for k in audio_keys},
        "images": {image_ids[k]: image_uris[k] for k in image_keys},
    }


def script_safe_json(value: Any) -> str:
    """JSON that cannot end its ``<script>`` element: ``<``, ``>``, ``&`` become \\u escapes."""
    text = json.dumps(value, ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escape)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render_page(data: dict[str, Any], title: str = DEFAULT_TITLE) -> str:
    """The study page. Text from data reaches the DOM only through ``textContent``."""
    return (
        _PAGE.replace("@TITLE@", html.escape(title))
        .replace("@STYLE@", _STYLE)
        .replace("@DATA@", script_safe_json(data))
        .replace("@SCRIPT@", _SCRIPT)
    )


# --- the page itself (plain HTML/CSS/JS, no external resource) -----------------------------

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>@TITLE@</title>
<style>@STYLE@</style>
</head>
<body>
<main>
<h1>@TITLE@</h1>
<p class="help">Play the sound, then pick the picture that goes with it: <b>this one</b> (left),
<b>that one</b> (right), or <b>neither</b>. Keys: 1, 2, 3. Your answers stay in this browser
until you export them.</p>
<p id="storage-warning" class="warning" hidden>This browser does not keep answers for this page:
export them before you close it.</p>
<p id="progress" class="progress"></p>
<p id="label" class="label" hidden>Sound: <span id="label-text"></span></p>
<audio id="clip" controls preload="auto"></audio>
<div class="pair">
  <figure><img id="left-image" alt="left picture">
    <button id="choose-left" type="button" data-choice="left">this one</button></figure>
  <figure><img id="right-image" alt="right picture">
    <button id="choose-right" type="button" data-choice="right">that one</button></figure>
</div>
<p class="center"><button id="choose-neither" type="button" data-choice="neither">neither</button></p>
<nav class="center">
  <button id="prev" type="button">&larr; previous</button>
  <button id="next" type="button">next &rarr;</button>
</nav>
<p id="status" class="status" role="status"></p>
<p class="center">
  <button id="export" type="button">Export answers (CSV)</button>
  <button id="new-session" type="button">Start a new session</button>
  <a id="download" hidden></a>
</p>
</main>
<script type="application/json" id="study-data">@DATA@</script>
<script>@SCRIPT@</script>
</body>
</html>
"""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 0; background: #fafafa; color: #222; }
main { max-width: 60rem; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.4rem; }
.help { color: #444; }
.warning { background: #fff3cd; padding: 0.5rem; }
.progress, .label { font-weight: 600; }
audio { width: 100%; margin: 0.5rem 0; }
.pair { display: flex; gap: 1rem; justify-content: center; }
figure { margin: 0; flex: 1 1 0; text-align: center; max-width: 24rem; }
figure img { width: 100%; aspect-ratio: 1; object-fit: contain; background: #eee;
             border: 3px solid transparent; }
button { font-size: 1.05rem; padding: 0.5rem 1.2rem; margin: 0.4rem; cursor: pointer; }
button.chosen { background: #2b6cb0; color: white; }
.center { text-align: center; }
.status { text-align: center; min-height: 1.5em; }
"""

_SCRIPT = """
"use strict";
(() => {
  const data = JSON.parse(document.getElementById("study-data").textContent);
  const trials = data.trials;
  const CHOICES = ["left", "right", "neither"];
  const storeKey = "wavbrivl-study:" + data.study_id;
  const byId = (id) => document.getElementById(id);
  let storageOk = true;

  function randomId() {
    const bytes = new Uint8Array(8);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }
  function freshState() {
    return { session_id: randomId(), answers: {}, position: 0 };
  }
  function loadState() {
    try {
      const saved = JSON.parse(localStorage.getItem(storeKey) || "null");
      if (saved && typeof saved.session_id === "string" && saved.answers) return saved;
    } catch (err) {
      storageOk = false;
    }
    return freshState();
  }
  function saveState() {
    try {
      localStorage.setItem(storeKey, JSON.stringify(state));
    } catch (err) {
      storageOk = false;
    }
    byId("storage-warning").hidden = storageOk;
  }
  const answeredCount = () => trials.filter((t) => t.trial_id in state.answers).length;

  function nextUnanswered(from) {
    for (let step = 1; step <= trials.length; step++) {
      const i = (from + step) % trials.length;
      if (!(trials[i].trial_id in state.answers)) return i;
    }
    return null;
  }

  function show(position) {
    state.position = Math.max(0, Math.min(trials.length - 1, position));
    const trial = trials[state.position];
    byId("progress").textContent =
      `Trial ${state.position + 1} of ${trials.length} \\u00b7 ${answeredCount()} answered`;
    byId("clip").src = data.audio[trial.audio];
    byId("left-image").src = data.images[trial.left];
    byId("right-image").src = data.images[trial.right];
    byId("label").hidden = !data.show_labels;
    byId("label-text").textContent = data.show_labels ? trial.label : "";
    const answer = state.answers[trial.trial_id];
    for (const choice of CHOICES) {
      byId("choose-" + choice).classList.toggle("chosen", !!answer && answer.choice === choice);
    }
    byId("prev").disabled = state.position === 0;
    byId("next").disabled = state.position === trials.length - 1;
    saveState();
  }

  function answer(choice) {
    const trial = trials[state.position];
    state.answers[trial.trial_id] = { choice: choice, timestamp: new Date().toISOString() };
    saveState();
    const next = nextUnanswered(state.position);
    if (next === null) {
      show(state.position);
      byId("status").textContent = "All trials answered. Please export your answers.";
    } else {
      show(next);
    }
  }

  function csvField(value) {
    const text = String(value);
    return /[",\\r\\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }
  function exportCsv() {
    const missing = trials.length - answeredCount();
    if (missing > 0 && !confirm(
      `${missing} of ${trials.length} trials are not answered yet. Export the answers so far?`
    )) {
      byId("status").textContent = "Export cancelled.";
      return;
    }
    const rows = [["study_id", "trial_id", "choice", "session_id", "timestamp"]];
    for (const trial of trials) {
      const a = state.answers[trial.trial_id];
      if (a) rows.push([data.study_id, trial.trial_id, a.choice, state.session_id, a.timestamp]);
    }
    const text = rows.map((row) => row.map(csvField).join(",")).join("\\n") + "\\n";
    const link = byId("download");
    link.href = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
    link.download = `answers_${data.study_id}_${state.session_id}.csv`;
    link.click();
    byId("status").textContent = `Exported ${rows.length - 1} answers.`;
  }

  function newSession() {
    if (!confirm("Start a new session? Export this session's answers first.")) return;
    try {  // keep the old session in the browser too, in case it was not exported
      localStorage.setItem(storeKey + ":session:" + state.session_id, JSON.stringify(state));
    } catch (err) {
      storageOk = false;
    }
    state = freshState();
    byId("status").textContent = "New session started.";
    show(0);
  }

  for (const choice of CHOICES) {
    byId("choose-" + choice).addEventListener("click", () => answer(choice));
  }
  byId("prev").addEventListener("click", () => show(state.position - 1));
  byId("next").addEventListener("click", () => show(state.position + 1));
  byId("export").addEventListener("click", exportCsv);
  byId("new-session").addEventListener("click", newSession);
  document.addEventListener("keydown", (event) => {
    const index = ["1", "2", "3"].indexOf(event.key);
    if (index >= 0 && !event.altKey && !event.ctrlKey && !event.metaKey) answer(CHOICES[index]);
  });
  let state = loadState();
  show(state.position || 0);
})();
"""
