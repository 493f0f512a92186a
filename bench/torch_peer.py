#!/usr/bin/env python3
"""Eager PyTorch peer of the unforget "gpt" model (docs/contract.md §1, §2), for benchmarking.

Modes (one JSON line on stdout):
  train   AdamW step on random token batches (NTP loss).
  kl      as train, plus KL(pi || theta) on a second random batch against a frozen copy pi.
  sample  autoregressive sampling with a KV cache, temperature 1.
  --check self-test: KV-cache sampler logits == full-forward logits at every position.

Run with Debian's Python:  /usr/bin/python3 bench/torch_peer.py --mode train ...
No torch.compile / jit: plain eager float32.
"""
import argparse
import ctypes
import json
import math
import resource
import sys
import time

import torch
import torch.nn.functional as F

EPS = 1e-6


def rmsnorm(x):
    # x / sqrt(mean(x^2) + eps), no gain
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS)


def rope_tables(T, H, device=None):
    half = H // 2
    i = torch.arange(half, dtype=torch.float64)
    freqs = 10000.0 ** (-2.0 * i / H)  # f_i = 10000^(-2i/H)
    pos = torch.arange(T, dtype=torch.float64)
    ang = pos[:, None] * freqs[None, :]  # [T, H/2]
    return torch.cos(ang).float(), torch.sin(ang).float()


def rope(x, cos, sin):
    # x [..., T, H]; cos/sin [T, H/2] (broadcast over leading dims)
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class GPT(torch.nn.Module):
    def __init__(self, D, L, H, T, V, generator=None):
        super().__init__()
        assert D % H == 0 and H % 2 == 0
        self.D, self.L, self.H, self.T, self.V = D, L, H, T, V
        self.N = N = D // H
        self.Fd = Fd = 4 * D
        g = generator
        sD, sF = D ** -0.5, Fd ** -0.5
        p = torch.nn.Parameter
        self.embed_in = p(torch.randn(V, D, generator=g) * sD)
        self.embed_out = p(torch.randn(V, D, generator=g) * sD)
        self.qkv = p(torch.randn(L, 3, N, D, H, generator=g) * sD)
        self.out = p(torch.randn(L, N, H, D, generator=g) * sD)
        self.up = p(torch.randn(L, D, Fd, generator=g) * sD)
        self.down = p(torch.randn(L, Fd, D, generator=g) * sF)
        cos, sin = rope_tables(T, H)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        mask = torch.full((T, T), float("-inf")).triu(1)
        self.register_buffer("mask", mask, persistent=False)

    def mats(self):
        """Per-step matrix views of the weights (differentiable):
        qkv [L, 3, N, D, H] -> [L, D, 3*N*H]; out [L, N, H, D] -> [L, N*H, D]."""
        L, N, D, H = self.L, self.N, self.D, self.H
        wqkv = self.qkv.permute(0, 3, 1, 2, 4).reshape(L, D, 3 * N * H)
        wout = self.out.reshape(L, N * H, D)
        return wqkv, wout

    def forward(self, x, drop_last=False):
        """logits [B, T, V]; with drop_last only the predicting positions 0..T-2 ([B, T-1, V]),
        so the losses never build (and back-propagate through) the unused last row."""
        B, T = x.shape
        D, N, H = self.D, self.N, self.H
        wqkv, wout = self.mats()
        cos, sin = self.cos[:T], self.sin[:T]
        mask = self.mask[:T, :T]
        scale = 1.0 / math.sqrt(H)
        h = self.embed_in[x]  # [B, T, D]
        for l in range(self.L):
            a = rmsnorm(h)
            qkv = (a @ wqkv[l]).view(B, T, 3, N, H).permute(2, 0, 3, 1, 4)  # [3, B, N, T, H]
            q, k, v = qkv[0], qkv[1], qkv[2]
            q = rope(rmsnorm(q), cos, sin)
            k = rope(rmsnorm(k), cos, sin)
            att = torch.softmax((q @ k.transpose(-1, -2)) * scale + mask, dim=-1)  # [B, N, T, T]
            o = (att @ v).transpose(1, 2).reshape(B, T, N * H)
            h = h + o @ wout[l]
            u = F.gelu(rmsnorm(h) @ self.up[l], approximate="tanh")
            h = h + u @ self.down[l]
        if drop_last:
            h = h[:, :-1]
        return rmsnorm(h) @ self.embed_out.t()  # [B, T, V] or [B, T-1, V]

    @torch.no_grad()
    def sample(self, first, T=None, temperature=1.0, return_logits=False, generator=None):
        """first [B] prompt token ids; generates up to length T with a KV cache.
        Returns tokens [B, T] (and logits [B, T-1, V] used at each step if asked)."""
        T = T or self.T
        B = first.shape[0]
        D, N, H, L = self.D, self.N, self.H, self.L
        wqkv, wout = self.mats()  # weights are frozen while sampling: views built once
        wqkv = [w.contiguous() for w in wqkv]
        wout = [w.contiguous() for w in wout]
        kc = torch.empty(L, B, N, T, H)
        vc = torch.empty(L, B, N, T, H)
        eo_t = self.embed_out.t()
        scale = 1.0 / math.sqrt(H)
        toks = torch.empty(B, T, dtype=torch.long)
        toks[:, 0] = first
        all_logits = [] if return_logits else None
        cur = first
        for pos in range(T - 1):
            cos, sin = self.cos[pos], self.sin[pos]
            h = self.embed_in[cur]  # [B, D]
            for l in range(L):
                a = rmsnorm(h)
                qkv = (a @ wqkv[l]).view(B, 3, N, H)
                q = rope(rmsnorm(qkv[:, 0]), cos, sin)  # [B, N, H]
                k = rope(rmsnorm(qkv[:, 1]), cos, sin)
                kc[l, :, :, pos] = k
                vc[l, :, :, pos] = qkv[:, 2]
                K = kc[l, :, :, : pos + 1]  # [B, N, pos+1, H]
                Vv = vc[l, :, :, : pos + 1]
                att = torch.softmax((K @ q.unsqueeze(-1)).squeeze(-1) * scale, dim=-1)  # [B, N, pos+1]
                o = (att.unsqueeze(-2) @ Vv).reshape(B, N * H)
                h = h + o @ wout[l]
                u = F.gelu(rmsnorm(h) @ self.up[l], approximate="tanh")
                h = h + u @ self.down[l]
            logits = rmsnorm(h) @ eo_t  # [B, V]
            if return_logits:
                all_logits.append(logits)
            probs = torch.softmax(logits / temperature, dim=-1)
            cur = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            toks[:, pos + 1] = cur
        if return_logits:
            return toks, torch.stack(all_logits, dim=1)
        return toks


