"""The command line, checked before `@hydra.main` sees it: Hydra's own errors (an unknown group option, an
override it cannot parse or apply, an output folder it cannot write) exit 1 with several lines; here each is
one `ConfigError` / `StorageError` line, exit 2, as every other bad value.

`precheck(argv)` parses the overrides with Hydra's own parser, checks every group option (each value of a
sweep too) against the group's files, composes the config once as Hydra will (a sweep with each sweep's
first value) and probes the output folder. It returns the argv Hydra should run: a value Hydra's lexer
cannot read as written (a non-ASCII path, `{text`) is passed on quoted, as the string the user typed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from omegaconf import OmegaConf

from w2s.errors import ConfigError, StorageError, storage_error

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
#: Hydra flags that do not run a job (help, info, shell completion) or point it at another config: left alone.
_PASS_THROUGH = {"--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--resolve", "--package", "-p",
                 "--shell-completion", "-sc", "--version", "--config-path", "-cp", "--config-name", "-cn",
                 "--config-dir", "-cd", "--experimental-rerun"}  # fmt: skip
_MULTIRUN = {"-m", "--multirun"}


def group_choices(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def _parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def _readable(line: str) -> str:
    """`line` as Hydra can parse it: unchanged when it parses, else its value quoted as the string typed."""
    from hydra.errors import HydraException

    try:
        _parser().parse_overrides([line])
        return line
    except HydraException as e:
        key, eq, value = line.partition("=")
        quote = "'" if "'" not in value else '"'
        if eq and quote not in value and not value.endswith("\\"):
            quoted = f"{key}={quote}{value}{quote}"
            try:
                _parser().parse_overrides([quoted])
                return quoted
            except HydraException:
                pass
        raise ConfigError(f"{line}: cannot be parsed ({str(e).splitlines()[0]}); quote the value") from None


def _check_groups(overrides: list) -> None:
    """Each option of a config group (every value of a sweep) names one of the group's files."""
    for o in overrides:
        group = o.key_or_group
        if o.is_delete() or group.startswith("hydra") or not (CONF_DIR / group).is_dir():
            continue
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.value()]
        for v in values:
            if v not in group_choices(group) and not (v == "null" or v is None):
                raise ConfigError(f"{group}={v or ''} unknown; choices: {group_choices(group)}")


def _compose(overrides: list) -> object:
    """The config Hydra will compose (a sweep: with each sweep's first value), or one line saying why not."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    lines = []
    for o in overrides:
        line = o.input_line
        if o.is_sweep_override():
            line = _readable(f"{line.partition('=')[0]}={next(iter(o.sweep_string_iterator()))}")
        lines.append(line)
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose("train", overrides=lines, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as e:
        causes = [e]
        while causes[-1].__cause__ is not None and len(causes) < 5:
            causes.append(causes[-1].__cause__)
        text = " ".join(" ".join(str(c).split()) for c in causes if str(c).strip())
        if "Could not append to config" in text or "Multiple values for" in text:
            text += " (a group already in the defaults list takes GROUP=NAME, without '+')"
        raise ConfigError(f"the config cannot be composed: {text}") from None
    finally:
        GlobalHydra.instance().clear()


def probe_writable(folder: Path, key: str) -> None:
    """`folder` (or, while it does not exist, the nearest folder above it) takes a file: a read-only or
    full disk is one line before Hydra tries to create the run folder."""
    at = folder.expanduser().absolute()
    while not at.exists() and at != at.parent:
        at = at.parent
    try:
        if not at.is_dir():
            raise NotADirectoryError(20, os.strerror(20), str(at))
        with tempfile.NamedTemporaryFile(dir=at, prefix=".w2s-probe-") as f:
            f.write(b"w2s")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        err = storage_error(e) or StorageError(str(e))
        raise StorageError(f"{key}={str(folder)!r} cannot be written: {err}") from None


def precheck(argv: list[str]) -> list[str]:
    """The argv to hand to Hydra, after the checks above; a `UserError` when it cannot run."""
    if any(a.split("=")[0] in _PASS_THROUGH for a in argv):
        return argv
    multirun = any(a in _MULTIRUN for a in argv)
    argv = [a if a.startswith("-") else _readable(a) for a in argv]
    overrides = _parser().parse_overrides([a for a in argv if not a.startswith("-")])
    _check_groups(overrides)
    cfg = _compose(overrides)
    from w2s import tracking  # noqa: F401  (its resolvers name the run folder)

    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    folder = OmegaConf.select(cfg, key)
    if folder:
        probe_writable(Path(str(folder)), key)
    return argv
