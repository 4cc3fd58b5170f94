"""One builder per `model_type`: a config.json dict to its Architecture, with the config class's defaults.

Each family's module names, biases, norms and local layers are checked against transformers itself
(tests/test_models_meta.py, tests/test_memory_activations.py).
"""

from __future__ import annotations

from dataclasses import asdict, replace

from ftc.compiler.models.layout import Architecture, ArchitectureError, InvalidConfig, Linear, Sizes


def _get(config: dict, *keys, default=None):
    for key in keys:
        if key in config and config[key] is not None:
            return config[key]
    if default is not None:
        return default
    raise ArchitectureError(f"config has none of {', '.join(repr(k) for k in keys)}")


def _llama_sizes(config: dict, *, head_dim_key: bool = True) -> Sizes:
    """The sizes as Llama-style configs spell them; `head_dim_key=False` for families whose head size is
    always hidden / heads (phi, phi3)."""
    h = int(_get(config, "hidden_size"))
    heads = int(_get(config, "num_attention_heads"))
    head_dim = int(_get(config, "head_dim", default=h // heads)) if head_dim_key else h // heads
    return Sizes(hidden=h, layers=int(_get(config, "num_hidden_layers")),
                 intermediate=int(_get(config, "intermediate_size")), heads=heads,
                 kv_heads=int(_get(config, "num_key_value_heads", default=heads)), head_dim=head_dim,
                 vocab=int(_get(config, "vocab_size")), tied=bool(config.get("tie_word_embeddings", False)))


def _sliding_window(config: dict, layers: int) -> tuple[int | None, int]:
    """(window, how many layers attend through it) as transformers' config classes decide it: Mistral
    defaults to a 4096-token window on every layer when the key is absent, Mixtral, Qwen3-MoE and
    StarCoder2 to none; Qwen2/Qwen3 use it only with `use_sliding_window`, on the layers from
    `max_window_layers` on; Gemma-3 on five layers of six, OLMo-3 on three of four, gpt-oss on every other
    one."""
    kind = config.get("model_type")
    listed = config.get("layer_types")
    window, sliding = None, 0
    if kind in ("mistral", "mixtral", "qwen3_moe", "starcoder2"):
        window = config.get("sliding_window", 4096 if kind == "mistral" else None)
        if kind == "qwen3_moe" and not config.get("use_sliding_window"):
            window = None
        sliding = layers
    elif kind in ("qwen2", "qwen3") and config.get("use_sliding_window"):
        window = config.get("sliding_window", 4096)
        sliding = _count_sliding(listed) if listed else max(0, layers - int(config.get("max_window_layers", 28)))
    elif kind == "gpt_oss":  # GptOssConfig's alternation, local first, when the config lists no layer types
        window = config.get("sliding_window")
        sliding = _count_sliding(listed) if "layer_types" in config else (layers + 1) // 2
    elif kind in ("gemma3_text", "olmo3"):  # OLMo-3: three local layers of four
        window = config.get("sliding_window", 4096)
        pattern = int(config.get("sliding_window_pattern") or (6 if kind == "gemma3_text" else 4))  # global
        sliding = _count_sliding(listed) if listed else layers - layers // pattern
    return (int(window), sliding) if window and sliding else (None, 0)


def _count_sliding(layer_types) -> int:
    """Local layers in a config's `layer_types` list (counted, not built: a layer count is only a number)."""
    if not isinstance(layer_types, (list, tuple)):
        raise InvalidConfig("layer_types is not a list")
    return sum(t == "sliding_attention" for t in layer_types)


def _llama_like(config: dict, *, qkv_bias: bool = False, norm_bias: bool = False,
                norms_per_layer: int = 2, mlp_bias: bool = False, qk_norm: bool = False) -> Architecture:
    d = _llama_sizes(config)
    h, inter, heads, kv, head_dim = d.hidden, d.intermediate, d.heads, d.kv_heads, d.head_dim
    vocab, tied = d.vocab, d.tied
    experts = int(config.get("num_local_experts") or 0)
    attn_bias = bool(config.get("attention_bias", False))
    qkv_b = qkv_bias or attn_bias
    linears = [
        Linear("q_proj", h, heads * head_dim, qkv_b),
        Linear("k_proj", h, kv * head_dim, qkv_b),
        Linear("v_proj", h, kv * head_dim, qkv_b),
        Linear("o_proj", heads * head_dim, h, attn_bias),
    ]
    other = norms_per_layer * h * (2 if norm_bias else 1) + (2 * head_dim if qk_norm else 0)
    window, sliding = _sliding_window(config, d.layers)
    if experts:
        # transformers 5: a router weight (E, h) and fused 3-D expert tensors, none an nn.Linear;
        # peft's all-linear still adapts all three (experts through target_parameters)
        linears += [Linear("gate", h, experts, quantizable=False),
                    Linear("gate_up_proj", h, 2 * inter, count=experts, quantizable=False, lora_rank_factor=2),
                    Linear("down_proj", inter, h, count=experts, quantizable=False)]
    else:
        mlp_b = bool(config.get("mlp_bias", False)) or mlp_bias
        linears += [Linear("gate_proj", h, inter, mlp_b), Linear("up_proj", h, inter, mlp_b),
                    Linear("down_proj", inter, h, mlp_b)]
    return Architecture(
        **asdict(d), model_type=config["model_type"], max_positions=config.get("max_position_embeddings"),
        experts=experts, experts_per_token=int(config.get("num_experts_per_tok") or 0), gated_mlp=True,
        embed_name="embed_tokens", embedding_params=vocab * h, layer_linears=tuple(linears),
        layer_other_params=other, final_params=h * (2 if norm_bias else 1),
        lm_head=None if tied else Linear("lm_head", h, vocab), qk_norm=qk_norm, hidden_norms=norms_per_layer,
        sliding_window=window, sliding_layers=sliding,
        attention_dropout=float(config.get("attention_dropout") or 0))


def _llama(config):
    return _llama_like(config)


def _qwen2(config):
    return _llama_like(config, qkv_bias=True)


def _qwen3(config):
    c = dict(config)
    c.setdefault("head_dim", 128)  # Qwen3Config's defaults, not hidden / heads
    c.setdefault("num_key_value_heads", 32)
    return _llama_like(c, qk_norm=True)


def _qwen3_moe(config):
    """Mixtral's layout (router, fused experts) with Qwen3's query/key norms; Qwen3MoeConfig's defaults."""
    c = dict(config)
    if c.get("mlp_only_layers") or int(c.get("decoder_sparse_step") or 1) != 1:
        raise ArchitectureError("qwen3_moe with dense layers between the sparse ones "
                                "(mlp_only_layers, decoder_sparse_step) is not supported")
    c.setdefault("num_key_value_heads", 4)
    c["num_local_experts"] = int(c.get("num_experts") or 128)
    c.setdefault("num_experts_per_tok", 8)
    c["intermediate_size"] = int(c.get("moe_intermediate_size") or 768)  # each expert's; no dense MLP remains
    return _llama_like(c, qk_norm=True)


def _cohere(config):
    """Command-R and Aya: one LayerNorm (weight only, computed in fp32) feeding attention and MLP in
    parallel, optionally per-head query/key LayerNorms; CohereConfig's defaults (tied embeddings)."""
    c = dict(config)
    c.setdefault("tie_word_embeddings", True)
    arch = _llama_like(c)
    qk_norm = bool(config.get("use_qk_norm", False))
    return replace(arch, hidden_norms=1, qk_norm=qk_norm,
                   layer_other_params=arch.hidden + (arch.q_dim + arch.kv_dim if qk_norm else 0))


def _gemma(config):
    """Gemma 1: Llama's layer with GeGLU, RMSNorms that scale by 1 + weight in fp32, head_dim 256 and tied
    embeddings (GemmaConfig's defaults)."""
    c = dict(config)
    c.setdefault("head_dim", 256)
    c.setdefault("tie_word_embeddings", True)
    return _llama_like(c)


def _gemma2(config):
    c = dict(config)
    c.setdefault("head_dim", 256)
    c.setdefault("tie_word_embeddings", True)
    return _llama_like(c, norms_per_layer=4)


def _olmo2(config):
    """Llama's projections with the norms moved after attention and MLP (their outputs join the residual,
    no linear reads them) and RMSNorms over the whole query and key projections; OLMo-3 adds local
    (sliding-window) layers, which `_sliding_window` counts."""
    arch = _llama_like(config)
    return replace(arch, layer_other_params=2 * arch.hidden + arch.q_dim + arch.kv_dim, qk_norm=True,
                   qk_norm_per_head=False)


def _gemma3_text(config):
    """Gemma-2's layer with Qwen3-style query/key norms and no soft-capping; five of six layers attend
    to a sliding window (Gemma3TextConfig's defaults)."""
    c = dict(config)
    if c.get("use_bidirectional_attention"):
        raise ArchitectureError("gemma3_text with bidirectional attention (an embedding model) is not supported")
    c.setdefault("head_dim", 256)
    c.setdefault("num_key_value_heads", 4)
    c.setdefault("tie_word_embeddings", True)
    return _llama_like(c, norms_per_layer=4, qk_norm=True)


def _gemma3(config):
    """A multimodal Gemma-3 checkpoint (4B and up): the gemma3_text stack plus a SigLIP vision encoder and its
    projector, which text-only training loads with the model (and peft adapts, bitsandbytes quantizes)."""
    text = dict(config.get("text_config") or {}, model_type="gemma3_text")
    text.setdefault("vocab_size", 262208)  # Gemma3TextConfig's
    if "tie_word_embeddings" in config:
        text.setdefault("tie_word_embeddings", config["tie_word_embeddings"])
    vision = config.get("vision_config") or {}
    if vision.get("vision_use_head", True):
        raise ArchitectureError("gemma3 with a SigLIP pooling head (vision_use_head) is not supported")
    h = int(_get(vision, "hidden_size"))
    inter, layers = int(_get(vision, "intermediate_size")), int(_get(vision, "num_hidden_layers"))
    patch, image = int(_get(vision, "patch_size")), int(_get(vision, "image_size"))
    channels = int(vision.get("num_channels") or 3)
    linears = tuple(Linear(name, d_in, d_out, True, count=layers) for name, d_in, d_out in (
        ("q_proj", h, h), ("k_proj", h, h), ("v_proj", h, h), ("out_proj", h, h), ("fc1", h, inter),
        ("fc2", inter, h)))
    arch = _gemma3_text(text)
    other = (channels * patch * patch * h + h + (image // patch) ** 2 * h  # patch and position embeddings
             + layers * 4 * h + 2 * h  # LayerNorms
             + h * arch.hidden + h)  # projector: input projection and soft-embedding norm
    return replace(arch, model_type="gemma3", tower_linears=linears, tower_other_params=other)


def _gpt_oss(config):
    """Mixtral's router and fused experts, with biases everywhere (attention, router, experts), a learned
    attention sink per head, and local (sliding) layers alternating with global ones. The checkpoints keep
    the experts in MXFP4; training dequantizes them to the compute dtype, which is what is counted."""
    c = dict(config)
    for key, default in (("num_local_experts", 128), ("num_experts_per_tok", 4), ("head_dim", 64),
                         ("num_key_value_heads", 8), ("sliding_window", 128)):
        c.setdefault(key, default)  # GptOssConfig's
    arch = _llama_like(c, qkv_bias=True)
    h, inter, experts = arch.hidden, arch.intermediate, arch.experts
    linears = (Linear("q_proj", h, arch.q_dim, True), Linear("k_proj", h, arch.kv_dim, True),
               Linear("v_proj", h, arch.kv_dim, True), Linear("o_proj", arch.q_dim, h, True),
               Linear("router", h, experts, True, quantizable=False, adaptable=False),
               Linear("gate_up_proj", h, 2 * inter, True, count=experts, quantizable=False, adaptable=False),
               Linear("down_proj", inter, h, True, count=experts, quantizable=False, adaptable=False))
    return replace(arch, layer_linears=linears, layer_other_params=2 * h + arch.heads)


def _stablelm(config):
    c = dict(config)
    c["attention_bias"] = False
    arch = _llama_like(c, qkv_bias=bool(config.get("use_qkv_bias", False)), norm_bias=True)
    if config.get("qk_layernorm"):
        raise ArchitectureError("stablelm with qk_layernorm is not supported")
    return arch


def _starcoder2(config):
    """Llama's attention (grouped, rotary, a sliding window on every layer when the config sets one) with
    biases, LayerNorms with bias, a two-matrix GELU MLP (`c_fc`, `c_proj`) and residual dropout after
    attention and MLP; Starcoder2Config's defaults (tied embeddings, biases)."""
    c = dict(config)
    c.setdefault("tie_word_embeddings", True)
    c["attention_bias"] = bias = bool(config.get("use_bias", True))  # one switch for every linear's bias
    arch = _llama_like(c, norm_bias=True)
    h, inter = arch.hidden, arch.intermediate
    mlp = (Linear("c_fc", h, inter, bias), Linear("c_proj", inter, h, bias))
    return replace(arch, layer_linears=arch.layer_linears[:4] + mlp, gated_mlp=False,
                   hidden_dropout_sites=2 if float(config.get("residual_dropout") or 0) > 0 else 0,
                   embedding_dropout=float(config.get("embedding_dropout") or 0) > 0)


def _phi3(config):
    d = _llama_sizes(config, head_dim_key=False)
    h, heads, kv, head_dim, inter = d.hidden, d.heads, d.kv_heads, d.head_dim, d.intermediate
    vocab, tied = d.vocab, d.tied
    linears = (Linear("qkv_proj", h, (heads + 2 * kv) * head_dim), Linear("o_proj", h, h),
               Linear("gate_up_proj", h, 2 * inter), Linear("down_proj", inter, h))
    return Architecture(
        **asdict(d), model_type="phi3", max_positions=config.get("max_position_embeddings"), experts=0,
        experts_per_token=0, gated_mlp=True, embed_name="embed_tokens", embedding_params=vocab * h,
        layer_linears=linears,
        layer_other_params=2 * h, final_params=h, lm_head=None if tied else Linear("lm_head", h, vocab),
        attention_targets=("qkv_proj", "o_proj"))


def _phi(config):
    d = _llama_sizes(config, head_dim_key=False)
    h, heads, kv, head_dim, inter = d.hidden, d.heads, d.kv_heads, d.head_dim, d.intermediate
    vocab, tied = d.vocab, d.tied
    if config.get("qk_layernorm"):
        raise ArchitectureError("phi with qk_layernorm is not supported")
    linears = (Linear("q_proj", h, heads * head_dim, True), Linear("k_proj", h, kv * head_dim, True),
               Linear("v_proj", h, kv * head_dim, True), Linear("dense", heads * head_dim, h, True),
               Linear("fc1", h, inter, True), Linear("fc2", inter, h, True))
    return Architecture(
        **asdict(d), model_type="phi", max_positions=config.get("max_position_embeddings"), experts=0,
        experts_per_token=0, gated_mlp=False, embed_name="embed_tokens", embedding_params=vocab * h,
        layer_linears=linears,
        layer_other_params=2 * h, final_params=2 * h,
        lm_head=None if tied else Linear("lm_head", h, vocab, True),
        attention_targets=("q_proj", "k_proj", "v_proj", "dense"),
        attention_dropout=float(config.get("attention_dropout") or 0))


def _gpt2(config):
    h = int(_get(config, "n_embd", "hidden_size"))
    heads = int(_get(config, "n_head", "num_attention_heads"))
    inter = int(config.get("n_inner") or 4 * h)
    vocab = int(_get(config, "vocab_size"))
    positions = int(_get(config, "n_positions", "max_position_embeddings", default=1024))
    tied = bool(config.get("tie_word_embeddings", True))
    linears = (Linear("c_attn", h, 3 * h, True), Linear("c_proj", h, h, True),
               Linear("c_fc", h, inter, True), Linear("c_proj", inter, h, True))
    return Architecture(
        model_type="gpt2", hidden=h, layers=int(_get(config, "n_layer", "num_hidden_layers")),
        intermediate=inter, heads=heads, kv_heads=heads, head_dim=h // heads, vocab=vocab, tied=tied,
        max_positions=positions, experts=0, experts_per_token=0, gated_mlp=False, embed_name="wte",
        embedding_params=vocab * h + positions * h, layer_linears=linears, layer_other_params=4 * h,
        final_params=2 * h, lm_head=None if tied else Linear("lm_head", h, vocab),
        hidden_dropout_sites=2 if float(config.get("resid_pdrop", 0.1)) > 0 else 0,
        embedding_dropout=float(config.get("embd_pdrop", 0.1)) > 0,
        attention_targets=("c_attn",), learned_positions=True,
        attention_dropout=float(config.get("attn_pdrop", 0.1)))


def _falcon(config):
    h = int(_get(config, "hidden_size", "n_embed"))
    heads = int(_get(config, "num_attention_heads", "n_head"))
    head_dim = h // heads
    vocab = int(_get(config, "vocab_size"))
    bias = bool(config.get("bias", False))
    new_arch = bool(config.get("new_decoder_architecture", False))
    if new_arch:
        kv = int(_get(config, "num_kv_heads", default=heads))
    elif config.get("multi_query", True):
        kv = 1
    else:
        kv = heads
    if config.get("alibi"):
        raise ArchitectureError("falcon with alibi is not supported")
    inter = int(config.get("ffn_hidden_size") or 4 * h)
    if new_arch:
        norms = 2 * (2 * h) if config.get("num_ln_in_parallel_attn", 2) == 2 else 2 * h
    else:
        norms = 2 * h if config.get("parallel_attn", True) else 4 * h
    # FalconLinear subclasses nn.Linear, and transformers' bitsandbytes integration converts only exact
    # nn.Linear (and Conv1D) modules (`type(module) is nn.Linear`): 4-bit loading leaves these as they are
    linears = (Linear("query_key_value", h, (heads + 2 * kv) * head_dim, bias, quantizable=False),
               Linear("dense", h, h, bias, quantizable=False),
               Linear("dense_h_to_4h", h, inter, bias, quantizable=False),
               Linear("dense_4h_to_h", inter, h, bias, quantizable=False))
    tied = bool(config.get("tie_word_embeddings", True))
    return Architecture(
        model_type="falcon", hidden=h, layers=int(_get(config, "num_hidden_layers", "n_layer")),
        intermediate=inter, heads=heads, kv_heads=kv, head_dim=head_dim, vocab=vocab, tied=tied,
        max_positions=config.get("max_position_embeddings"), experts=0, experts_per_token=0,
        gated_mlp=False, embed_name="word_embeddings", embedding_params=vocab * h,
        layer_linears=linears, layer_other_params=norms, final_params=2 * h,
        lm_head=None if tied else Linear("lm_head", h, vocab),
        attention_targets=("query_key_value", "dense"))


def _gpt_neox(config):
    """Pythia and StableLM-alpha: a fused biased qkv projection, LayerNorms with bias before attention and
    MLP (added in parallel by default), partial rotary, a two-matrix GELU MLP, an untied head
    (GPTNeoXConfig's defaults)."""
    h = int(_get(config, "hidden_size"))
    heads = int(_get(config, "num_attention_heads"))
    inter = int(_get(config, "intermediate_size", default=24576))
    vocab = int(_get(config, "vocab_size"))
    bias = bool(config.get("attention_bias", True))
    linears = (Linear("query_key_value", h, 3 * h, bias), Linear("dense", h, h, bias),
               Linear("dense_h_to_4h", h, inter, True), Linear("dense_4h_to_h", inter, h, True))
    tied = bool(config.get("tie_word_embeddings", False))
    return Architecture(
        model_type="gpt_neox", hidden=h, layers=int(_get(config, "num_hidden_layers")), intermediate=inter,
        heads=heads, kv_heads=heads, head_dim=h // heads, vocab=vocab, tied=tied,
        max_positions=config.get("max_position_embeddings"), experts=0, experts_per_token=0, gated_mlp=False,
        embed_name="embed_in", embedding_params=vocab * h, layer_linears=linears, layer_other_params=4 * h,
        final_params=2 * h, lm_head=None if tied else Linear("lm_head", h, vocab),
        hidden_dropout_sites=2 if float(config.get("hidden_dropout") or 0) > 0 else 0,
        attention_targets=("query_key_value", "dense"),
        attention_dropout=float(config.get("attention_dropout") or 0),
        shared_norm_input=bool(config.get("use_parallel_residual", True)))


def _bloom(config):
    h = int(_get(config, "hidden_size", "n_embed"))
    heads = int(_get(config, "n_head", "num_attention_heads"))
    vocab = int(_get(config, "vocab_size"))
    linears = (Linear("query_key_value", h, 3 * h, True), Linear("dense", h, h, True),
               Linear("dense_h_to_4h", h, 4 * h, True), Linear("dense_4h_to_h", 4 * h, h, True))
    tied = bool(config.get("tie_word_embeddings", True))
    return Architecture(
        model_type="bloom", hidden=h, layers=int(_get(config, "n_layer", "num_hidden_layers")),
        intermediate=4 * h, heads=heads, kv_heads=heads, head_dim=h // heads, vocab=vocab, tied=tied,
        max_positions=None, experts=0, experts_per_token=0, gated_mlp=False,
        embed_name="word_embeddings", embedding_params=vocab * h + 2 * h, layer_linears=linears,
        layer_other_params=4 * h, final_params=2 * h, lm_head=None if tied else Linear("lm_head", h, vocab),
        attention_targets=("query_key_value", "dense"), attention_dropout=float(config.get("attention_dropout") or 0))


def _opt(config):
    h = int(_get(config, "hidden_size"))
    heads = int(_get(config, "num_attention_heads"))
    inter = int(_get(config, "ffn_dim"))
    vocab = int(_get(config, "vocab_size"))
    positions = int(_get(config, "max_position_embeddings", default=2048))
    proj = int(config.get("word_embed_proj_dim") or h)
    if proj != h:
        raise ArchitectureError("OPT with word_embed_proj_dim != hidden_size (opt-350m) is not supported")
    if not config.get("do_layer_norm_before", True):
        raise ArchitectureError("OPT with do_layer_norm_before = false (opt-350m) is not supported")
    bias = bool(config.get("enable_bias", True))
    ln = 2 * h if config.get("layer_norm_elementwise_affine", True) else 0
    linears = (Linear("k_proj", h, h, bias), Linear("v_proj", h, h, bias), Linear("q_proj", h, h, bias),
               Linear("out_proj", h, h, bias), Linear("fc1", h, inter, bias), Linear("fc2", inter, h, bias))
    tied = bool(config.get("tie_word_embeddings", True))
    return Architecture(
        model_type="opt", hidden=h, layers=int(_get(config, "num_hidden_layers")), intermediate=inter,
        heads=heads, kv_heads=heads, head_dim=h // heads, vocab=vocab, tied=tied, max_positions=positions,
        experts=0, experts_per_token=0, gated_mlp=False, embed_name="embed_tokens",
        embedding_params=vocab * h + (positions + 2) * h, layer_linears=linears,
        layer_other_params=2 * ln, final_params=ln, lm_head=None if tied else Linear("lm_head", h, vocab),
        hidden_dropout_sites=2 if float(config.get("dropout", 0.1)) > 0 else 0,
        attention_targets=("q_proj", "k_proj", "v_proj", "out_proj"), learned_positions=True,
        attention_dropout=float(config.get("attention_dropout") or 0))


BUILDERS = {
    "llama": _llama, "mistral": _llama, "mixtral": _llama, "smollm3": _llama, "granite": _llama, "qwen2": _qwen2,
    "qwen3": _qwen3, "qwen3_moe": _qwen3_moe, "olmo2": _olmo2, "olmo3": _olmo2, "gemma": _gemma, "gemma2": _gemma2,
    "gemma3_text": _gemma3_text, "gemma3": _gemma3, "gpt_oss": _gpt_oss, "phi": _phi, "phi3": _phi3,
    "starcoder2": _starcoder2, "cohere": _cohere, "gpt2": _gpt2, "stablelm": _stablelm, "falcon": _falcon,
    "bloom": _bloom, "opt": _opt, "gpt_neox": _gpt_neox,
}
