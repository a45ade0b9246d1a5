"""Fit examples into a model's context: cut from the left (the answer sits at the end) or drop them."""

from __future__ import annotations

from typing import Any

from datasets import Dataset

MODES = ("truncate_left", "drop")


def n_special(tokenizer: Any) -> int:
    """Tokens the tokenizer adds around a text (BOS/EOS/CLS/SEP); 0 for a tokenizer without the notion."""
    try:
        return len(tokenizer("", add_special_tokens=True)["input_ids"])
    except TypeError:
        return 0


def _ids(tokenizer: Any, text: str, offsets: bool = False) -> dict[str, Any]:
    kw: dict[str, Any] = {"add_special_tokens": False}
    if offsets:
        kw["return_offsets_mapping"] = True
    try:
        return tokenizer(text, **kw)
    except (TypeError, NotImplementedError):  # slow tokenizers have no offsets; toy ones no kwargs
        return tokenizer(text)


def truncate_left(text: str, tokenizer: Any, budget: int) -> str:
    """The longest suffix of `text` (cut at a token boundary) that fits in `budget` tokens."""
    for _ in range(8):  # a cut can re-tokenise to a token more or less: re-check and tighten
        enc = _ids(tokenizer, text, offsets=True)
        ids = enc["input_ids"]
        over = len(ids) - budget
        if over <= 0:
            return text
        offs = enc.get("offset_mapping") if hasattr(enc, "get") else None
        if offs:
            text = text[offs[over][0] :]
        else:
            text = tokenizer.decode(ids[over:])
    return text


def fit_length(
    ds: Dataset, tokenizer: Any, max_length: int, mode: str = "truncate_left"
) -> tuple[Dataset, int]:
    """Make every `text` fit in `max_length` tokens (special tokens included). Returns (dataset, n_affected):
    the number of examples cut (truncate_left) or removed (drop)."""
    if mode not in MODES:
        raise ValueError(f"fit_length: unknown mode {mode!r}; choices: {list(MODES)}")
    budget = max_length - n_special(tokenizer)
    if budget <= 0:
        raise ValueError(f"fit_length: max_length={max_length} leaves no room for text")
    too_long = [len(_ids(tokenizer, t)["input_ids"]) > budget for t in ds["text"]]
    n = sum(too_long)
    if n == 0:
        return ds, 0
    if mode == "drop":
        return ds.select([i for i, long in enumerate(too_long) if not long]), n
    texts = [
        truncate_left(t, tokenizer, budget) if long else t
        for t, long in zip(ds["text"], too_long, strict=True)
    ]
    return ds.remove_columns("text").add_column("text", texts), n
