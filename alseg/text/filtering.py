"""Score -> keep -> fine-tune -> evaluate on the embedded instruction set (needs the llm
extra). One seed fixes the data (training set with defects, a trusted clean subset, a
small target set per skill for LESS, the clean test set), the tokenizer, the initial
weights and every random choice; ``scores`` computes every rule's score for every
training example, ``keep`` turns a score into a kept set, ``retrain`` fine-tunes the same
initial model on it for the same number of steps and evaluates it.

Models behind the scores (CPU scale; docs/methods.md, section J):

* the reference model: the initial model fine-tuned on the trusted subset (``trusted``
  clean examples per skill, drawn apart from the training set); it gives the perplexity,
  IFD (its losses with and without the instruction) and SemDeDup's embeddings (the mean of
  its last hidden states);
* EL2N: the initial model after ``el2n_steps`` steps on the whole training set (early in
  training, as the image scores);
* LESS: LoRA (rank ``lora_rank`` on ``lora_targets``, GPT-2's attention projections)
  warmed up on a random ``less_warmup``
  share of the training set for ``less_epochs`` epochs, a checkpoint after each; the
  target set's plain gradients against the training examples' Adam-preconditioned ones.
"""

from __future__ import annotations

import copy
import math
import random
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from alseg.acquisition.coverage import kmeans
from alseg.distributed import gather_rows
from alseg.text.instructions import DEFECTS, UNKNOWN, Example, eval_set, make_instructions
from alseg.text.lm import (
    ALONE,
    PROMPT,
    Encoded,
    encode,
    exact_match,
    example_scores,
    fit,
    positions,
    pretrained,
    tiny_lm,
    train_tokenizer,
)
from alseg.text.rules import PER_SKILL, RULES
from alseg.text.scores import (
    adam_gradient,
    band_keep,
    ifd_top,
    less_scores,
    rademacher,
    semdedup_similarity,
)

DEFAULT_RATES = {
    "wrong": 0.1,
    "near_duplicate": 0.1,
    "garbled": 0.05,
    "off_task": 0.05,
    "truncated": 0.05,
}


@dataclass
class TextStudy:
    n: int = 600
    rates: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RATES))
    trusted: int = 10  # clean examples per skill for the reference model
    target: int = 5  # clean examples per skill for LESS's validation gradients
    test: int = 30  # clean test examples per skill
    context: int = 64
    vocab: int = 400
    width: int = 64
    layers: int = 2
    heads: int = 2
    steps: int = 300  # fine-tuning steps, the same for every kept set
    batch: int = 16
    lr: float = 3e-3
    ref_steps: int = 200
    el2n_steps: int = 30
    clusters: int = 12
    less_warmup: float = 0.05
    less_epochs: int = 4
    less_dim: int = 256
    lora_rank: int = 8  # LESS's LoRA
    lora_targets: tuple[str, ...] = ("c_attn",)  # GPT-2's attention projections
    name_or_path: str | None = None  # a Hugging Face causal LM instead of the tiny model
    accelerator: str = "cpu"  # the fine-tuning fits; the scoring passes run on the CPU
    devices: Any = 1  # the fits' devices (several: ``strategy="ddp"``)
    strategy: str = "auto"
    precision: str = "32-true"  # Lightning's, e.g. "bf16-mixed"
    progress: bool = False  # the fits' progress bars


@dataclass
class Setup:
    tok: Any
    train: list[Example]
    trusted: list[Example]
    target: list[Example]
    test: list[Example]
    init: Any  # the initial model (every fit starts from a copy)
    enc: Encoded  # the training set, prompt + response


def split_examples(
    examples: list[Example], study: TextStudy, seed: int
) -> tuple[list[Example], list[Example], list[Example], list[Example]]:
    """(train, trusted, target, test) of a loaded data set: per skill, in a seeded random
    order, ``test``, ``trusted`` and ``target`` examples held out, the rest trains."""
    r = random.Random(f"alseg-split-{seed}")
    out: tuple[list[Example], ...] = ([], [], [], [])
    held = study.test + study.trusted + study.target
    for skill in sorted({e.skill for e in examples}):
        rows = [e for e in examples if e.skill == skill]
        if len(rows) <= held:
            raise ValueError(
                f"skill {skill!r} has {len(rows)} examples: too few to hold out "
                f"{study.test} test, {study.trusted} trusted and {study.target} target examples "
                "and train on the rest; lower data.test / data.trusted / data.target"
            )
        r.shuffle(rows)
        t, u = study.test, study.test + study.trusted
        out[3].extend(rows[:t])
        out[1].extend(rows[t:u])
        out[2].extend(rows[u:held])
        out[0].extend(rows[held:])
    return out[0], out[1], out[2], out[3]


