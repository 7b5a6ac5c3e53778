"""A causal language model for instruction data: tokenizer, encoding, training and the
passes the scores read (needs the ``llm`` extra: ``pip install -e ".[llm]"``).

* ``train_tokenizer``: a byte-level BPE tokenizer trained on the corpus with Hugging Face
  ``tokenizers`` (deterministic for a given corpus);
* ``tiny_lm``: a GPT-2-style model built from a config (random weights, nothing
  downloaded); ``AutoModelForCausalLM.from_pretrained(name)`` takes its place for users
  with weights;
* ``encode``: the Alpaca-style prompt, the response and an end token; labels are -100
  outside the response, so every loss is on response tokens only. ``alone=True`` encodes
  the response after the bare response header, IFD's "answer alone" (Cherry_LLM's
  ``direct_answer_text``). An empty response or a sequence longer than the context is an
  error naming the example;
* ``example_scores``: per example, the mean response-token loss, token EL2N and the mean
  last hidden state, from one eval pass;
* ``CausalLM`` / ``fit``: a LightningModule (AdamW, response-token loss) trained for a fixed
  number of steps;
* ``exact_match``: greedy decoding of each instruction, compared with the answer, per skill.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from alseg.distributed import gather_rows
from alseg.text.instructions import Example
from alseg.text.scores import mean_token_loss, token_el2n

PROMPT = "### Instruction:\n{instruction}\n\n### Response:\n"
ALONE = "### Response:\n"
SPECIAL = ("<pad>", "<unk>", "<eos>")


def require_llm(*more: str) -> None:
    """The llm extra's packages (and ``more`` of them, e.g. "peft"), or an ImportError that
    names the missing one and the extra."""
    try:
        import tokenizers  # noqa: F401
        import transformers

        for name in more:
            importlib.import_module(name)
    except ImportError as e:
        raise ImportError(
            f"{e.name} is missing: the language-model part of alseg needs the llm extra "
            '(pip install -e ".[llm]")'
        ) from None
    # notices about defaults a user of these small models cannot act on (the loss type)
    transformers.logging.set_verbosity_error()


def train_tokenizer(texts: Sequence[str], vocab_size: int = 512) -> Any:
    """A byte-level BPE ``PreTrainedTokenizerFast`` (pad, unk, eos specials) on ``texts``."""
    require_llm()
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>"
    )


def tiny_lm(
    vocab_size: int, context: int = 128, width: int = 64, layers: int = 2, heads: int = 2
) -> Any:
    """A GPT-2-style causal LM from a config, with the current torch seed's weights."""
    require_llm()
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=vocab_size,
        n_positions=context,
        n_embd=width,
        n_layer=layers,
        n_head=heads,
        bos_token_id=2,
        eos_token_id=2,
        pad_token_id=0,
    )
    return GPT2LMHeadModel(cfg)


def pretrained(name_or_path: str) -> tuple[Any, Any]:
    """(tokenizer, model) of a Hugging Face causal LM: a hub name (downloads, for users with
    internet) or a local folder of ``save_pretrained``. A tokenizer without a pad token
    pads with its end token; one without an end token is refused (responses end with it)."""
    require_llm()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(name_or_path)
    if tok.eos_token_id is None:
        raise ValueError(
            f"the tokenizer of {name_or_path} has no end-of-sequence token; the responses are "
            "trained to end with one"
        )
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok, AutoModelForCausalLM.from_pretrained(name_or_path)


def positions(model: Any) -> int:
    """The longest sequence ``model`` takes (its position embeddings)."""
    c = model.config
    n = getattr(c, "n_positions", None) or getattr(c, "max_position_embeddings", None)
    if n is None:
        raise ValueError(f"{type(model).__name__}'s config names no maximum sequence length")
    return int(n)


