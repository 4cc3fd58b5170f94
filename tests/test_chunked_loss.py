"""The chunked linear cross-entropy gives transformers' causal-LM loss and its gradients (fp32, 1e-5)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from ftc.runtime.train.loss import chunked_cross_entropy, hidden_states_out, output_head  # noqa: E402


def _plain(hidden, weight, bias, labels, num_items):
    from transformers.loss.loss_utils import ForCausalLMLoss

    logits = torch.nn.functional.linear(hidden, weight, bias)
    return ForCausalLMLoss(logits, labels, vocab_size=weight.shape[0], num_items_in_batch=num_items)


@pytest.mark.parametrize("num_items", [None, 37])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("rows", [1, 7, 4096])
def test_loss_and_gradients_match_the_plain_loss(num_items, bias, rows):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 29, 16, generator=g, requires_grad=True)
    weight = torch.randn(301, 16, generator=g, requires_grad=True)
    b = torch.randn(301, generator=g, requires_grad=True) if bias else None
    labels = torch.randint(0, 301, (3, 29), generator=g)
    labels[0, :5] = -100  # a masked prompt
    labels[2, 20:] = -100  # padding
    inputs = [hidden, weight] + ([b] if bias else [])
    expected = _plain(hidden, weight, b, labels, num_items)
    want = torch.autograd.grad(expected, inputs)
    got_loss = chunked_cross_entropy(hidden, weight, labels, bias=b, num_items_in_batch=num_items, rows=rows)
    got = torch.autograd.grad(got_loss * 1.0, inputs)
    assert got_loss.item() == pytest.approx(expected.item(), abs=1e-5)
    for w, c in zip(want, got):
        assert torch.allclose(w, c, atol=1e-5, rtol=1e-5), (w - c).abs().max()


def test_upstream_gradient_scales_the_result():
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(2, 9, 8, generator=g, requires_grad=True)
    weight = torch.randn(50, 8, generator=g)
    labels = torch.randint(0, 50, (2, 9), generator=g)
    (3.0 * chunked_cross_entropy(hidden, weight, labels, rows=4)).backward()
    chunk_grad = hidden.grad.clone()
    hidden.grad = None
    (3.0 * _plain(hidden, weight, None, labels, None)).backward()
    assert torch.allclose(chunk_grad, hidden.grad, atol=1e-5)


def test_head_passthrough_gives_the_model_loss():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=211, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2)
    model = LlamaForCausalLM(config)
    ids = torch.randint(0, 211, (2, 12))
    expected = model(input_ids=ids, labels=ids).loss
    head = output_head(model)
    assert head is model.lm_head
    with hidden_states_out(head):
        hidden = model(input_ids=ids).logits
    assert hidden.shape == (2, 12, 32)
    assert model.lm_head(hidden).shape[-1] == 211  # the head is itself again
    got = chunked_cross_entropy(hidden, head.weight, ids, rows=5)
    assert got.item() == pytest.approx(expected.item(), abs=1e-5)