def setup(
    study: TextStudy, seed: int, data_seed: int | None = None, examples: list[Example] | None = None
) -> Setup:
    """The data, tokenizer and initial model of one seed. The data come from ``data_seed``
    (None: ``seed``): the embedded set generated with it, or ``examples`` (a loaded data set,
    its defects unknown) split by it (``split_examples``)."""
    ds = seed if data_seed is None else data_seed
    if examples is None:
        train = make_instructions(study.n, study.rates, seed=ds)
        trusted = eval_set(study.trusted, train, seed=1000 + ds)
        target = eval_set(study.target, train + trusted, seed=2000 + ds)
        test = eval_set(study.test, train + trusted + target, seed=3000 + ds)
    else:
        train, trusted, target, test = split_examples(examples, study, ds)
    torch.manual_seed(seed)
    if study.name_or_path is not None:
        tok, init = pretrained(study.name_or_path)
    else:
        texts = [PROMPT.format(instruction=e.instruction) + e.response for e in train + trusted]
        tok = train_tokenizer(texts + [ALONE], vocab_size=study.vocab)
        init = tiny_lm(len(tok), study.context, study.width, study.layers, study.heads)
    if study.context > positions(init):
        raise ValueError(
            f"text.context={study.context} is longer than {study.name_or_path}'s "
            f"{positions(init)} positions; lower text.context"
        )
    return Setup(tok, train, trusted, target, test, init, encode(tok, train, study.context))


def _fit(s: Setup, enc: Encoded, steps: int, study: TextStudy, seed: int) -> Any:
    model = copy.deepcopy(s.init)
    return fit(
        model,
        enc,
        steps,
        study.batch,
        study.lr,
        seed,
        progress=study.progress,
        accelerator=study.accelerator,
        precision=study.precision,
        devices=study.devices,
        strategy=study.strategy,
    )


