"""Generative tasks (chess puzzles): the model writes the answer, weak labels are the supervisor's greedy text.

The ladder is the one of the scored pipeline (supervisor on GT of A, each model labelling a fresh transfer
split for the next, the ceiling on GT, the direct supervisor -> student run when there is a chain), but every
model is a causal LM trained with the language-modelling loss on the answer tokens only:

- `full` / `lora`: the decoder runs with gradients; the LM head scores the answer positions.
- `probe`: the decoder is frozen and its hidden states at the answer positions are computed once per stage;
  only an untied copy of the unembedding (the LM head) trains: a linear probe that still generates.

The loss signature is the scored one, with one row per answer token and C = vocabulary (docs/DESIGN.md):
`xent` is the paper's setting; `conf` mixes the weak token with the student's own argmax token (teacher
forced), a token-level self-training term. Validation and checkpoint selection use `acc`: a row counts when
every answer token is the argmax under teacher forcing, which is exactly when greedy decoding writes the
label, so the curve tracks exact match without generating during training.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from datasets import Dataset, DatasetDict, load_from_disk
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from w2s import analysis, artifacts, models
from w2s.config import CONF_DIR, decoders, model_config
from w2s.data import BucketSampler, pad
from w2s.features import render
from w2s.fit import fit_selected, make_module, make_trainer, write_stage
from w2s.metrics import pgr_table
from w2s.module import W2SModule
from w2s.pipeline import _train_key, finish, task_stage

log = logging.getLogger(__name__)

#: Checkpoint selection for generative stages: exact match, ties (often 0 for a while) by token accuracy.
SELECT, TIE_BREAK = "acc", "tok_acc"


# ----------------------------------------------------------------------------------------------- answers
def answer_of(text: str) -> str:
    """The answer a generation names: its first whitespace token after any move numbers ("13." "12...")."""
    for tok in text.strip().split():
        if not tok.rstrip(".").isdigit():
            return tok
    return ""


def encode(tok: Any, prompt: str, answer: str, max_length: int) -> tuple[list[int], int, bool]:
    """Token ids of prompt + " answer" + EOS and the answer's length; the prompt loses tokens on its left
    when too long (the end of the position survives). Returns (ids, n_answer, truncated)."""
    p = tok(prompt, add_special_tokens=True)["input_ids"]
    a = tok(" " + answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    keep = max(1, int(max_length) - len(a))
    return p[-keep:] + a, len(a), len(p) > keep


# ----------------------------------------------------------------------------------------------- network
class GenLM(nn.Module):
    """A causal LM scored on answer positions: logits [N_answer_tokens, V] for a batch.

    Batches carry `input_ids`/`attention_mask` and `pos` (flat indices of the positions that predict answer
    tokens), or, for probes, `features` (the frozen decoder's hidden states at those positions).
    """

    def __init__(self, lm: nn.Module, probe: bool):
        super().__init__()
        self.lm = lm
        config = self._base().config
        self.softcap = getattr(getattr(config, "text_config", config), "final_logit_softcapping", None)
        if probe:
            for p in self.lm.parameters():
                p.requires_grad_(False)
            old = self._base().get_output_embeddings()
            head = nn.Linear(old.in_features, old.out_features, bias=False)
            head.weight.data.copy_(old.weight.data.float())  # start at the pretrained unembedding
            config.tie_word_embeddings = False  # an untied copy: the input embeddings stay frozen
            self._base().set_output_embeddings(head)

    def _base(self) -> nn.Module:
        return self.lm.get_base_model() if hasattr(self.lm, "get_base_model") else self.lm

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The decoder's last hidden states [B, L, D] (final norm applied), without the full-vocab logits."""
        out = self._base().get_decoder()(input_ids=input_ids, attention_mask=attention_mask)
        return out.last_hidden_state

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if "features" in batch:
            h = batch["features"]
        else:
            hid = self.hidden(batch["input_ids"], batch["attention_mask"])
            h = hid.reshape(-1, hid.shape[-1])[batch["pos"]]
        head = self._base().get_output_embeddings()
        logits = head(h.to(head.weight.dtype)).float()
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    @torch.no_grad()
    def generate(
        self, ids: list[list[int]], pad_id: int, eos_id: int, max_new_tokens: int
    ) -> list[list[int]]:
        """Greedy (temperature 0) continuations of left-padded prompts."""
        x, m = pad(ids, pad_id, left=True)
        width = x.shape[1]
        dev = next(self.parameters()).device
        out = self.lm.generate(
            input_ids=x.to(dev),
            attention_mask=m.to(dev),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad_id,
            eos_token_id=eos_id,
        )
        return out[:, width:].tolist()


def build_gen_network(model_cfg: Any) -> GenLM:
    if model_cfg.get("arch") != "decoder":
        raise ValueError(
            f"model {model_cfg.name!r} is a {model_cfg.get('arch')}: generative tasks need a decoder; "
            f"choices: {decoders()}"
        )
    lm = models.load_backbone(model_cfg, causal_lm=True)
    if model_cfg.train_mode == "lora":
        lm = models.lora_wrap(lm, model_cfg)
    return GenLM(lm, probe=model_cfg.train_mode == "probe")


# ----------------------------------------------------------------------------------------------- data
class GenRows(torch.utils.data.Dataset):
    """Training/validation rows: token ids with the answer's length, or per-answer-token features."""

    def __init__(self, inputs: list[Any], n_answer: list[int], idx: list[int]):
        self.inputs, self.n_answer, self.idx = inputs, n_answer, idx

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input": self.inputs[i], "n": self.n_answer[i], "idx": self.idx[i], "row": i}

    def lengths(self) -> list[int]:
        return [len(x) for x in self.inputs]


class GenCollate:
    """Right-pads token rows and lists the answer-predicting positions, or stacks per-token features.

    `answer_ids` holds the target token of every answer position; `row` maps each to its batch row.
    """

    def __init__(self, pad_id: int, answers: list[list[int]]):
        self.pad_id, self.answers = pad_id, answers

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {"idx": torch.tensor([r["idx"] for r in rows])}
        answer = [self.answers[r["row"]] for r in rows]
        batch["answer_ids"] = torch.tensor([t for a in answer for t in a], dtype=torch.long)
        batch["row"] = torch.tensor([i for i, a in enumerate(answer) for _ in a], dtype=torch.long)
        if isinstance(rows[0]["input"], torch.Tensor):
            batch["features"] = torch.cat([r["input"] for r in rows])
            return batch
        ids, mask = pad([r["input"] for r in rows], self.pad_id, left=False)
        width = ids.shape[1]
        pos = []
        for i, r in enumerate(rows):
            n, length = r["n"], len(r["input"])
            pos += [i * width + t for t in range(length - n - 1, length - 1)]
        batch.update(input_ids=ids, attention_mask=mask, pos=torch.tensor(pos, dtype=torch.long))
        return batch


def gen_loader(rows: GenRows, collate: GenCollate, batch_size: int, shuffle: bool, seed: int = 0):
    sampler = BucketSampler(rows.lengths(), batch_size, shuffle=shuffle, seed=seed)
    return torch.utils.data.DataLoader(rows, batch_sampler=sampler, collate_fn=collate, num_workers=0)


class GenModule(W2SModule):
    """W2SModule for answer tokens: one-hot targets over the vocabulary; validation by exact match."""

    def targets(self, batch: dict[str, torch.Tensor], logits: torch.Tensor) -> torch.Tensor:
        return F.one_hot(batch["answer_ids"], logits.shape[-1]).to(logits.dtype)

    def validation_step(
        self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        hit = (self.model(batch).argmax(-1) == batch["answer_ids"]).float().cpu()
        row = batch["row"].cpu()
        per_row = torch.zeros(len(batch["idx"])).index_add_(0, row, 1 - hit) == 0
        self._val.setdefault(dataloader_idx, []).append((per_row.float(), hit))

    def on_validation_epoch_end(self) -> None:
        point: dict[str, float] = {"step": float(self.global_step)}
        for k, parts in sorted(self._val.items()):
            rows = torch.cat([r for r, _ in parts])
            toks = torch.cat([t for _, t in parts])
            for metric, value in (("acc", rows.mean()), ("tok_acc", toks.mean())):
                point[f"{self.val_names[k]}/{metric}"] = float(value)
                self.log(f"{self.val_names[k]}/{metric}", float(value), add_dataloader_idx=False)
        self._val.clear()
        if not self.trainer.sanity_checking:
            self.curve.append(point)


# ----------------------------------------------------------------------------------------------- stages
class Encoded:
    """One model's view of the task: its tokenizer, and each row's prompt ids (left-truncated)."""

    def __init__(self, model_cfg: Any, task_ds: Dataset, max_answer: int):
        self.tok = models.load_tokenizer(model_cfg, padding_side="left")
        self.max_length, self.max_answer = int(model_cfg.max_length), max_answer
        self.prompts = list(task_ds["prompt"])
        self.truncated: set[int] = set()  # rows whose prompt lost tokens on the left

    def rows(self, split: Dataset, answers: list[str]) -> tuple[list[list[int]], list[int]]:
        ids, ns = [], []
        for i, a in zip(split["idx"], answers, strict=True):
            x, n, cut = encode(self.tok, self.prompts[i], a, self.max_length)
            ids.append(x)
            ns.append(n)
            if cut:
                self.truncated.add(i)
        return ids, ns

    def prompt_ids(self, split: Dataset) -> list[list[int]]:
        keep = self.max_length - self.max_answer
        return [self.tok(self.prompts[i], add_special_tokens=True)["input_ids"][-keep:] for i in split["idx"]]


def _features(net: GenLM, ids: list[list[int]], ns: list[int], batch_size: int) -> list[torch.Tensor]:
    """Frozen hidden states at each row's answer-predicting positions (the probe's inputs)."""
    out: list[torch.Tensor] = [torch.empty(0)] * len(ids)
    order = np.argsort([-len(x) for x in ids], kind="stable")
    collate = GenCollate(0, [[0] * n for n in ns])
    net.eval()
    with torch.no_grad():
        for s in range(0, len(order), batch_size):
            chunk = order[s : s + batch_size].tolist()
            b = collate([{"input": ids[i], "n": ns[i], "idx": i, "row": i} for i in chunk])
            dev = next(net.parameters()).device
            hid = net.hidden(b["input_ids"].to(dev), b["attention_mask"].to(dev)).float().cpu()
            flat = hid.reshape(-1, hid.shape[-1])[b["pos"]]
            for i, part in zip(chunk, flat.split([ns[i] for i in chunk]), strict=True):
                out[i] = part.clone()
    return out


def generate_answers(net: GenLM, enc: Encoded, split: Dataset, batch_size: int) -> list[str]:
    """Greedy answers for every row of `split`, in its row order, batched by prompt length."""
    ids = enc.prompt_ids(split)
    out = [""] * len(ids)
    net.eval()
    order = np.argsort([-len(x) for x in ids], kind="stable")
    pad_id, eos = enc.tok.pad_token_id, enc.tok.eos_token_id
    for s in range(0, len(order), batch_size):
        chunk = order[s : s + batch_size].tolist()
        gens = net.generate([ids[i] for i in chunk], pad_id, eos, enc.max_answer)
        for i, g in zip(chunk, gens, strict=True):
            out[i] = answer_of(enc.tok.decode(g, skip_special_tokens=True))
    return out


def gen_train_stage(
    cfg: DictConfig,
    model_cfg: Any,
    enc: Encoded,
    train: tuple[Dataset, list[str]],
    vals: list[tuple[str, Dataset, list[str]]],
    loss_cfg: Any,
    key: dict[str, Any],
    test: Dataset,
    save_weights: bool,
) -> Path:
    """Train on (rows, answer strings), select by exact match on `vals[0]`, write test answers."""
    select = cfg.early_stop.mode

    def build(out: Path) -> dict[str, Any]:
        pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
        net = build_gen_network(model_cfg)
        bs = int(model_cfg.batch_size)

        def rows_of(ds: Dataset, answers: list[str]) -> tuple[GenRows, GenCollate]:
            ids, ns = enc.rows(ds, answers)
            inputs: list[Any] = ids
            if model_cfg.train_mode == "probe":
                inputs = _features(net, ids, ns, int(cfg.eval_batch_size))
            return GenRows(inputs, ns, list(ds["idx"])), GenCollate(
                enc.tok.pad_token_id, [x[-n:] for x, n in zip(ids, ns, strict=True)]
            )

        train_rows, train_collate = rows_of(*train)
        val_loaders = [
            gen_loader(*rows_of(ds, a), int(cfg.eval_batch_size), shuffle=False) for _, ds, a in vals
        ]
        module = make_module(GenModule, cfg, model_cfg, net, loss_cfg, [name for name, _, _ in vals])
        keep, trainer = fit_selected(
            cfg,
            model_cfg,
            module,
            SELECT,
            len(train_rows),
            out,
            tie_break=TIE_BREAK,
            train_dataloaders=gen_loader(train_rows, train_collate, bs, shuffle=True, seed=int(cfg.seed)),
            val_dataloaders=val_loaders,
        )
        answers = generate_answers(net, enc, test, int(cfg.eval_batch_size))
        preds = {"test": {"idx": list(test["idx"]), "text": answers}}
        return write_stage(out, preds, module, keep, trainer, select, save_weights)

    return artifacts.cached(cfg.paths.artifact_root, "gen_train", key, build, force=bool(cfg.force))


def gen_labels_stage(
    cfg: DictConfig, model_cfg: Any, enc: Encoded, trained: Path, splits: DatasetDict, names: list[str]
) -> DatasetDict:
    """The trained model's greedy answers on the named splits (the weak labels), a `datasets` DatasetDict."""

    def build(out: Path) -> dict[str, Any]:
        net = build_gen_network(model_cfg)
        net.load_state_dict(torch.load(trained / "state.pt"), strict=False)
        net.eval()
        parts = {
            n: Dataset.from_dict(
                {
                    "idx": list(splits[n]["idx"]),
                    "text": generate_answers(net, enc, splits[n], int(cfg.eval_batch_size)),
                }
            )
            for n in names
        }
        DatasetDict(parts).save_to_disk(str(out / "labels"))
        return {"splits": names}

    key = {"trained": trained.name, "splits": names, "max_answer": enc.max_answer}
    path = artifacts.cached(cfg.paths.artifact_root, "gen_labels", key, build, force=bool(cfg.force))
    return load_from_disk(str(path / "labels"))


def _aligned(labels: Dataset, split: Dataset) -> list[str]:
    lookup = dict(zip(labels["idx"], labels["text"], strict=True))
    return [lookup[i] for i in split["idx"]]


def _test_answers(artifact: Path, test: Dataset) -> list[str]:
    preds = json.loads((artifact / "preds.json").read_text())["test"]
    lookup = dict(zip(preds["idx"], preds["text"], strict=True))
    return [lookup[i] for i in test["idx"]]


def run_generative(cfg: DictConfig) -> dict[str, Any]:
    """Supervisor -> [chain] -> student on a generative task; results as `run_scored` writes them."""
    t0 = time.time()
    gt_loss = OmegaConf.load(CONF_DIR / "loss" / "xent.yaml")
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    splits, task_meta, data_key = task_stage(cfg)
    test = splits["test"]
    metric_fn = instantiate(cfg.task.metrics)
    max_answer = int(cfg.task.get("max_answer_tokens", 8))
    chain_names = list(cfg.method.get("chain") or [])
    ladder = [cfg.supervisor, *[model_config(n) for n in chain_names], cfg.student]
    reuse = cfg.method.get("reuse_transfer", False)
    transfer = ["transfer"] + [
        "transfer" if reuse else f"transfer{k}" for k in range(1, len(chain_names) + 1)
    ]
    encs: dict[str, Encoded] = {}

    def enc_for(model_cfg: Any) -> Encoded:
        if model_cfg.name not in encs:
            encs[model_cfg.name] = Encoded(model_cfg, splits["all"], max_answer)
        return encs[model_cfg.name]

    def gt(split: str) -> list[str]:
        return list(splits[split]["target"])

    gt_val = ("val", splits["val"], gt("val"))
    oracle = [("oracle", test, gt("test"))] if cfg.early_stop.mode == "oracle" else []
    tracked = [("test_gt", test, gt("test"))] if cfg.early_stop.track_test else []

    def train(model_cfg, split, answers, labels_key, loss, val, save, extra=()):
        key = {
            **_train_key(cfg, model_cfg, data_key, split, labels_key, loss),
            "max_answer": max_answer,
            "select": [SELECT, TIE_BREAK],
        }
        return gen_train_stage(
            cfg,
            model_cfg,
            enc_for(model_cfg),
            (splits[split], answers),
            [val, *oracle, *tracked, *extra],
            loss,
            key,
            test,
            save,
        )

    def label(model_cfg, art, split) -> DatasetDict:
        return gen_labels_stage(cfg, model_cfg, enc_for(model_cfg), art, splits, [split, "val"])

    def sup_on_test(art: Path) -> tuple:
        return (("test_weak", test, _test_answers(art, test)),) if cfg.early_stop.track_test else ()

    positions = list(test["fen"] if "fen" in test.column_names else test["prompt"])
    same_fn = instantiate(cfg.task.same_answer)

    def metrics(art: Path) -> dict[str, float]:
        return metric_fn(positions, _test_answers(art, test), gt("test"))

    def agree(student: Path, supervisor: Path) -> dict[str, Any]:
        s, w = _test_answers(student, test), _test_answers(supervisor, test)
        rows = zip(positions, s, w, gt("test"), strict=True)
        same, right = zip(*[(same_fn(p, a, b), same_fn(p, b, t)) for p, a, b, t in rows], strict=True)
        return analysis.agreement_of(np.asarray(same), np.asarray(right))

    def student_step(model_cfg, split, sup_cfg, sup_art, save):
        lab = label(sup_cfg, sup_art, split)
        weak_val = ("val", splits["val"], _aligned(lab["val"], splits["val"]))
        answers = _aligned(lab[split], splits[split])
        return train(model_cfg, split, answers, sup_art.name, cfg.loss, weak_val, save, sup_on_test(sup_art))

    stages: dict[str, str] = {}
    agreement: dict[str, Any] = {}
    weak_art = train(cfg.supervisor, "weak", gt("weak"), "gt", gt_loss, gt_val, save=True)
    stages["weak"] = str(weak_art)
    results: dict[str, Any] = {"weak": metrics(weak_art)}
    prev_cfg, prev_art, chain_out = cfg.supervisor, weak_art, []
    for k, model_cfg in enumerate(ladder[1:]):
        last = k == len(ladder) - 2
        art = student_step(model_cfg, transfer[k], prev_cfg, prev_art, save=not last)
        agreement["w2s" if last else f"chain{k + 1}"] = agree(art, prev_art)
        if not last:
            chain_out.append({"model": model_cfg.name, **metrics(art)})
            stages[f"chain{k + 1}"] = str(art)
        prev_cfg, prev_art = model_cfg, art
    stages["w2s"] = str(prev_art)
    results["w2s"] = metrics(prev_art)
    final_split = transfer[-1]
    ceiling_split = final_split if cfg.split.ceiling_on == "transfer" else "weak"
    ceil_art = train(cfg.student, ceiling_split, gt(ceiling_split), "gt", gt_loss, gt_val, save=False)
    stages["ceiling"] = str(ceil_art)
    results["ceiling"] = metrics(ceil_art)
    if chain_names:
        results["chain"] = chain_out
        direct = student_step(cfg.student, final_split, cfg.supervisor, weak_art, save=False)
        agreement["direct"] = agree(direct, weak_art)
        stages["direct"] = str(direct)
        results["direct"] = metrics(direct)
        results["pgr_direct"] = pgr_table(results["weak"], results["direct"], results["ceiling"], cfg.pgr_eps)
    results["pgr"] = pgr_table(results["weak"], results["w2s"], results["ceiling"], cfg.pgr_eps)
    if cfg.analysis.get("agreement", True):
        results["agreement"] = agreement
    results.update(
        selected_by=SELECT,
        task_info={**task_meta["info"], "prompts_truncated": {n: len(e.truncated) for n, e in encs.items()}},
    )
    return finish(cfg, results, splits, stages, SELECT, ceiling_split, ladder, t0, tie_break=TIE_BREAK)


# ----------------------------------------------------------------------------------------------- gen. finetuning
def task_texts(task_cfg: Any, ds: Dataset) -> list[str]:
    """The task's own text without labels: each rendered input (both completions of a pairwise row)."""
    out: list[str] = []
    for row in ds:
        x = render(task_cfg, row)
        out += x if isinstance(x, list) else [x]
    return list(dict.fromkeys(out))  # unique, in order


def gen_finetune_stage(
    cfg: DictConfig, model_cfg: Any, splits: DatasetDict, data_key: Any
) -> tuple[DictConfig, dict[str, Any]]:
    """Section 5.2.2: finetune `model_cfg` with the LM loss on the task's text (no labels) before its
    reward-model stages; returns a model config that loads the finetuned weights (cached like every stage).

    The texts come from `gen_finetune.splits` (default the supervisor's and the transfer split); the same
    finetuned model serves the weak-to-strong student and the ceiling, so PGR compares like with like.
    """
    gft = cfg.gen_finetune
    texts = [t for name in gft.splits for t in task_texts(cfg.task, splits[name])]
    texts = list(dict.fromkeys(texts))[: gft.get("max_texts") or None]
    val_texts = task_texts(cfg.task, splits["val"])[:200]
    settings = {
        k: gft.get(k)
        for k in ("train_mode", "epochs", "lr", "batch_size", "max_length", "splits", "max_texts")
    }
    key = {
        "model": models.model_key(model_cfg),
        "data": data_key,
        "gen_finetune": settings,
        "lora": model_cfg.get("lora"),
    }

    def build(out: Path) -> dict[str, Any]:
        pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
        lm_cfg = OmegaConf.merge(model_cfg, {"train_mode": gft.train_mode})
        net = build_gen_network(lm_cfg)
        tok = models.load_tokenizer(model_cfg)

        def rows(ts: list[str]) -> tuple[GenRows, GenCollate]:
            ids = [
                x for x in tok(ts, truncation=True, max_length=int(gft.max_length))["input_ids"] if len(x) > 1
            ]
            ns = [len(x) - 1 for x in ids]  # every token after the first is predicted
            return GenRows(ids, ns, list(range(len(ids)))), GenCollate(tok.pad_token_id, [x[1:] for x in ids])

        train_rows, train_collate = rows(texts)
        module = GenModule(
            net,
            instantiate(OmegaConf.load(CONF_DIR / "loss" / "xent.yaml")),
            lr=float(gft.lr),
            val_names=["val_lm"],
        )
        trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
        trainer_kwargs.update(max_epochs=int(gft.epochs), max_steps=-1)
        trainer = make_trainer(cfg, trainer_kwargs, out)
        val = gen_loader(*rows(val_texts), int(cfg.eval_batch_size), shuffle=False)
        before = trainer.validate(module, dataloaders=val, verbose=False)[0]
        module.curve.clear()
        net.train()
        trainer.fit(
            module,
            train_dataloaders=gen_loader(train_rows, train_collate, int(gft.batch_size), True, int(cfg.seed)),
            val_dataloaders=val,
        )
        lm = net.lm.merge_and_unload() if hasattr(net.lm, "merge_and_unload") else net.lm
        lm.save_pretrained(out / "hf")
        tok.save_pretrained(out / "hf")
        (out / "curve.json").write_text(json.dumps(module.curve))
        return {
            "texts": len(train_rows),
            "steps": trainer.global_step,
            "val_lm_tok_acc_before": before["val_lm/tok_acc"],
            "val_lm_tok_acc_after": module.curve[-1]["val_lm/tok_acc"] if module.curve else None,
        }

    path = artifacts.cached(cfg.paths.artifact_root, "gen_finetune", key, build, force=bool(cfg.force))
    meta = artifacts.manifest(path)["meta"]
    log.info("generatively finetuned %s: %s", model_cfg.name, meta)
    tuned = OmegaConf.merge(model_cfg, {"name": f"{model_cfg.name}+gft"})
    tuned.source = OmegaConf.create(
        {"_target_": "w2s.models.local", "path": str(path / "hf"), "base": model_cfg.name}
    )
    return tuned, {"enabled": True, "artifact": str(path), **meta}
