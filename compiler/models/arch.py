"""Architecture facts and the module layout they imply, from a `config.json` dict.

The layout lists every weight-bearing module the way transformers builds it (names as peft
sees them), so that parameter counts, LoRA targets and quantized bytes all derive from one
description instead of per-purpose formulas.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace


class ArchitectureError(ValueError):
    """The config cannot be understood (unknown model_type or a missing key)."""


class InvalidConfig(ArchitectureError):
    """A value no model can have (a size that is not a positive number, heads not in whole groups):
    loading the model would fail as well."""


NO_SDPA = ("gemma2", "bloom", "gpt_oss")  # transformers runs these with eager attention only (`_supports_sdpa = False`)


@dataclass(frozen=True)
class Linear:
    """A linear (or GPT-2 Conv1D) module repeated `count` times per layer (experts)."""

    name: str  # leaf name, as peft's target_modules matches it
    d_in: int
    d_out: int
    bias: bool = False
    count: int = 1
    quantizable: bool = True  # an nn.Linear that bitsandbytes converts; False for routers and fused experts
    lora_rank_factor: int = 1  # peft gives fused gate+up expert weights twice the rank
    adaptable: bool = True  # peft can target it by name (False: gpt-oss's router and experts, bare parameters)

    @property
    def params(self) -> int:
        return self.count * (self.d_in * self.d_out + (self.d_out if self.bias else 0))

    @property
    def weight_params(self) -> int:
        """The weight matrices alone: what bitsandbytes stores in 4 bits (biases stay 16-bit)."""
        return self.count * self.d_in * self.d_out


@dataclass(frozen=True)
class Sizes:
    """The sizes every decoder-only config.json states (under family-specific key names)."""

    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool


@dataclass(frozen=True)
class Architecture(Sizes):
    """What the estimator needs to know about a decoder-only transformer: its sizes and module layout."""

    model_type: str
    max_positions: int | None
    experts: int  # 0 for dense models
    experts_per_token: int
    gated_mlp: bool  # SwiGLU/GeGLU (gate, up, down) vs two-matrix MLP
    embed_name: str  # peft name of the token embedding module
    embedding_params: int  # token + position embeddings + embedding norm
    layer_linears: tuple[Linear, ...]
    layer_other_params: int  # norms and other small per-layer tensors
    final_params: int  # final norm
    lm_head: Linear | None  # None when tied to the embedding
    hidden_dropout_sites: int = 0  # residual dropouts per layer active in training (GPT-2, OPT configs)
    # LoRA's targets when the recipe names none: the attention projections, by this family's module names
    # (GPT-2's attention output shares its leaf name `c_proj` with the MLP's, so only `c_attn` there)
    attention_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    # a table of max_positions learned position embeddings (GPT-2, OPT): a longer sequence has no row to read
    learned_positions: bool = False
    # RMSNorm of the query and key before RoPE: over each head (Qwen3, Gemma-3: two head_dim weights per
    # layer) or over the whole projection (OLMo-2: q_dim + kv_dim weights)
    qk_norm: bool = False
    qk_norm_per_head: bool = True
    hidden_norms: int = 2  # hidden-size norms per layer: before attention and MLP; Gemma adds two after them
    # local attention: `sliding_layers` of the layers see only the last `sliding_window` tokens (Gemma-3)
    sliding_window: int | None = None
    sliding_layers: int = 0
    attention_dropout: float = 0.0  # on the attention probabilities in training (Granite's configs: 0.1)
    # linears outside the decoder stack, each `count` times in all (a multimodal checkpoint's vision encoder:
    # text-only training loads, adapts and quantizes it but never runs it) and the tower's other parameters
    tower_linears: tuple[Linear, ...] = ()
    tower_other_params: int = 0

    @property
    def default_attention(self) -> str:
        """What `attention` means when the recipe does not say: sdpa, or eager where transformers has no sdpa."""
        return "eager" if self.model_type in NO_SDPA else "sdpa"

    @property
    def a_model(self) -> str:
        """"a llama model", "an opt model": for messages."""
        return f"{'an' if self.model_type[0] in 'aeio' else 'a'} {self.model_type} model"

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def layer_params(self) -> int:
        return sum(m.params for m in self.layer_linears) + self.layer_other_params

    @property
    def linear_params(self) -> int:
        """Weights of decoder-layer (and tower) linears: what 4-bit quantization converts."""
        return sum(times * m.weight_params for m, times in self.all_linears if m.quantizable)

    @property
    def tower_params(self) -> int:
        return sum(m.params for m in self.tower_linears) + self.tower_other_params

    @property
    def total_params(self) -> int:
        head = self.lm_head.params if self.lm_head is not None else 0
        return self.embedding_params + self.layers * self.layer_params + self.final_params + head + self.tower_params

    @property
    def all_linears(self) -> tuple[tuple[Linear, int], ...]:
        """Every linear with how many times the model holds it: per layer × layers, tower linears as counted."""
        return tuple((m, self.layers) for m in self.layer_linears) + tuple((m, 1) for m in self.tower_linears)

    @property
    def lm_head_params(self) -> int:
        """Parameters of the output projection, shared or not."""
        return self.lm_head.params if self.lm_head is not None else self.vocab * self.hidden

    @property
    def linear_names(self) -> tuple[str, ...]:
        """Module names `all_linear` adapts (peft: every Linear/Conv1D except the output layer)."""
        seen: list[str] = []
        for m in self.layer_linears + self.tower_linears:
            if m.adaptable and m.name not in seen:
                seen.append(m.name)
        return tuple(seen)


def _get(config: dict, *keys, default=None):
    for key in keys:
        if key in config and config[key] is not None:
            return config[key]
    if default is not None:
        return default
    raise ArchitectureError(f"config has none of {', '.join(repr(k) for k in keys)}")


def from_config(config: dict) -> Architecture:
    """Build the Architecture for a config.json dict; raises ArchitectureError when not understood,
    a value of the wrong type or size included (a hand-edited config must not crash the compiler)."""
    if not isinstance(config, dict):
        raise ArchitectureError("the config is not a JSON object")
    model_type = config.get("model_type")
    builder = _BUILDERS.get(model_type) if isinstance(model_type, str) else None
    if builder is None:
        raise ArchitectureError(f"model_type {model_type!r} is not supported "
                                f"(supported: {', '.join(SUPPORTED_TYPES)})")
    try:
        arch = builder(config)
    except ArchitectureError:
        raise
    except (TypeError, ValueError, ArithmeticError, AttributeError, LookupError) as exc:
        raise InvalidConfig(f"the {model_type} config has a value ftc cannot read: {exc}") from exc
    return _checked(arch)


def _checked(arch: Architecture) -> Architecture:
    """Sizes a model can have: positive, and query heads in whole groups per key/value head."""
    for name in ("hidden", "layers", "intermediate", "heads", "kv_heads", "head_dim", "vocab"):
        value = getattr(arch, name)
        if value <= 0:
            raise InvalidConfig(f"the {arch.model_type} config gives {name} = {value}; it must be positive")
    if arch.heads % arch.kv_heads:
        raise InvalidConfig(f"the {arch.model_type} config has {arch.heads} attention heads, not a multiple "
                            f"of its {arch.kv_heads} key/value heads")
    if any(m.d_in <= 0 or m.d_out <= 0 for m in arch.layer_linears + arch.tower_linears):
        raise InvalidConfig(f"the {arch.model_type} config gives a projection of size zero or less")
    return arch


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
    d = _llama_sizes(c)
    h, heads, kv, head_dim, inter, vocab = d.hidden, d.heads, d.kv_heads, d.head_dim, d.intermediate, d.vocab
    bias = bool(config.get("use_bias", True))
    linears = (Linear("q_proj", h, heads * head_dim, bias), Linear("k_proj", h, kv * head_dim, bias),
               Linear("v_proj", h, kv * head_dim, bias), Linear("o_proj", heads * head_dim, h, bias),
               Linear("c_fc", h, inter, bias), Linear("c_proj", inter, h, bias))
    window, sliding = _sliding_window(config, d.layers)
    return Architecture(
        **asdict(d), model_type="starcoder2", max_positions=config.get("max_position_embeddings"), experts=0,
        experts_per_token=0, gated_mlp=False, embed_name="embed_tokens", embedding_params=vocab * h,
        layer_linears=linears, layer_other_params=4 * h, final_params=2 * h,
        lm_head=None if d.tied else Linear("lm_head", h, vocab),
        hidden_dropout_sites=2 if float(config.get("residual_dropout") or 0) > 0 else 0,
        sliding_window=window, sliding_layers=sliding,
        attention_dropout=float(config.get("attention_dropout") or 0))


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
        attention_targets=("q_proj", "k_proj", "v_proj", "dense"))


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
        attention_targets=("c_attn",), learned_positions=True)


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
    linears = (Linear("query_key_value", h, (heads + 2 * kv) * head_dim, bias),
               Linear("dense", h, h, bias), Linear("dense_h_to_4h", h, inter, bias),
               Linear("dense_4h_to_h", inter, h, bias))
    tied = bool(config.get("tie_word_embeddings", True))
    return Architecture(
        model_type="falcon", hidden=h, layers=int(_get(config, "num_hidden_layers", "n_layer")),
        intermediate=inter, heads=heads, kv_heads=kv, head_dim=head_dim, vocab=vocab, tied=tied,
        max_positions=config.get("max_position_embeddings"), experts=0, experts_per_token=0,
        gated_mlp=False, embed_name="word_embeddings", embedding_params=vocab * h,
        layer_linears=linears, layer_other_params=norms, final_params=2 * h,
        lm_head=None if tied else Linear("lm_head", h, vocab),
        attention_targets=("query_key_value", "dense"))


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
        attention_targets=("query_key_value", "dense"))


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
        attention_targets=("q_proj", "k_proj", "v_proj", "out_proj"), learned_positions=True)


_BUILDERS = {
    "llama": _llama, "mistral": _llama, "mixtral": _llama, "smollm3": _llama, "granite": _llama, "qwen2": _qwen2,
    "qwen3": _qwen3, "qwen3_moe": _qwen3_moe, "olmo2": _olmo2, "olmo3": _olmo2, "gemma2": _gemma2,
    "gemma3_text": _gemma3_text, "gemma3": _gemma3, "gpt_oss": _gpt_oss, "phi": _phi, "phi3": _phi3, "starcoder2": _starcoder2, "gpt2": _gpt2,
    "stablelm": _stablelm, "falcon": _falcon, "bloom": _bloom, "opt": _opt,
}
SUPPORTED_TYPES = tuple(_BUILDERS)
