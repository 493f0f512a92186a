#!/usr/bin/env python3
"""Eager PyTorch peer of the Hugging Face Llama math (shared/HF.md), for `unforget bench model.config=...`.

The model is written here in plain torch (no transformers/peft): RMSNorm with weight, grouped-query attention,
rotate-half RoPE with llama3 scaling, SwiGLU MLP, tied embeddings, a KV cache for decoding, and LoRA as PEFT
computes it. Float32 weights, eager, no compilation. Random weights from the shape's config.json.

Rows (one JSON line on stdout each):
  --row full      AdamW step (lr 1e-4, b2 0.999, wd 0.02), NTP on a random batch (default 4x512)
  --row full_kl   the same plus kl_pre: KL(pi || theta) on a replay batch sampled once from the frozen copy pi
  --row lora      LoRA r=16, alpha 32 on all seven linear modules, base frozen
  --row lora_kl   LoRA plus kl_pre, pi = the base model with the adapters disabled
  --row sample    KV-cache sampling from BOS (default 64 rows, to full length T or --new-tokens)
  --selftest      float64 forward, KV-cache decoding, LoRA, KL and parameter counts against independent references
  --smoke         every shape shrunk to a tiny one, so a test can run every row in seconds

Run with Debian's Python:  /usr/bin/python3 bench/torch_hf_peer.py --row full --shape smollm2-135m
"""
import argparse
import contextlib
import copy
import json
import math
import os
import resource
import statistics
import sys
import time
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from torch_peer import openblas_core, openblas_threads

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
ROWS = ("full", "full_kl", "lora", "lora_kl", "sample")
DEFAULT_SHAPE = {"full": "smollm2-135m", "full_kl": "smollm2-135m", "sample": "smollm2-135m",
                 "lora": "llama-3.2-1b", "lora_kl": "llama-3.2-1b"}
HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


class ShapeError(Exception):
    """A config.json the peer cannot build; the message names the file and the key."""


@dataclass(frozen=True)
class Shape:
    name: str
    D: int  # hidden_size
    L: int  # num_hidden_layers
    N: int  # num_attention_heads
    Nkv: int  # num_key_value_heads
    H: int  # head_dim
    F: int  # intermediate_size
    V: int  # vocab_size
    rope_theta: float
    rope_scaling: dict | None  # llama3: factor, low_freq_factor, high_freq_factor, original_max_position_embeddings
    eps: float
    tied: bool
    bos: int
    max_positions: int
    init_std: float


def load_shape(name_or_path):
    """A shape from bench/configs/<name>.json or from any transformers config.json path."""
    path = name_or_path if name_or_path.endswith(".json") else os.path.join(CONFIG_DIR, name_or_path + ".json")
    try:
        with open(path) as f:
            c = json.load(f)
    except (OSError, ValueError) as e:
        raise ShapeError(f"{path}: cannot read a config.json ({e})")

    def need(key):
        if key not in c:
            raise ShapeError(f"{path}: missing key {key}")
        return c[key]

    if need("model_type") != "llama":
        raise ShapeError(f"{path}: model_type {c['model_type']!r} is not llama (this peer has Llama math only)")
    if c.get("hidden_act", "silu") != "silu" or c.get("attention_bias") or c.get("mlp_bias"):
        raise ShapeError(f"{path}: hidden_act must be silu and attention_bias/mlp_bias false")
    D, N = need("hidden_size"), need("num_attention_heads")
    Nkv = c.get("num_key_value_heads") or N
    if N % Nkv:
        raise ShapeError(f"{path}: num_attention_heads {N} is not a multiple of num_key_value_heads {Nkv}")
    H = c.get("head_dim") or D // N
    if H % 2:
        raise ShapeError(f"{path}: head_dim {H} is odd (RoPE rotates halves)")
    scaling = c.get("rope_scaling")
    if scaling is not None:
        kind = scaling.get("rope_type", scaling.get("type"))
        if kind != "llama3":
            raise ShapeError(f"{path}: rope_scaling.rope_type {kind!r} is not llama3")
        for k in ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"):
            if k not in scaling:
                raise ShapeError(f"{path}: missing key rope_scaling.{k}")
    return Shape(name=os.path.basename(path)[:-5], D=D, L=need("num_hidden_layers"), N=N, Nkv=Nkv, H=H,
                 F=need("intermediate_size"), V=need("vocab_size"), rope_theta=float(c.get("rope_theta", 10000.0)),
                 rope_scaling=scaling, eps=float(need("rms_norm_eps")), tied=bool(c.get("tie_word_embeddings", True)),
                 bos=int(c.get("bos_token_id") or 0), max_positions=int(c.get("max_position_embeddings", 2048)),
                 init_std=float(c.get("initializer_range", 0.02)))


