"""Config checks that run before any training: one clear line per bad value, naming the choices."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from w2s import tracking  # noqa: F401  (registers ${w2s_wandb_offline:}, which conf/logger/wandb.yaml uses)
from w2s.errors import ConfigError
from w2s.models import check_name

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


def model_config(name: str) -> DictConfig:
    """A model catalogue entry by name (for `method.chain`, which lists models by name)."""
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
    for name in ("weak", "transfer", "val", "test"):
        _positive(cfg, f"split.{name}")
    if cfg.split.ceiling_on not in ("transfer", "weak"):
        raise ConfigError(f"split.ceiling_on={cfg.split.ceiling_on!r}; choices: ['transfer', 'weak']")
    modes = ("weak", "oracle", "final")
    if cfg.early_stop.mode not in modes:
        raise ConfigError(f"early_stop.mode={cfg.early_stop.mode!r}; choices: {list(modes)}")
    if cfg.task.type not in ("classify", "pairwise", "generate"):
        raise ConfigError(f"task.type={cfg.task.type!r}; choices: ['classify', 'generate', 'pairwise']")
    if not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise ConfigError(f"seed={cfg.seed!r} must be a non-negative integer")
    if not (isinstance(cfg.pgr_eps, int | float) and cfg.pgr_eps >= 0):
        raise ConfigError(f"pgr_eps={cfg.pgr_eps!r} must be a number >= 0")
    for role in ("supervisor", "student"):
        m = cfg[role]
        if m.train_mode not in TRAIN_MODES:
            raise ConfigError(f"{role}.train_mode={m.train_mode!r}; choices: {list(TRAIN_MODES)}")
        _positive(cfg, f"{role}.batch_size")
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
    if "prior" in cfg.loss and cfg.loss.prior not in ("batch", "dataset", "fixed"):
        raise ConfigError(f"loss.prior={cfg.loss.prior!r}; choices: ['batch', 'dataset', 'fixed']")
    if cfg.optim.schedule not in ("cosine", "constant", "linear"):
        raise ConfigError(f"optim.schedule={cfg.optim.schedule!r}; choices: ['constant', 'cosine', 'linear']")
    _in_range(cfg, "optim.weight_decay", 0.0, 1.0)
    _positive(cfg, "eval_batch_size")
    if cfg.trainer.get("max_steps", -1) in (None, -1):
        _positive(cfg, "trainer.max_epochs")
    for name in cfg.method.get("chain") or []:
        if model_config(name).get("arch") != "decoder" and cfg.task.type == "generate":
            raise ConfigError(
                f"method.chain has {name!r}, not a decoder; task {cfg.task.name!r} needs {decoders()}"
            )
    if cfg.supervisor.params > cfg.student.params and not cfg.allow_smaller_student:
        raise ConfigError(
            f"student {cfg.student.name!r} ({cfg.student.params:.3g} params) is smaller than supervisor "
            f"{cfg.supervisor.name!r} ({cfg.supervisor.params:.3g}); set allow_smaller_student=true if meant"
        )
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


#: `trainer.precision` values Lightning accepts (its own error is a traceback after the task stage ran).
PRECISIONS = (
    "16-mixed", "bf16-mixed", "16-true", "bf16-true", "32-true", "64-true",
    "transformer-engine", "transformer-engine-float16", "16", "32", "64", "bf16", 16, 32, 64,
)  # fmt: skip
#: Metrics early stopping can select on, per task kind: what that kind's validation reports. A generative
#: task selects by its answers' accuracy (ties by token accuracy); its default `auroc` is accepted and unused.
STOP_METRICS = {"classify": ("acc", "auroc"), "pairwise": ("acc", "auroc"), "generate": ("acc", "auroc")}


def _validate_training(cfg: DictConfig) -> None:
    """Trainer and per-model training settings that Lightning would reject late, or accept and misuse."""
    precision = cfg.trainer.get("precision")
    if precision not in PRECISIONS:
        raise ConfigError(f"trainer.precision={precision!r}; choices: {[str(p) for p in PRECISIONS[:8]]}")
    metric, allowed = cfg.early_stop.get("metric"), STOP_METRICS.get(cfg.task.type, ())
    if metric not in allowed:
        raise ConfigError(
            f"early_stop.metric={metric!r}; choices for a {cfg.task.type} task: {list(allowed)}"
        )
    for role in ("supervisor", "student"):
        if cfg[role].get("epochs") is not None:  # 0 would train nothing and "select" a step never taken
            _positive(cfg, f"{role}.epochs")
        name = OmegaConf.select(cfg, f"{role}.source.name")
        if name is not None:
            check_name(name, f"{role}.source.name")


def _validate_analysis(cfg: DictConfig) -> None:
    an = cfg.get("analysis")
    if an is None:
        return
    if an.get("eval_points") is not None:
        _positive(cfg, "analysis.eval_points")
    e2h = an.get("easy_to_hard") or {}
    if cfg.task.type == "generate":
        for name, on in (
            ("noise_control", an.get("noise_control")),
            ("easy_to_hard.by", e2h.get("by")),
            ("prompting.enabled", (an.get("prompting") or {}).get("enabled")),
        ):
            if on:
                raise ConfigError(
                    f"analysis.{name} applies to scored tasks, not to the generative task {cfg.task.name!r}; "
                    "for easy-to-hard on chess, filter by task.min_rating / task.max_rating"
                )
    q = e2h.get("quantile", 0.5)
    if not isinstance(q, float | int) or isinstance(q, bool) or not 0 < q < 1:
        raise ConfigError(f"analysis.easy_to_hard.quantile={q!r} must be a number in (0, 1)")
    pr = an.get("prompting") or {}
    if pr.get("enabled"):
        m = model_config(pr.model)
        if m.get("arch") != "decoder":
            raise ConfigError(
                f"analysis.prompting.model={pr.model!r} is not a decoder; choices: {decoders()}"
            )
        for k in pr.shots:
            if not isinstance(k, int) or k < 0:
                raise ConfigError(f"analysis.prompting.shots has {k!r}; shots are integers >= 0")
        for src in pr.labels:
            if src not in ("gt", "weak"):
                raise ConfigError(f"analysis.prompting.labels has {src!r}; choices: ['gt', 'weak']")
        if cfg.task.type != "classify" or not cfg.task.get("prompt_template"):
            raise ConfigError(
                f"analysis.prompting needs a classify task with a prompt_template; task {cfg.task.name!r} has none"
            )


def summary(cfg: Any) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)
