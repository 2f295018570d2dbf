# Config validation and input functions (get_*). Rules stay free of logic.

import functools
import os
import sys
from pathlib import Path

import jsonschema
from snakemake.utils import validate

# The package is imported from this checkout, here and in every job (PYTHONPATH is
# inherited), so `--use-conda` environments need only third-party packages.
SRC_DIR = Path(workflow.basedir) / "src"
sys.path.insert(0, str(SRC_DIR))
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in [str(SRC_DIR), os.environ.get("PYTHONPATH", "")] if p)
)

from wavbrivl.config_keys import rerun_params  # noqa: E402
from wavbrivl.sharding import shard_names  # noqa: E402
from wavbrivl.toy_guard import check_no_toy_models  # noqa: E402
from wavbrivl.weights_check import required_weights, weight_stats  # noqa: E402


def _validate_config(cfg):
    """Validate and fill defaults; on failure name the key path, not just the value."""
    schema = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
    try:
        validate(cfg, str(schema))
    except Exception as exc:
        cause = exc
        while cause is not None and not isinstance(cause, jsonschema.ValidationError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        key = ".".join(str(p) for p in cause.absolute_path) or "(top level)"
        raise ValueError(f"invalid config at '{key}': {cause.message}") from None


_validate_config(config)
check_no_toy_models(config)  # toy stand-ins only where the config allows them (the demo)


def _check_sources(cfg):
    """Each dataset's source: its shape, its folders and tar shards (one line naming the key)."""
    from wavbrivl.download.sources import SourceConfigError, load_source

    for name, ds in cfg["datasets"].items():
        try:
            load_source(ds["source"], key=f"datasets.{name}.source")
        except SourceConfigError as exc:
            raise ValueError(f"invalid config: {exc}") from None


_check_sources(config)


wildcard_constraints:
    dataset="[A-Za-z][A-Za-z0-9_]*",
    shard="[0-9]+",


def dataset_names(role=None):
    return [name for name, ds in config["datasets"].items() if role is None or ds["role"] == role]


def get_shards(dataset):
    return shard_names(config["datasets"][dataset]["n_shards"])


def get_manifests():
    return [f"results/manifest/{name}.parquet" for name in dataset_names()]


def get_download_statuses():
    return [
        f"results/download/{name}/{shard}.status.parquet"
        for name in dataset_names()
        for shard in get_shards(name)
    ]


def get_dataset_statuses(wildcards):
    """Every shard's download status table of one dataset (its availability report's and used_clips.csv's input)."""
    return [
        f"results/download/{wildcards.dataset}/{shard}.status.parquet"
        for shard in get_shards(wildcards.dataset)
    ]


def get_availability_reports():
    return [
        f"results/reports/availability/{name}.{ext}"
        for name in dataset_names()
        for ext in ("tsv", "png")
    ]


def get_media_shards():
    return [
        f"results/media/{name}/{shard}.parquet"
        for name in dataset_names()
        for shard in get_shards(name)
    ]


def get_used_clips():
    return [f"results/download/{name}/used_clips.csv" for name in dataset_names()]


def get_final_outputs():
    return (
        get_checked_weights(None)
        + get_media_shards()
        + get_used_clips()
        + get_availability_reports()
        + get_embedding_shards()
        + get_model_outputs()
        + get_sheet_outputs()
        + get_demo_outputs()
        + get_benchmark_results()
    )


# --- weights -----------------------------------------------------------------------------


def get_checked_weights(wildcards):
    """The check_weights record, for every rule that reads a weight file (none for toy models).

    ancient: a re-check alone reruns nothing; the weights enter those rules by content.
    """
    return [ancient("results/checks/weights.json")] if required_weights(config) else []


def get_weight_stats(wildcards):
    """Size and mtime of every weight file: a change makes check_weights look again."""
    return weight_stats(required_weights(config))


def existing(path):
    """``[path]`` when it exists. A missing weight is not declared as an input, so that
    check_weights (which its readers wait for) reports it together with all the others."""
    return [path] if os.path.exists(path) else []


def _is_url(path):
    return path.startswith(("http://", "https://"))


def get_manifest_inputs(wildcards):
    """Local CSV files a dataset's manifest reads (URLs are fetched by the job itself)."""
    from wavbrivl.download.sources import parse_source, url_step

    ds = config["datasets"][wildcards.dataset]
    url = url_step(parse_source(ds["source"]))
    paths = [ds["csv"], ds.get("labels_csv"), url.mapping_csv if url else None]
    return [p for p in paths if p and not _is_url(p)]


def get_dataset_config(wildcards):
    return config["datasets"][wildcards.dataset]


# --- manifests and rerun decisions --------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _manifest_digests(path, mtime_ns):
    from wavbrivl.manifest.digest import shard_digests, training_digest

    return shard_digests(path), training_digest(path)


def _digests(dataset):
    path = f"results/manifest/{dataset}.parquet"
    if not os.path.exists(path):
        return None  # planning only: Snakemake evaluates params again before the job runs
    return _manifest_digests(path, os.stat(path).st_mtime_ns)


def get_manifest_for_shard(wildcards):
    """The dataset's manifest, by content: its mtime alone reruns nothing (see get_shard_digest)."""
    return ancient(checkpoints.build_manifest.get(dataset=wildcards.dataset).output[0])


def get_shard_digest(wildcards):
    """Digest of the shard's manifest rows: the shard's jobs rerun when, and only when, it changes."""
    digests = _digests(wildcards.dataset)
    return "TBD" if digests is None else digests[0].get(wildcards.shard, "empty")


def get_training_digest(wildcards):
    digests = _digests(training_dataset())
    return "TBD" if digests is None else digests[1]


# Which config keys are in a rule's params (a change reruns it) and which are run-time only
# (read from the config inside the job) is decided in one table: wavbrivl.config_keys.


def get_download_identity(wildcards):
    """The download settings that decide which file a clip gets (not pacing, retries, ...)."""
    return rerun_params("download", config["download"])


def get_dataset_source(wildcards):
    return config["datasets"][wildcards.dataset]["source"]


def get_tar_index_dir(wildcards):
    """Member indexes of a dataset's tar shards, shared by its download jobs."""
    return f"results/download/{wildcards.dataset}/_tar_index"


def get_retry_marker(wildcards):
    """The shard's retry marker once a blocked run left one (wavbrivl.download.breaker): newer
    than the status table, it reruns the shard; kept afterwards so the input set stays put."""
    marker = f"results/download/{wildcards.dataset}/{wildcards.shard}.retry"
    return [marker] if os.path.exists(marker) else []


def get_download_dir(wildcards):
    """The shard's media folder: not a declared output, so reruns keep finished clips."""
    return f"results/download/{wildcards.dataset}/{wildcards.shard}"


def encoder_label():
    """The encoder's name in paths: results/embeddings/<label>/..."""
    return config["embed"]["encoder"]


def get_embedding_shards():
    return [
        f"results/embeddings/{encoder_label()}/{name}/{shard}.parquet"
        for name in dataset_names(role="train")
        for shard in get_shards(name)
    ]


#: Encoders whose weights come from embed.weights (a file, or an HF / OpenCLIP folder).
ENCODERS_WITH_WEIGHTS = ("brivl", "clip", "open_clip")


#: The demo's trained image encoder (embed.encoder: demo), made by train_demo_image_encoder.
DEMO_ENCODER = "results/demo/image_encoder/demo_brivl.pth"


def get_encoder_weights(wildcards):
    if config["embed"]["encoder"] == "demo":
        return [DEMO_ENCODER]
    weights = config["embed"]["weights"]
    return existing(weights) if config["embed"]["encoder"] in ENCODERS_WITH_WEIGHTS else []


def get_encoder_identity(wildcards):
    """Everything that decides the embeddings; the weights enter by content, not by path."""
    cfg = config["embed"]
    identity = {
        key: value
        for key, value in rerun_params("embed", cfg).items()
        if key not in ("weights", "seed")
    }
    if cfg["encoder"] in ENCODERS_WITH_WEIGHTS:
        identity["weights_sha256"] = weights_sha256(cfg["weights"])
    else:
        identity["seed"] = cfg["seed"]
    return identity


def weights_sha256(path):
    """SHA-256 of a weights file, or of each file of a weights folder (HF, OpenCLIP)."""
    if os.path.isdir(path):
        files = sorted(p for p in Path(path).iterdir() if p.is_file())
        return {p.name: file_sha256(str(p)) for p in files}
    return file_sha256(path)


def file_sha256(path):
    """SHA-256 of a file, cached by its stat so a 1 GB checkpoint is hashed once."""
    from wavbrivl.hashing import cached_sha256

    if not os.path.exists(path):
        return "missing"  # the rule's input check names the file
    return cached_sha256(path, cache_file=".snakemake/wavbrivl/sha256-cache.json")


# --- training ----------------------------------------------------------------------------


def run_name():
    return config["train"]["run"]


def get_train_params(wildcards):
    """The train block without run-time settings (those must not trigger a retrain)."""
    return rerun_params("train", config["train"])


def wavlm_source():
    """Where WavLM comes from: the demo's tiny model (made by a rule), a local dir, a hub id."""
    wavlm = config["audio"]["wavlm"]
    if wavlm == "tiny":
        return f"results/models/_wavlm/tiny-seed{config['audio']['tiny_seed']}"
    return wavlm


def dataset_with_role(block, role):
    """config[block]["dataset"], or the only dataset with that role."""
    dataset = config[block]["dataset"]
    candidates = dataset_names(role=role)
    if dataset is None:
        if len(candidates) != 1:
            raise ValueError(
                f"set {block}.dataset: there are {len(candidates)} datasets with role "
                f"'{role}' ({', '.join(candidates) or 'none'})"
            )
        return candidates[0]
    if dataset not in candidates:
        raise ValueError(
            f"{block}.dataset {dataset!r} is not a dataset with role '{role}' "
            f"(those are: {', '.join(candidates) or 'none'})"
        )
    return dataset


def training_dataset():
    return dataset_with_role("train", "train")


def get_wavlm_input():
    """WavLM as a job input when it is a file here (the tiny model, a local directory); a hub
    id is fetched by the job itself."""
    wavlm = config["audio"]["wavlm"]
    return {"wavlm": wavlm_source()} if wavlm == "tiny" or os.path.isdir(wavlm) else {}


def get_training_inputs(wildcards):
    dataset = training_dataset()
    shards = get_shards(dataset)
    inputs = {
        "manifest": ancient(f"results/manifest/{dataset}.parquet"),
        "media": [f"results/media/{dataset}/{s}.parquet" for s in shards],
        "embeddings": [
            f"results/embeddings/{encoder_label()}/{dataset}/{s}.parquet" for s in shards
        ],
        "checked_weights": get_checked_weights(wildcards),
    }
    inputs.update(get_wavlm_input())
    return inputs


def get_model_outputs():
    return [
        f"results/models/{run_name()}/audio_encoder.pt",
        f"results/eval/{run_name()}/metrics.json",
    ]


# --- generation and sheets ---------------------------------------------------------------


def generation_dataset():
    return dataset_with_role("generate", "generation")


def get_generation_inputs(wildcards):
    dataset = wildcards.dataset
    inputs = {
        "manifest": ancient(f"results/manifest/{dataset}.parquet"),
        "media": [f"results/media/{dataset}/{s}.parquet" for s in get_shards(dataset)],
        "encoder_weights": get_encoder_weights(wildcards),
        "checked_weights": get_checked_weights(wildcards),
    }
    if config["generate"]["vqgan"] == "taming":
        inputs["vqgan_ckpt"] = existing(config["generate"]["vqgan_ckpt"])
        inputs["vqgan_yaml"] = existing(config["generate"]["vqgan_yaml"])
    if config["generate"]["vqgan"] == "demo":  # made by train_demo_vqgan
        inputs["vqgan_ckpt"] = "results/demo/vqgan/demo_vqgan.ckpt"
        inputs["vqgan_yaml"] = "results/demo/vqgan/demo_vqgan.yaml"
    inputs.update(get_wavlm_input())
    if inception_weights():
        inputs["inception"] = existing(inception_weights())
    return inputs


def inception_weights():
    """The generation metrics' local Inception file (FID/KID), or None."""
    return (config["generate"].get("metrics") or {}).get("inception_weights")


#: Keys of the generate block only the unCLIP rule reads (a change reruns no VQGAN job).
UNCLIP_ONLY_KEYS = ("method", "unclip")
#: Keys of the generate block the unCLIP rule reads besides `unclip` (docs/generation-unclip.md).
UNCLIP_SHARED_KEYS = ("dataset", "clip_ids", "seed")
#: A run name (train.run's pattern): the `{run}` of a generation folder; `<run>+unclip` is not one.
RUN_NAME = "[A-Za-z0-9][A-Za-z0-9_.-]*"


def generation_name():
    """The folder name of this config's generation: `<run>` (vqgan) or `<run>+unclip`."""
    if config["generate"]["method"] == "unclip":
        return f"{run_name()}+unclip"
    return run_name()


def get_generate_params(wildcards):
    """The generate block without its run-time device; the VQGAN checkpoint enters by content."""
    params = {
        key: value
        for key, value in rerun_params("generate", config["generate"]).items()
        if key not in UNCLIP_ONLY_KEYS
    }
    if config["generate"]["vqgan"] == "taming":
        params["vqgan_sha256"] = file_sha256(config["generate"]["vqgan_ckpt"])
    if inception_weights() and os.path.exists(inception_weights()):
        params["inception_sha256"] = file_sha256(inception_weights())
    return params


def get_unclip_inputs(wildcards):
    """The VQGAN rule's inputs without the VQGAN, and the pipeline folder."""
    inputs = {
        key: value
        for key, value in get_generation_inputs(wildcards).items()
        if key not in ("vqgan_ckpt", "vqgan_yaml")
    }
    inputs["pipeline"] = existing(config["generate"]["unclip"]["pipeline"] or "")
    return inputs


def get_unclip_params(wildcards):
    """What decides the unCLIP images; the pipeline's files enter by content."""
    block = config["generate"]
    params = {key: block[key] for key in UNCLIP_SHARED_KEYS}
    params["unclip"] = block["unclip"]
    params["pipeline_sha256"] = pipeline_sha256(block["unclip"]["pipeline"])
    params["metrics"] = block["metrics"]  # scored in the same job, as on the VQGAN path
    if inception_weights() and os.path.exists(inception_weights()):
        params["inception_sha256"] = file_sha256(inception_weights())
    return params


def pipeline_sha256(folder):
    """SHA-256 of every file of a diffusers pipeline folder (its component folders included)."""
    if not folder or not os.path.isdir(folder):
        return "missing"  # check_weights names the folder
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): file_sha256(str(p)) for p in files}