def ntp_loss(logits, x):
    """mean next-token cross-entropy; logits are for the predicting positions [B, T-1, V]."""
    V = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, V), x[:, 1:].reshape(-1))


def kl_loss(logits_p, logits_q):
    """mean over positions of KL(p || q) = sum_v p (log p - log q); p is the frozen reference
    (no gradient).  Computed as CE(p, q) - H(p): cross_entropy with probability targets
    (fused log_softmax of q), the entropy term is a constant computed without grad."""
    V = logits_q.shape[-1]
    with torch.no_grad():
        logp = F.log_softmax(logits_p.reshape(-1, V), dim=-1)
        p = logp.exp()
        neg_entropy = (p * logp).sum(-1).mean()
    return F.cross_entropy(logits_q.reshape(-1, V), p) + neg_entropy


def _openblas():
    try:
        return ctypes.CDLL("libopenblas.so.0")  # the copy torch already loaded (Debian's libblas.so.3)
    except OSError:
        return None


def openblas_core():
    lib = _openblas()
    if lib is None:
        return None
    lib.openblas_get_corename.restype = ctypes.c_char_p
    return lib.openblas_get_corename().decode()


def openblas_threads(n=None):
    """torch.set_num_threads does not reach OpenBLAS's own pthread pool; set/query it here."""
    lib = _openblas()
    if lib is None:
        return None
    if n is not None:
        lib.openblas_set_num_threads(ctypes.c_int(n))
    return lib.openblas_get_num_threads()


