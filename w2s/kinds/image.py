"""The image kind: rows hold an encoded image (`image`, PNG/JPEG bytes) and a class (`label` in [0, C)).

A model reads an image as pixels at its config's `resolution` (`w2s.vision.pixels`), decoded per batch, so a
task of large images is never held decoded; a probe reads the frozen pooled features of its body, cached per
image by a hash of the image's bytes (with the model, its resolution and the precision in the store's key).
Everything else (labels as C class probabilities, accuracy and macro one-vs-rest AUROC, agreement, noise,
confidence, the ladder) is the scored kinds'.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import torch
from datasets import Dataset
from hydra.utils import instantiate

from w2s.data import soft_targets
from w2s.errors import ConfigError
from w2s.features import device, feature_precision, frozen
from w2s.kinds.base import TaskData
from w2s.kinds.scored import Scored, View, classes
from w2s.tasks.images import decode
from w2s.vision import ImageBody, pixels


class ImageCollate:
    """Encoded images -> `pixels` [B, 3, R, R] in [0, 1], decoded and resized as the batch is made."""

    def __init__(self, resolution: int):
        self.resolution = resolution

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "pixels": pixels([decode(r["input"]) for r in rows], self.resolution),
            "target": soft_targets([r["target"] for r in rows]),
            "idx": torch.tensor([r["idx"] for r in rows], dtype=torch.long),
        }


class ImageFeaturizer:
    """Frozen pooled features of an image model for task rows, keyed by a hash of each image's bytes; the body
    is loaded on the first rows that need computing."""

    def __init__(self, cfg: Any, model_cfg: Any, ds: Dataset):
        self.cfg, self.model_cfg, self.ds = cfg, model_cfg, ds
        self.body: ImageBody | None = None

    def keys(self, rows: Sequence[int]) -> list[str]:
        return [hashlib.sha256(b).hexdigest()[:24] for b in self.ds.select(list(rows))["image"]]

    def compute(self, rows: Sequence[int]) -> torch.Tensor:
        if self.body is None:
            self.body = instantiate(self.model_cfg.network)(self.model_cfg)
        dev = device()
        body, ctx = frozen(self.body, feature_precision(self.cfg, self.model_cfg), dev)
        images, size = self.ds.select(list(rows))["image"], int(self.cfg.eval_batch_size)
        out = []
        with torch.inference_mode(), ctx:
            for s in range(0, len(images), size):
                x = pixels([decode(b) for b in images[s : s + size]], int(self.model_cfg.resolution))
                out.append(body.features({"pixels": x.to(dev)}).float().cpu())
        return torch.cat(out)


class Image(Scored):
    """Image classification: C classes (`task.num_classes`, else the classes the task's images have)."""

    columns = ("image", "label")
    default_classes = None

    def __init__(self, cfg: Any, data: TaskData):
        super().__init__(cfg, data)
        self.n_out = classes(cfg, data, self.default_classes)

    def _featurizer(self, model_cfg: Any, layer: int | None = None) -> ImageFeaturizer:
        if layer is not None:
            raise ConfigError(
                f"layer={layer}: an image model's features are its pooled output; set it to null"
            )
        return ImageFeaturizer(self.cfg, model_cfg, self.data.splits["all"])

    def _store_key(self) -> dict[str, Any]:
        return {"type": "image"}

    def _read(self, model_cfg: Any) -> View:
        return View(list(self.data.splits["all"]["image"]), ImageCollate(int(model_cfg.resolution)))
