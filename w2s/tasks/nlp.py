"""The paper's NLP tasks (Table 1) plus amazon_polarity, as hub loaders + binary formatters; custom files.

One generic loader, `load_hub`, reads a hub dataset (or an injected fixture / local file in the hub's own
schema) and applies one registered formatter. A formatter turns one hub row into named fields plus a 0/1
label; the task's `template` renders `text` from those fields. Multiple-choice sets become binary the
paper's way: the question paired with the right answer (label 1) or a random wrong one (label 0), with the
labels a seeded, exactly balanced permutation. See docs/TASKS.md for ids, splits and the leak findings.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from w2s.errors import FormatError

OFFLINE_ENV = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
NONE_OF_THE_ABOVE = "none of the above choices"


class HubUnavailableError(ConnectionError):
    """A hub dataset could not be read: no network and no local cache."""


Fields = dict[str, Any]
# A formatter maps (row, target label or None, rng) -> fields incl. "label", or None to skip the row.
FormatFn = Callable[[dict[str, Any], "int | None", random.Random], "Fields | None"]


@dataclass(frozen=True)
class Formatter:
    fn: FormatFn
    multiple_choice: bool  # True: the loader draws the label (balanced), the formatter picks the answer
    template: str  # default rendering of `text` from the fields


FORMATTERS: dict[str, Formatter] = {}


def register(name: str, template: str, multiple_choice: bool = False) -> Callable[[FormatFn], FormatFn]:
    """Add a formatter to the registry under `name` (the `formatter:` key of a task config)."""

    def deco(fn: FormatFn) -> FormatFn:
        FORMATTERS[name] = Formatter(fn, multiple_choice, template)
        return fn

    return deco


# ---------------------------------------------------------------------------------------------------------
# Loading


def offline_requested() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in OFFLINE_ENV)


@contextlib.contextmanager
def _respect_offline_env() -> Iterator[None]:
    """`datasets` reads HF_DATASETS_OFFLINE at import; honour it when it was set later (e.g. in a test)."""
    import datasets.config as dcfg

    old = dcfg.HF_HUB_OFFLINE
    if offline_requested():
        dcfg.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        dcfg.HF_HUB_OFFLINE = old


_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def read_hub(
    hub_id: str,
    config: str | None = None,
    split: str = "train",
    dataset: Any = None,
    data_files: Any = None,
    path: str | None = None,
    revision: str | None = None,
) -> Dataset:
    """Rows in the hub's own schema: an injected `dataset`, local `data_files`, a `path` (local dir or
    another hub id, e.g. a mirror), or `hub_id` itself (`revision="refs/convert/parquet"` reads the hub's
    parquet export of a script-only dataset, which `datasets` 4+ cannot run). A hub that cannot be reached raises one clear error."""
    if dataset is not None:
        return dataset if isinstance(dataset, Dataset) else Dataset.from_dict(dataset)
    import datasets

    if data_files is not None:
        first = data_files if isinstance(data_files, str) else next(iter(_flat(data_files)))
        ext = Path(first).suffix.lower()
        if ext not in _BUILDERS:
            raise FormatError(
                f"data_files {first!r}: unknown extension {ext!r}; choices: {sorted(_BUILDERS)}"
            )
        kw = {"delimiter": "\t"} if ext == ".tsv" else {}
        return datasets.load_dataset(_BUILDERS[ext], data_files=data_files, split="train", **kw)
    source = path or hub_id
    try:
        with _respect_offline_env():
            return datasets.load_dataset(source, config, split=split, revision=revision)
    except (ConnectionError, OSError) as e:
        # FileNotFoundError/DatasetNotFoundError are OSErrors too: all mean "not readable from here"
        mode = (
            "HF_DATASETS_OFFLINE/HF_HUB_OFFLINE is set, so only the local cache was read"
            if offline_requested()
            else "the Hugging Face Hub could not be reached"
        )
        raise HubUnavailableError(
            f"cannot load hub dataset {source!r} (config={config!r}, split={split!r}): {mode}. "
            f"This task needs network access or a local cache of {source!r}: unset HF_DATASETS_OFFLINE "
            f"and run once with network (it caches under HF_HOME), or pass loader.path=<local copy> / "
            f"loader.data_files=<files in the hub's schema>. Cause: {type(e).__name__}: {e}"
        ) from e


def _flat(x: Any) -> Iterator[str]:
    if isinstance(x, str):
        yield x
    elif isinstance(x, dict):
        for v in x.values():
            yield from _flat(v)
    else:
        for v in x:
            yield from _flat(v)


def render(template: str, fields: Fields, task: str) -> str:
    try:
        return template.format(**fields)
    except KeyError as e:
        raise FormatError(
            f"task {task!r}: template field {e} not produced by the formatter; fields: {sorted(fields)}"
        ) from None


def load_hub(
    hub_id: str,
    formatter: str,
    config: str | None = None,
    split: str = "train",
    seed: int = 0,
    template: str | None = None,
    limit: int | None = None,
    dataset: Any = None,
    data_files: Any = None,
    path: str | None = None,
    revision: str | None = None,
) -> Dataset:
    """Load a hub dataset and format it to the `classify` schema (id, text, label + the formatter's fields).

    `limit` keeps the first rows of the hub split (before formatting), for quick runs."""
    if formatter not in FORMATTERS:
        raise FormatError(f"unknown formatter {formatter!r}; choices: {sorted(FORMATTERS)}")
    spec = FORMATTERS[formatter]
    raw = read_hub(
        hub_id, config, split, dataset=dataset, data_files=data_files, path=path, revision=revision
    )
    if limit is not None:
        raw = raw.select(range(min(limit, len(raw))))
    n = len(raw)
    targets: list[int | None] = [None] * n
    if spec.multiple_choice:  # exactly balanced, seeded: the paper's 50/50 right-or-random-wrong pairing
        perm = np.random.default_rng(seed).permutation(n)
        targets = [int(perm[i] % 2 == 0) for i in range(n)]
    template = template or spec.template
    out: dict[str, list[Any]] = {"id": [], "text": [], "label": []}
    rows: list[Fields] = []
    for i, row in enumerate(raw):
        try:
            fields = spec.fn(row, targets[i], random.Random(f"{seed}:{i}"))
        except KeyError as e:
            raise FormatError(
                f"{hub_id} ({config}, split {split!r}) row {i}: no column {e}; has {sorted(row)}"
            ) from None
        if fields is None:
            continue
        fields = {k: (v.strip() if isinstance(v, str) else v) for k, v in fields.items()}
        label = int(fields.pop("label"))  # popped first: a template can never print the label
        out["id"].append(f"{formatter}:{split}:{i}")
        out["text"].append(render(template, fields, formatter))
        out["label"].append(label)
        rows.append(fields)
    if not rows:
        raise FormatError(f"{hub_id} ({config}, split {split!r}): no usable rows out of {n}")
    for k in rows[0]:
        out[k] = [r.get(k) for r in rows]
    return Dataset.from_dict(out)


# ---------------------------------------------------------------------------------------------------------
# Helpers for formatters


def _gold(row: dict[str, Any], col: str, split_hint: str, valid: tuple[int, ...] = (0, 1)) -> int:
    """The hub's label as int; unlabelled splits (-1, '' or None) get an error naming the fix."""
    v = row[col]
    if v is None or v == "" or (isinstance(v, int | str) and str(v) == "-1"):
        raise FormatError(f"row has no label ({col}={v!r}): this split is unlabelled; {split_hint}")
    v = int(v)
    if v not in valid:
        raise FormatError(f"label {col}={v} not in {valid}")
    return v


def _pick(correct: str, wrong: list[str], target: int | None, rng: random.Random) -> tuple[str, int]:
    """The right answer (target 1) or a random wrong one (target 0); wrong answers equal to it are dropped."""
    wrong = [w for w in wrong if w.strip() and w.strip() != correct.strip()]
    if target == 1 or not wrong:
        return correct, 1
    return rng.choice(wrong), 0


def _is_nota(s: str) -> bool:
    return s.strip().lower().rstrip(" .") == NONE_OF_THE_ABOVE


# ---------------------------------------------------------------------------------------------------------
# Single-text sets with a label column


@register("sst2", "{sentence}")
def fmt_sst2(row, target, rng):
    return {"sentence": row["sentence"], "label": _gold(row, "label", "use split train or validation")}


@register("cola", "{sentence}")
def fmt_cola(row, target, rng):
    # glue/cola: 1 = acceptable, 0 = unacceptable
    return {"sentence": row["sentence"], "label": _gold(row, "label", "use split train or validation")}


@register("twitter_sentiment", "{text}")
def fmt_twitter(row, target, rng):
    return {"text": row["text"], "label": _gold(row, "label", "use split train or test")}


@register("amazon_polarity", "{title}\n{content}")
def fmt_amazon(row, target, rng):
    # 1 = positive, 0 = negative
    return {"title": row["title"], "content": row["content"], "label": _gold(row, "label", "")}


@register("boolq", "Passage: {passage}\nQuestion: {question}?")
def fmt_boolq(row, target, rng):
    return {"passage": row["passage"], "question": row["question"], "label": int(bool(row["answer"]))}


@register("anli", "Premise: {premise}\nHypothesis: {hypothesis}")
def fmt_anli(row, target, rng):
    # facebook/anli: 0 entailment, 1 neutral, 2 contradiction -> 1 iff entailment
    gold = _gold(row, "label", "use train_r2, dev_r2 or test_r2", valid=(0, 1, 2))
    return {"premise": row["premise"], "hypothesis": row["hypothesis"], "label": int(gold == 0)}


@register("paws", "Sentence 1: {sentence1}\nSentence 2: {sentence2}")
def fmt_paws(row, target, rng):
    # 1 = paraphrase
    return {"sentence1": row["sentence1"], "sentence2": row["sentence2"], "label": _gold(row, "label", "")}


@register("wic", 'Word: "{word}"\nSentence 1: {sentence1}\nSentence 2: {sentence2}')
def fmt_wic(row, target, rng):
    # 1 = the word has the same sense in both sentences
    return {
        "word": row["word"],
        "sentence1": row["sentence1"],
        "sentence2": row["sentence2"],
        "label": _gold(row, "label", "use split train or validation"),
    }


@register("multirc", "Passage: {paragraph}\nQuestion: {question}\nAnswer: {answer}")
def fmt_multirc(row, target, rng):
    # super_glue/multirc rows are already (question, candidate answer, is-correct) triples
    return {
        "paragraph": row["paragraph"],
        "question": row["question"],
        "answer": row["answer"],
        "label": _gold(row, "label", "use split train or validation"),
    }


@register("mc_taco", "{sentence}\nQuestion: {question}\nAnswer: {answer}")
def fmt_mc_taco(row, target, rng):
    # CogComp/mc_taco rows are candidate answers with a yes(1)/no(0) plausibility label
    return {
        "sentence": row["sentence"],
        "question": row["question"],
        "answer": row["answer"],
        "label": _gold(row, "label", ""),
    }


# ---------------------------------------------------------------------------------------------------------
# ETHICS (hendrycks/ethics): see docs/TASKS.md for why these are formatted as they are


@register("ethics_justice", "Statement: {scenario}")
def fmt_ethics_justice(row, target, rng):
    # 1 = the claim is reasonable (just)
    return {"scenario": row["scenario"], "label": _gold(row, "label", "")}


@register("ethics_deontology", "Request or role: {scenario}\nResponse: {excuse}")
def fmt_ethics_deontology(row, target, rng):
    # 1 = the excuse / exemption is reasonable
    return {"scenario": row["scenario"], "excuse": row["excuse"], "label": _gold(row, "label", "")}


@register("ethics_virtue", "Scenario: {scenario}\nTrait: {trait}")
def fmt_ethics_virtue(row, target, rng):
    # hub `scenario` is "<sentence> [SEP] <trait>"; 1 = the trait is exemplified
    sentence, sep, trait = row["scenario"].rpartition("[SEP]")
    if not sep:
        raise FormatError(f"ethics virtue scenario without '[SEP]': {row['scenario'][:80]!r}")
    return {"scenario": sentence, "trait": trait, "label": _gold(row, "label", "")}


@register("ethics_utilitarianism", "Scenario A: {first}\nScenario B: {second}", multiple_choice=True)
def fmt_ethics_utilitarianism(row, target, rng):
    # The hub has no label: `baseline` is always the more pleasant of the pair. Both sentences are shown in
    # every example; the label says whether A (the first) is the more pleasant one.
    pair = (row["baseline"], row["less_pleasant"])
    first, second = pair if target == 1 else pair[::-1]
    return {"first": first, "second": second, "label": target}


# ---------------------------------------------------------------------------------------------------------
# Multiple choice -> (question, candidate answer) pairs


@register("sciq", "Question: {question}\nAnswer: {answer}", multiple_choice=True)
def fmt_sciq(row, target, rng):
    wrong = [row["distractor1"], row["distractor2"], row["distractor3"]]
    ans, label = _pick(row["correct_answer"], wrong, target, rng)
    return {"question": row["question"], "answer": ans, "label": label}


@register("openbookqa", "Question: {question}\nAnswer: {answer}", multiple_choice=True)
def fmt_openbookqa(row, target, rng):
    # Right AND wrong answers are choice TEXTS (EleutherAI's leak: right = the letter answerKey, wrong = text)
    letters, texts = row["choices"]["label"], row["choices"]["text"]
    k = letters.index(row["answerKey"])
    ans, label = _pick(texts[k], texts[:k] + texts[k + 1 :], target, rng)
    return {"question": row["question_stem"], "answer": ans, "label": label}


@register("quartz", "{para}\nQuestion: {question}\nAnswer: {answer}", multiple_choice=True)
def fmt_quartz(row, target, rng):
    letters, texts = row["choices"]["label"], row["choices"]["text"]
    k = letters.index(row["answerKey"])
    ans, label = _pick(texts[k], texts[:k] + texts[k + 1 :], target, rng)
    return {"para": row["para"], "question": row["question"], "answer": ans, "label": label}


@register("piqa", "Goal: {goal}\nSolution: {answer}", multiple_choice=True)
def fmt_piqa(row, target, rng):
    gold = _gold(row, "label", "use split train or validation")
    sols = [row["sol1"], row["sol2"]]
    ans, label = _pick(sols[gold], [sols[1 - gold]], target, rng)
    return {"goal": row["goal"], "answer": ans, "label": label}


@register("social_i_qa", "{context}\nQuestion: {question}\nAnswer: {answer}", multiple_choice=True)
def fmt_social_i_qa(row, target, rng):
    answers = [row["answerA"], row["answerB"], row["answerC"]]
    k = _gold(row, "label", "use split train or validation", valid=(1, 2, 3)) - 1  # labels are "1".."3"
    ans, label = _pick(answers[k], answers[:k] + answers[k + 1 :], target, rng)
    return {"context": row["context"], "question": row["question"], "answer": ans, "label": label}


@register("cosmos_qa", "{context}\nQuestion: {question}\nAnswer: {answer}", multiple_choice=True)
def fmt_cosmos_qa(row, target, rng):
    answers = [row[f"answer{j}"] for j in range(4)]
    k = _gold(row, "label", "use split train or validation", valid=(0, 1, 2, 3))
    if _is_nota(answers[k]):
        return None  # "None of the above" means nothing alone; as the only such answer it would leak
    wrong = [a for j, a in enumerate(answers) if j != k and not _is_nota(a)]
    ans, label = _pick(answers[k], wrong, target, rng)
    return {"context": row["context"], "question": row["question"], "answer": ans, "label": label}


@register("dream", "{dialogue}\nQuestion: {question}\nAnswer: {answer}", multiple_choice=True)
def fmt_dream(row, target, rng):
    ans, label = _pick(row["answer"], list(row["choice"]), target, rng)
    return {
        "dialogue": "\n".join(row["dialogue"]),
        "question": row["question"],
        "answer": ans,
        "label": label,
    }


@register("quail", "{context}\nQuestion: {question}\nAnswer: {answer}", multiple_choice=True)
def fmt_quail(row, target, rng):
    answers = list(row["answers"])
    k = int(row["correct_answer_id"])
    ans, label = _pick(answers[k], answers[:k] + answers[k + 1 :], target, rng)
    return {"context": row["context"], "question": row["question"], "answer": ans, "label": label}


@register("hellaswag", "{context} {answer}", multiple_choice=True)
def fmt_hellaswag(row, target, rng):
    endings = list(row["endings"])
    k = _gold(row, "label", "use split train or validation", valid=(0, 1, 2, 3))  # a string on the hub
    ans, label = _pick(endings[k], endings[:k] + endings[k + 1 :], target, rng)
    return {"activity": row["activity_label"], "context": row["ctx"], "answer": ans, "label": label}


# ---------------------------------------------------------------------------------------------------------
# A user's own file


_READERS: dict[str, Callable[[str], Any]] = {
    ".csv": lambda p: __import__("pandas").read_csv(p),
    ".tsv": lambda p: __import__("pandas").read_csv(p, sep="\t"),
    ".jsonl": lambda p: __import__("pandas").read_json(p, lines=True),
    ".json": lambda p: __import__("pandas").read_json(p),
    ".parquet": lambda p: __import__("pandas").read_parquet(p),
}


def _read(p: Path, ext: str) -> Any:
    """The file as a DataFrame; a file that is not what its extension says is one line naming the reason."""
    if p.stat().st_size == 0:
        raise FormatError(f"custom task file {str(p)!r} is empty")
    try:
        return _READERS[ext](str(p))
    except UnicodeDecodeError as e:
        raise FormatError(
            f"custom task file {str(p)!r} is not UTF-8 (byte {e.object[e.start]:#04x} at offset {e.start}); "
            "save it as UTF-8"
        ) from None
    except (ValueError, OSError, NotImplementedError) as e:
        # pandas' ParserError / EmptyDataError and pyarrow's ArrowInvalid are ValueErrors
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FormatError(
            f"custom task file {str(p)!r} cannot be read as {ext} ({type(e).__name__}: {reason}); "
            f"its content must match its extension; choices: {sorted(_READERS)}"
        ) from None


def load_custom(
    path: str,
    text_column: str = "text",
    label_column: str = "label",
    label_map: dict[Any, int] | None = None,
    limit: int | None = None,
) -> Dataset:
    """A user's CSV / TSV / JSONL / JSON / parquet with a text and a binary label column (or a mapping).

    `limit` keeps the first rows (quick runs)."""
    p = Path(str(path)).expanduser()
    if p.is_dir():
        raise FormatError(f"custom task path {str(p)!r} is a directory; task.path names one data file")
    if not p.is_file():
        raise FormatError(f"custom task file not found: {str(p)!r} (set task.path=FILE)")
    ext = p.suffix.lower()
    if ext not in _READERS:
        raise FormatError(
            f"custom task file {str(p)!r}: unknown extension {ext!r}; choices: {sorted(_READERS)}"
        )
    df = _read(p, ext)
    if limit is not None:
        df = df.iloc[: int(limit)]
    if len(df) == 0:
        raise FormatError(f"custom task file {str(p)!r} has no data rows (a header at most)")
    missing = [c for c in (text_column, label_column) if c not in df.columns]
    if missing:
        raise FormatError(
            f"custom task file {str(p)!r}: missing column(s) {missing}; it has {list(map(str, df.columns))} "
            "(set task.loader.text_column / task.loader.label_column)"
        )
    raw = df[label_column].tolist()
    if label_map is not None:
        lm = {str(k): int(v) for k, v in dict(label_map).items()}
        unmapped = sorted({str(v) for v in raw} - set(lm))
        if unmapped:
            raise FormatError(f"custom task: label values {unmapped[:10]} not in label_map keys {sorted(lm)}")
        labels = [lm[str(v)] for v in raw]
    else:
        labels = [_as_binary(v) for v in raw]
    bad = sorted({str(v) for v, b in zip(raw, labels, strict=True) if b not in (0, 1)})
    if bad:
        raise FormatError(
            f"custom task: labels must be binary 0/1, found {bad[:10]}; map them with "
            "task.loader.label_map={pos: 1, neg: 0}"
        )
    return Dataset.from_dict(
        {
            "id": [f"custom-{i}" for i in range(len(df))],
            # an empty cell stays None (not the string "nan"), so check_schema names its row
            "text": [_text_cell(t, i, p) for i, t in enumerate(df[text_column])],
            "label": labels,
        }
    )


def _text_cell(t: Any, row: int, p: Path) -> str | None:
    """A text cell as a string: an empty cell stays None (check_schema names its row); a nested object or a NUL
    byte is refused (a JSON object's repr or a truncated C string is no text the user meant)."""
    if t is None or (isinstance(t, float) and np.isnan(t)):
        return None
    if isinstance(t, dict | list | tuple | np.ndarray):
        raise FormatError(
            f"custom task file {str(p)!r} row {row}: text is a {type(t).__name__}, not a string"
        )
    if "\x00" in str(t):
        raise FormatError(f"custom task file {str(p)!r} row {row}: text holds a NUL byte (\\x00)")
    return str(t)


def _as_binary(v: Any) -> int | None:
    """0/1 from ints, bools, floats 0.0/1.0 and their strings; anything else -> None (reported)."""
    if isinstance(v, bool | np.bool_):
        return int(v)
    s = str(v).strip().lower()
    return {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "true": 1, "false": 0}.get(s)