def run_check():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    D, L, H, T, V, B = 64, 3, 16, 40, 97, 5
    model = GPT(D, L, H, T, V, generator=g)
    model.eval()
    first = torch.randint(0, V, (B,), generator=g)
    toks, slog = model.sample(first, T, return_logits=True, generator=g)
    with torch.no_grad():
        flog = model(toks)[:, : T - 1]
    err = ((slog - flog).abs().max() / flog.abs().max()).item()
    per_elem = ((slog - flog).abs() / flog.abs().clamp_min(1e-3)).max().item()
    # sanity: loss at init is ~ln V; KL of a model with itself is ~0
    x = torch.randint(0, V, (B, T), generator=g)
    with torch.no_grad():
        lg = model(x, drop_last=True)
        assert torch.allclose(lg, model(x)[:, :-1], rtol=1e-5, atol=1e-6)
        l0 = ntp_loss(lg, x).item()
        kself = kl_loss(lg, lg).item()
        # KL formula vs. the explicit sum_v p (log p - log q) on a second model
        lq = GPT(D, L, H, T, V, generator=g)(x, drop_last=True)
        lp_, lq_ = F.log_softmax(lg, -1), F.log_softmax(lq, -1)
        kl_explicit = (lp_.exp() * (lp_ - lq_)).sum(-1).mean().item()
        kl_ours = kl_loss(lg, lq).item()
        ok_kl = abs(kl_ours - kl_explicit) <= 1e-5 * max(1.0, abs(kl_explicit))
    ok = err < 1e-4 and ok_kl and abs(kself) < 1e-5
    print(json.dumps({"check": "kv_cache_vs_full_forward", "positions": T - 1, "max_rel_err": err,
                      "max_elementwise_rel_err": per_elem, "init_ntp": l0, "ln_V": math.log(V),
                      "kl_self": kself, "kl": kl_ours, "kl_explicit": kl_explicit, "ok": ok}))
    print("OK" if ok else "FAIL")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--D", type=int, default=128)
    ap.add_argument("--L", type=int, default=4)
    ap.add_argument("--H", type=int, default=32)
    ap.add_argument("--T", type=int, default=128)
    ap.add_argument("--V", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=None, help="default 32 (train/kl), 64 (sample)")
    ap.add_argument("--mode", choices=["train", "kl", "sample"], default="train")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="OpenBLAS thread count (default: leave OpenBLAS's own default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    blas_threads = openblas_threads(args.blas_threads)
    if args.check:
        return run_check()

    torch.manual_seed(args.seed)
    B = args.batch if args.batch is not None else (64 if args.mode == "sample" else 32)
    D, L, H, T, V = args.D, args.L, args.H, args.T, args.V
    model = GPT(D, L, H, T, V)

    if args.mode == "sample":
        model.eval()

        def step():
            first = torch.randint(0, V, (B,))
            model.sample(first, T)

        tokens_per_step = B * (T - 1)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.02)
        ref = None
        if args.mode == "kl":
            ref = GPT(D, L, H, T, V)
            ref.load_state_dict(model.state_dict())
            for p in ref.parameters():
                p.requires_grad_(False)

        def step():
            x = torch.randint(0, V, (B, T))
            loss = ntp_loss(model(x, drop_last=True), x)
            if ref is not None:
                r = torch.randint(0, V, (B, T))
                with torch.no_grad():
                    lp = ref(r, drop_last=True)
                loss = loss + 1.0 * kl_loss(lp, model(r, drop_last=True))
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        tokens_per_step = B * T

    for _ in range(args.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    dt = time.perf_counter() - t0

    res = {
        "mode": args.mode, "D": D, "L": L, "H": H, "T": T, "V": V, "batch": B,
        "threads": args.threads,
        "tokens_per_s": tokens_per_step * args.steps / dt,
        "step_ms": 1000.0 * dt / args.steps,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "torch_version": torch.__version__,
        "steps": args.steps, "warmup": args.warmup, "seconds": dt,
        "openblas_core": openblas_core(), "blas_threads": blas_threads,
    }
    if args.mode == "sample":
        res["decode_step_ms"] = 1000.0 * dt / (args.steps * (T - 1))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
