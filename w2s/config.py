"""Config checks that run before any training: one clear line per bad value, naming the choices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from w2s import (
    dist,
    schema,
    tracking,  # noqa: F401  (registers ${w2s_wandb_offline:}, which conf/logger/wandb.yaml uses)
)
from w2s.errors import ConfigError
from w2s.models import check_name
from w2s.splits import SPLIT_ORDER, is_fraction

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


TRAIN_MODES = schema.TRAIN_MODES


def by_mode(mode: str, table: dict[str, Any]) -> Any:
    """`${w2s_by_mode:${.train_mode},{probe: 1e-3, ...}}`: a model's lr/epochs follow its train_mode, so
    `supervisor.train_mode=full` does not inherit a probe's settings; an explicit `supervisor.lr=` still wins."""
    if mode not in table:
        raise ConfigError(f"train_mode={mode!r}; choices: {sorted(table)}")
    return table[mode]


if not OmegaConf.has_resolver("w2s_by_mode"):
    OmegaConf.register_new_resolver("w2s_by_mode", by_mode)


def _missing(node: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose value is still `???` (not resolving interpolations, which would raise first)."""
    if isinstance(node, dict):
        return [m for k, v in node.items() for m in _missing(v, f"{prefix}{k}.")]
    if isinstance(node, list):
        return [m for i, v in enumerate(node) for m in _missing(v, f"{prefix}{i}.")]
    return [prefix[:-1]] if node == "???" else []


def choices(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def models_of(vision: bool) -> list[str]:
    """Catalogue entries that read images (`arch: vision`), or those that read text."""
    return [
        n
        for n in choices("model")
        if (OmegaConf.load(CONF_DIR / "model" / f"{n}.yaml").get("arch") == "vision") == vision
    ]


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


def validate(cfg: DictConfig) -> None:
    """Check types, ranges, names and paths; every error names the value and what would be accepted. One pass
    per config: `train.py` runs it before any logger starts, and `pipeline.run` (called directly by tests and
    notebooks) finds it done."""
    key = OmegaConf.to_yaml(cfg, resolve=False)
    if _VALIDATED.get(id(cfg)) == key:
        return
    missing = _missing(OmegaConf.to_container(cfg, resolve=False))
    if missing:
        raise ConfigError(f"{missing[0]} has no value (???); set it on the command line: {missing[0]}=VALUE")
    schema.check(cfg)  # types, ranges, choices, unknown keys, _target_ allow-list, template, label map
    validate_splits(cfg)
    _validate_models(cfg)
    _validate_chain(cfg)
    _validate_training(cfg)
    _validate_loss(cfg)
    _validate_gen_finetune(cfg)
    _validate_input(cfg)
    _VALIDATED[id(cfg)] = key


#: Configs that passed `validate`, by identity, with the text they had then (an edit since re-validates).
_VALIDATED: dict[int, str] = {}


def _validate_models(cfg: DictConfig) -> None:
    """Every role's model reads what the task holds: decoders for a generative task, image models (`arch:
    vision`) for an image task and only there; LoRA adapts transformers, not image networks."""
    for role in ("supervisor", *[g for g in CHAIN_GROUPS if cfg.get(g) is not None], "student"):
        m = cfg[role]
        if cfg.task.type == "generate" and m.get("arch") != "decoder":
            raise ConfigError(
                f"{role}={m.name!r} is an {m.get('arch')}; task {cfg.task.name!r} generates text and needs a "
                f"decoder; choices: {decoders()}"
            )
        if (cfg.task.type == "image") != (m.get("arch") == "vision"):
            want = "image models" if cfg.task.type == "image" else "text models"
            raise ConfigError(
                f"{role}={m.name!r} ({m.get('arch')}) cannot read task {cfg.task.name!r} ({cfg.task.type}); "
                f"choices: {want}: {models_of(cfg.task.type == 'image')}"
            )
        if m.get("arch") == "vision" and m.train_mode == "lora":
            raise ConfigError(f"{role}.train_mode='lora' adapts transformers; an image model: probe or full")
        name = OmegaConf.select(cfg, f"{role}.source.name")
        if name is not None:
            check_name(name, f"{role}.source.name")


def _validate_gen_finetune(cfg: DictConfig) -> None:
    gft = cfg.get("gen_finetune") or {}
    if not gft.get("enabled"):
        return
    if cfg.task.type == "generate":
        raise ConfigError(
            "gen_finetune applies to scored tasks (its LM step is what a generative task trains)"
        )
    if cfg.student.get("arch") != "decoder":
        raise ConfigError(
            f"gen_finetune needs a decoder student; student={cfg.student.name!r}; choices: {decoders()}"
        )
    if "test" in list(gft.splits):
        raise ConfigError("gen_finetune.splits has 'test'; choices: ['transfer', 'val', 'weak'] (never test)")


def _validate_input(cfg: DictConfig) -> None:
    """The task's file exists and this user can read it (fingerprinting it would fail later, mid-run)."""
    path = cfg.task.get("path")
    if path is None:
        return
    p = Path(str(path)).expanduser()
    if not p.exists():
        raise ConfigError(f"task.path={path!r} does not exist")
    try:
        if p.is_file():
            with p.open("rb") as f:
                f.read(1)
        else:
            next(p.iterdir(), None)
    except OSError as e:
        raise ConfigError(
            f"task.path={path!r} cannot be read ({e.strerror or e}); check its permissions"
        ) from None


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


def _validate_loss(cfg: DictConfig) -> None:
    """`loss.radius=midweak` reads soft labels through `Loss.prepare`, which a generative task's one-hot answer
    tokens never reach (`GenModule`)."""
    if cfg.task.type == "generate" and cfg.loss.get("radius") == "midweak":
        raise ConfigError(
            f"loss.radius=midweak reads soft labels; task {cfg.task.name!r} trains on one-hot answer tokens: "
            "give the radius as a number"
        )


def _validate_training(cfg: DictConfig) -> None:
    """Trainer settings that Lightning would reject late, or accept and misuse."""
    precision = cfg.trainer.get("precision")
    if precision not in PRECISIONS:
        raise ConfigError(f"trainer.precision={precision!r}; choices: {[str(p) for p in PRECISIONS[:8]]}")
    if cfg.trainer.get("max_steps", -1) in (None, -1) and cfg.trainer.get("max_epochs") in (None, -1, 0):
        raise ConfigError(f"trainer.max_epochs={cfg.trainer.get('max_epochs')!r} must be a positive integer")
    dist.device_count(cfg.trainer.get("devices", 1))
    interval = cfg.trainer.get("val_check_interval")
    if interval is not None and not (
        (isinstance(interval, int) and not isinstance(interval, bool) and interval >= 1)
        or (isinstance(interval, float) and 0 < interval <= 1)
    ):
        raise ConfigError(
            f"trainer.val_check_interval={interval!r} must be a fraction of an epoch in (0, 1] or a whole "
            "number of batches >= 1"
        )
    accelerator = str(cfg.trainer.get("accelerator"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator!r} but no CUDA device is visible here; choices here: ['auto', 'cpu']"
        )