def sheet_runs():
    return config["sheets"]["runs"] or [generation_name()]


def _check_study_config(sheets):
    """sheets.compare names two different runs of the sheets; careless raters <= raters
    (before any job starts)."""
    pair = sheets["compare"]
    if pair is not None:
        unknown = [name for name in pair if name not in sheet_runs()]
        if pair[0] == pair[1] or unknown:
            raise ValueError(
                f"invalid config at 'sheets.compare': {pair} must name two different runs "
                f"of sheets.runs {sheet_runs()}"
            )
    simulate = sheets["simulate"]
    if simulate["careless"] > simulate["raters"]:
        raise ValueError(
            "invalid config at 'sheets.simulate.careless': more careless raters "
            f"({simulate['careless']}) than raters ({simulate['raters']})"
        )


_check_study_config(config["sheets"])


def get_sheets_inputs(wildcards):
    dataset = generation_dataset()
    return {
        "generations": [f"results/generation/{run}/{dataset}" for run in sheet_runs()],
        "media": [f"results/media/{dataset}/{s}.parquet" for s in get_shards(dataset)],
        "manifest": ancient(f"results/manifest/{dataset}.parquet"),
        "answers": config["sheets"]["answers"],
        "encoder_weights": get_encoder_weights(wildcards),
        "checked_weights": get_checked_weights(wildcards),
    }


