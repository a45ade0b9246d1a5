"""Image classification tasks in one row schema: `id: str`, `image: bytes` (the encoded file), `label: int` in
[0, C), `class_name: str`.

Rows keep the encoded file, not pixels, so a task artifact stays as small as the source and every model
decodes and resizes for itself (`decode`, then `w2s.vision.preprocess`). Every image is decoded once at load
time: a file PIL cannot read is named in a warning and skipped, never a crash mid-training.
"""

from __future__ import annotations

import ast
import base64
import io
import logging
import re
import warnings
from pathlib import Path

import numpy as np
from datasets import Dataset
from PIL import Image, ImageOps

from w2s.errors import FormatError, TaskError
from w2s.tasks.bigbench import task_json

log = logging.getLogger(__name__)

#: torchvision ImageFolder's image extensions (any case); PIL reads them all.
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
#: Skipped files a warning names (the count covers all of them).
SHOWN = 5
_WNID = re.compile(r"n\d{8}")


def decode(image_bytes: bytes) -> Image.Image:
    """An encoded PNG/JPEG as an RGB image: EXIF rotation applied, 16-bit greys scaled to 8 bits (PIL's
    `convert` would clip them to white), transparency composited on white (the hidden colour under alpha 0 is
    arbitrary)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # palette-transparency notes: handled below via RGBA
            img = Image.open(io.BytesIO(image_bytes))
            img.load()
            img = ImageOps.exif_transpose(img)
            if img.mode.startswith("I"):  # 16-bit greys: PNG opens them as I;16 (or I, 32-bit)
                grey = np.asarray(img, dtype=np.float64)
                if img.mode != "I" or grey.max() > 255:
                    grey = grey / 257.0
                img = Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8), "L")
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                return Image.alpha_composite(
                    Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba
                ).convert("RGB")
            return img.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise FormatError(f"not a readable image ({type(e).__name__}: {e})") from None


def _readable(rows: list[dict], where: str) -> list[dict]:
    """The rows whose `image` decodes; the others are counted and the first few named in one warning."""
    good, bad = [], []
    for r in rows:
        try:
            decode(r["image"])
            good.append(r)
        except FormatError as e:
            bad.append(f"{r['id']} ({e})")
    if bad:
        log.warning("%s: skipped %d unreadable image(s), e.g. %s", where, len(bad), "; ".join(bad[:SHOWN]))
    return good


def _balanced(labels: list[int], n_classes: int, limit: int | None, seed: int) -> list[int]:
    """Row positions of a seeded subset with at most `limit // n_classes` rows of each class, in input order."""
    if limit is None:
        return list(range(len(labels)))
    per = max(1, limit // n_classes)
    arr, rng = np.asarray(labels), np.random.default_rng(seed)
    keep = [
        rng.choice(idx, min(per, len(idx)), replace=False)
        for c in range(n_classes)
        if len(idx := np.flatnonzero(arr == c))
    ]
    return sorted(np.concatenate(keep).tolist())


def _dataset(rows: list[dict]) -> Dataset:
    return Dataset.from_dict({k: [r[k] for r in rows] for k in ("id", "image", "label", "class_name")})


def load_cifar10(limit: int | None = None, seed: int = 0, cache: str | None = None) -> Dataset:
    """CIFAR-10's 10,000 test images (32x32 PNG), offline from BIG-bench's `cifar10_classification/base64`
    (`cache`: the BIG-bench cache folder, as in `load_bigbench`).

    Labels follow the sorted class names (airplane=0 ... truck=9), which is also CIFAR-10's own index order;
    ids are `cifar10:<position in the task file>`. `limit` keeps a seeded `limit // 10` images per class.
    """
    examples = task_json("cifar10_classification", "base64", Path(cache) if cache else None)["examples"]
    scores = [
        s if isinstance(s, dict) else ast.literal_eval(s) for s in (e["target_scores"] for e in examples)
    ]
    names = sorted(scores[0]) if scores else []
    rows = []
    for i, (ex, sc) in enumerate(zip(examples, scores, strict=True)):
        if sorted(sc) != names or sum(v == 1 for v in sc.values()) != 1:
            raise TaskError(f"cifar10 example {i}: target_scores {sc} do not name one of the classes {names}")
        label = names.index(max(sc, key=sc.get))
        rows.append(
            {
                "id": f"cifar10:{i}",
                "image": base64.b64decode(ex["input"]),
                "label": label,
                "class_name": names[label],
            }
        )
    rows = [rows[i] for i in _balanced([r["label"] for r in rows], len(names), limit, seed)]
    return _dataset(_readable(rows, "cifar10"))


def _class_folders(root: Path) -> list[Path]:
    """`root`'s class subfolders in sorted order, after checking that it is a folder of class folders."""
    if not root.is_dir():
        raise TaskError(f"image folder {root}: not a folder (expected {root}/<class>/<image>.png|jpg)")
    classes = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name
    )
    loose = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS]
    if not classes:
        what = (
            f"holds {len(loose)} images but no class subfolders" if loose else "is empty of class subfolders"
        )
        raise TaskError(f"image folder {root} {what}; expected {root}/<class>/<image>.png|jpg")
    if len(classes) < 2:
        raise TaskError(
            f"image folder {root} has one class folder ({classes[0].name}); a classifier needs two or more"
        )
    return classes