def smoke_shape(s):
    """The tiny stand-in of a shape for --smoke: keeps its family traits (GQA group size, RoPE scaling, ties)."""
    group = s.N // s.Nkv
    return replace(s, name=s.name + "-smoke", D=64, L=2, N=2 * group, Nkv=2, H=16, F=128, V=256,
                   bos=s.bos if s.bos < 256 else 1)


# ----------------------------------------------------------------------------------------------------------------
# The model


def rope_inv_freq(s):
    """theta^(-2i/H) for i < H/2, with transformers' llama3 rescaling of long wavelengths. Float64."""
    i = torch.arange(s.H // 2, dtype=torch.float64)
    inv = s.rope_theta ** (-2.0 * i / s.H)
    sc = s.rope_scaling
    if sc is None:
        return inv
    f, lo, hi, orig = (float(sc["factor"]), float(sc["low_freq_factor"]), float(sc["high_freq_factor"]),
                       float(sc["original_max_position_embeddings"]))
    wavelen = 2 * math.pi / inv
    smooth = (orig / wavelen - lo) / (hi - lo)
    blended = (1 - smooth) * inv / f + smooth * inv
    return torch.where(wavelen > orig / lo, inv / f, torch.where(wavelen < orig / hi, inv, blended))


def rope_tables(s, T, dtype):
    """cos, sin [T, H]: each frequency twice, for the two halves that rotate_half pairs."""
    ang = torch.arange(T, dtype=torch.float64)[:, None] * rope_inv_freq(s)[None, :]
    ang = torch.cat((ang, ang), dim=-1)
    return torch.cos(ang).to(dtype), torch.sin(ang).to(dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rms_norm(x, weight, eps):
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


class Linear(torch.nn.Module):
    """x·Wᵀ with W [out, in] as transformers stores it, and optionally a PEFT LoRA adapter:
    y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ, A [r, in], B [out, r], s = alpha / r."""

    def __init__(self, d_in, d_out, dtype):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(d_out, d_in, dtype=dtype))
        self.lora_A = None
        self.lora_B = None
        self.scaling = 0.0
        self.adapter_on = True

    def add_lora(self, r, alpha, generator):
        d_out, d_in = self.weight.shape
        # PEFT initialises A with kaiming_uniform_(a=sqrt(5)), whose bound is 1/sqrt(fan_in); B starts at zero.
        bound = 1.0 / math.sqrt(d_in)
        a = torch.empty(r, d_in, dtype=self.weight.dtype).uniform_(-bound, bound, generator=generator)
        self.lora_A = torch.nn.Parameter(a)
        self.lora_B = torch.nn.Parameter(torch.zeros(d_out, r, dtype=self.weight.dtype))
        self.scaling = alpha / r
        self.weight.requires_grad_(False)

    def forward(self, x):
        y = F.linear(x, self.weight)
        if self.lora_A is not None and self.adapter_on:
            y = y + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scaling
        return y


class Layer(torch.nn.Module):
    def __init__(self, s, dtype):
        super().__init__()
        self.input_layernorm = torch.nn.Parameter(torch.ones(s.D, dtype=dtype))
        self.q_proj = Linear(s.D, s.N * s.H, dtype)
        self.k_proj = Linear(s.D, s.Nkv * s.H, dtype)
        self.v_proj = Linear(s.D, s.Nkv * s.H, dtype)
        self.o_proj = Linear(s.N * s.H, s.D, dtype)
        self.post_attention_layernorm = torch.nn.Parameter(torch.ones(s.D, dtype=dtype))
        self.gate_proj = Linear(s.D, s.F, dtype)
        self.up_proj = Linear(s.D, s.F, dtype)
        self.down_proj = Linear(s.F, s.D, dtype)

    def mlp(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


def causal_attention(q, k, v, mask):
    """q [B, N, T, H], k and v [B, Nkv, T, H]; query head n reads kv head n // (N/Nkv). Returns [B, N, T, H]."""
    B, N, T, H = q.shape
    Nkv = k.shape[1]
    g = N // Nkv
    if HAS_SDPA:
        if g > 1:
            k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    # The g query heads of a group stacked along the rows: one product per kv head, no copies of k and v.
    qg = q.reshape(B, Nkv, g * T, H)
    scores = (qg @ k.transpose(-1, -2)).view(B, Nkv, g, T, T) * (1.0 / math.sqrt(H)) + mask
    p = torch.softmax(scores, dim=-1).view(B, Nkv, g * T, T)
    return (p @ v).view(B, N, T, H)


class LlamaPeer(torch.nn.Module):
    def __init__(self, s, T, dtype=torch.float32, generator=None):
        super().__init__()
        self.s, self.T = s, T
        self.embed_tokens = torch.nn.Parameter(torch.empty(s.V, s.D, dtype=dtype))
        self.layers = torch.nn.ModuleList(Layer(s, dtype) for _ in range(s.L))
        self.norm = torch.nn.Parameter(torch.ones(s.D, dtype=dtype))
        self.lm_head = None if s.tied else torch.nn.Parameter(torch.empty(s.V, s.D, dtype=dtype))
        with torch.no_grad():
            for name, p in self.named_parameters():
                if p.dim() == 2:
                    p.normal_(0.0, s.init_std, generator=generator)
        cos, sin = rope_tables(s, T, dtype)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.register_buffer("mask", torch.full((T, T), float("-inf"), dtype=dtype).triu(1), persistent=False)

    def linears(self):
        return [m for m in self.modules() if isinstance(m, Linear)]

    def add_lora(self, r, alpha, generator=None):
        """PEFT's target_modules="all-linear": every projection of every layer; everything else frozen."""
        for p in self.parameters():
            p.requires_grad_(False)
        for m in self.linears():
            m.add_lora(r, alpha, generator)

    @contextlib.contextmanager
    def adapters_disabled(self):
        ms = self.linears()
        for m in ms:
            m.adapter_on = False
        try:
            yield
        finally:
            for m in ms:
                m.adapter_on = True

    def head(self):
        return self.embed_tokens if self.lm_head is None else self.lm_head

    def forward(self, x, drop_last=False):
        """logits [B, T, V]; with drop_last only the predicting positions 0..T-2, so the losses never build
        (and back-propagate through) the unused last row."""
        s = self.s
        B, T = x.shape
        cos, sin, mask = self.cos[:T], self.sin[:T], self.mask[:T, :T]
        h = F.embedding(x, self.embed_tokens)
        for ly in self.layers:
            a = rms_norm(h, ly.input_layernorm, s.eps)
            q = ly.q_proj(a).view(B, T, s.N, s.H).transpose(1, 2)
            k = ly.k_proj(a).view(B, T, s.Nkv, s.H).transpose(1, 2)
            v = ly.v_proj(a).view(B, T, s.Nkv, s.H).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            o = causal_attention(q, k, v, mask).transpose(1, 2).reshape(B, T, s.N * s.H)
            h = h + ly.o_proj(o)
            h = h + ly.mlp(rms_norm(h, ly.post_attention_layernorm, s.eps))
        if drop_last:
            h = h[:, :-1]
        return F.linear(rms_norm(h, self.norm, s.eps), self.head())

    @torch.no_grad()
    def sample(self, first, new_tokens, temperature=1.0, generator=None, return_logits=False):
        """first [B] prompt ids; appends new_tokens sampled tokens with a KV cache.
        Returns tokens [B, 1 + new_tokens] (and the logits each draw used, [B, new_tokens, V], if asked)."""
        s = self.s
        B = first.shape[0]
        T = 1 + new_tokens
        assert T <= self.T, f"sampling length {T} exceeds the model's T {self.T}"
        g = s.N // s.Nkv
        dtype = self.embed_tokens.dtype
        kc = torch.empty(s.L, B, s.Nkv, T, s.H, dtype=dtype)
        vc = torch.empty(s.L, B, s.Nkv, T, s.H, dtype=dtype)
        scale = 1.0 / math.sqrt(s.H)
        toks = torch.empty(B, T, dtype=torch.long)
        toks[:, 0] = first
        logits_seen = []
        cur = first
        for pos in range(new_tokens):
            cos, sin = self.cos[pos], self.sin[pos]
            h = F.embedding(cur, self.embed_tokens)  # [B, D]
            for l, ly in enumerate(self.layers):
                a = rms_norm(h, ly.input_layernorm, s.eps)
                q = ly.q_proj(a).view(B, s.N, s.H)
                k = ly.k_proj(a).view(B, s.Nkv, s.H)
                q = q * cos + rotate_half(q) * sin
                kc[l, :, :, pos] = k * cos + rotate_half(k) * sin
                vc[l, :, :, pos] = ly.v_proj(a).view(B, s.Nkv, s.H)
                K, Vv = kc[l, :, :, : pos + 1], vc[l, :, :, : pos + 1]  # [B, Nkv, pos+1, H]
                qg = q.view(B, s.Nkv, g, s.H)
                p = torch.softmax((qg @ K.transpose(-1, -2)) * scale, dim=-1)  # [B, Nkv, g, pos+1]
                h = h + ly.o_proj((p @ Vv).reshape(B, s.N * s.H))
                h = h + ly.mlp(rms_norm(h, ly.post_attention_layernorm, s.eps))
            logits = F.linear(rms_norm(h, self.norm, s.eps), self.head())
            if return_logits:
                logits_seen.append(logits)
            cur = torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1, generator=generator).squeeze(1)
            toks[:, pos + 1] = cur
        if return_logits:
            return toks, torch.stack(logits_seen, dim=1)
        return toks


def ntp_loss(logits, x):
    """Mean next-token cross-entropy; logits are those of the predicting positions [B, T-1, V]."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))


def kl_loss(logits_p, logits_q):
    """Mean over positions of KL(p || q) = Σ_v p (log p − log q), p the frozen reference: the cross-entropy with
    probability targets (one fused log-softmax of q) plus p's negative entropy, a constant without gradient."""
    V = logits_q.shape[-1]
    with torch.no_grad():
        logp = F.log_softmax(logits_p.reshape(-1, V), dim=-1)
        p = logp.exp()
        neg_entropy = (p * logp).sum(-1).mean()
    return F.cross_entropy(logits_q.reshape(-1, V), p) + neg_entropy


# ----------------------------------------------------------------------------------------------------------------
# FLOPs


def param_counts(s, lora_rank=None):
    """(base, adapter) parameter counts: base = non-embedding + one embedding table (tied embeddings counted once;
    an untied head counted too); adapter = LoRA's A and B on the seven projections of every layer."""
    attn = s.D * s.N * s.H + 2 * s.D * s.Nkv * s.H + s.N * s.H * s.D
    mlp = 3 * s.D * s.F
    non_embed = s.L * (attn + mlp + 2 * s.D) + s.D
    embed = s.V * s.D * (1 if s.tied else 2)
    adapter = 0
    if lora_rank:
        dims = [(s.D, s.N * s.H), (s.D, s.Nkv * s.H), (s.D, s.Nkv * s.H), (s.N * s.H, s.D),
                (s.D, s.F), (s.D, s.F), (s.F, s.D)]
        adapter = s.L * lora_rank * sum(i + o for i, o in dims)
    return non_embed + embed, adapter


def flops_per_token(s, params, mean_context, passes):
    """FLOPs of one token, as the acceptance issue counts them: "6·params per trained token, or 2·params per sampled
    one, plus attention". `passes` is 3 for a trained token (forward, input gradient, weight gradient) and 1 for a
    forward-only or sampled token; each pass costs 2·params (a multiply-add per weight, the tied head included)
    plus the attention products, QKᵀ and PV: 2 products × 2 FLOPs × N·H per key, over the mean number of keys
    a query sees under the causal mask ((T+1)/2 for a full causal sequence of length T, which is the issue's
    "causal half" 6·L·T·N·H for training). Norms, softmax, SiLU, RoPE and the loss are not counted."""
    attention = 2 * 2 * s.L * s.N * s.H * mean_context
    return passes * (2 * params + attention)


# ----------------------------------------------------------------------------------------------------------------
# Rows


def random_batch(s, B, T, generator):
    x = torch.randint(0, s.V, (B, T), generator=generator)
    x[:, 0] = s.bos
    return x


def run_row(args):
    s = load_shape(args.shape or DEFAULT_SHAPE[args.row])
    T, B = args.T, args.batch
    if args.smoke:
        s, T = smoke_shape(s), 32
        B = 2
    if B is None:
        B = 64 if args.row == "sample" else 4
    if T > s.max_positions:
        raise ShapeError(f"--T {T} exceeds max_position_embeddings {s.max_positions} of {s.name}")
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model = LlamaPeer(s, T, torch.float32, gen)
    lora = args.row in ("lora", "lora_kl")
    if lora:
        model.add_lora(args.lora_rank, args.lora_alpha, gen)
    base_params, adapter_params = param_counts(s, args.lora_rank if lora else None)
    assert base_params + adapter_params == sum(p.numel() for p in model.parameters())
    trainable = [p for p in model.parameters() if p.requires_grad]
    res = {"row": args.row, "shape": s.name, "T": T, "batch": B, "params": base_params,
           "adapter_params": adapter_params, "trainable_params": sum(p.numel() for p in trainable)}

    if args.row == "sample":
        new = min(args.new_tokens or T - 1, T - 1)
        model.eval()
        prompts = torch.full((B,), s.bos, dtype=torch.long)

        def step():
            model.sample(prompts, new, 1.0, gen)

        tokens_per_step = B * new
        flops_per_step = B * new * flops_per_token(s, base_params, (new + 1) / 2, 1)
        res["new_tokens"] = new
    else:
        opt = torch.optim.AdamW(trainable, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.02)
        trained_tok = flops_per_token(s, base_params + adapter_params, (T + 1) / 2, 3)
        flops_per_step = B * T * trained_tok
        replay = pi_logits = None
        if args.row in ("full_kl", "lora_kl"):
            if lora:
                def pi_logits(r):
                    with torch.no_grad(), model.adapters_disabled():
                        return model(r, drop_last=True)
                pi_sampler = model
            else:
                pi = copy.deepcopy(model)
                for p in pi.parameters():
                    p.requires_grad_(False)

                def pi_logits(r):
                    with torch.no_grad():
                        return pi(r, drop_last=True)
                pi_sampler = pi
            # The replay buffer: sampled once from pi before timing, BOS then temperature 1 to the full length.
            t0 = time.perf_counter()
            with (model.adapters_disabled() if lora else contextlib.nullcontext()):
                replay = pi_sampler.sample(torch.full((B,), s.bos, dtype=torch.long), T - 1, 1.0, gen)
            res["replay_sample_s"] = time.perf_counter() - t0
            # The replay batch: theta's forward and backward, and pi's forward (pi has no adapters).
            flops_per_step += B * T * (trained_tok + flops_per_token(s, base_params, (T + 1) / 2, 1))

        def step():
            x = random_batch(s, B, T, gen)
            loss = ntp_loss(model(x, drop_last=True), x)
            if replay is not None:
                loss = loss + kl_loss(pi_logits(replay), model(replay, drop_last=True))
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        tokens_per_step = B * T

    for _ in range(args.warmup):
        step()  # warm-up: allocator, OpenBLAS buffers, AdamW state
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    res.update({
        "tokens_per_s": tokens_per_step / step_s,
        "step_s": step_s,
        "gflops": flops_per_step / step_s / 1e9,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "steps": args.steps, "step_times_s": times,
        "threads": torch.get_num_threads(), "blas_threads": openblas_threads(),
        "openblas_core": openblas_core(), "attention": "sdpa" if HAS_SDPA else "masked_softmax",
        "torch_version": torch.__version__, "smoke": args.smoke,
    })
    if lora:
        res["lora_rank"], res["lora_alpha"] = args.lora_rank, args.lora_alpha
    print(json.dumps(res))
    return 0


# ----------------------------------------------------------------------------------------------------------------
# Self-test: the peer against a second, plain float64 implementation written from the formulas


def reference_logits(s, w, tokens, lora=None, lora_scaling=0.0):
    """The Llama forward in numpy float64, one sequence, one token and one head at a time.
    w: name -> array (transformers' names and [out, in] layouts); lora: name -> (A, B)."""
    import numpy as np

    def proj(name, x):
        y = w[name] @ x
        if lora and name in lora:
            A, Bm = lora[name]
            y = y + lora_scaling * (Bm @ (A @ x))
        return y

    def norm(x, g):
        return g * x / math.sqrt(float(np.mean(x * x)) + s.eps)

    half = s.H // 2
    inv = []
    for i in range(half):
        f = s.rope_theta ** (-2.0 * i / s.H)
        sc = s.rope_scaling
        if sc is not None:
            wl = 2 * math.pi / f
            low_wl = sc["original_max_position_embeddings"] / sc["low_freq_factor"]
            high_wl = sc["original_max_position_embeddings"] / sc["high_freq_factor"]
            if wl > low_wl:
                f = f / sc["factor"]
            elif wl >= high_wl:
                t = (sc["original_max_position_embeddings"] / wl - sc["low_freq_factor"]) / (
                    sc["high_freq_factor"] - sc["low_freq_factor"])
                f = (1 - t) * f / sc["factor"] + t * f
        inv.append(f)

    def rotate(v, pos):
        # element i pairs with i + H/2 and the pair turns by pos·inv_i
        out = np.empty_like(v)
        for i in range(half):
            c, sn = math.cos(pos * inv[i]), math.sin(pos * inv[i])
            out[i] = v[i] * c - v[i + half] * sn
            out[i + half] = v[i + half] * c + v[i] * sn
        return out

    g = s.N // s.Nkv
    T = len(tokens)
    hs = [w["model.embed_tokens.weight"][t].copy() for t in tokens]
    for l in range(s.L):
        pre = f"model.layers.{l}."
        qs, ks, vs = [], [], []
        for t in range(T):
            a = norm(hs[t], w[pre + "input_layernorm.weight"])
            q = proj(pre + "self_attn.q_proj.weight", a)
            k = proj(pre + "self_attn.k_proj.weight", a)
            v = proj(pre + "self_attn.v_proj.weight", a)
            qs.append([rotate(q[n * s.H:(n + 1) * s.H], t) for n in range(s.N)])
            ks.append([rotate(k[j * s.H:(j + 1) * s.H], t) for j in range(s.Nkv)])
            vs.append([v[j * s.H:(j + 1) * s.H] for j in range(s.Nkv)])
        for t in range(T):
            heads = []
            for n in range(s.N):
                j = n // g
                sc = [float(qs[t][n] @ ks[u][j]) / math.sqrt(s.H) for u in range(t + 1)]
                m = max(sc)
                e = [math.exp(x - m) for x in sc]
                z = sum(e)
                heads.append(sum((e[u] / z) * vs[u][j] for u in range(t + 1)))
            hs[t] = hs[t] + proj(pre + "self_attn.o_proj.weight", np.concatenate(heads))
        for t in range(T):
            a = norm(hs[t], w[pre + "post_attention_layernorm.weight"])
            gate = proj(pre + "mlp.gate_proj.weight", a)
            up = proj(pre + "mlp.up_proj.weight", a)
            silu = gate / (1 + np.exp(-gate))
            hs[t] = hs[t] + proj(pre + "mlp.down_proj.weight", silu * up)
    head = w["lm_head.weight"] if "lm_head.weight" in w else w["model.embed_tokens.weight"]
    return np.stack([head @ norm(h, w["model.norm.weight"]) for h in hs])


def hf_weights(model):
    """The peer's weights under transformers' tensor names, as float64 numpy arrays, and its LoRA adapters."""
    w, lora = {"model.embed_tokens.weight": model.embed_tokens.detach().double().numpy(),
               "model.norm.weight": model.norm.detach().double().numpy()}, {}
    if model.lm_head is not None:
        w["lm_head.weight"] = model.lm_head.detach().double().numpy()
    for l, ly in enumerate(model.layers):
        pre = f"model.layers.{l}."
        w[pre + "input_layernorm.weight"] = ly.input_layernorm.detach().double().numpy()
        w[pre + "post_attention_layernorm.weight"] = ly.post_attention_layernorm.detach().double().numpy()
        for group, names in (("self_attn", ("q_proj", "k_proj", "v_proj", "o_proj")),
                             ("mlp", ("gate_proj", "up_proj", "down_proj"))):
            for nm in names:
                m = getattr(ly, nm)
                key = f"{pre}{group}.{nm}.weight"
                w[key] = m.weight.detach().double().numpy()
                if m.lora_A is not None:
                    lora[key] = (m.lora_A.detach().double().numpy(), m.lora_B.detach().double().numpy())
    return w, lora


def randomize_for_test(model, generator):
    """Norm weights away from 1 and LoRA B away from 0, so that every term of the math shows in the logits."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
            elif name.endswith("lora_B"):
                p.copy_(0.1 * torch.randn(p.shape, generator=generator, dtype=p.dtype))


def run_selftest():
    import numpy as np

    checks = {}
    gen = torch.Generator().manual_seed(7)
    # GQA group 2, head_dim unlike D/N, theta and llama3 scaling chosen so that all three frequency branches occur.
    s = Shape(name="selftest", D=24, L=2, N=4, Nkv=2, H=8, F=40, V=53, rope_theta=10000.0,
              rope_scaling={"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                            "original_max_position_embeddings": 64, "rope_type": "llama3"},
              eps=1e-5, tied=True, bos=1, max_positions=256, init_std=0.3)
    T = 12
    inv = rope_inv_freq(s).numpy()
    plain = s.rope_theta ** (-2.0 * np.arange(s.H // 2) / s.H)
    wavelen = 2 * math.pi / plain
    checks["llama3_branches_all_present"] = bool(
        (wavelen > 64).any() and (wavelen < 16).any() and ((wavelen >= 16) & (wavelen <= 64)).any())
    checks["llama3_kept_and_divided"] = bool(np.allclose(inv[wavelen < 16], plain[wavelen < 16], rtol=0, atol=0)
                                             and np.allclose(inv[wavelen > 64], plain[wavelen > 64] / 8, rtol=1e-15))

    x = torch.randint(0, s.V, (3, T), generator=gen)
    for tied in (True, False):
        st = replace(s, tied=tied)
        m64 = LlamaPeer(st, T, torch.float64, gen)
        randomize_for_test(m64, gen)
        w, _ = hf_weights(m64)
        ref = np.stack([reference_logits(st, w, row.tolist()) for row in x])
        with torch.no_grad():
            got = m64(x).numpy()
            got_drop = m64(x, drop_last=True).numpy()
        key = "tied" if tied else "untied"
        checks[f"forward_f64_{key}_max_abs_err"] = float(np.abs(got - ref).max())
        checks[f"forward_f64_{key}_ok"] = bool(np.abs(got - ref).max() < 1e-10 * max(1.0, np.abs(ref).max())
                                               and np.array_equal(got_drop, got[:, :-1]))

    # The benchmark's own dtype: float32 against the float64 reference, within float32 rounding.
    m32 = LlamaPeer(s, T, torch.float32, gen)
    randomize_for_test(m32, gen)
    w, _ = hf_weights(m32)
    ref = np.stack([reference_logits(s, w, row.tolist()) for row in x])
    with torch.no_grad():
        got = m32(x).double().numpy()
    rel = float(np.abs(got - ref).max() / np.abs(ref).max())
    checks["forward_f32_rel_err"] = rel
    checks["forward_f32_ok"] = rel < 1e-5

    # KV-cache decoding: the logits each draw used equal the full forward's at every position.
    m64 = LlamaPeer(s, T, torch.float64, gen)
    randomize_for_test(m64, gen)
    toks, seen = m64.sample(torch.full((3,), s.bos, dtype=torch.long), T - 1, 1.0, gen, return_logits=True)
    with torch.no_grad():
        full = m64(toks, drop_last=True)
    err = float((seen - full).abs().max())
    checks["kv_cache_vs_forward_max_abs_err"] = err
    checks["kv_cache_ok"] = err < 1e-10 * max(1.0, float(full.abs().max())) and bool((toks[:, 0] == s.bos).all())

    # LoRA: the adapted forward against the reference with y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ, the disabled adapter against
    # the reference without it, only A and B trainable, and B starting at zero as PEFT starts it.
    ml = LlamaPeer(s, T, torch.float64, gen)
    rank, alpha = 4, 8.0
    ml.add_lora(rank, alpha, gen)
    checks["lora_b_starts_zero"] = all(float(m.lora_B.abs().max()) == 0 for m in ml.linears())
    checks["lora_a_kaiming_bound"] = all(float(m.lora_A.abs().max()) <= 1 / math.sqrt(m.weight.shape[1])
                                         for m in ml.linears())
    randomize_for_test(ml, gen)
    w, lora = hf_weights(ml)
    checks["lora_on_seven_modules_per_layer"] = len(lora) == 7 * s.L
    ref_on = np.stack([reference_logits(s, w, row.tolist(), lora, alpha / rank) for row in x])
    ref_off = np.stack([reference_logits(s, w, row.tolist()) for row in x])
    with torch.no_grad():
        on = ml(x).numpy()
        with ml.adapters_disabled():
            off = ml(x).numpy()
    checks["lora_on_max_abs_err"] = float(np.abs(on - ref_on).max())
    checks["lora_off_max_abs_err"] = float(np.abs(off - ref_off).max())
    checks["lora_forward_ok"] = bool(np.abs(on - ref_on).max() < 1e-10 and np.abs(off - ref_off).max() < 1e-10
                                     and np.abs(ref_on - ref_off).max() > 1e-3)
    trainable = {n for n, p in ml.named_parameters() if p.requires_grad}
    checks["lora_only_adapters_trainable"] = bool(trainable) and all(
        n.endswith("lora_A") or n.endswith("lora_B") for n in trainable)
    ntp_loss(ml(x, drop_last=True), x).backward()
    checks["lora_base_gets_no_grad"] = all(p.grad is None for n, p in ml.named_parameters() if n not in trainable)

    # KL(p || q) against the explicit Σ p (log p − log q), and KL of a model with itself.
    with torch.no_grad():
        lp = m64(x, drop_last=True)
        lq = ml(x, drop_last=True)
    P, Q = F.log_softmax(lp, -1).numpy(), F.log_softmax(lq, -1).numpy()
    explicit = float((np.exp(P) * (P - Q)).sum(-1).mean())
    ours = float(kl_loss(lp, lq))
    checks["kl_ok"] = abs(ours - explicit) < 1e-12 * max(1.0, abs(explicit)) and abs(float(kl_loss(lp, lp))) < 1e-12

    # Parameter counts: the formula against the model's tensors, and against the published model sizes.
    counted = sum(p.numel() for p in ml.parameters())
    base, adapter = param_counts(s, rank)
    checks["param_count_matches_model"] = base + adapter == counted
    checks["param_count_smollm2_135m"] = param_counts(load_shape("smollm2-135m"))[0] == 134_515_008
    checks["param_count_llama_3_2_1b"] = param_counts(load_shape("llama-3.2-1b"))[0] == 1_235_814_400
    # FLOPs: the attention term against a direct sum over the causal triangle of one sequence.
    direct = sum(3 * 2 * 2 * s.L * s.N * s.H * (t + 1) for t in range(T)) / T
    checks["attention_flops_ok"] = math.isclose(flops_per_token(s, 0, (T + 1) / 2, 3), direct, rel_tol=1e-12)

    ok = all(v for k, v in checks.items() if k.endswith("_ok") or isinstance(v, bool))
    print(json.dumps({"selftest": "torch_hf_peer", "attention": "sdpa" if HAS_SDPA else "masked_softmax",
                      "ok": ok, **checks}))
    print("OK" if ok else "FAIL")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--row", choices=ROWS)
    ap.add_argument("--shape", help="bench/configs/<name>.json (smollm2-135m, llama-3.2-1b) or a config.json path; "
                                    "default smollm2-135m for full, full_kl, sample and llama-3.2-1b for lora rows")
    ap.add_argument("--T", type=int, default=512, help="sequence length (default 512)")
    ap.add_argument("--batch", type=int, default=None, help="rows per step (default 4; sample 64)")
    ap.add_argument("--new-tokens", type=int, default=None, help="sample: tokens drawn after BOS (default T-1)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps after the warm-up steps (default 3)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    ap.add_argument("--lora-rank", type=int, default=16)
    ap.add_argument("--lora-alpha", type=float, default=32.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="OpenBLAS thread count (default: leave OpenBLAS's own default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="tiny shapes (hidden 64, 2 layers, vocab 256, T 32, batch 2)")
    ap.add_argument("--selftest", action="store_true")
    args = ap.parse_args()
    for name in ("T", "steps", "lora_rank", "threads"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("batch", "new_tokens"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    torch.set_num_threads(args.threads)
    openblas_threads(args.blas_threads)
    if args.selftest:
        return run_selftest()
    if args.row is None:
        ap.error("one of --row or --selftest is required")
    try:
        return run_row(args)
    except ShapeError as e:
        print(f"torch_hf_peer: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
