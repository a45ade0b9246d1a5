"""One table of every typed option: dotted key -> type, range or choices. `check(cfg)` walks it, refuses keys
nobody reads (naming the nearest known one) and `_target_`s outside the allow-list; each error is one line.
"""

from __future__ import annotations

import difflib
import inspect
import math
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from w2s.errors import ConfigError
from w2s.losses import PRIORS

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


@dataclass(frozen=True)
class Rule:
    """What one key accepts: `kind` int | num | bool | choice | str | list (of `item`); bounds `lo`/`hi`,
    exclusive where `open_lo`/`open_hi`; `null` allows None; `choices` a tuple or a function of the config."""

    kind: str
    lo: float | None = None
    hi: float | None = None
    open_lo: bool = False
    open_hi: bool = False
    null: bool = False
    choices: Sequence[Any] | Callable[[Any], Sequence[Any]] | None = None
    item: Rule | None = None
    length: int | None = None

    def describe(self) -> str:
        if self.kind == "bool":
            return "true or false"
        if self.kind == "str":
            return "a string"
        if self.kind == "list":
            n = f"{self.length} " if self.length else ""
            return f"a list of {n}values, each {self.item.describe() if self.item else 'anything'}"
        what = "an integer" if self.kind == "int" else "a number"
        if self.lo is not None and self.hi is not None:
            lb, rb = "(" if self.open_lo else "[", ")" if self.open_hi else "]"
            what += f" in {lb}{_num(self.lo)}, {_num(self.hi)}{rb}"
        elif self.lo is not None:
            what += f" {'>' if self.open_lo else '>='} {_num(self.lo)}"
        return what + (" or null" if self.null else "")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def Int(lo: float | None = None, hi: float | None = None, null: bool = False) -> Rule:  # noqa: N802
    return Rule("int", lo, hi, null=null)


def Num(lo=None, hi=None, open_lo=False, open_hi=False, null=False) -> Rule:  # noqa: N802
    return Rule("num", lo, hi, open_lo, open_hi, null)


def Choice(choices: Sequence[Any] | Callable[[Any], Sequence[Any]], null: bool = False) -> Rule:  # noqa: N802
    return Rule("choice", choices=choices, null=null)


BOOL, STR, POS = Rule("bool"), Rule("str"), Int(1)
FRACTION_OPEN = Num(0, 1, open_lo=True, open_hi=True)
ROLES = ("supervisor", "chain1", "chain2", "chain3", "student")
TRAIN_MODES = ("full", "lora", "probe")
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


def _strategies(cfg: Any) -> list[str]:
    from pytorch_lightning.strategies import StrategyRegistry

    return ["auto", *StrategyRegistry.available_strategies()]


def _sources(cfg: Any) -> list[str]:
    return sorted(OmegaConf.select(cfg, "task.loader.sources") or {})


