"""A training run's settings: :class:`TrainConfig` (the loop's) nesting :class:`DataConfig`
(how clips become batches).

The workflow's ``train:`` block is flat, as users write it; :meth:`TrainConfig.from_dict` and
:meth:`TrainConfig.to_dict` are the one mapping between that flat form (also the form saved
in checkpoints and in ``audio_encoder.pt``) and the nested dataclasses: a key that names a
:class:`DataConfig` field goes there, every other one to :class:`TrainConfig`.

One default and one rule per key: both come from ``workflow/schemas/config.schema.yaml``
(:mod:`wavbrivl.configs`), the schema the workflow validates a config with; the dataclasses
add only the rules that tie two keys together (warmup_steps <= steps, min_lr <= lr).
``tests/test_train_config.py`` checks the two agree key by key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from wavbrivl.configs import check_block, default_field
from wavbrivl.train.data import DataConfig

DATA_KEYS = tuple(f.name for f in fields(DataConfig))
#: Keys of the workflow's ``train`` block that are not TrainConfig fields (the stage reads them).
WORKFLOW_ONLY_KEYS = ("run", "dataset", "device", "gpus")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run's result (plus checkpoint/eval/log cadence)."""

    steps: int = default_field("train", "steps")  # optimizer steps
    grad_accum: int = default_field("train", "grad_accum")  # micro-batches per optimizer step
    lr: float = default_field("train", "lr")
    min_lr: float = default_field("train", "min_lr")
    weight_decay: float = default_field("train", "weight_decay")  # not on biases and norms
    warmup_steps: int = default_field("train", "warmup_steps")
    grad_clip: float = default_field("train", "grad_clip")  # max gradient norm; 0 = none
    ckpt_every: int = default_field("train", "ckpt_every")
    keep_checkpoints: int = default_field("train", "keep_checkpoints")
    eval_every: int = default_field("train", "eval_every")  # 0 = only at the end
    eval_max_clips: int = default_field("train", "eval_max_clips")  # seeded validation subset
    log_every: int = default_field("train", "log_every")
    max_nonfinite_in_row: int = default_field("train", "max_nonfinite_in_row")
    data: DataConfig = field(default_factory=DataConfig)  # clips -> batches; seed, batch_size

    def __post_init__(self) -> None:
        check_block(
            {f.name: getattr(self, f.name) for f in fields(self) if f.name != "data"}, "train"
        )
        bad = []
        if self.warmup_steps > self.steps:
            bad.append("warmup_steps")
        if self.min_lr > self.lr:
            bad.append("min_lr")
        if bad:
            raise ValueError(
                f"invalid train config value(s): {', '.join(f'{n}={getattr(self, n)!r}' for n in bad)}"
            )

    @property
    def seed(self) -> int:
        return self.data.seed

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The flat keys: this class's fields, then :class:`DataConfig`'s."""
        return (*(f.name for f in fields(cls) if f.name != "data"), *DATA_KEYS)

    def to_dict(self) -> dict[str, Any]:
        """The flat form (the ``train:`` block's keys)."""
        own = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "data"}
        return own | {k: getattr(self.data, k) for k in DATA_KEYS}

    @classmethod
    def from_block(cls, block: Mapping[str, Any]) -> TrainConfig:
        """From the workflow's ``train:`` block (its workflow-only keys left aside)."""
        return cls.from_dict({k: v for k, v in block.items() if k not in WORKFLOW_ONLY_KEYS})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> TrainConfig:
        """From the flat form; an unknown key is an error naming it (a typo must not pass)."""
        d = dict(d or {})
        unknown = sorted(set(d) - set(cls.keys()))
        if unknown:
            raise ValueError(f"unknown train config key(s) {unknown}; known: {sorted(cls.keys())}")
        data = DataConfig(**{k: v for k, v in d.items() if k in DATA_KEYS})
        return cls(**{k: v for k, v in d.items() if k not in DATA_KEYS}, data=data)
