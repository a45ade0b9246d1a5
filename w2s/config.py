"""Config checks that run before any training: one clear line per bad value, naming the choices."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from w2s import tracking  # noqa: F401  (registers ${w2s_wandb_offline:}, which conf/logger/wandb.yaml uses)
from w2s.errors import ConfigError
from w2s.losses import PRIORS
from w2s.models import check_name
from w2s.splits import SPLIT_ORDER, is_fraction

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


TRAIN_MODES = ("full", "lora", "probe")


def by_mode(mode: str, table: dict[str, Any]) -> Any:
    """`${w2s_by_mode:${.train_mode},{probe: 1e-3, ...}}`: a model's lr/epochs follow its train_mode, so
    `supervisor.train_mode=full` does not inherit a probe's settings; an explicit `supervisor.lr=` still wins."""
    if mode not in table:
        raise ConfigError(f"train_mode={mode!r}; choices: {sorted(table)}")
    return table[mode]


if not OmegaConf.has_resolver("w2s_by_mode"):
    OmegaConf.register_new_resolver("w2s_by_mode", by_mode)


#: Loss settings users type, with the closed range each must fall in (`conf/loss/*.yaml`).
LOSS_RANGES: dict[str, tuple[float, float]] = {
    "alpha_max": (0.0, 1.0),
    "warmup_frac": (0.0, 1.0),
    "prior_value": (0.0, 1.0),
    "momentum": (0.0, 1.0),
    "lam_max": (0.0, 10.0),
    "alpha": (0.0, 10.0),
    "beta": (0.0, 10.0),
}


def _in_range(cfg: DictConfig, path: str, lo: float, hi: float) -> None:
    value = OmegaConf.select(cfg, path)
    if isinstance(value, bool) or not isinstance(value, int | float) or not (lo <= value <= hi):
        raise ConfigError(f"{path}={value!r} must be a number in [{lo:g}, {hi:g}]")


def _missing(node: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose value is still `???` (not resolving interpolations, which would raise first)."""
    if isinstance(node, dict):
        return [m for k, v in node.items() for m in _missing(v, f"{prefix}{k}.")]
    if isinstance(node, list):
        return [m for i, v in enumerate(node) for m in _missing(v, f"{prefix}{i}.")]
    return [prefix[:-1]] if node == "???" else []


def choices(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def decoders() -> list[str]:
    """Catalogue entries that can generate (and be prompted)."""
    return [
        n
        for n in choices("model")
        if OmegaConf.load(CONF_DIR / "model" / f"{n}.yaml").get("arch") == "decoder"
    ]


#: Config groups of the bootstrap chain (conf/chain1..3 are the model catalogue, like supervisor and student).
CHAIN_GROUPS = ("chain1", "chain2", "chain3")


def chain_models(cfg: DictConfig) -> list[DictConfig]:
    """The chain's composed model configs in order (empty without a chain)."""
    return [cfg[g] for g in CHAIN_GROUPS if cfg.get(g) is not None]


def extra_transfers(cfg: DictConfig) -> int:
    """Fresh transfer splits the chain adds (`transfer1`, ...): one per chain model, none with reuse_transfer."""
    return 0 if cfg.method.get("reuse_transfer", False) else len(chain_models(cfg))


def transfer_splits(cfg: DictConfig) -> list[str]:
    """The split each step of the ladder labels and learns: the supervisor's, then one per chain model."""
    return ["transfer"] + [
        f"transfer{k}" if extra_transfers(cfg) else "transfer" for k in range(1, 1 + len(chain_models(cfg)))
    ]


def _validate_chain(cfg: DictConfig) -> None:
    """The chain is chain1, chain2, ... without gaps; sizes rise from supervisor to student."""
    if cfg.method.get("chain") is not None:
        raise ConfigError(
            f"method.chain={list(cfg.method.chain)!r}: chain models are config groups like supervisor and "
            "student: chain1=NAME [chain2=NAME chain3=NAME], then e.g. chain1.lr=1e-4 (docs/SWEEPS.md)"
        )
    present = [g for g in CHAIN_GROUPS if cfg.get(g) is not None]
    if present != list(CHAIN_GROUPS[: len(present)]):
        raise ConfigError(f"chain groups {present} have a gap: set {CHAIN_GROUPS[: len(present)]} in order")
    if present and cfg.method.name != "bootstrap":
        raise ConfigError(
            f"{present[0]}={cfg[present[0]].name!r} needs method=bootstrap (method={cfg.method.name!r})"
        )
    if cfg.method.name == "bootstrap" and not present:
        raise ConfigError(
            "method=bootstrap needs a chain model: chain1=NAME; choices: " + str(choices("model"))
        )
    steps = [("supervisor", cfg.supervisor), *[(g, cfg[g]) for g in present], ("student", cfg.student)]
    for (ra, a), (rb, b) in zip(steps, steps[1:], strict=False):
        if a.params > b.params and not cfg.allow_smaller_student:
            raise ConfigError(
                f"{rb} {b.name!r} ({b.params:.3g} params) is smaller than {ra} {a.name!r} ({a.params:.3g}): "
                "sizes must rise along supervisor -> chain -> student; set allow_smaller_student=true if meant"
            )
    for g in present:
        if cfg.task.type == "generate" and cfg[g].get("arch") != "decoder":
            raise ConfigError(
                f"{g}={cfg[g].name!r} is not a decoder; task {cfg.task.name!r} needs {decoders()}"
            )


def model_config(name: str) -> DictConfig:
    """A model catalogue entry by name (for `analysis.prompting.model`, which names a model)."""
    path = CONF_DIR / "model" / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"model {name!r} unknown; choices: {choices('model')}")
    return OmegaConf.load(path)


