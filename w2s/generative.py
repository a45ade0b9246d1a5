"""Generative models (chess puzzles): the model writes the answer, weak labels are the supervisor's greedy text.

The ladder is the one of every kind (`w2s.pipeline` over `w2s.kinds.Generative`); what is particular to
generation lives here: every model is a causal LM trained with the language-modelling loss on the answer
tokens only:

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
from functools import partial
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from datasets import Dataset, DatasetDict
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from w2s import artifacts, dist, models, networks
from w2s.config import decoders
from w2s.data import AnswerCollate, Examples, loader, longest_first
from w2s.errors import ConfigError
from w2s.fit import make_trainer
from w2s.module import W2SModule
from w2s.text import render

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
    def generate(self, batch: dict[str, Any]) -> list[list[int]]:
        """Greedy (temperature 0) continuations of a batch of left-padded prompts (`PromptCollate`)."""
        ids = batch["input_ids"]
        out = self.lm.generate(
            input_ids=ids,
            attention_mask=batch["attention_mask"],
            max_new_tokens=batch["max_new_tokens"],
            do_sample=False,
            pad_token_id=batch["pad_id"],
            eos_token_id=batch["eos_id"],
        )
        return out[:, ids.shape[1] :].tolist()


def build_gen_network(model_cfg: Any) -> GenLM:
    if model_cfg.get("arch") != "decoder":
        raise ConfigError(
            f"model {model_cfg.name!r} is a {model_cfg.get('arch')}: generative tasks need a decoder; "
            f"choices: {decoders()}"
        )
    lm = models.load_backbone(model_cfg, causal_lm=True)
    if model_cfg.train_mode == "lora":
        lm = networks.lora_wrap(lm, model_cfg)
    return GenLM(lm, probe=model_cfg.train_mode == "probe")


# ----------------------------------------------------------------------------------------------- module
class GenModule(W2SModule):
    """W2SModule for answer tokens: one-hot targets over the vocabulary; validation by exact match."""

    def targets(self, batch: dict[str, torch.Tensor], logits: torch.Tensor) -> torch.Tensor:
        return F.one_hot(batch["answer_ids"], logits.shape[-1]).to(logits.dtype)

    def on_train_start(self) -> None:
        """No `Loss.prepare`: answer tokens are one-hot over the vocabulary, so all the targets ([tokens, V])
        would not fit in memory and hold no statistic; `config.validate` refuses the setting that reads one."""

    def predict_step(self, batch: dict[str, Any], batch_idx: int = 0) -> dict[str, Any]:
        """Greedy answers' token ids per row (the kind decodes them)."""
        return {"idx": batch["idx"], "out": self.model.generate(batch)}

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


def features_at_answers(
    net: GenLM, ids: list[list[int]], ns: list[int], batch_size: int
) -> list[torch.Tensor]:
    """Frozen hidden states at each row's answer-predicting positions (a generative probe's inputs)."""
    out: list[torch.Tensor] = [torch.empty(0)] * len(ids)
    collate = AnswerCollate(0)
    was_training = net.training
    net.eval()
    with torch.no_grad():
        for chunk in longest_first([len(x) for x in ids], batch_size):
            b = collate([{"input": ids[i], "target": [0] * ns[i], "idx": i} for i in chunk])
            dev = next(net.parameters()).device
            hid = net.hidden(b["input_ids"].to(dev), b["attention_mask"].to(dev)).float().cpu()
            flat = hid.reshape(-1, hid.shape[-1])[b["pos"]]
            for i, part in zip(chunk, flat.split([ns[i] for i in chunk]), strict=True):
                out[i] = part.clone()
    net.train(was_training)
    return out


# ----------------------------------------------------------------------------------------------- gen. finetuning
def task_texts(task_cfg: Any, ds: Dataset) -> list[str]:
    """The task's own text without labels: each rendered input (both completions of a pairwise row)."""
    out: list[str] = []
    for row in ds:
        x = render(task_cfg, row)
        out += x if isinstance(x, list) else [x]
    return list(dict.fromkeys(out))  # unique, in order


def lm_examples(tok: Any, texts: list[str], max_length: int) -> Examples:
    """Texts as language-modelling rows: every token after the first is a target (one token teaches nothing)."""
    ids = [x for x in tok(texts, truncation=True, max_length=max_length)["input_ids"] if len(x) > 1]
    return Examples(ids, [x[1:] for x in ids], list(range(len(ids))))


def lm_finetune(
    cfg: DictConfig, model_cfg: Any, texts: list[str], val_texts: list[str], out: Path
) -> dict[str, Any]:
    """The LM-loss training of `gen_finetune_stage`: writes the model (LoRA merged) to `out/hf` on rank 0 and
    its curve, and returns its steps and the validation token accuracy before and after."""
    gft = cfg.gen_finetune
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    net = build_gen_network(OmegaConf.merge(model_cfg, {"train_mode": gft.train_mode}))
    tok = models.load_tokenizer(model_cfg)
    collate = AnswerCollate(tok.pad_token_id)
    train_rows = lm_examples(tok, texts, int(gft.max_length))
    module = GenModule(net, instantiate(cfg.gt_loss), lr=float(gft.lr), val_names=["val_lm"])
    module.stage = "gen_finetune"
    trainer = make_trainer(cfg, out, max_epochs=int(gft.epochs), max_steps=-1)
    val = loader(
        lm_examples(tok, val_texts, int(gft.max_length)), int(cfg.eval_batch_size), collate, shuffle=False
    )
    before = trainer.validate(module, dataloaders=val, verbose=False)[0]
    module.curve.clear()
    net.train()
    trainer.fit(
        module,
        train_dataloaders=loader(train_rows, int(gft.batch_size), collate, True, int(cfg.seed)),
        val_dataloaders=val,
    )
    lm = net.lm.merge_and_unload() if hasattr(net.lm, "merge_and_unload") else net.lm
    if dist.is_zero():
        lm.save_pretrained(out / "hf")
        tok.save_pretrained(out / "hf")
    (out / "curve.json").write_text(json.dumps(module.curve))
    return {
        "texts": len(train_rows),
        "steps": trainer.global_step,
        "val_lm_tok_acc_before": before["val_lm/tok_acc"],
        "val_lm_tok_acc_after": module.curve[-1]["val_lm/tok_acc"] if module.curve else None,
    }


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
    build = partial(lm_finetune, cfg, model_cfg, texts, val_texts)
    root = cfg.paths.artifact_root
    path = artifacts.cached(root, "gen_finetune", key, build, force=bool(cfg.force), collective=True)
    meta = artifacts.manifest(path)["meta"]
    log.info("generatively finetuned %s: %s", model_cfg.name, meta)
    tuned = OmegaConf.merge(model_cfg, {"name": f"{model_cfg.name}+gft"})
    tuned.source = OmegaConf.create({"_target_": "w2s.models.local", "path": str(path / "hf")})
    return tuned, {"enabled": True, "artifact": str(path), **meta}