#: The schema: every typed option. `<model>` stands for each model role present (supervisor, chain, student).
SCHEMA: dict[str, Rule] = {
    "seed": Int(0, 2**32 - 1),
    "force": BOOL,
    "allow_smaller_student": BOOL,
    "allowed_targets": Rule("list", item=STR),
    "progress_bar": BOOL,
    "pgr_eps": Num(0),
    "eval_batch_size": POS,
    "dist.timeout_min": Num(0, 7 * 24 * 60, open_lo=True),
    "features.precision": Choice(("auto", "bf16", "fp32")),
    "features.max_tokens": POS,
    "features.shard_rows": POS,
    "features.fp32_models": Rule("list", item=STR),
    "gen_finetune.enabled": BOOL,
    "gen_finetune.train_mode": Choice(("full", "lora")),
    "gen_finetune.epochs": POS,
    "gen_finetune.lr": FRACTION_OPEN,
    "gen_finetune.batch_size": POS,
    "gen_finetune.max_length": POS,
    "gen_finetune.max_texts": Int(1, null=True),
    "gen_finetune.splits": Rule("list", item=Choice(("transfer", "val", "weak"))),
    "early_stop.mode": Choice(("weak", "oracle", "final")),
    "early_stop.metric": Choice(("acc", "auroc")),
    "early_stop.track_test": BOOL,
    "analysis.agreement": BOOL,
    "analysis.noise_control": BOOL,
    "analysis.eval_points": Int(1, null=True),
    "analysis.easy_to_hard.quantile": FRACTION_OPEN,
    "analysis.prompting.enabled": BOOL,
    "analysis.prompting.model": STR,
    "analysis.prompting.shots": Rule("list", item=Int(0)),
    "analysis.prompting.labels": Rule("list", item=Choice(("gt", "weak"))),
    "analysis.prompting.max_test": Int(1, null=True),
    "analysis.prompting.batch_size": POS,
    "analysis.prompting.max_length": POS,
    "optim.weight_decay": Num(0, 1),
    "optim.betas": Rule("list", item=Num(0, 1, open_hi=True), length=2),
    "scheduler.warmup_steps": Int(0),
    "trainer.accelerator": Choice(("auto", "cpu", "gpu", "cuda", "mps", "tpu")),
    "trainer.strategy": Choice(_strategies),
    "trainer.num_nodes": POS,
    "trainer.max_epochs": Int(-1, null=True),
    "trainer.max_steps": Int(-1, null=True),
    "trainer.num_sanity_val_steps": Int(-1),
    "trainer.log_every_n_steps": POS,
    "trainer.deterministic": Choice((True, False, "warn")),
    "trainer.accumulate_grad_batches": POS,
    "trainer.gradient_clip_val": Num(0, null=True),
    "<model>.train_mode": Choice(TRAIN_MODES),
    "<model>.batch_size": POS,
    "<model>.max_length": POS,
    "<model>.lr": FRACTION_OPEN,
    "<model>.epochs": Int(1, null=True),
    "<model>.params": Num(0, open_lo=True),
    "<model>.resolution": POS,
    "task.num_classes": Int(2, null=True),
    "task.limit": Int(1, null=True),
    "task.loader.limit": Int(1, null=True),
    "task.min_rating": Num(null=True),
    "task.max_rating": Num(null=True),
    "task.input_format": Choice(("moves", "fen")),
    "task.source": Choice(_sources),
    "loss.prior": Choice(PRIORS),
    "method.iters": POS,  # method=s2s: strong-to-strong rounds
    **{f"loss.{k}": Num(lo, hi) for k, (lo, hi) in LOSS_RANGES.items()},
}


def _fails(rule: Rule, value: Any, cfg: Any) -> str | None:
    """Why `value` breaks `rule` (None when it fits)."""
    if value is None:
        return None if rule.null else "must be set"
    kind = rule.kind
    if kind == "bool":
        return None if isinstance(value, bool) else "must be true or false"
    if kind == "str":
        return None if isinstance(value, str) else "must be a string"
    if kind == "choice":
        options = rule.choices(cfg) if callable(rule.choices) else rule.choices
        if not options:  # nothing to choose from here (a task without named sources)
            return None
        if value in options and (
            isinstance(value, bool) == any(isinstance(o, bool) and o == value for o in options)
        ):
            return None
        return f"; choices: {[str(o).lower() if isinstance(o, bool) else o for o in options]}"
    if kind == "list":
        if not isinstance(value, Sequence | ListConfig) or isinstance(value, str):
            return f"must be {rule.describe()}"
        if rule.length is not None and len(value) != rule.length:
            return f"must be {rule.describe()}"
        for v in value:
            if rule.item and (why := _fails(rule.item, v, cfg)):
                return (
                    f"has {v!r}: {why.lstrip('; ')}" if why.startswith(";") else f"must be {rule.describe()}"
                )
        return None
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or (kind == "int" and not isinstance(value, int)) or not math.isfinite(value):
        return f"must be {rule.describe()}"
    too_low = rule.lo is not None and (value <= rule.lo if rule.open_lo else value < rule.lo)
    too_high = rule.hi is not None and (value >= rule.hi if rule.open_hi else value > rule.hi)
    return f"must be {rule.describe()}" if too_low or too_high else None


