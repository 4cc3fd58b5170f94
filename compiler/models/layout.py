"""The module layout of a decoder-only model: what `from_config` returns and everything downstream reads.

The layout lists every weight-bearing module the way transformers builds it (names as peft
sees them), so that parameter counts, LoRA targets and quantized bytes all derive from one
description instead of per-purpose formulas.
"""

from __future__ import annotations

from dataclasses import dataclass


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
    # an nn.Linear that bitsandbytes converts; False for routers, fused experts and the nn.Linear subclasses
    # transformers' integration skips (Falcon's FalconLinear)
    quantizable: bool = True
    lora_rank_factor: int = 1  # peft's all-linear gives fused gate+up expert weights twice the rank
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
    embedding_dropout: bool = False  # a dropout on the embeddings' output, once per model (GPT-2, StarCoder2)
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
    attention_dropout: float = 0.0  # on the attention probabilities in training (Granite's configs, GPT-2's: 0.1)
    shared_norm_input: bool = False  # GPT-NeoX's parallel block: both LayerNorms read one input, kept once
    # linears outside the decoder stack, each `count` times in all (a multimodal checkpoint's vision encoder:
    # text-only training loads, adapts and quantizes it but never runs it) and the tower's other parameters
    tower_linears: tuple[Linear, ...] = ()
    tower_other_params: int = 0
    # the dtype the checkpoint is stored in (config.json's `torch_dtype`, or `dtype` since transformers 5):
    # loading into another dtype makes each process its own converted copy instead of mapping the file
    checkpoint_dtype: str | None = None

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