# --- the demo's VQGAN and the class agreement of its pictures (wavbrivl.demo) ----------------


def get_demo_vqgan_inputs(wildcards):
    """The training dataset's manifest (for its split) and media shards (the frames)."""
    dataset = training_dataset()
    return {
        "manifest": ancient(f"results/manifest/{dataset}.parquet"),
        "media": [f"results/media/{dataset}/{s}.parquet" for s in get_shards(dataset)],
    }


def get_demo_pictures_inputs(wildcards):
    """A run's generation folder and the generation clips' manifest and media (real frames)."""
    dataset = generation_dataset()
    return {
        "generation": f"results/generation/{wildcards.run}/{dataset}",
        "manifest": ancient(f"results/manifest/{dataset}.parquet"),
        "media": [f"results/media/{dataset}/{s}.parquet" for s in get_shards(dataset)],
        "encoder_weights": get_encoder_weights(wildcards),
    }


def get_demo_outputs():
    """The pictures' class agreement, where the demo's own VQGAN draws them."""
    if config["generate"]["vqgan"] != "demo" or not dataset_names(role="generation"):
        return []
    return [f"results/demo/pictures_{config['train']['run']}.json"]


def get_sheet_outputs():
    """The sheets, when there is something to generate from (a dataset with role generation)."""
    if not dataset_names(role="generation"):
        return []
    name = config["sheets"]["name"]
    outputs = [f"results/sheets/{name}/grid.png", f"results/sheets/{name}/study.html"]
    if config["sheets"]["simulate"]["raters"]:
        outputs.append(f"results/sheets/{name}/simulated/table1.html")
    return outputs


