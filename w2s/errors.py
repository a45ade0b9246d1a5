"""User errors: what the user typed or supplied cannot work. A leaf module, imported by everything below it.

`train.py` prints a `UserError` as one `error: ...` line and exits 2; every subclass names the bad value and,
where there is a closed set, the choices.
"""

from __future__ import annotations

import errno
import os
import re
from typing import Any

#: Longest run of non-space characters an error shows: a 10 MB one-line file quoted in a message (a column
#: name, a row) must not print a 10 MB error line.
WORD_MAX = 200
#: Longest message overall: its start and its end (where the choices are) are kept.
MESSAGE_MAX = 800
_LONG_WORD = re.compile(rf"\S{{{WORD_MAX},}}")


def clip(message: str) -> str:
    """One short line: newlines folded, each very long word cut to a prefix that says how long it was."""
    one = _LONG_WORD.sub(
        lambda m: f"{m.group()[:80]}...({len(m.group())} chars)", " ".join(message.splitlines())
    )
    if len(one) <= MESSAGE_MAX:
        return one
    return f"{one[: MESSAGE_MAX - 300]} ...({len(one)} chars)... {one[-250:]}"


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


#: errno values that mean "this disk or folder cannot take the write": one error line, never a traceback.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


def storage_error(e: OSError) -> StorageError | None:
    """A write the disk refused (full, quota, file size limit, read-only, permissions) as one line, naming the
    file; None for any other OSError (a bug, reported with its traceback)."""
    if e.errno not in STORAGE_ERRNOS:
        return None
    where = f" {e.filename}" if e.filename else ""
    return StorageError(
        f"cannot write{where} ({os.strerror(e.errno)}); free space or point it at a writable disk"
    )


def build(node: Any) -> Any:
    """`hydra.utils.instantiate(node)`, with a `UserError` the target raised shown as itself: Hydra wraps it in
    an `InstantiationException` whose message is a multi-line traceback summary."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node)
    except InstantiationException as e:
        if isinstance(e.__cause__, UserError):
            raise e.__cause__ from None
        raise