def _keys(cfg: Any) -> list[str]:
    roles = [r for r in ROLES if cfg.get(r) is not None]
    out = []
    for key in SCHEMA:
        out += [key.replace("<model>", r) for r in roles] if key.startswith("<model>") else [key]
    return out


def check_types(cfg: Any) -> None:
    """Every key of `SCHEMA` that the config holds has the type, range or choice the table gives."""
    for key in _keys(cfg):
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        if not isinstance(node, DictConfig) or leaf not in node:
            continue
        value = OmegaConf.select(cfg, key)
        rule = SCHEMA[key if key in SCHEMA else "<model>." + leaf]
        if why := _fails(rule, value, cfg):
            raise ConfigError(f"{key}={_show(value)}{why if why.startswith(';') else ' ' + why}")


def _show(value: Any) -> str:
    if isinstance(value, ListConfig | DictConfig):
        value = OmegaConf.to_container(value)
    return repr(value)


#: `_target_` values a config may name: this project's classes, and the library classes configs build.
ALLOWED_TARGETS = (
    "w2s.",
    "pytorch_lightning.loggers.",
    "pytorch_lightning.callbacks.",
    "pytorch_lightning.Trainer",
    "lightning.pytorch.loggers.",
    "lightning.pytorch.callbacks.",
    "lightning.pytorch.Trainer",
    "torch.optim.",
)


def _target_allowed(target: Any, allowed: Sequence[str]) -> bool:
    if not isinstance(target, str):
        return False
    return any(target.startswith(p) if p.endswith(".") else target == p for p in allowed)


def check_targets(node: Any, allowed: Sequence[str] = ALLOWED_TARGETS, prefix: str = "") -> None:
    """Refuse any `_target_` outside `allowed` (`ALLOWED_TARGETS` and the config's own `allowed_targets`, a
    user's explicit list, e.g. a module of their own losses): `loss._target_=builtins.print` would call it."""
    if isinstance(node, Mapping):
        for k, v in node.items():
            key = f"{prefix}{k}"
            if k == "_target_" and not _target_allowed(v, allowed):
                raise ConfigError(
                    f"{key}={v!r} is not allowed: a _target_ names one of this project's classes or an allowed "
                    f"library class; allowed prefixes: {list(allowed)} (add yours to allowed_targets)"
                )
            check_targets(v, allowed, key + ".")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            check_targets(v, allowed, f"{prefix}{i}.")


#: Sections of train.yaml whose keys are the project's own: a key not in train.yaml is a typo.
OWN_SECTIONS = ("analysis", "optim", "scheduler", "features", "gen_finetune", "early_stop", "dist")
_INSTANTIATE_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}


def _reference() -> dict[str, Any]:
    ref = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "train.yaml"), resolve=False)
    groups = [next(iter(d)) if isinstance(d, dict) else d for d in ref.pop("defaults", [])]
    ref.pop("hydra", None)
    for g in groups:
        name = g.split("@")[0].split("/")[-1].removeprefix("optional ").strip()
        ref.setdefault(name, None)
    ref["paths"] = {
        **OmegaConf.to_container(OmegaConf.load(CONF_DIR / "paths" / "default.yaml")),
        "output_dir": 0,
    }
    return ref


def _params(target: Any) -> set[str] | None:
    """Keyword names a `_target_` accepts (None: it takes **kwargs, or cannot be imported here)."""
    try:
        from hydra.utils import get_object

        sig = inspect.signature(get_object(str(target)))
    except Exception:
        return None
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return set(sig.parameters)


def _unknown(node: Any, ref: Any, prefix: str) -> None:
    if not isinstance(node, DictConfig) or not isinstance(ref, dict):
        return
    known = set(ref) | _INSTANTIATE_KEYS
    if "_target_" in node:
        params = _params(node._target_)
        if params is None:
            return
        known |= params
    for k in node:
        if k not in known:
            near = difflib.get_close_matches(str(k), sorted(known - _INSTANTIATE_KEYS), n=1)
            hint = f"; did you mean {prefix}{near[0]}?" if near else ""
            raise ConfigError(
                f"{prefix}{k} is not a known key{hint}; choices: {sorted(known - _INSTANTIATE_KEYS)}"
            )
        _unknown(node[k], ref.get(k), f"{prefix}{k}.")


