"""Frozen configuration dataclasses, TOML presets and `section.key=value` overrides."""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from hotrec.errors import HotrecError


@dataclass(frozen=True)
class DataConfig:
    path: str = ""  # dataset directory written by `hotrec prepare` or `hotrec synth`
    batch_size: int = 1024  # training mini-batch size
    eval_batch_size: int = 16384  # mini-batch size for val/test evaluation
    shuffle: bool = True  # per-epoch seeded permutation of batch-sized blocks
    prefetch: int = 4  # batches prepared ahead by the background thread (0 = inline)
    max_eval_rows: int = 0  # rows used by periodic validation (0 = the whole split)


@dataclass(frozen=True)
class ModelConfig:
    embedding_dim: int = 16  # D, the width of every embedding row
    bottom_mlp: tuple[int, ...] = (512, 256, 64, 16)  # dense tower; last layer must equal D
    top_mlp: tuple[int, ...] = (512, 256, 1)  # over-arch; last layer must be 1 (the logit)
    interaction: str = "dot"  # dot | cat | cross | attention | masked_transformer
    num_heads: int = 2  # attention, masked_transformer: heads per block
    num_layers: int = 1  # attention, masked_transformer: encoder blocks (cross: see cross_layers)
    ffn_dim: int = 128  # masked_transformer: hidden width of the feed-forward network
    dropout: float = 0.01  # masked_transformer: dropout in the feed-forward network
    mask_thresholds: tuple[float, ...] = (0.001, 0.005)  # masked_transformer: tau per head
    layernorm: bool = True  # masked_transformer: post-LayerNorm (false = the ablation)
    cross_layers: int = 3  # cross (DCN-v2): cross layers
    cross_rank: int = 64  # cross (DCN-v2): rank of each layer's low-rank weight
    embedding: str = "table"  # representation: table | dhe | hybrid | qr
    embedding_map: str = ""  # hybrid: per-feature table|dhe|both, a file or rule (empty = both)
    dhe_hashes: int = 1024  # dhe: k hash functions per feature
    dhe_buckets: int = 1_000_000  # dhe: m, hash codes lie in [0, m)
    dhe_prime: int = 1_000_003  # dhe: p of h(x) = ((a x + b) mod p) mod m
    dhe_hidden: tuple[int, ...] = (128,)  # dhe: decoder hidden layers (k -> ... -> D)
    dhe_distribution: str = "uniform"  # dhe: codes scaled to uniform [-1, 1] | gaussian
    dhe_activation: str = "relu"  # dhe: decoder activation, relu | mish
    dhe_batchnorm: bool = False  # dhe: BatchNorm after each hidden layer (the DHE paper)
    qr_collisions: int = 4  # qr: ids sharing a remainder row (quotient table size)


@dataclass(frozen=True)
class OptimConfig:
    sparse: str = "sgd"  # embedding-row optimizer: sgd | adagrad (row-wise)
    sparse_lr: float = 0.1  # learning rate of the embedding rows
    dense: str = "sgd"  # MLP optimizer: sgd | adagrad | adam
    dense_lr: float = 0.1  # learning rate of the MLPs
    eps: float = 1e-8  # epsilon of Adagrad / Adam


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 1  # passes over the training split
    max_steps: int = 0  # stop after this many optimizer steps in total (0 = no limit)
    eval_every: int = -1  # validate every N steps (0 = only at the end; -1 = auto: once per
    # epoch, or 4 times per epoch when an epoch has more than AUTO_EVAL_STEPS steps)
    early_stop: int = 0  # stop after this many validations without a better val AUC (0 = off)
    keep_best: bool = True  # keep best.pt, the checkpoint of the best val AUC; eval and
    # artifacts use it
    log_every: int = 100  # write a train record to metrics.jsonl every N steps
    checkpoint_every: int = 1000  # write a checkpoint every N steps (0 = only at the end)
    seed: int = 0  # seeds initialization and shuffling
    device: str = "auto"  # auto | cpu | cuda | emulated (the CPU made as strict as CUDA)
    threads: int = 0  # torch intra-op threads (0 = torch's default)
    precision: str = "auto"  # auto | fp32 | bf16 (autocast of MLPs/interaction; rows stay fp32)
    deterministic: bool = False  # deterministic kernels only (torch's setting + cuBLAS workspace)
    pad_multiple: int = -1  # forwards run on their rows rounded up to a multiple of this, the
    # padding outside the loss (-1 = auto: 64 under bf16 on the CPU, else off; 0 = off)
    dist_backend: str = "auto"  # several ranks: auto (gloo on the CPU, nccl on a GPU) | gloo | nccl
    dist_timeout_s: float = 300.0  # several ranks: a collective waiting longer fails the run
    dist_sharding: str = "rows"  # several ranks: rows (row r on rank r mod W) | tables (whole
    # tables on ranks, for many small tables)


