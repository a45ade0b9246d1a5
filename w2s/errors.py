"""User errors: what the user typed or supplied cannot work. A leaf module, imported by everything below it.

`train.py` prints a `UserError` as one `error: ...` line and exits 2; every subclass names the bad value and,
where there is a closed set, the choices.
"""

from __future__ import annotations

import re

#: Longest quoted value an error message shows: a 10 MB one-line file must not print a 10 MB error line.
QUOTE_MAX = 120
#: Longest message overall (the choices of the longest closed set fit well within it).
MESSAGE_MAX = 2000
_QUOTED = re.compile(rf"'[^'\n]{{{QUOTE_MAX},}}'|\"[^\"\n]{{{QUOTE_MAX},}}\"")


def clip(message: str) -> str:
    """One short line: newlines folded, each long quoted value cut to a prefix that says how long it was."""
    one = " ".join(message.split("\n"))

    def short(m: re.Match[str]) -> str:
        q, body = m.group()[0], m.group()[1:-1]
        return f"{q}{body[: QUOTE_MAX // 2]}...{q} ({len(body)} chars)"

    one = _QUOTED.sub(short, one)
    return one if len(one) <= MESSAGE_MAX else one[:MESSAGE_MAX] + f"... ({len(one)} chars)"


class UserError(ValueError):
    """A value the user typed or a file the user supplied cannot be used."""

    def __str__(self) -> str:  # every user error is printed through here: one short line, whatever it quotes
        return clip(super().__str__())


class ConfigError(UserError):
    """A config value that cannot work; raised before any stage runs."""


class TaskError(UserError):
    """A task's data cannot be used as asked (bad row, one class, too few examples)."""


class ModelError(UserError):
    """A model cannot be resolved or loaded (missing package, bad checksum, unknown architecture)."""


class FormatError(UserError):
    """A data row does not have the shape its reader expects (wrong split, wrong schema, bad file)."""


class StorageError(UserError):
    """The artifact root cannot take a write (disk full, quota, read-only) and holds no complete copy."""
