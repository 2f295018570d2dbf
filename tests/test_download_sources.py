"""The source block: its shapes, its one-line errors, and the file names patterns give a clip."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from wavbrivl.download.sources import (
    DEFAULT_PATTERNS,
    FolderStep,
    SourceConfigError,
    TarStep,
    UrlStep,
    check_pattern,
    check_steps,
    describe,
    file_names,
    holds_clip,
    load_source,
    mirror_steps,
    parse_source,
    pattern_start,
    url_step,
)

YT = "https://www.youtube.com/watch?v={id}"


def write_tar(path: Path, members: dict[str, bytes], gz: bool = False) -> Path:
    with tarfile.open(path, "w:gz" if gz else "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


# -- shapes ----------------------------------------------------------------------------------


def test_old_forms_stay_one_url_step():
    assert parse_source({"url_template": YT}) == [UrlStep("youtube", url_template=YT)]
    assert parse_source({"url_template": "http://mirror/{id}.mp4"}) == [
        UrlStep("url", url_template="http://mirror/{id}.mp4")
    ]
    assert parse_source({"url_template": "https://youtu.be/{id}"})[0].name == "youtube"
    assert parse_source({"mapping_csv": "m.csv"}) == [UrlStep("url", mapping_csv="m.csv")]


def test_folder_and_tar_steps(tmp_path):
    (tmp_path / "b.tar").write_bytes(b"")
    (tmp_path / "a.tar").write_bytes(b"")
    folder = parse_source({"folder": "/data/v", "patterns": ["{ytid}.mkv"], "name": "local"})
    assert folder == [FolderStep("local", Path("/data/v"), ("{ytid}.mkv",))]
    # Unset patterns: the VGGSound mirror names, then the bare id.
    assert parse_source({"folder": "v"})[0].patterns == DEFAULT_PATTERNS
    assert DEFAULT_PATTERNS == ("{ytid}_{start:06d}.mp4", "{ytid}.mp4")
    # A single pattern string is a list of one.
    assert parse_source({"folder": "v", "patterns": "{ytid}.mp4"})[0].patterns == ("{ytid}.mp4",)
    # A glob expands sorted; a list keeps its order; a shard named twice is read once.
    glob_step = parse_source({"tar": str(tmp_path / "*.tar")})[0]
    assert glob_step == TarStep("tar", (tmp_path / "a.tar", tmp_path / "b.tar"), DEFAULT_PATTERNS)
    listed = parse_source({"tar": ["z.tar", str(tmp_path / "*.tar"), "z.tar"]})[0]
    assert listed.paths == (Path("z.tar"), tmp_path / "a.tar", tmp_path / "b.tar")
    assert parse_source({"tar": "one.tar.gz"})[0].paths == (Path("one.tar.gz"),)


def test_chain_order_and_names():
    steps = parse_source(
        {"chain": [{"folder": "v"}, {"tar": "s.tar", "name": "hf"}, {"url_template": YT}]}
    )
    assert [type(s) for s in steps] == [FolderStep, TarStep, UrlStep]
    assert [s.name for s in steps] == ["folder", "hf", "youtube"]
    assert url_step(steps) is steps[2]
    assert mirror_steps(steps) == steps[:2]
    mirrors_only = parse_source({"chain": [{"folder": "v"}, {"folder": "w", "name": "w"}]})
    assert url_step(mirrors_only) is None
    assert url_step([]) is None
    assert mirror_steps(parse_source({"url_template": YT})) == []


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ("x", r"^source: expected a mapping"),
        ({}, r"^source: give exactly one key of url_template, mapping_csv, folder, tar"),
        ({"url_template": YT, "folder": "v"}, r"exactly one key"),
        (
            {"chain": [{"folder": "v"}], "folder": "v", "name": "x"},
            r"^source: 'chain' cannot be combined with \['folder', 'name'\]$",
        ),
        ({"chain": []}, r"^source\.chain: expected a non-empty list"),
        ({"chain": {"folder": "v"}}, r"^source\.chain: expected a non-empty list"),
        ({"chain": ["v"]}, r"^source\.chain\[0\]: expected a mapping"),
        (
            {"chain": [{"url_template": YT}, {"folder": "v"}]},
            r"^source\.chain: at most one url_template/mapping_csv step, and it must be the last "
            r"\(the mirrors are tried first\)$",
        ),
        ({"chain": [{"url_template": YT}, {"mapping_csv": "m"}]}, r"at most one"),
        ({"chain": [{"folder": "v"}, {"folder": "w"}]}, r"two steps are named 'folder'"),
        ({"folder": "v", "url_template": YT}, r"exactly one key"),
        ({"folder": "v", "pattern": "{ytid}"}, r"^source: unknown key\(s\) \['pattern'\]"),
        ({"url_template": YT, "patterns": ["{ytid}"]}, r"unknown key\(s\) \['patterns'\]"),
        ({"folder": "v", "name": " "}, r"^source\.name: expected a non-empty string"),
        ({"folder": "v", "name": 3}, r"^source\.name: expected a non-empty string"),
        ({"url_template": ""}, r"^source\.url_template: expected a non-empty string"),
        ({"mapping_csv": 5}, r"^source\.mapping_csv: expected a non-empty string"),
        ({"url_template": "http://x/"}, r"lacks the '\{id\}' placeholder"),
        ({"folder": ""}, r"^source\.folder: expected a path"),
        ({"folder": 7}, r"^source\.folder: expected a path"),
        ({"folder": "v", "patterns": []}, r"^source\.patterns: expected a non-empty list"),
        ({"folder": "v", "patterns": 4}, r"^source\.patterns: expected a non-empty list"),
        ({"folder": "v", "patterns": ["{ytid}.mp4", "{start}.mp4"]}, r"^source\.patterns\[1\]:"),
        ({"tar": []}, r"^source\.tar: expected a path, a glob or a list"),
        ({"tar": ["a.tar", ""]}, r"^source\.tar: expected a path, a glob or a list"),
        ({"tar": ["a.tar", 3]}, r"^source\.tar: expected a path"),
        ({"tar": 3}, r"^source\.tar: expected a path"),
        (
            {"tar": "/nonexistent-dir-xyz/*.tar"},
            r"glob '/nonexistent-dir-xyz/\*\.tar' matches no file",
        ),
    ],
)
def test_bad_shapes_name_the_key(cfg, message):
    with pytest.raises(SourceConfigError, match=message) as info:
        parse_source(cfg)
    assert "\n" not in str(info.value)


def test_chain_errors_name_the_step():
    with pytest.raises(SourceConfigError, match=r"^datasets\.v\.source\.chain\[1\]\.patterns\[0\]"):
        parse_source(
            {"chain": [{"folder": "a"}, {"folder": "b", "name": "b", "patterns": ["x"]}]},
            key="datasets.v.source",
        )


# -- patterns --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("{start:06d}.mp4", r"lacks '\{ytid\}'"),
        ("clip.mp4", r"lacks '\{ytid\}'"),
        ("{ytid}_{end}.mp4", r"not a usable pattern"),
        ("{ytid}_{start:q}.mp4", r"not a usable pattern"),
        ("{ytid.x}.mp4", r"not a usable pattern"),
        ("{ytid[0]}.mp4", r"uses unknown field\(s\) \['ytid\[0\]'\]"),
        ("{ytid}{start[0]}.mp4", r"not a usable pattern"),
        ("{ytid}_{0}.mp4", r"not a usable pattern"),
        ("{ytid.mp4", r"not a usable pattern"),
        ("/abs/{ytid}.mp4", r"must name a file inside the source"),
        ("../{ytid}.mp4", r"must name a file inside the source"),
        ("a/../../{ytid}.mp4", r"must name a file inside the source"),
        ("sub\\{ytid}.mp4", r"must name a file inside the source"),
        ("", r"expected a file-name pattern"),
        (None, r"expected a file-name pattern"),
    ],
)
def test_bad_patterns(pattern, message):
    with pytest.raises(SourceConfigError, match=r"^k: .*" + message):
        check_pattern(pattern, "k")


def test_default_keys_name_the_block(tmp_path):
    with pytest.raises(SourceConfigError, match=r"^pattern: 'x' lacks"):
        check_pattern("x")
    with pytest.raises(SourceConfigError, match=r"^source: mirror folder"):
        check_steps([FolderStep("f", tmp_path / "no", ("{ytid}",))])
    with pytest.raises(SourceConfigError, match=r"^source: mirror folder"):
        load_source({"folder": str(tmp_path / "no")})
    with pytest.raises(SourceConfigError, match=r"^source\.patterns\[0\]"):
        load_source({"folder": str(tmp_path), "patterns": ["x"]})
    with pytest.raises(SourceConfigError, match=r"^ds\.patterns\[0\]"):
        load_source({"folder": str(tmp_path), "patterns": ["x"]}, "ds")


def test_good_patterns_pass_through():
    for pattern in [
        "{ytid}.mp4",
        "video/{ytid}_{start:06d}.mp4",
        "{clip_id}-{ytid}.webm",
        "a..{ytid}",
        "{ytid}{clip_id:>12}",  # a format spec a string takes
    ]:
        assert check_pattern(pattern) == pattern


def test_file_names_in_pattern_order():
    patterns = ("{ytid}_{start:06d}.mp4", "{ytid}.mp4", "x/{clip_id}.mkv", "{ytid}_{start}.mp4")
    assert file_names(patterns, "abc", 30.0, "abc_30000") == [
        "abc_000030.mp4",
        "abc.mp4",
        "x/abc_30000.mkv",
        "abc_30.mp4",
    ]
    # Whole seconds, rounded down (VGGSound's starts are whole; AudioSet's may not be).
    assert file_names(("{ytid}_{start}",), "abc", 30.9, "c") == ["abc_30"]
    assert file_names(("{ytid}_{start}",), "abc", 29.9999999, "c") == ["abc_30"]
    assert file_names(("{ytid}_{start}",), "abc", 29.99, "c") == ["abc_29"]
    assert pattern_start(0.0) == 0 and pattern_start(7) == 7 and pattern_start(-0.5) == -1


@pytest.mark.parametrize(
    ("ytid", "start", "clip_id"),
    [
        ("../etc", 0, "c"),
        ("a/b", 0, "c"),
        (None, 0, "c"),
        ("abc", 0, "../c"),
        ("abc", 0, None),
        ("abc", float("nan"), "c"),
        ("abc", float("inf"), "c"),
        ("abc", "x", "c"),
        ("abc", None, "c"),
    ],
)
def test_unusable_ids_are_never_looked_up(ytid, start, clip_id):
    assert file_names(("{ytid}_{start}.mp4",), ytid, start, clip_id) == []


def test_holds_clip():
    assert holds_clip("{ytid}_{start:06d}.mp4")
    assert holds_clip("{clip_id}.mp4")
    assert not holds_clip("{ytid}.mp4")
    assert not holds_clip("start/{ytid}.mp4")


def test_describe():
    assert describe(FolderStep("local", Path("/d"), ("p",))) == "folder 'local' (/d)"
    assert describe(TarStep("hf", (Path("a"), Path("b")), ("p",))) == "tar 'hf' (2 shard(s))"
    assert describe(UrlStep("youtube", url_template=YT)) == "url 'youtube'"


# -- the files, before any job ---------------------------------------------------------------


def test_check_steps_accepts_real_mirrors(tmp_path):
    write_tar(tmp_path / "a.tar", {"x.mp4": b"1"})
    write_tar(tmp_path / "b.tar.gz", {"y.mp4": b"2"}, gz=True)
    (tmp_path / "v").mkdir()
    cfg = {
        "chain": [
            {"folder": str(tmp_path / "v")},
            {"tar": str(tmp_path / "*.tar*")},
            {"url_template": YT},
        ]
    }
    steps = load_source(cfg)
    assert steps[1].paths == (tmp_path / "a.tar", tmp_path / "b.tar.gz")


def test_check_steps_refuses_bad_mirrors(tmp_path):
    key = "datasets.vgg.source"
    missing = tmp_path / "nope"
    with pytest.raises(
        SourceConfigError, match=rf"^{key}: mirror folder '{missing}' does not exist$"
    ):
        load_source({"folder": str(missing)}, key)
    (tmp_path / "file").write_text("x")
    with pytest.raises(SourceConfigError, match=r"mirror folder '.*file' is not a folder$"):
        load_source({"folder": str(tmp_path / "file")}, key)
    with pytest.raises(
        SourceConfigError, match=rf"^{key}: tar shard '.*gone\.tar' does not exist$"
    ):
        load_source({"tar": str(tmp_path / "gone.tar")}, key)
    (tmp_path / "dir.tar").mkdir()
    with pytest.raises(SourceConfigError, match=r"dir\.tar' does not exist"):
        load_source({"tar": str(tmp_path / "dir.tar")}, key)
    fake = tmp_path / "fake.tar"
    fake.write_bytes(b"this is not a tar archive\n" * 100)
    with pytest.raises(
        SourceConfigError, match=rf"^{key}: '{fake}' is not a tar or tar.gz archive$"
    ):
        load_source({"tar": str(fake)}, key)
    good = write_tar(tmp_path / "good.tar.gz", {"x.mp4": b"1" * 5000}, gz=True)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(good.read_bytes()[:12])  # a gzip header and nothing to decompress
    with pytest.raises(SourceConfigError, match=r"cut\.tar\.gz' is not a tar or tar.gz archive"):
        load_source({"tar": [str(good), str(cut)]}, key)
    gz_text = tmp_path / "text.tar.gz"
    gz_text.write_bytes(gzip.compress(b"hello\n" * 200))
    with pytest.raises(SourceConfigError, match=r"text\.tar\.gz' is not a tar"):
        check_steps(parse_source({"tar": str(gz_text)}), key)
    # The chain's later steps are checked too; a URL step has nothing to check.
    with pytest.raises(SourceConfigError, match="does not exist"):
        load_source({"chain": [{"url_template": YT}]} | {"chain": [{"folder": str(missing)}]})
    assert load_source({"url_template": YT}) == [UrlStep("youtube", url_template=YT)]