@dataclass(frozen=True)
class PlacementConfig:
    schedule: str = "baseline"  # a name in the schedule registry (training/schedules), checked
    # there before a run writes anything
    hot_budget: str = "256MiB"  # device bytes for hot rows (fae, hotline); "64KiB", "1GiB", ...
    hotset: str = ""  # a saved hot set (hotrec profile --out); empty = profile at start
    sample_fraction: float = 0.05  # share of training inputs the start-up profile counts
    fae_run_length: int = (
        0  # fae: hot batches per run, cold in proportion (0 = all cold, then all hot)
    )
    lookahead: int = -1  # hotline: upcoming batches a worker prepares and gathers ahead
    # (0 = inline; -1 = auto: 2 on a device with its own memory, 0 on the CPU, where no copy
    # is there to hide and a worker only competes with the step's thread team)
    hotline_split: str = "auto"  # hotline: split | fused | auto (fused when the device is the
    # CPU, where no copy is there to overlap: one forward of the whole batch, routed by plan)
    reprofile_every: int = 0  # fae/hotline: re-count popularity every N steps, move rows (0 = off)
    slipstream: bool = False  # fae/hotline: skip hot inputs whose rows stopped changing
    slipstream_start: float = 0.2  # s: warm-up starts after this share of the epoch's hot batches
    slipstream_window: float = 0.1  # p: warm-up length, as a share of the epoch's hot batches
    slipstream_sample: float = 0.05  # i: share of the epoch's remaining batches sampled to find T
    slipstream_target: float = 0.3  # D: share of hot inputs to make skippable (0 = skip nothing)
    slipstream_tolerance: float = 0.08  # accepted distance of the skipped share from D
    slipstream_alpha: int = 0  # stale lookups that make an input skippable (0 = all of them)
    slipstream_compact: bool = False  # skip mode, one process: kept inputs re-packed into full
    # batches, so skipped inputs save whole steps (several ranks: each batch is narrowed)
    slipstream_mode: str = (
        "skip"  # skip: drop stale inputs; freeze: keep them, stop updating stale rows
    )
    slipstream_select: str = "stale"  # skip mode: stale inputs, or (random) a control that
    # skips as many hot inputs chosen at random: what the staleness test adds over subsampling


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    placement: PlacementConfig = field(default_factory=PlacementConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PRESETS = ("criteo-kaggle", "criteo-terabyte", "movielens", "avazu", "tiny", "dlrm-reference")
# The preset a dataset's source (meta.json "source") gets when --preset is not given; a
# synthetic dataset gets the preset of its profile (SYNTHETIC_PRESETS).
SOURCE_PRESETS = {
    "criteo-kaggle": "criteo-kaggle",
    "criteo-terabyte": "criteo-terabyte",
    "movielens-100k": "movielens",
    "movielens-1m": "movielens",
    "avazu": "avazu",
}
SYNTHETIC_PRESETS = {"criteo-kaggle": "criteo-kaggle", "criteo-terabyte": "criteo-terabyte"}


def preset_for_meta(meta: dict) -> tuple[str | None, str]:
    """The preset a dataset's meta.json asks for, and what it was chosen from (for a message)."""
    source = meta.get("source")
    if source == "synthetic":
        profile = (meta.get("options") or {}).get("profile")
        return SYNTHETIC_PRESETS.get(profile), f"synthetic, profile {profile}"
    return SOURCE_PRESETS.get(source), str(source)


def preset_path(name: str) -> Path:
    """Path of a bundled preset TOML."""
    return Path(str(resources.files("hotrec") / "configs" / f"{name}.toml"))


def load_config(preset: str | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Defaults <- preset (bundled name or TOML path) <- `section.key=value` overrides."""
    raw: dict = {}
    if preset:
        path = preset_path(preset) if preset in PRESETS else Path(preset)
        if not path.is_file():
            raise HotrecError(
                f"unknown preset {preset!r}: use one of {', '.join(PRESETS)} or a TOML path"
            )
        try:
            raw = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise HotrecError(f"{path}: invalid TOML: {e}") from None
    for item in overrides or []:
        section, key, value = _parse_override(item)
        raw.setdefault(section, {})[key] = value
    return config_from_dict(raw)


def config_from_dict(raw: dict) -> RunConfig:
    """Build a RunConfig from nested dicts, rejecting unknown sections and keys."""
    if not isinstance(raw, dict):
        raise HotrecError(f"a config is a table of sections, got {type(raw).__name__}")
    parts = {}
    for f in dataclasses.fields(RunConfig):
        cls = typing.get_type_hints(RunConfig)[f.name]
        section = raw.get(f.name, {})
        if not isinstance(section, dict):
            raise HotrecError(f"config section {f.name} is a {type(section).__name__}, not a table")
        parts[f.name] = _build(cls, section, f.name)
    unknown = set(raw) - set(parts)
    if unknown:
        raise HotrecError(f"unknown config section(s): {', '.join(sorted(unknown))}")
    cfg = RunConfig(**parts)
    validate(cfg)
    return cfg


# Values that would otherwise fail deep inside training, checked up front.
CHOICES = {
    "model.interaction": ("dot", "cat", "cross", "attention", "masked_transformer"),
    "model.embedding": ("table", "dhe", "hybrid", "qr"),
    "model.dhe_distribution": ("uniform", "gaussian"),
    "model.dhe_activation": ("relu", "mish"),
    "optim.sparse": ("sgd", "adagrad"),
    "optim.dense": ("sgd", "adagrad", "adam"),
    "train.device": ("auto", "cpu", "cuda", "emulated"),
    "train.dist_backend": ("auto", "gloo", "nccl"),
    "train.dist_sharding": ("rows", "tables"),
    "train.precision": ("auto", "fp32", "bf16"),
    "placement.slipstream_mode": ("skip", "freeze"),
    "placement.slipstream_select": ("stale", "random"),
    "placement.hotline_split": ("auto", "split", "fused"),
}
_POSITIVE = (
    "data.batch_size",
    "data.eval_batch_size",
    "model.embedding_dim",
    "model.num_heads",
    "model.num_layers",
    "model.ffn_dim",
    "model.cross_layers",
    "model.cross_rank",
    "model.dhe_hashes",
    "model.dhe_buckets",
    "model.dhe_prime",
    "model.qr_collisions",
    "optim.sparse_lr",
    "optim.dense_lr",
    "optim.eps",
    "train.log_every",
    "train.epochs",
)
_NON_NEGATIVE = (
    "data.prefetch",
    "data.max_eval_rows",
    "train.max_steps",
    "train.early_stop",
    "train.checkpoint_every",
    "train.threads",
    "placement.fae_run_length",
    "placement.reprofile_every",
)


def validate(cfg: RunConfig) -> None:
    """One-line errors for out-of-range values and unknown choices."""

    def get(name: str):
        section, key = name.split(".")
        return getattr(getattr(cfg, section), key)

    for name, choices in CHOICES.items():
        if get(name) not in choices:
            raise HotrecError(f"{name} must be one of {', '.join(choices)}, got {get(name)!r}")
    for name in _POSITIVE:
        if not get(name) > 0:
            raise HotrecError(f"{name} must be positive, got {get(name)!r}")
    for name in _NON_NEGATIVE:
        if get(name) < 0:
            raise HotrecError(f"{name} must be >= 0, got {get(name)!r}")
    for name in ("train.eval_every", "placement.lookahead", "train.pad_multiple"):
        if get(name) < -1:
            raise HotrecError(f"{name} must be >= 0, or -1 for auto, got {get(name)}")
    m = cfg.model
    if not 0 <= m.dropout < 1:
        raise HotrecError(f"model.dropout must be in [0, 1), got {m.dropout}")
    if m.interaction in ("attention", "masked_transformer") and m.embedding_dim % m.num_heads:
        raise HotrecError(
            f"model.embedding_dim {m.embedding_dim} is not divisible by model.num_heads "
            f"{m.num_heads} ({m.interaction}: every head needs the same width)"
        )
    if m.interaction == "masked_transformer" and len(m.mask_thresholds) != m.num_heads:
        example = ",".join(["0.001"] * m.num_heads)
        raise HotrecError(
            f"model.mask_thresholds needs one tau per head: {m.num_heads} heads, "
            f"got {list(m.mask_thresholds)}; pass --set model.mask_thresholds=[{example}] "
            "with one tau per head"
        )
    if any(not 0 <= t < 1 for t in m.mask_thresholds):
        raise HotrecError(
            f"model.mask_thresholds must lie in [0, 1), got {list(m.mask_thresholds)}"
        )
    if m.dhe_prime <= m.dhe_buckets:
        raise HotrecError(
            f"model.dhe_prime ({m.dhe_prime}) must be larger than model.dhe_buckets ({m.dhe_buckets})"
        )
    if any(h <= 0 for h in m.dhe_hidden):
        raise HotrecError(f"model.dhe_hidden layers must be positive, got {list(m.dhe_hidden)}")
    p = cfg.placement
    for name in ("slipstream_start", "slipstream_window", "slipstream_sample", "slipstream_target"):
        if not 0 <= getattr(p, name) <= 1:
            raise HotrecError(f"placement.{name} must be in [0, 1], got {getattr(p, name)}")
    if p.slipstream_select == "random" and p.slipstream_mode != "skip":
        raise HotrecError(
            "placement.slipstream_select=random is a control of skip mode: it picks inputs to "
            f"skip, and placement.slipstream_mode={p.slipstream_mode!r} skips none"
        )
    if p.slipstream and p.reprofile_every:
        raise HotrecError(
            "placement.slipstream and placement.reprofile_every cannot be combined: a re-profile "
            "renumbers the hot rows slipstream tracks"
        )
    fraction = cfg.placement.sample_fraction
    if not 0 < fraction <= 1:
        raise HotrecError(f"placement.sample_fraction must be in (0, 1], got {fraction}")


def _build(cls: type, values: dict, section: str):
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in hints:
            known = ", ".join(hints)
            raise HotrecError(f"unknown option {section}.{key} (known: {known})")
        kwargs[key] = _coerce(value, hints[key], f"{section}.{key}")
    return cls(**kwargs)


def _coerce(value, hint, name: str):
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise HotrecError(f"{name} must be a list, got {value!r}")
        return tuple(_coerce(v, typing.get_args(hint)[0], name) for v in value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is bool and not isinstance(value, bool):
        raise HotrecError(f"{name} must be true or false, got {value!r}")
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise HotrecError(f"{name} must be {hint.__name__}, got {value!r}")
    return value


def _parse_override(item: str) -> tuple[str, str, object]:
    """'model.embedding_dim=32' -> ('model', 'embedding_dim', 32); bare words become strings."""
    if "=" not in item or "." not in item.split("=", 1)[0]:
        raise HotrecError(f"override {item!r} must look like section.key=value")
    dotted, text = item.split("=", 1)
    section, key = dotted.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    return section, key, value


def replace(cfg: RunConfig, **sections: dict) -> RunConfig:
    """Copy of cfg with some fields of some sections changed: replace(cfg, train={"epochs": 2})."""
    parts = {
        name: dataclasses.replace(getattr(cfg, name), **vals) for name, vals in sections.items()
    }
    return dataclasses.replace(cfg, **parts)
