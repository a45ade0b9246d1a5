"""The image kind through the ladder: an image folder nobody wrote by hand, tiny image models, every analysis;
the frozen features keyed by image content; bad folders as one line through train.py."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import built
from w2s.kinds import Image as ImageKind
from w2s.kinds import kind_class
from w2s.pipeline import run, task_stage

ROOT = Path(__file__).resolve().parents[1]
COLOURS = {"blue": (0, 0, 200), "green": (0, 180, 0), "red": (220, 0, 0)}
TINY = ("task=image_folder", "supervisor=tiny-image-small", "student=tiny-image-large", "logger=none",
        "trainer=fast", "split.weak=0.2", "split.transfer=0.4", "split.val=0.1", "split.test=0.3")  # fmt: skip


def image_folder(root: Path, per_class: int = 24, seed: int = 0) -> Path:
    """Three classes told apart by their dominant colour, in noisy images of mixed size and mode (RGB, grey,
    RGBA), plus one corrupt file that the loader names and skips."""
    rng = np.random.default_rng(seed)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            size = (12 + i % 5, 10 + i % 3)
            noise = rng.integers(0, 90, size=(size[1], size[0], 3))
            img = Image.fromarray(np.clip(noise + np.array(colour), 0, 255).astype(np.uint8), "RGB")
            if i % 7 == 3:
                img = img.convert("RGBA")
            img.save(root / name / f"{i}.png")
    Image.new("L", (9, 9), 128).save(root / "green" / "grey.png")
    (root / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


def test_the_image_kind_is_registered_with_its_row_schema():
    assert kind_class("image") is ImageKind and ImageKind.columns == ("image", "label")


def test_an_image_folder_runs_the_ladder_with_every_analysis(cfg_factory, tmp_path, caplog):
    folder = image_folder(tmp_path / "images")
    cfg = cfg_factory(*TINY, f"task.path={folder}", "analysis.noise_control=true",
                      "analysis.easy_to_hard.by=confidence")  # fmt: skip
    res = run(cfg)
    assert "broken.png" in caplog.text and "skipped 1 unreadable" in caplog.text
    assert res["task_info"]["classes"] == 3 and res["task_info"]["loaded"] == 3 * 24 + 1
    for role in ("weak", "w2s", "ceiling", "noise"):
        assert 0 <= res[role]["acc"] <= 1 and 0 <= res[role]["auroc"] <= 1
    assert set(res["pgr"]) == {"acc", "auroc"}
    assert res["agreement"]["w2s"]["all"] is not None and res["easy_to_hard"]["n_test_hard"] > 0
    labels = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())["splits"]
    assert sum(labels.values()) <= 3 * 24 + 1


def test_image_features_are_cached_by_content(cfg_factory, tmp_path):
    folder = image_folder(tmp_path / "images", per_class=10)
    cfg = cfg_factory(*TINY, f"task.path={folder}", "supervisor=tiny-image-small", "student=tiny-image-small")
    data = task_stage(cfg)
    kind = ImageKind(cfg, data)
    rows = data.rows_used()
    first = kind.frozen_features(cfg.supervisor, rows, None)
    assert first.shape == (len(rows), 8)
    t0 = time.time()
    again = ImageKind(cfg, data).frozen_features(cfg.supervisor, rows[::-1], None)
    assert np.allclose(again.numpy(), first.numpy()[::-1]) and not built(cfg.paths.artifact_root, t0)
    feat = kind._featurizer(cfg.supervisor)
    same = data.splits["all"]["image"].index(data.splits["all"][rows[0]]["image"])
    assert feat.keys([rows[0]]) == feat.keys([same])  # the key is the image's bytes, not its row


def _rare_class(d: Path) -> None:
    """Two classes of 20 images and one of 2: balancing leaves 6 rows, too few for fractional splits."""
    for name, n in (("a", 20), ("b", 20), ("c", 2)):
        (d / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (4, 4), (i, ord(name), 7)).save(d / name / f"{i}.png")


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda d: d.mkdir(), "empty of class subfolders"),
        (lambda d: (d / "only").mkdir(parents=True) or Image.new("RGB", (4, 4)).save(d / "only" / "a.png"),
         "one class folder"),
        (_rare_class, "gives 0 of 6 examples (class balancing keeps the rarest class's 2 of each; classes had "
                      "{'0': 20, '1': 20, '2': 2}; +task.balance=false keeps every row)"),
    ],
)  # fmt: skip
def test_a_bad_folder_is_one_line_and_exit_2(tmp_path, make, says):
    folder = tmp_path / "bad"
    make(folder)
    proc = subprocess.run(
        [sys.executable, "train.py", "task=image_folder", f"task.path={folder}", "logger=none",
         f"hydra.run.dir={tmp_path / 'run'}", f"paths.artifact_root={tmp_path / 'art'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    err = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(err) == 1 and says in err[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