# --- benchmarks (wavbrivl.benchmark.stage) ------------------------------------------------


def benchmark_entry(kind, name):
    """A `benchmarks.datasets` or `benchmarks.models` entry."""
    return config["benchmarks"][kind][name]


def model_has_text_side(name):
    """Whether the model's space has a text side here (decides if zero-shot runs)."""
    model = benchmark_entry("models", name)
    if model["kind"] == "wav2clip":
        return "text" in model
    embed = {**config["embed"], **model.get("text", {})}
    return embed["encoder"] in ("clip", "open_clip") or bool(embed.get("text_tokenizer"))


def get_benchmark_results():
    """Every (model, dataset, protocol) result JSON, and the combined table."""
    from wavbrivl.benchmark.stage import protocols_for

    block = config["benchmarks"]
    results = [
        f"results/benchmarks/{model}/{dataset}/{protocol}.json"
        for model in block["models"]
        for dataset, entry in block["datasets"].items()
        for protocol in protocols_for(entry, model_has_text_side(model))
    ]
    return results + ["results/benchmarks/table.md"] if results else []


def get_benchmark_inputs(wildcards):
    """The audio model's file and the dataset's metadata (and media, for vggsound_test)."""
    from wavbrivl.benchmark.stage import metadata_file

    model = benchmark_entry("models", wildcards.model)
    dataset = benchmark_entry("datasets", wildcards.dataset)
    inputs = {}
    if model.get("path"):
        inputs["model"] = model["path"]
    elif model["kind"] == "wavbrivl":
        inputs["model"] = f"results/models/{run_name()}/audio_encoder.pt"
    if dataset["format"] == "vggsound_test":
        name = dataset.get("dataset") or training_dataset()
        inputs["manifest"] = f"results/manifest/{name}.parquet"
        inputs["media"] = [f"results/media/{name}/{shard}.parquet" for shard in get_shards(name)]
    else:
        key = f"benchmarks.datasets.{wildcards.dataset}"
        inputs["metadata"] = metadata_file(dataset, key)
    return inputs


def get_benchmark_model_params(wildcards):
    """The model entry without `text`: the text side only matters to zero-shot, and changing
    it must not re-embed the audio."""
    model = benchmark_entry("models", wildcards.model)
    return {key: value for key, value in model.items() if key != "text"}


def get_text_side_config(wildcards):
    """The embed block whose encoder gives the text side: the run's own, with the model
    entry's `text` keys over it (a wav2clip entry's CLIP; the demo's toy text folder)."""
    model = benchmark_entry("models", wildcards.model)
    return {**config["embed"], **model.get("text", {})}


def get_text_side_inputs(wildcards):
    """The text side's local folders and files, so a rule that makes one runs first."""
    text = get_text_side_config(wildcards)
    paths = [text.get("text_tokenizer")]
    if text["encoder"] == "demo":
        paths.append(DEMO_ENCODER)
    elif text["encoder"] != "tiny":
        paths.append(text.get("weights"))
    return [p for p in paths if p]