def _positive(cfg: DictConfig, path: str, kind: type = int) -> None:
    value = OmegaConf.select(cfg, path)
    if not isinstance(value, kind) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{path}={value!r} must be a positive {kind.__name__}")


def validate(cfg: DictConfig) -> None:
    """Check types, ranges, names and paths; every error names the value and what would be accepted."""
    missing = _missing(OmegaConf.to_container(cfg, resolve=False))
    if missing:
        raise ConfigError(f"{missing[0]} has no value (???); set it on the command line: {missing[0]}=VALUE")
    validate_splits(cfg)
    modes = ("weak", "oracle", "final")
    if cfg.early_stop.mode not in modes:
        raise ConfigError(f"early_stop.mode={cfg.early_stop.mode!r}; choices: {list(modes)}")
    if not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise ConfigError(f"seed={cfg.seed!r} must be a non-negative integer")
    if not (isinstance(cfg.pgr_eps, int | float) and cfg.pgr_eps >= 0):
        raise ConfigError(f"pgr_eps={cfg.pgr_eps!r} must be a number >= 0")
    for role in ("supervisor", *[g for g in CHAIN_GROUPS if cfg.get(g) is not None], "student"):
        m = cfg[role]
        if m.train_mode not in TRAIN_MODES:
            raise ConfigError(f"{role}.train_mode={m.train_mode!r}; choices: {list(TRAIN_MODES)}")
        _positive(cfg, f"{role}.batch_size")
        if m.get("arch") != "vision":  # an image model reads pixels at its resolution, not tokens
            _positive(cfg, f"{role}.max_length")
        if not isinstance(m.lr, float | int) or not (0 < float(m.lr) < 1) or math.isnan(float(m.lr)):
            raise ConfigError(f"{role}.lr={m.lr!r} must be a number in (0, 1)")
        if cfg.task.type == "generate" and m.get("arch") != "decoder":
            raise ConfigError(
                f"{role}={m.name!r} is an {m.get('arch')}; task {cfg.task.name!r} generates text and needs a "
                f"decoder; choices: {decoders()}"
            )
    for key in LOSS_RANGES:
        if key in cfg.loss:
            _in_range(cfg, f"loss.{key}", *LOSS_RANGES[key])
    if "prior" in cfg.loss and cfg.loss.prior not in PRIORS:
        raise ConfigError(f"loss.prior={cfg.loss.prior!r}; choices: {list(PRIORS)}")
    if cfg.task.type == "generate" and cfg.loss.get("radius") == "midweak":  # Loss.prepare never sees tokens
        raise ConfigError(
            f"loss.radius=midweak reads soft labels; task {cfg.task.name!r} trains on one-hot answer tokens: "
            "give the radius as a number"
        )
    if "iters" in cfg.method:  # method=s2s: rounds of the strong model learning its own predictions
        _positive(cfg, "method.iters")
    _in_range(cfg, "optim.weight_decay", 0.0, 1.0)
    _positive(cfg, "eval_batch_size")
    if cfg.trainer.get("max_steps", -1) in (None, -1):
        _positive(cfg, "trainer.max_epochs")
    _validate_chain(cfg)
    _validate_analysis(cfg)
    _validate_training(cfg)
    gft = cfg.get("gen_finetune") or {}
    if gft.get("enabled"):
        if cfg.task.type == "generate":
            raise ConfigError(
                "gen_finetune applies to scored tasks (its LM step is what a generative task trains)"
            )
        if cfg.student.get("arch") != "decoder":
            raise ConfigError(
                f"gen_finetune needs a decoder student; student={cfg.student.name!r}; choices: {decoders()}"
            )
        if gft.train_mode not in ("lora", "full"):
            raise ConfigError(f"gen_finetune.train_mode={gft.train_mode!r}; choices: ['full', 'lora']")
        for name in gft.splits:
            if name not in ("weak", "transfer", "val"):
                raise ConfigError(
                    f"gen_finetune.splits has {name!r}; choices: ['transfer', 'val', 'weak'] (never test)"
                )
        _positive(cfg, "gen_finetune.epochs")
        _positive(cfg, "gen_finetune.batch_size")
    path = cfg.task.get("path")
    if path is not None and not Path(path).exists():
        raise ConfigError(f"task.path={path!r} does not exist")