def _projected_grads(
    model: Any,
    enc: Encoded,
    params: list[torch.nn.Parameter],
    proj: torch.Tensor,
    adam: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """(N, d) each example's response-loss gradient with respect to ``params`` (Adam-
    preconditioned with the moments ``adam``, if given), projected with ``proj``. Under a
    started process group the examples are shared out over the ranks and gathered."""
    model.eval()

    def rows(idx: torch.Tensor) -> dict[str, torch.Tensor]:
        out = []
        for i in idx.tolist():
            n = int(enc.attention_mask[i].sum())
            model.zero_grad()
            ids, labels = enc.input_ids[i : i + 1, :n], enc.labels[i : i + 1, :n]
            model(input_ids=ids, labels=labels).loss.backward()
            g = torch.cat([p.grad.flatten() for p in params])  # type: ignore[union-attr]
            out.append((adam_gradient(g, *adam) if adam is not None else g) @ proj)
        return {"g": torch.stack(out)}

    return gather_rows(len(enc), rows)["g"]


def less(s: Setup, study: TextStudy, seed: int) -> torch.Tensor:
    """(N,) LESS influence of each training example on the target set (module docstring)."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=study.lora_rank,
        lora_alpha=2 * study.lora_rank,
        target_modules=list(study.lora_targets),
        lora_dropout=0.0,
        fan_in_fan_out=s.init.config.model_type == "gpt2",  # GPT-2's Conv1D stores W transposed
    )
    with warnings.catch_warnings():  # peft calls a transformers method deprecated in v5
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing", category=FutureWarning
        )
        model = get_peft_model(copy.deepcopy(s.init), lora)
    torch.manual_seed(seed)  # the warm-up's dropout: this seed's, whatever ran before
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=study.lr)
    g = torch.Generator().manual_seed(seed)
    warm = torch.randperm(len(s.enc), generator=g)[: max(1, round(study.less_warmup * len(s.enc)))]
    target = encode(s.tok, s.target, study.context)
    proj = rademacher(sum(p.numel() for p in params), study.less_dim, seed)
    trains, vals, weights = [], [], []
    for _ in range(study.less_epochs):
        model.train()
        order = warm[torch.randperm(len(warm), generator=g)]
        for b in range(0, len(order), study.batch):
            idx = order[b : b + study.batch]
            loss = model(
                input_ids=s.enc.input_ids[idx],
                attention_mask=s.enc.attention_mask[idx],
                labels=s.enc.labels[idx],
            ).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        m = torch.cat([opt.state[p]["exp_avg"].flatten() for p in params])
        v = torch.cat([opt.state[p]["exp_avg_sq"].flatten() for p in params])
        trains.append(_projected_grads(model, s.enc, params, proj, (m, v)))
        vals.append(_projected_grads(model, target, params, proj))
        weights.append(study.lr)  # the epoch's mean learning rate (constant here)
    skills = sorted({e.skill for e in s.target})
    task = torch.tensor([skills.index(e.skill) for e in s.target])
    return less_scores(trains, vals, weights, task)


def scores(s: Setup, study: TextStudy, seed: int) -> pd.DataFrame:
    """One row per training example: skill, defect and every rule's score."""
    ref = _fit(s, encode(s.tok, s.trusted, study.context), study.ref_steps, study, seed)
    cond = example_scores(ref, s.enc)
    alone = example_scores(ref, encode(s.tok, s.train, study.context, alone=True))
    early = example_scores(_fit(s, s.enc, study.el2n_steps, study, seed), s.enc)
    g = torch.Generator().manual_seed(seed)
    emb = torch.nn.functional.normalize(cond["embedding"], dim=1)
    cluster = kmeans(emb, study.clusters, g)
    centroids = torch.stack(
        [
            emb[cluster == k].mean(0) if (cluster == k).any() else emb[0]
            for k in range(study.clusters)
        ]
    )
    return pd.DataFrame(
        {
            "skill": [e.skill for e in s.train],
            "defect": [e.defect for e in s.train],
            "random": torch.rand(len(s.train), generator=g).numpy(),
            "ppl": torch.exp(cond["loss"]).numpy(),
            "ifd": (cond["loss"] / alone["loss"]).numpy(),
            "el2n": early["el2n"].numpy(),
            "semdedup": semdedup_similarity(emb, cluster, centroids).numpy(),
            "less": less(s, study, seed).numpy(),
        }
    )


def keep(df: pd.DataFrame, rule: str, fraction: float) -> np.ndarray:
    """Sorted indices that ``rule`` keeps: round(fraction x N) of them (IFD: at most as many
    as have IFD <= 1; its official keep share of the survivors is the same rule at another
    fraction). ``<rule>/skill`` applies the rule inside each skill with that skill's share
    (a stratified variant of ours, as ``hardest_balanced`` is for images)."""
    if rule.endswith(PER_SKILL):
        base = rule[: -len(PER_SKILL)]
        parts = [
            idx[keep(df.iloc[idx].reset_index(drop=True), base, fraction)]
            for _, idx in sorted(df.groupby("skill").indices.items())
        ]
        return np.sort(np.concatenate(parts))
    if rule not in RULES:
        valid = ", ".join(RULES)
        raise ValueError(
            f"rule={rule!r} is not valid; choose one of: {valid} (or one of them + {PER_SKILL})"
        )
    col, end = RULES[rule]
    score = torch.tensor(df[col].to_numpy(dtype=np.float64))  # a copy: parquet arrays are read-only
    k = max(1, round(fraction * len(df)))
    if end == "ifd":
        return ifd_top(score, k).numpy()
    return band_keep(score, k / len(df), end).numpy()


def removal_quality(df: pd.DataFrame, kept: np.ndarray) -> dict[str, float]:
    """Precision of the removed examples (share defective, %) and the recall of each
    defect kind (share of its examples removed, %); NaN for a loaded data set, whose
    defects are not known (``defect`` "unknown")."""
    removed = np.ones(len(df), dtype=bool)
    removed[kept] = False
    if (df["defect"] == UNKNOWN).any():  # a loaded data set: nothing to score the removals by
        return {"precision": math.nan, **{f"recall_{d}": math.nan for d in DEFECTS}}
    bad = (df["defect"] != "clean").to_numpy()
    out = {"precision": 100.0 * float(bad[removed].mean()) if removed.any() else math.nan}
    for d in DEFECTS:
        is_d = (df["defect"] == d).to_numpy()
        out[f"recall_{d}"] = 100.0 * float(removed[is_d].mean()) if is_d.any() else math.nan
    return out


def retrain(s: Setup, study: TextStudy, kept: np.ndarray, seed: int) -> dict[str, float]:
    """Fine-tune the initial model on the kept examples; test loss and exact match (%)."""
    if len(kept) == 0:
        raise ValueError("the rule kept no example")
    idx = torch.as_tensor(np.array(kept, dtype=np.int64))  # a writable copy
    sub = Encoded(s.enc.input_ids[idx], s.enc.attention_mask[idx], s.enc.labels[idx])
    model = _fit(s, sub, study.steps, study, seed)
    test = example_scores(model, encode(s.tok, s.test, study.context))
    em = exact_match(model, s.tok, s.test)
    return {"test_loss": float(test["loss"].mean()), **{f"em_{k}": v for k, v in em.items()}}
