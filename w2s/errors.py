"""User errors: what the user typed or supplied cannot work. A leaf module, imported by everything below it.

`train.py` prints a `UserError` as one `error: ...` line and exits 2; every subclass names the bad value and,
where there is a closed set, the choices.
"""

from __future__ import annotations


class UserError(ValueError):
    """A value the user typed or a file the user supplied cannot be used."""


class ConfigError(UserError):
    """A config value that cannot work; raised before any stage runs."""


class TaskError(UserError):
    """A task's data cannot be used as asked (bad row, one class, too few examples)."""


class ModelError(UserError):
    """A model cannot be resolved or loaded (missing package, bad checksum, unknown architecture)."""


class FormatError(UserError):
    """A data row does not have the shape its reader expects (wrong split, wrong schema, bad file)."""
