"""Small configs of every decoder family ftc models, in transformers' key names, for tests that build
the models: two shapes (grouped K/V heads in both), any number of layers, random init.
"""

from __future__ import annotations

SHAPES = (dict(hidden_size=256, intermediate_size=512, num_attention_heads=8, num_key_value_heads=2),
          dict(hidden_size=192, intermediate_size=640, num_attention_heads=6, num_key_value_heads=3))


def tiny_config(model_type: str, shape: dict = None, layers: int = 1) -> dict:
    """A config dict (with `model_type`) of `layers` decoder layers in one of SHAPES (the first by default)."""
    shape = shape or SHAPES[0]
    h, inter, heads, kv = (shape[k] for k in ("hidden_size", "intermediate_size", "num_attention_heads",
                                               "num_key_value_heads"))
    if model_type in ("gpt2",):  # attention dropout: GPU kernels drop in-kernel, the CPU math path keeps s² probs
        return dict(model_type=model_type, n_embd=h, n_head=heads, n_layer=layers, vocab_size=1000, attn_pdrop=0.0)
    if model_type == "bloom":
        return dict(model_type=model_type, hidden_size=h, n_head=heads, n_layer=layers, vocab_size=1000)
    if model_type == "opt":
        return dict(model_type=model_type, hidden_size=h, ffn_dim=inter, num_attention_heads=heads,
                    num_hidden_layers=layers, vocab_size=1000, word_embed_proj_dim=h)
    if model_type == "falcon":  # multi-query falcon builds a mask the CPU kernel materializes; GPU does not
        return dict(model_type=model_type, hidden_size=h, num_attention_heads=heads, num_hidden_layers=layers,
                    vocab_size=1000, multi_query=False, parallel_attn=True, new_decoder_architecture=False,
                    bias=False, alibi=False)
    if model_type == "gpt_neox":
        return dict(model_type=model_type, hidden_size=h, intermediate_size=inter, num_attention_heads=heads,
                    num_hidden_layers=layers, vocab_size=1000)
    config = dict(model_type=model_type, num_hidden_layers=layers, vocab_size=1000, **shape)
    if model_type in ("gemma2", "gemma3_text"):
        config["head_dim"] = h // heads
    if model_type == "mixtral":
        config.update(num_local_experts=4, num_experts_per_tok=2)
    if model_type == "qwen3_moe":
        config.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=inter)
    if model_type == "gpt_oss":
        config.update(num_local_experts=4, num_experts_per_tok=2, head_dim=h // heads)
    return config


def transformers_config(fields: dict):
    """transformers' config for a config dict with `model_type`, without the special token ids a family's
    defaults put beyond a small vocabulary (the embedding would have no row for them)."""
    import transformers

    fields = dict(fields)
    config = transformers.AutoConfig.for_model(fields.pop("model_type"), **fields)
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        if isinstance(getattr(config, key, None), int) and getattr(config, key) >= config.vocab_size:
            setattr(config, key, None)
    return config
