"""Models with random weights, built from a config and saved once into the model cache: tiny ones for fast tests,
true-size ones (`random_init`) for speed and memory checks without weight files. Both use a byte-level tokenizer.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from w2s.errors import ModelError
from w2s.models import cache_root, check_name
from w2s.offline import folder_sums, verify_folder

log = logging.getLogger(__name__)


def _sums_file(root: Path) -> Path:
    return root.with_name(root.name + ".sha256.json")


def _verified(root: Path) -> bool:
    """Whether a built model folder matches the checksums written when it was built (checked on every use,
    hashed once per process unless a file changes): a damaged one is rebuilt, it is random and cheap."""
    if not (root / "config.json").exists() or not _sums_file(root).exists():
        return False
    try:
        verify_folder(root, _sums_file(root))
        return True
    except (ModelError, ValueError, OSError) as e:
        log.warning("rebuilding %s: %s", root.name, e)
        return False


def _save(root: Path, write: Any) -> None:
    """Build into a temp folder, record its checksums, and move it into place."""
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=".tmp-tiny-"))
    try:
        write(tmp)
        sums = json.dumps(folder_sums(tmp), indent=1, sort_keys=True)
        shutil.rmtree(root, ignore_errors=True)
        os.replace(tmp, root)
        _sums_file(root).write_text(sums)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def tiny(name: str, arch: str = "bert", hidden: int = 32, layers: int = 2, heads: int = 2) -> Path:
    """A random tiny model + byte-level tokenizer, saved once (keyed by its settings) for fast tests."""

    from filelock import FileLock

    root = cache_root() / f"tiny-{check_name(name)}-{arch}-{hidden}-{layers}-{heads}"
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root) + ".lock"):
        if not _verified(root):
            _build_tiny(root, name, arch, hidden, layers, heads)
    return root


def _build_tiny(root: Path, name: str, arch: str, hidden: int, layers: int, heads: int) -> None:
    from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM

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
    model = builders[arch]()
    _save(root, lambda out: (model.save_pretrained(out), tok.save_pretrained(out)))


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
        if _verified(root):
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
        model = AutoModelForCausalLM.from_config(config)
        _save(root, lambda out: (model.save_pretrained(out), tok.save_pretrained(out)))
    return root