def load_image_folder(path: str, limit: int | None = None, seed: int = 0) -> Dataset:
    """torchvision's ImageFolder layout: `path/<class>/**/<file>.png|jpg|...` (`EXTENSIONS`, any case; hidden
    files and folders such as macOS `._x.jpg` are not images); the sorted class folder names are the labels
    0..C-1, ids are paths relative to `path`. `limit` keeps a seeded `limit // C` images per class, chosen before
    decoding so a large folder is read only in part."""
    root = Path(path).expanduser()
    classes = _class_folders(root)
    files = {
        c.name: sorted(
            p
            for p in c.rglob("*")
            if p.is_file()
            and p.suffix.lower() in EXTENSIONS
            and not any(part.startswith(".") for part in p.relative_to(c).parts)
        )
        for c in classes
    }
    empty = [c for c, fs in files.items() if not fs]
    if empty:
        raise TaskError(
            f"image folder {root}: class folder(s) {empty[:SHOWN]} hold no image file; extensions: {list(EXTENSIONS)}"
        )
    listed = [(p, label) for label, c in enumerate(classes) for p in files[c.name]]
    chosen = [listed[i] for i in _balanced([lab for _, lab in listed], len(classes), limit, seed)]
    rows = []
    for p, label in chosen:
        rows.append(
            {
                "id": p.relative_to(root).as_posix(),
                "image": p.read_bytes(),
                "label": label,
                "class_name": classes[label].name,
            }
        )
    rows = _readable(rows, str(root))
    left = {r["label"] for r in rows}
    if len(left) < len({lab for _, lab in chosen}):
        gone = [classes[lab].name for lab in sorted({lab for _, lab in chosen} - left)]
        raise TaskError(f"image folder {root}: no readable image left in class folder(s) {gone[:SHOWN]}")
    return _dataset(rows)


def load_imagenet(path: str, limit: int | None = None, seed: int = 0) -> Dataset:
    """ILSVRC2012 validation images in ImageFolder layout: `path/<wnid>/*.JPEG` (1000 folders, 50 images each),
    or `path/val/<wnid>/...` as torchvision's `ImageNet(root, split="val")` leaves it. Sorted wnids are the
    standard class indices 0..999 (what openai/weak-to-strong's vision experiments use); `class_name` is the wnid.
    """
    root = Path(path).expanduser()
    if (root / "val").is_dir():
        root = root / "val"
    if root.is_dir() and not any(p.is_dir() for p in root.iterdir()) and any(root.glob("ILSVRC2012_val_*")):
        raise TaskError(
            f"ImageNet folder {root} is the flat ILSVRC2012 val folder; expected one folder per class: "
            f"{root}/<wnid>/ILSVRC2012_val_*.JPEG (sort it with the devkit's ground truth, e.g. valprep.sh)"
        )
    ds = load_image_folder(str(root), limit, seed)
    names = sorted(set(ds["class_name"]))
    odd = [n for n in names if not _WNID.fullmatch(n)]
    if odd or len(names) != 1000:
        log.warning(
            "ImageNet folder %s: %d class folders (expected 1000 wnids), not wnids: %s",
            root,
            len(names),
            odd[:SHOWN],
        )
    return ds