def validate_splits(cfg: DictConfig) -> None:
    """Each split size is a count (integer >= 1) or a fraction of the task's rows in (0, 1) (`w2s.splits`);
    fractions, with one more transfer fraction per bootstrap step, must leave the splits disjoint (sum <= 1)."""
    total = 0.0
    steps = extra_transfers(cfg)
    for name in SPLIT_ORDER:
        value = cfg.split[name]
        count = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        if not (count or is_fraction(value)):
            raise ConfigError(
                f"split.{name}={value!r} must be a count (an integer >= 1) or a fraction in (0, 1)"
            )
        if is_fraction(value):
            total += value * (1 + steps if name == "transfer" else 1)
    if total > 1 + 1e-9:
        extra = f" (transfer counted {1 + steps} times: {steps} bootstrap steps)" if steps else ""
        raise ConfigError(
            f"split fractions sum to {total:.3g} > 1{extra}; lower split.transfer or the others"
        )
    if cfg.split.ceiling_on not in ("transfer", "weak"):
        raise ConfigError(f"split.ceiling_on={cfg.split.ceiling_on!r}; choices: ['transfer', 'weak']")


#: `trainer.precision` values Lightning accepts (its own error is a traceback after the task stage ran).
PRECISIONS = (
    "16-mixed", "bf16-mixed", "16-true", "bf16-true", "32-true", "64-true",
    "transformer-engine", "transformer-engine-float16", "16", "32", "64", "bf16", 16, 32, 64,
)  # fmt: skip
#: Metrics early stopping can select on: what scored validation reports. A generative task always selects by
#: its answers' exact match (ties by token accuracy), so there the setting is accepted and unused.
STOP_METRICS = ("acc", "auroc")


def _validate_training(cfg: DictConfig) -> None:
    """Trainer and per-model training settings that Lightning would reject late, or accept and misuse."""
    precision = cfg.trainer.get("precision")
    if precision not in PRECISIONS:
        raise ConfigError(f"trainer.precision={precision!r}; choices: {[str(p) for p in PRECISIONS[:8]]}")
    metric = cfg.early_stop.get("metric")
    if metric not in STOP_METRICS:
        raise ConfigError(f"early_stop.metric={metric!r}; choices: {list(STOP_METRICS)}")
    for role in ("supervisor", *[g for g in CHAIN_GROUPS if cfg.get(g) is not None], "student"):
        if cfg[role].get("epochs") is not None:  # 0 would train nothing and "select" a step never taken
            _positive(cfg, f"{role}.epochs")
        name = OmegaConf.select(cfg, f"{role}.source.name")
        if name is not None:
            check_name(name, f"{role}.source.name")


def _validate_analysis(cfg: DictConfig) -> None:
    """Checks of the analysis settings that need no data; each hook checks the rest (w2s.hooks)."""
    an = cfg.get("analysis")
    if an is not None and an.get("eval_points") is not None:
        _positive(cfg, "analysis.eval_points")


def summary(cfg: Any) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)
