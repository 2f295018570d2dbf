"""What changing a config key does: one table, read by the workflow's rules and the package alike.

Every key of the blocks below is in exactly one class (tests/test_config_keys.py checks the
table against the schema, so a new key cannot be forgotten):

``RUNTIME`` (run-time only)
    Read from the config inside the job. Snakemake reruns nothing when it changes (the key
    is not in the rule's ``params``), an interrupted training run resumes under a new value,
    and the results (the weights, the metrics, the embeddings, the media) do not depend on
    it, up to the floating-point differences of another device (``device``, ``gpus``).
    Where the job also writes a by-product (the training log's row spacing, checkpoint
    files), that by-product may differ.

``RESUME_SAFE`` (safe to change on resume)
    Changes an output beside the weights (the validation rows of the training log and its
    curves, the validation metrics stored in ``audio_encoder.pt``), so it is in the rule's
    ``params`` and a change reruns the job; the trained weights do not depend on it, so a
    training checkpoint made under another value is resumed rather than refused (the
    workflow itself starts a rerun afresh: see :mod:`wavbrivl.train.recipe`).

``RERUN`` (triggers a rerun)
    Decides the result: in the rule's ``params`` (a change reruns the job and what follows),
    and a training checkpoint made under another value is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

RUNTIME = "run-time only"
RESUME_SAFE = "safe to change on resume"
RERUN = "triggers a rerun"
CLASSES = (RUNTIME, RESUME_SAFE, RERUN)

#: (block, key, class, why). One row per key.
TABLE: tuple[tuple[str, str, str, str], ...] = (
    # -- download: which file a clip gets, versus how politely and patiently it is fetched
    ("download", "format", RERUN, "the yt-dlp format: which streams a clip's file holds"),
    ("download", "sections", RERUN, "whether only the clip's section is fetched"),
    ("download", "section_padding_s", RERUN, "the fetched section's margins"),
    ("download", "allow_file_urls", RERUN, "whether file:// sources are accepted"),
    ("download", "require_video", RERUN, "whether a clip without video fails"),
    ("download", "max_attempts", RUNTIME, "retries"),
    ("download", "backoff_s", RUNTIME, "pacing of retries"),
    ("download", "pace_s", RUNTIME, "pacing between clips"),
    ("download", "socket_timeout_s", RUNTIME, "network time-out"),
    ("download", "cookies_file", RUNTIME, "credentials for yt-dlp"),
    ("download", "js_runtime", RUNTIME, "yt-dlp's JavaScript runtime"),
    ("download", "retry_permanent", RUNTIME, "whether clips failed for good are tried again"),
    ("download", "rate_limit", RUNTIME, "bandwidth cap"),
    ("download", "sleep_requests_s", RUNTIME, "pacing between requests"),
    ("download", "breaker_after", RUNTIME, "when a blocked shard stops asking"),
    # -- embed: what decides an embedding, versus how fast it is computed
    ("embed", "encoder", RERUN, "the image encoder"),
    ("embed", "weights", RERUN, "the encoder's weights; brivl's enter by content (SHA-256)"),
    ("embed", "model_name", RERUN, "open_clip only: the architecture the file is loaded into"),
    ("embed", "architecture", RERUN, "the network the weights are loaded into"),
    ("embed", "image_size", RERUN, "preprocessing"),
    ("embed", "box_mode", RERUN, "preprocessing"),
    ("embed", "seed", RERUN, "tiny only: its random weights"),
    ("embed", "text_tokenizer", RUNTIME, "text side only: image embeddings do not use it"),
    ("embed", "n_views", RERUN, "augmented views per clip"),
    ("embed", "view_seed", RERUN, "the augmented views"),
    ("embed", "batch_size", RUNTIME, "frames per forward pass"),
    ("embed", "device", RUNTIME, "where the encoder runs"),
    # -- train
    ("train", "run", RERUN, "the run's folder, results/models/<run>/"),
    ("train", "dataset", RERUN, "the clips trained on"),
    ("train", "steps", RERUN, "optimisation"),
    ("train", "batch_size", RERUN, "optimisation (the global batch)"),
    ("train", "grad_accum", RERUN, "optimisation"),
    ("train", "lr", RERUN, "optimisation"),
    ("train", "min_lr", RERUN, "optimisation"),
    ("train", "weight_decay", RERUN, "optimisation"),
    ("train", "warmup_steps", RERUN, "optimisation"),
    ("train", "grad_clip", RERUN, "optimisation"),
    ("train", "seed", RERUN, "initial weights, data order, dropout"),
    ("train", "window_s", RERUN, "the audio each step sees"),
    ("train", "data_streams", RERUN, "the data order (shard groups and shuffle buffers)"),
    ("train", "shuffle_buffer", RERUN, "the data order"),
    ("train", "val_fraction", RERUN, "which clips are trained on"),
    ("train", "views", RERUN, "which image embedding a clip is paired with"),
    ("train", "train_split", RERUN, "which clips are trained on"),
    ("train", "test_split", RERUN, "which clips are evaluated"),
    ("train", "eval_every", RESUME_SAFE, "validation rows of the log and curves"),
    ("train", "eval_max_clips", RESUME_SAFE, "validation metrics"),
    ("train", "num_workers", RUNTIME, "processes making the batches, not the batches"),
    ("train", "ckpt_every", RUNTIME, "checkpoint cadence"),
    ("train", "keep_checkpoints", RUNTIME, "checkpoints kept on disk"),
    ("train", "log_every", RUNTIME, "spacing of the training log's rows"),
    ("train", "max_nonfinite_in_row", RUNTIME, "when to give up; a finished run is the same"),
    ("train", "device", RUNTIME, "where the model runs"),
    ("train", "gpus", RUNTIME, "data-parallel ranks over the same global batch"),
    # -- generate
    ("generate", "dataset", RERUN, "the clips generated from"),
    ("generate", "clip_ids", RERUN, "the clips generated from"),
    ("generate", "vqgan", RERUN, "the generator"),
    ("generate", "vqgan_ckpt", RERUN, "the generator's weights (also by content)"),
    ("generate", "vqgan_yaml", RERUN, "the generator's architecture"),
    ("generate", "tiny_seed", RERUN, "the tiny generator's random weights"),
    ("generate", "steps", RERUN, "optimisation of the latents"),
    ("generate", "lr", RERUN, "optimisation of the latents"),
    ("generate", "cutouts", RERUN, "optimisation of the latents"),
    ("generate", "cut_pow", RERUN, "optimisation of the latents"),
    ("generate", "min_cut_size", RERUN, "optimisation of the latents"),
    ("generate", "cut_flip", RERUN, "optimisation of the latents"),
    ("generate", "cut_noise", RERUN, "optimisation of the latents"),
    ("generate", "seed", RERUN, "initial latents, cut-outs"),
    ("generate", "size", RERUN, "the image size"),
    ("generate", "batch_clips", RERUN, "clips optimised together (in params today)"),
    ("generate", "save_every", RERUN, "progress frames written"),
    ("generate", "init", RERUN, "initial latents"),
    ("generate", "device", RUNTIME, "where the models run"),
    ("generate", "metrics", RERUN, "the metrics (Inception weights also by content)"),
    ("generate", "method", RERUN, "the generator (and the folder: <run>+unclip for unclip)"),
    ("generate", "unclip", RERUN, "the unCLIP pipeline and its settings (weights also by content)"),
)


def _by_block() -> dict[str, dict[str, str]]:
    blocks: dict[str, dict[str, str]] = {}
    for block, key, cls, _why in TABLE:
        if cls not in CLASSES:
            raise ValueError(f"config_keys: {block}.{key} has unknown class {cls!r}")
        if key in blocks.setdefault(block, {}):
            raise ValueError(f"config_keys: {block}.{key} is classified twice")
        blocks[block][key] = cls
    return blocks


BLOCKS = _by_block()


def key_class(block: str, key: str) -> str:
    """The class of ``block.key``; a key the table lacks is an error naming it."""
    try:
        return BLOCKS[block][key]
    except KeyError:
        raise KeyError(
            f"config key {block}.{key} is not classified in wavbrivl.config_keys"
        ) from None


def keys_of(block: str, *classes: str) -> tuple[str, ...]:
    """The keys of ``block`` in any of ``classes``, in table order."""
    return tuple(k for k, c in BLOCKS[block].items() if c in classes)


def rerun_params(block: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` without its run-time keys: what a rule's ``params`` hold of the block, so
    that a change to any other key reruns the job."""
    return {k: v for k, v in values.items() if key_class(block, k) != RUNTIME}


def resume_checked(block: str, key: str) -> bool:
    """Whether a training checkpoint made under another value of ``key`` is refused (keys of
    the package's own, not in the table, are checked)."""
    return BLOCKS[block].get(key, RERUN) == RERUN
