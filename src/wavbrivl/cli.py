"""The ``wavbrivl`` command: use a trained run from the shell.

MODEL is a run's ``audio_encoder.pt``, its run folder (``results/models/<run>``) or a folder
written by ``wavbrivl export``. Audio files may be anything ffmpeg reads (wav, flac, mp3,
m4a, the audio track of a video), at any rate and channel count. A file that cannot be used
gets one ``error:`` line on stderr; the others are still processed, and the exit status is
1 if any file failed (2 for a usage or model error). See :mod:`wavbrivl.api` for how audio
of any length is embedded.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXAMPLES = """examples:
  wavbrivl info results/models/demo
  wavbrivl embed-audio results/models/demo dog.wav street.mp3 clip.mp4 -o emb.parquet
  wavbrivl search results/models/demo dog.wav --embeddings results/embeddings/brivl/vggsound/*.parquet -k 5
  wavbrivl classify results/models/demo dog.wav --labels dog,cat,rain --config config/config.yaml
  wavbrivl generate results/models/demo dog.wav --config config/config.yaml -o pictures/
  wavbrivl export results/models/demo exported/demo
"""

EXIT_OK, EXIT_FILES_FAILED, EXIT_ERROR = 0, 1, 2


class CommandError(Exception):
    """A one-line error that stops the command (bad model, bad option value)."""


# -- helpers -------------------------------------------------------------------------------


def _progress(items: Sequence[Any], args: argparse.Namespace, desc: str):
    if args.no_progress or len(items) < 2:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="file", file=sys.stderr, mininterval=1.0)


def _report(path: Path, error: str) -> None:
    from tqdm import tqdm

    message = error if error.startswith(str(path)) else f"{path}: {error}"
    tqdm.write(f"error: {message}", file=sys.stderr)  # keeps a running progress bar intact


def _load(args: argparse.Namespace):
    from wavbrivl.api import load

    return load(args.model, device=args.device, wavlm=args.wavlm)


def _embed_all(model, args: argparse.Namespace, desc: str) -> tuple[list[Path], list, int]:
    paths, rows, failed = [], [], 0
    for path, emb, error in model.embed_files(
        args.files, progress=lambda items: _progress(items, args, desc)
    ):
        if error is not None:
            _report(path, error)
            failed += 1
        else:
            paths.append(path)
            rows.append(emb)
    return paths, rows, failed


def _write_json(value: Any, out: str | None) -> None:
    text = json.dumps(value, indent=1, sort_keys=False)
    if out in (None, "-"):
        print(text)
    else:
        from wavbrivl.atomic import write_text_atomic

        write_text_atomic(Path(out), text + "\n")


def _config_block(path: str, block: str) -> dict[str, Any]:
    """A block of a workflow config file, with the schema's defaults for missing keys."""
    import yaml

    from wavbrivl.configs import block_properties

    try:
        cfg = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CommandError(f"{path}: cannot read the config ({exc})") from None
    given = cfg.get(block) or {}
    defaults = {k: p["default"] for k, p in block_properties(block).items() if "default" in p}
    return {**defaults, **given}


# -- commands ------------------------------------------------------------------------------


def cmd_info(args: argparse.Namespace) -> int:
    model = _load(args)
    info = {k: v for k, v in model.info.items() if k != "train_config"}
    info["min_samples"] = model.min_samples
    _write_json(info, None)
    return EXIT_OK


def cmd_embed_audio(args: argparse.Namespace) -> int:
    if Path(args.output).suffix not in (".parquet", ".json"):
        raise CommandError(f"-o {args.output}: name a .parquet or a .json file")
    model = _load(args)
    paths, rows, failed = _embed_all(model, args, "embed-audio")
    import numpy as np

    matrix = np.stack(rows) if rows else np.zeros((0, model.dim), np.float32)
    out = Path(args.output)
    if out.suffix == ".json":
        _write_json(
            {
                "image_space": model.info["image_space"],
                "embeddings": {str(p): e.tolist() for p, e in zip(paths, matrix, strict=True)},
            },
            str(out),
        )
    else:
        write_audio_embeddings(out, paths, matrix, model.info)
    print(f"wrote {len(paths)} embeddings to {out} ({failed} file(s) failed)", file=sys.stderr)
    return EXIT_FILES_FAILED if failed else EXIT_OK


def write_audio_embeddings(out: Path, paths: Sequence[Path], matrix, info: dict) -> None:
    """Parquet: ``path`` string, ``embedding`` fixed_size_list<float32>[D]; the model's image
    space and fingerprint in the file's key-value metadata (``wavbrivl.*``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from wavbrivl.atomic import atomic_path

    dim = matrix.shape[1]
    meta = {
        "wavbrivl.fingerprint": str(info["image_space"]["fingerprint"]),
        "wavbrivl.dim": str(dim),
        "wavbrivl.audio_model": str(info["model_fingerprint"]),
        "wavbrivl.window_s": str(info["window_s"]),
    }
    flat = pa.array(matrix.reshape(-1).astype("float32"), type=pa.float32())
    table = pa.table(
        {
            "path": pa.array([str(p) for p in paths], pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
        }
    ).replace_schema_metadata(meta)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)


def cmd_search(args: argparse.Namespace) -> int:
    from wavbrivl.api import rank

    model = _load(args)
    ids, matrix = model.image_index(args.embeddings)
    paths, rows, failed = _embed_all(model, args, "search")
    result = {}
    if rows:
        import numpy as np

        for path, hits in zip(paths, rank(np.stack(rows), ids, matrix, args.k), strict=True):
            result[str(path)] = [{"clip_id": h.clip_id, "score": h.score} for h in hits]
    _write_json(result, args.output)
    return EXIT_FILES_FAILED if failed else EXIT_OK


def cmd_classify(args: argparse.Namespace) -> int:
    labels = [x.strip() for x in args.labels.split(",") if x.strip()]
    if not labels:
        raise CommandError("--labels: give at least one label, comma-separated")
    from wavbrivl.api import zero_shot
    from wavbrivl.encoders.from_config import encoder_from_config

    model = _load(args)
    block = _config_block(args.config, "embed")
    encoder = encoder_from_config({**block, "device": str(model.device)})
    text = model.text_embeddings(labels, encoder, template=args.template)
    paths, rows, failed = _embed_all(model, args, "classify")
    result = {}
    if rows:
        import numpy as np

        for path, p in zip(paths, zero_shot(np.stack(rows), text), strict=True):
            scores = dict(zip(labels, map(float, p), strict=True))
            result[str(path)] = {"label": max(scores, key=scores.get), "scores": scores}
    _write_json(result, args.output)
    return EXIT_FILES_FAILED if failed else EXIT_OK


def cmd_generate(args: argparse.Namespace) -> int:
    from wavbrivl.audiofile import AudioFileError
    from wavbrivl.configs import from_mapping
    from wavbrivl.encoders.from_config import encoder_from_config
    from wavbrivl.generate.loop import GenerateConfig
    from wavbrivl.generate.png import save_png
    from wavbrivl.generate.stage import WORKFLOW_ONLY_KEYS, build_vqgan

    model = _load(args)
    block = _config_block(args.config, "generate")
    if args.steps is not None:
        block["steps"] = args.steps
    cfg = from_mapping(
        GenerateConfig, {k: v for k, v in block.items() if k not in WORKFLOW_ONLY_KEYS}, "generate"
    )
    encoder = encoder_from_config(
        {**_config_block(args.config, "embed"), "device": str(model.device)}
    )
    vqgan = build_vqgan(block, model.device)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    failed, record = 0, {}
    names = output_names(args.files)
    for path, name in zip(_progress(args.files, args, "generate"), names, strict=True):
        path = Path(path)
        try:
            (result,) = model.generate(path, vqgan=vqgan, encoder=encoder, cfg=cfg, names=[name])
        except AudioFileError as exc:
            _report(path, str(exc))
            failed += 1
            continue
        png = out / f"{name}.png"
        meta = {
            "wavbrivl.audio": str(path),
            "wavbrivl.image_space": str(model.fingerprint),
            "wavbrivl.audio_model": str(model.info["model_fingerprint"]),
            "wavbrivl.seed": str(result.seed),
            "wavbrivl.steps": str(result.steps),
            "wavbrivl.similarity": f"{result.final_similarity:.6f}",
        }
        save_png(result.image, png, metadata=meta)
        record[str(path)] = {
            "png": str(png),
            "seed": result.seed,
            "steps": result.steps,
            "similarity": result.final_similarity,
        }
    _write_json(record, str(out / "generation.json"))
    return EXIT_FILES_FAILED if failed else EXIT_OK


def output_names(paths: Sequence[str | Path]) -> list[str]:
    """One PNG name per input: its stem, or ``stem-1``, ``stem-2``... for later ones with a
    stem already taken (never a name an earlier input got)."""
    names: list[str] = []
    for path in paths:
        stem = name = Path(path).stem
        n = 0
        while name in names:
            n += 1
            name = f"{stem}-{n}"
        names.append(name)
    return names


def cmd_export(args: argparse.Namespace) -> int:
    from wavbrivl.export import export_run

    out = export_run(args.model, args.out, wavlm=args.wavlm, overwrite=args.overwrite)
    print(f"exported {args.model} to {out}", file=sys.stderr)
    return EXIT_OK


# -- parser --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wavbrivl",
        description="Use a trained WavBriVL audio encoder: embed, search, classify, export.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_: str, func, *, files: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_,
            description=help_,
            epilog=EXAMPLES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(func=func)
        p.add_argument(
            "model", metavar="MODEL", help="audio_encoder.pt, its run folder, or an export folder"
        )
        if files:
            p.add_argument("files", metavar="AUDIO", nargs="+", help="audio or video files")
            p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto (default cpu)")
        p.add_argument("--wavlm", help="WavLM folder replacing the one recorded at training")
        return p

    p = command(
        "info", "Print what a model is (image space, steps, window) as JSON.", cmd_info, files=False
    )
    p = command("embed-audio", "Embed audio files into the image space.", cmd_embed_audio)
    p.add_argument(
        "-o", "--output", required=True, help="OUT.parquet (path, embedding) or OUT.json"
    )
    p = command(
        "search",
        "Nearest images (clean frames of embedding Parquet files) to each audio.",
        cmd_search,
    )
    p.add_argument("--embeddings", nargs="+", required=True, help="embedding Parquet files")
    p.add_argument("-k", type=int, default=5, help="hits per audio file (default 5)")
    p.add_argument("-o", "--output", help="OUT.json (default: stdout)")
    p = command(
        "classify", "Zero-shot classification through the image space's text side.", cmd_classify
    )
    p.add_argument("--labels", required=True, help="comma-separated class names")
    p.add_argument("--config", required=True, help="the run's workflow config (its embed block)")
    p.add_argument("--template", default="{}", help="prompt template, {} is the label")
    p.add_argument("-o", "--output", help="OUT.json (default: stdout)")
    p = command(
        "generate", "One image per audio file, steered by the run's generator.", cmd_generate
    )
    p.add_argument("--config", required=True, help="the run's workflow config (generate, embed)")
    p.add_argument("--steps", type=int, help="optimisation steps (default: the config's)")
    p.add_argument("-o", "--output", required=True, help="folder for <name>.png + generation.json")
    p = command(
        "export",
        "Write a self-contained folder: safetensors, config, model card.",
        cmd_export,
        files=False,
    )
    p.add_argument("out", metavar="OUT", help="folder to create")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "k", 1) < 1:
        print("wavbrivl: error: -k must be at least 1", file=sys.stderr)
        return EXIT_ERROR
    try:
        return args.func(args)
    except (CommandError, FileNotFoundError, ValueError, RuntimeError, OSError) as exc:
        line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"wavbrivl: error: {line}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