@dataclass
class Encoded:
    input_ids: torch.Tensor  # (N, T) long, right-padded with the pad id
    attention_mask: torch.Tensor  # (N, T) long
    labels: torch.Tensor  # (N, T) long: the token ids of the response and eos, else -100

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def encode(tok: Any, examples: Sequence[Example], context: int, alone: bool = False) -> Encoded:
    """Prompt + response + eos per example, the labels on response and eos only."""
    rows: list[tuple[list[int], int]] = []
    for i, e in enumerate(examples):
        if not e.response.strip():
            raise ValueError(f"example {i} ({e.instruction[:40]!r}) has an empty response")
        prefix = ALONE if alone else PROMPT.format(instruction=e.instruction)
        head = tok(prefix, add_special_tokens=False)["input_ids"]
        body = tok(e.response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        if len(head) + len(body) > context:
            raise ValueError(
                f"example {i} ({e.instruction[:40]!r}) is {len(head) + len(body)} tokens, "
                f"longer than the model's context of {context}"
            )
        rows.append((head + body, len(head)))
    T = max(len(ids) for ids, _ in rows)
    n = len(rows)
    input_ids = torch.full((n, T), int(tok.pad_token_id), dtype=torch.long)
    mask = torch.zeros((n, T), dtype=torch.long)
    labels = torch.full((n, T), -100, dtype=torch.long)
    for j, (ids, start) in enumerate(rows):
        t = torch.tensor(ids, dtype=torch.long)
        input_ids[j, : len(ids)] = t
        mask[j, : len(ids)] = 1
        labels[j, start : len(ids)] = t[start:]
    return Encoded(input_ids, mask, labels)


def _response_ce(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """((B, T - 1) cross-entropy of each next token, (B, T - 1) mask of the response's)."""
    target = labels[:, 1:]
    ce = F.cross_entropy(logits[:, :-1].transpose(1, 2), target.clamp_min(0), reduction="none")
    return ce, target != -100


class CausalLM(pl.LightningModule):
    """Fine-tuning on response tokens (the model's own shifted loss with -100 labels)."""

    def __init__(self, model: Any, lr: float = 3e-3, weight_decay: float = 0.0) -> None:
        super().__init__()
        self.model, self.lr, self.weight_decay = model, lr, weight_decay

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        ids, mask, labels = batch
        loss = self.model(input_ids=ids, attention_mask=mask, labels=labels).loss
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)


def fit(
    model: Any,
    enc: Encoded,
    steps: int,
    batch_size: int = 16,
    lr: float = 3e-3,
    seed: int = 0,
    progress: bool = False,
    accelerator: str = "cpu",
    precision: str = "32-true",
    devices: Any = 1,
    strategy: str = "auto",
) -> Any:
    """Train ``model`` for ``steps`` optimiser steps on shuffled batches of ``enc`` on
    ``devices`` of ``accelerator`` ("cpu", "gpu", "auto") with Lightning's ``strategy``
    ("auto", "ddp": each device takes ``batch_size`` examples a step, gradients averaged) at
    Lightning's ``precision`` (e.g. "bf16-mixed" on GPUs that have it). The model comes
    back on the CPU (Lightning's teardown), the same on every rank, where the scoring
    passes run. The fit depends on ``seed`` only (its batches and dropout), not on what
    ran before it in the process."""
    if steps < 1 or len(enc) == 0:
        raise ValueError(
            f"fit needs steps >= 1 and examples; got {steps} steps, {len(enc)} examples"
        )
    pl.seed_everything(seed, workers=True, verbose=False)  # dropout: the global generator
    g = torch.Generator().manual_seed(seed)
    data = TensorDataset(enc.input_ids, enc.attention_mask, enc.labels)
    loader = DataLoader(data, batch_size=min(batch_size, len(enc)), shuffle=True, generator=g)
    trainer = pl.Trainer(
        max_steps=steps,
        max_epochs=-1,
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        precision=precision,  # type: ignore[arg-type]
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
    )
    module = CausalLM(model, lr=lr)
    module.train()
    trainer.fit(module, loader)
    return module.model


def exact_match(
    model: Any, tok: Any, examples: Sequence[Example], max_new_tokens: int = 16
) -> dict[str, float]:
    """Greedy-decoded answers against the responses: accuracy (%) per skill and overall.
    Decoding stops at ``max_new_tokens`` or at the model's last position."""
    model.eval()
    hits: dict[str, list[bool]] = {}
    with torch.no_grad():
        for e in examples:
            ids = tok(PROMPT.format(instruction=e.instruction), return_tensors="pt")["input_ids"]
            room = min(max_new_tokens, positions(model) - ids.shape[1])
            if room < 1:  # the prompt fills the context: no answer
                hits.setdefault(e.skill, []).append(False)
                continue
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=room,
                do_sample=False,
                pad_token_id=int(tok.pad_token_id),
                eos_token_id=int(tok.eos_token_id),
            )
            text = tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
            hits.setdefault(e.skill, []).append(text.strip() == e.response)
    acc = {s: 100.0 * sum(h) / len(h) for s, h in hits.items()}
    acc["all"] = (
        100.0 * sum(sum(h) for h in hits.values()) / max(1, sum(len(h) for h in hits.values()))
    )
    return acc


def example_scores(model: Any, enc: Encoded, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """Per example, from one eval pass: ``loss`` (mean response-token cross-entropy),
    ``el2n`` (mean response-token ||p - onehot||_2) and ``embedding`` (the mean of the last
    hidden states over the example's tokens, (N, D)). Under a started process group the
    examples are shared out over the ranks and gathered (``gather_rows``): every rank
    returns every example's scores."""
    model.eval()

    def rows(idx: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, list[torch.Tensor]] = {"loss": [], "el2n": [], "embedding": []}
        with torch.no_grad():
            for s in range(0, len(idx), batch_size):
                b = idx[s : s + batch_size]
                ids, att, labels = enc.input_ids[b], enc.attention_mask[b], enc.labels[b]
                res = model(input_ids=ids, attention_mask=att, output_hidden_states=True)
                logits = res.logits.float()
                ce, mask = _response_ce(logits, labels)
                out["loss"].append(mean_token_loss(ce, mask))
                probs = logits[:, :-1].softmax(-1)
                out["el2n"].append(token_el2n(probs, labels[:, 1:], mask))
                h = res.hidden_states[-1].float()
                w = att[..., None].float()
                out["embedding"].append((h * w).sum(1) / w.sum(1))
        return {k: torch.cat(v) for k, v in out.items()}

    return gather_rows(len(enc), rows)
