"""Formatters of the NLP tasks (Table 1, plus amazon_polarity): one hub row -> named fields and a 0/1 label.

A formatter is registered under the name a task config's `formatter:` key gives; `w2s.tasks.nlp.load_hub`
applies it and renders `text` with the task's template. Multiple-choice sets become binary the paper's way:
the loader draws a balanced 0/1 target per row and the formatter pairs the question with the right answer
(1) or a random wrong one (0). See docs/TASKS.md for ids, splits and the leak findings.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from w2s.errors import FormatError

NONE_OF_THE_ABOVE = "none of the above choices"


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


def pick(correct: str, wrong: list[str], target: int | None, rng: random.Random) -> tuple[str, int]:
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
    ans, label = pick(row["correct_answer"], wrong, target, rng)
    return {"question": row["question"], "answer": ans, "label": label}


@register("openbookqa", "Question: {question}\nAnswer: {answer}", multiple_choice=True)
def fmt_openbookqa(row, target, rng):
    # Right AND wrong answers are choice TEXTS (EleutherAI's leak: right = the letter answerKey, wrong = text)
    letters, texts = row["choices"]["label"], row["choices"]["text"]
    k = letters.index(row["answerKey"])
    ans, label = pick(texts[k], texts[:k] + texts[k + 1 :], target, rng)
    return {"question": row["question_stem"], "answer": ans, "label": label}


@register("quartz", "{para}\nQuestion: {question}\nAnswer: {answer}", multiple_choice=True)
def fmt_quartz(row, target, rng):
    letters, texts = row["choices"]["label"], row["choices"]["text"]
    k = letters.index(row["answerKey"])
    ans, label = pick(texts[k], texts[:k] + texts[k + 1 :], target, rng)
    return {"para": row["para"], "question": row["question"], "answer": ans, "label": label}


@register("piqa", "Goal: {goal}\nSolution: {answer}", multiple_choice=True)
def fmt_piqa(row, target, rng):
    gold = _gold(row, "label", "use split train or validation")
    sols = [row["sol1"], row["sol2"]]
    ans, label = pick(sols[gold], [sols[1 - gold]], target, rng)
    return {"goal": row["goal"], "answer": ans, "label": label}


@register("social_i_qa", "{context}\nQuestion: {question}\nAnswer: {answer}", multiple_choice=True)
def fmt_social_i_qa(row, target, rng):
    answers = [row["answerA"], row["answerB"], row["answerC"]]
    k = _gold(row, "label", "use split train or validation", valid=(1, 2, 3)) - 1  # labels are "1".."3"
    ans, label = pick(answers[k], answers[:k] + answers[k + 1 :], target, rng)
    return {"context": row["context"], "question": row["question"], "answer": ans, "label": label}


@register("cosmos_qa", "{context}\nQuestion: {question}\nAnswer: {answer}", multiple_choice=True)
def fmt_cosmos_qa(row, target, rng):
    answers = [row[f"answer{j}"] for j in range(4)]
    k = _gold(row, "label", "use split train or validation", valid=(0, 1, 2, 3))
    if _is_nota(answers[k]):
        return None  # "None of the above" means nothing alone; as the only such answer it would leak
    wrong = [a for j, a in enumerate(answers) if j != k and not _is_nota(a)]
    ans, label = pick(answers[k], wrong, target, rng)
    return {"context": row["context"], "question": row["question"], "answer": ans, "label": label}


@register("dream", "{dialogue}\nQuestion: {question}\nAnswer: {answer}", multiple_choice=True)
def fmt_dream(row, target, rng):
    ans, label = pick(row["answer"], list(row["choice"]), target, rng)
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
    ans, label = pick(answers[k], answers[:k] + answers[k + 1 :], target, rng)
    return {"context": row["context"], "question": row["question"], "answer": ans, "label": label}


@register("hellaswag", "{context} {answer}", multiple_choice=True)
def fmt_hellaswag(row, target, rng):
    endings = list(row["endings"])
    k = _gold(row, "label", "use split train or validation", valid=(0, 1, 2, 3))  # a string on the hub
    ans, label = pick(endings[k], endings[:k] + endings[k + 1 :], target, rng)
    return {"activity": row["activity_label"], "context": row["ctx"], "answer": ans, "label": label}