def check_unknown_keys(cfg: DictConfig) -> None:
    """Keys under the project's own sections, the trainer, and a loss must be ones something reads."""
    ref = _reference()
    for section in OWN_SECTIONS + ("paths",):
        if section in cfg:
            _unknown(cfg[section], ref.get(section) or {}, f"{section}.")
    trainer = cfg.get("trainer")
    if isinstance(trainer, DictConfig):
        import pytorch_lightning as pl

        known = {k: None for k in inspect.signature(pl.Trainer.__init__).parameters if k != "self"}
        _unknown(trainer, known, "trainer.")
    for group in ("loss", "gt_loss", "clean"):  # keys the `_target_` takes
        if isinstance(cfg.get(group), DictConfig) and "_target_" in cfg[group]:
            _unknown(cfg[group], {"name": None}, f"{group}.")
    extra = sorted(set(cfg) - set(ref))
    if extra:
        near = difflib.get_close_matches(extra[0], sorted(ref), n=1)
        hint = f"; did you mean {near[0]}?" if near else ""
        raise ConfigError(f"{extra[0]} is not a known top-level key{hint}")


def check_template(cfg: Any) -> None:
    """`task.template` parses, and names only fields a row has (tasks whose own formatter renders the
    template report unknown fields themselves, with the fields they have)."""
    template = OmegaConf.select(cfg, "task.template")
    if not isinstance(template, str):
        return
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as e:
        raise ConfigError(
            f"task.template={template!r} is not a template ({e}); fields look like {{text}}"
        ) from None
    target = str(OmegaConf.select(cfg, "task.loader._target_") or "")
    own = CONF_DIR / "task" / f"{cfg.task.get('name')}.yaml"
    if target.endswith(("load_hub", "load_bigbench")) or not own.exists():
        return
    default = OmegaConf.load(own).get("template")
    allowed = {f for _, f, _, _ in string.Formatter().parse(str(default or "")) if f} | {"text"}
    bad = sorted(f for f in fields if f.split(".")[0].split("[")[0] not in allowed)
    if bad:
        raise ConfigError(f"task.template={template!r} names {bad}; a row has fields {sorted(allowed)}")


def check_label_map(cfg: Any) -> None:
    """A label map sends each label value to a class index, and its classes are 0..C-1 with C >= 2 (a class
    nobody maps to would be a class without rows)."""
    lm = OmegaConf.select(cfg, "task.loader.label_map")
    if lm is None:
        return
    eg = "e.g. {pos: 1, neg: 0} or {neg: 0, neutral: 1, pos: 2}"
    if not isinstance(lm, DictConfig) or not lm:
        raise ConfigError(f"task.loader.label_map={_show(lm)} must map label values to class indices, {eg}")
    for k, v in lm.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ConfigError(
                f"task.loader.label_map has {k}: {v}; each label maps to a class index >= 0, {eg}"
            )
    used = set(lm.values())
    if used != set(range(len(used))) or len(used) < 2:
        k, v = max(lm.items(), key=lambda kv: kv[1])
        raise ConfigError(
            f"task.loader.label_map has {k}: {v}, but its values must be the class indices 0..C-1, each used, "
            f"C >= 2 (it uses {sorted(used)}), {eg}"
        )


def check(cfg: DictConfig) -> None:
    """The whole schema: `_target_`s, unknown keys, types and ranges, then templates and label maps."""
    plain = OmegaConf.to_container(cfg, resolve=False)
    check_targets(plain, (*ALLOWED_TARGETS, *[str(p) for p in plain.get("allowed_targets") or []]))
    check_unknown_keys(cfg)
    check_types(cfg)
    check_template(cfg)
    check_label_map(cfg)
