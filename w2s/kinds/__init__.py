"""Task kinds: one class per `task.type`, each implementing `w2s.kinds.base.Kind`. Adding a kind is one class
(in its own module here) and one entry in `KINDS`."""

from __future__ import annotations

from w2s.errors import ConfigError
from w2s.kinds.base import Kind, Labels, TaskData
from w2s.kinds.generate import Generative
from w2s.kinds.image import Image
from w2s.kinds.scored import Classify, Pairwise

#: One implementation per `task.type`.
KINDS: dict[str, type[Kind]] = {
    "classify": Classify,
    "pairwise": Pairwise,
    "image": Image,
    "generate": Generative,
}


def kind_class(task_type: str) -> type[Kind]:
    if task_type not in KINDS:
        raise ConfigError(f"task.type={task_type!r}; choices: {sorted(KINDS)}")
    return KINDS[task_type]


__all__ = ["KINDS", "Kind", "Labels", "TaskData", "kind_class"]
