"""The causal LM part of alseg.text (skipped without the llm extra)."""

from __future__ import annotations

import copy

import pytest
import torch

pytest.importorskip(
    "transformers", reason='the llm extra is not installed (pip install -e ".[llm]")'
)

from alseg.text.instructions import Example, eval_set, make_instructions  # noqa: E402
from alseg.text.lm import (
    ALONE,
    PROMPT,
    encode,
    exact_match,
    example_scores,
    fit,
    tiny_lm,
    train_tokenizer,
)  # noqa: E402


@pytest.fixture(scope="module")
def tok():
    data = make_instructions(120, seed=0)
    texts = [PROMPT.format(instruction=e.instruction) + e.response for e in data]
    return train_tokenizer(texts + [ALONE], vocab_size=300)


def test_labels_cover_the_response_and_end_token_only(tok):
    ex = [
        Example("Add 12 and 30.", "42", "add"),
        Example("Reverse the word: bala", "alab", "reverse"),
    ]
    enc = encode(tok, ex, context=64)
    for j, e in enumerate(ex):
        labeled = enc.labels[j][enc.labels[j] != -100].tolist()
        assert labeled == tok(e.response, add_special_tokens=False)["input_ids"] + [
            tok.eos_token_id
        ]
        n = int(enc.attention_mask[j].sum())
        assert (
            tok.decode(enc.input_ids[j, :n], skip_special_tokens=True)
            == PROMPT.format(instruction=e.instruction) + e.response
        )
    alone = encode(tok, ex, context=64, alone=True)
    assert (
        tok.decode(
            alone.input_ids[0, : int(alone.attention_mask[0].sum())], skip_special_tokens=True
        )
        == ALONE + "42"
    )


def test_bad_examples_are_named(tok):
    with pytest.raises(ValueError, match=r"example 1 \('Add 1 and 2.'\) has an empty response"):
        encode(tok, [Example("Add 1 and 1.", "2", "add"), Example("Add 1 and 2.", " ", "add")], 64)
    with pytest.raises(
        ValueError, match="example 0 .* tokens, longer than the model's context of 8"
    ):
        encode(tok, [Example("Add 1 and 1.", "2", "add")], 8)


def test_example_scores_average_to_the_models_own_loss(tok):
    torch.manual_seed(0)
    model = tiny_lm(len(tok), context=64)
    ex = make_instructions(3, seed=1)
    enc = encode(tok, ex, context=64)
    loss = example_scores(model, enc)["loss"]
    for j in range(3):
        n = int(enc.attention_mask[j].sum())
        ref = model(input_ids=enc.input_ids[j : j + 1, :n], labels=enc.labels[j : j + 1, :n]).loss
        assert loss[j].item() == pytest.approx(ref.item(), rel=1e-5)


def test_fit_memorises_a_few_examples_and_exact_match_reads_them_back(tok):
    torch.manual_seed(0)
    model = tiny_lm(len(tok), context=64, width=64, layers=2)
    ex = [e for e in eval_set(2, seed=5) if e.skill in ("add", "lookup")]
    enc = encode(tok, ex, context=64)
    before = example_scores(model, enc)
    model = fit(model, enc, steps=150, batch_size=4, lr=3e-3)
    after = example_scores(model, enc)
    assert after["loss"].mean() < 0.1 * before["loss"].mean()
    acc = exact_match(model, tok, ex)
    assert acc == {"add": 100.0, "lookup": 100.0, "all": 100.0}


def test_fit_at_bf16_mixed_precision_lowers_the_loss_and_returns_fp32_weights_on_cpu(tok):
    """The precision a GPU user selects (here on the CPU, which has bf16 autocast)."""
    torch.manual_seed(0)
    model = tiny_lm(len(tok), context=64)
    enc = encode(tok, make_instructions(8, seed=2), context=64)
    before = example_scores(model, enc)["loss"].mean()
    model = fit(model, enc, steps=40, batch_size=4, precision="bf16-mixed")
    p = next(model.parameters())
    assert p.dtype == torch.float32 and p.device.type == "cpu"
    assert example_scores(model, enc)["loss"].mean() < 0.8 * before


def test_exact_match_decodes_no_further_than_the_models_positions(tok):
    """A prompt near the end of the context decodes only the positions left (it read past
    the position embeddings: an IndexError), and one that fills it counts as a miss."""
    prompt = len(tok(PROMPT.format(instruction="Add 2 and 3."))["input_ids"])
    torch.manual_seed(0)
    model = tiny_lm(len(tok), prompt + 2, 16, 1, 2)
    ex = [Example("Add 2 and 3.", "5", "add")]
    assert exact_match(model, tok, ex, max_new_tokens=16) == {"add": 0.0, "all": 0.0}
    full = tiny_lm(len(tok), prompt, 16, 1, 2)
    assert exact_match(full, tok, ex) == {"add": 0.0, "all": 0.0}


def test_a_fit_depends_on_its_seed_only_not_on_the_random_state_before_it(tok):
    """GPT-2's dropout draws from the global generator: a fit must seed it, or the same
    kept set, initial model and seed train other weights after other work in the process
    (a retrain in its own process differed from the same retrain in the study script)."""
    torch.manual_seed(0)
    init = tiny_lm(len(tok), context=64)
    enc = encode(tok, make_instructions(8, seed=2), context=64)
    weights = []
    for history in (1, 2):
        torch.manual_seed(history)  # whatever ran before the fit
        model = fit(copy.deepcopy(init), enc, steps=3, batch_size=4, seed=5)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])
