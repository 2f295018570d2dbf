"""The two-choice study page in a real browser (Debian's chromium driven by Playwright).

Loads the page from file://, plays a clip, answers every trial through the buttons, exports
the CSV through the page's Blob link, checks the answers survive a reload, and runs the
Table-1 analysis on the export. Set WAVBRIVL_STUDY_SCREENSHOT=/path.png to keep a screenshot.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import cannot_run
from test_sheets import CLIPS, EVIL_LABEL, make_study, other_side
from test_sheets_study_v2 import make_media_with_frames, two_runs

from wavbrivl.sheets.analysis import main as analysis_main
from wavbrivl.sheets.study import read_key, write_study

pytestmark = pytest.mark.slow

try:
    from playwright import sync_api
except ImportError:  # a dev dependency (requirements.txt); absent only in a foreign venv
    sync_api = None
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def ensure_chromium() -> None:
    """Install Debian's chromium when missing and we may (root with apt-get).

    Without root or apt-get the test is skipped locally (and fails under CI); an install
    that was tried and failed is a failure everywhere: this machine should have a browser.
    """
    if sync_api is None:
        cannot_run("playwright is not installed (workflow/bin/setup installs it)")
    if CHROMIUM.is_file():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        cannot_run(
            f"{CHROMIUM} is missing and cannot be installed here: as root, apt-get install chromium"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            pytest.fail(
                f"could not install chromium: {' '.join(argv)}: {done.stderr[-300:]}",
                pytrace=False,
            )
    if not CHROMIUM.is_file():
        pytest.fail(f"apt-get installed chromium but {CHROMIUM} is not there", pytrace=False)


@pytest.fixture
def browser_page():
    ensure_chromium()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        context = browser.new_context(
            accept_downloads=True, viewport={"width": 1000, "height": 900}
        )
        page = context.new_page()
        page.dialogs = []  # anything an injected script would pop up
        page.errors = []
        page.accept_dialogs = False  # a test that expects a question sets it to answer yes
        page.on(
            "dialog",
            lambda d: (
                page.dialogs.append(d.message),
                d.accept() if page.accept_dialogs else d.dismiss(),
            ),
        )
        page.on("pageerror", lambda err: page.errors.append(str(err)))
        yield page
        browser.close()


def planned_choice(index: int, match_side: str) -> str:
    """Answer pattern the test can predict: match, other, neither, match, ..."""
    return [match_side, other_side(match_side), "neither"][index % 3]


def test_study_page_end_to_end(tmp_path, browser_page):
    page = browser_page
    clips = dict(CLIPS)
    clips["evil_0"] = (EVIL_LABEL, (10, 10, 10), 1000.0)
    _, kit = make_study(tmp_path, show_labels=True, clips=clips)
    key = read_key(kit.key_path)
    trials = key["trials"]
    page.goto(kit.html_path.as_uri())
    assert page.inner_text("#progress").startswith(f"Trial 1 of {len(trials)}")

    # The clip plays: play() resolves and the playhead moves.
    position = page.evaluate(
        """async () => {
            const audio = document.getElementById("clip");
            await audio.play();
            await new Promise((done) => setTimeout(done, 500));
            audio.pause();
            return audio.currentTime;
        }"""
    )
    assert position > 0
    if shot := os.environ.get("WAVBRIVL_STUDY_SCREENSHOT"):
        page.screenshot(path=shot, full_page=True)

    seen_evil = False
    for i, trial in enumerate(trials):
        assert page.inner_text("#progress").startswith(f"Trial {i + 1} of {len(trials)}")
        assert page.text_content("#label-text") == trial["label"]
        if trial["label"] == EVIL_LABEL:
            seen_evil = True
            assert page.locator("#label script").count() == 0  # shown as text, not markup
        choice = planned_choice(i, trial["match_side"])
        page.click(
            {"left": "#choose-left", "right": "#choose-right"}.get(choice, "#choose-neither")
        )
    assert seen_evil
    assert page.locator("script").count() == 2  # the page's own two, nothing injected
    assert page.dialogs == [] and page.errors == []
    assert "All trials answered" in page.inner_text("#status")

    with page.expect_download() as download:
        page.click("#export")
    export = tmp_path / "export.csv"
    download.value.save_as(export)
    with open(export, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["study_id", "trial_id", "choice", "session_id", "timestamp"]
    assert [r["trial_id"] for r in rows] == [t["trial_id"] for t in trials]
    assert [r["choice"] for r in rows] == [
        planned_choice(i, t["match_side"]) for i, t in enumerate(trials)
    ]
    assert {r["study_id"] for r in rows} == {key["study_id"]}
    assert len({r["session_id"] for r in rows}) == 1

    # Answers are kept in the browser: a reload still knows them and the session.
    page.reload()
    assert f"{len(trials)} answered" in page.inner_text("#progress")
    with page.expect_download() as again:
        page.click("#export")
    assert Path(again.value.path()).read_text() == export.read_text()

    out = tmp_path / "table1.md"
    assert analysis_main([str(export), "--key", str(kit.key_path), "--out", str(out)]) == 0
    table = out.read_text()
    for run in key["runs"]:
        ids = [i for i, t in enumerate(trials) if t["run"] == run]
        positive = 100 * sum(i % 3 == 0 for i in ids) / len(ids)
        assert f"| {run} | 1 | {len(ids)} | {positive:.1f} ({positive:.1f}–{positive:.1f})" in table


def test_a_rater_who_fails_the_catch_trials_is_excluded(tmp_path, browser_page):
    """Keyboard only (1 = left, 2 = right): the rater gets every generated-image trial right
    and every catch trial wrong; exporting half-way asks first (no: nothing is exported,
    yes: the answers so far); the analysis of the full export excludes the rater."""
    page = browser_page
    kit = write_study(
        two_runs(tmp_path),
        [make_media_with_frames(tmp_path / "media.parquet")],
        tmp_path / "study.html",
        tmp_path / "key.json",
        seed=1,
        catch_rate=0.25,
        compare=["enc-a", "enc-b"],
    )
    key = read_key(kit.key_path)
    trials = key["trials"]
    n_catch = sum(t["kind"] == "catch" for t in trials)
    assert n_catch == 6  # 0.25 of 24 trials (12 match + 6 compare + 6 catch)
    page.goto(kit.html_path.as_uri())

    def answer_by_key(trial):
        side = trial["match_side"]
        choice = other_side(side) if trial["kind"] == "catch" else side
        page.keyboard.press({"left": "1", "right": "2"}[choice])
        return choice

    half = len(trials) // 2
    planned = [answer_by_key(t) for t in trials[:half]]
    assert f"{half} answered" in page.inner_text("#progress")

    page.click("#export")  # unfinished: asks, and "no" exports nothing
    assert page.dialogs == [
        f"{len(trials) - half} of {len(trials)} trials are not answered yet. "
        "Export the answers so far?"
    ]
    assert page.inner_text("#status") == "Export cancelled."
    page.accept_dialogs = True
    with page.expect_download() as partial:
        page.click("#export")
    assert len(page.dialogs) == 2
    with open(partial.value.path(), newline="") as fh:
        assert [r["choice"] for r in csv.DictReader(fh)] == planned

    planned += [answer_by_key(t) for t in trials[half:]]
    assert "All trials answered" in page.inner_text("#status")
    page.reload()  # the answers survive a reload
    assert f"{len(trials)} answered" in page.inner_text("#progress")
    with page.expect_download() as download:
        page.click("#export")
    assert len(page.dialogs) == 2  # finished: no question
    assert page.errors == []
    export = tmp_path / "export.csv"
    download.value.save_as(export)
    with open(export, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["choice"] for r in rows] == planned

    out = tmp_path / "table1.md"
    assert analysis_main([str(export), "--key", str(kit.key_path), "--out", str(out)]) == 0
    table = json.loads(out.with_suffix(".json").read_text())
    (rater,) = table["raters"]
    assert rater["session_id"] == rows[0]["session_id"]
    assert (rater["excluded"], rater["n_catch"], rater["n_failed"]) == (True, n_catch, n_catch)
    assert table["runs"] == {}  # the only rater is left out of every row
    assert f"failed {n_catch} of {n_catch} catch trials (100%" in out.read_text()
    # with every failure allowed the same file counts: all positive
    assert (
        analysis_main(
            [str(export), "--key", str(kit.key_path), "--out", str(out), "--max-catch-fail", "1"]
        )
        == 0
    )
    table = json.loads(out.with_suffix(".json").read_text())
    assert table["runs"]["enc-a vs enc-b"]["pooled"]["positive"] == 100.0
    assert table["runs"]["catch trials (real frames)"]["pooled"]["negative"] == 100.0
