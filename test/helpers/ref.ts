/**
 * Float64 reference implementations of every native kernel (src/backend/native.ts), written plainly:
 * loops over Float64Array, shapes in the arguments, no cleverness. They are the "second implementation"
 * the kernel tests compare against, and the functions whose central finite differences check the
 * native backward passes.
 */

export type F64 = Float64Array;

export const RMS_EPS = 1e-6;
export const ROPE_BASE = 10000;

// ---------------------------------------------------------------------------------------------------
// small utilities

/** A tiny deterministic PRNG (mulberry32) so the tests do not depend on src/util. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  /** uniform in [0, 1) */
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** standard normal (Box–Muller) */
  normal(): number {
    let u = this.next();
    while (u <= 1e-300) u = this.next();
    const v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
}

/** Float32 array of n normals with standard deviation `std`. */
export function randn32(rng: Rng, n: number, std = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal() * std;
  return a;
}

export function randInts(rng: Rng, n: number, hi: number): Int32Array {
  const a = new Int32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.int(hi);
  return a;
}

export function to64(a: ArrayLike<number>): F64 {
  return Float64Array.from(a);
}

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`dot: length ${a.length} vs ${b.length}`);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** max|a-b| / max(floor, max|b|): the error measure used by the tests. NaN anywhere gives Infinity. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-6): number {
  if (a.length !== b.length) throw new Error(`relErr: length ${a.length} vs ${b.length}`);
  let d = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const e = Math.abs(a[i] - b[i]);
    if (!Number.isFinite(e)) return Infinity;
    d = Math.max(d, e);
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / Math.max(floor, m);
}

// ---------------------------------------------------------------------------------------------------
// finite differences

/**
 * Central differences of a float64 scalar function at `x` for the chosen coordinates:
 * g[j] = (f(x + h e_c) − f(x − h e_c)) / 2h with c = coords[j]. `x` is restored afterwards.
 * Error O(h²·f''') + O(ε·|f|/h); h = 1e-5 balances both for O(1) inputs in float64.
 */
export function finiteDiff(f: (x: F64) => number, x: F64, coords: ArrayLike<number>, h = 1e-5): F64 {
  const g = new Float64Array(coords.length);
  for (let j = 0; j < coords.length; j++) {
    const c = coords[j];
    const x0 = x[c];
    x[c] = x0 + h;
    const fp = f(x);
    x[c] = x0 - h;
    const fm = f(x);
    x[c] = x0;
    g[j] = (fp - fm) / (2 * h);
  }
  return g;
}

/** All indices 0..n-1 when n <= max, else `max` distinct random indices (sorted). */
export function pickCoords(rng: Rng, n: number, max: number): Int32Array {
  if (n <= max) return Int32Array.from({ length: n }, (_, i) => i);
  const chosen = new Set<number>();
  while (chosen.size < max) chosen.add(rng.int(n));
  return Int32Array.from([...chosen].sort((a, b) => a - b));
}

/** Values of `a` at the given coordinates. */
export function gather(a: ArrayLike<number>, coords: ArrayLike<number>): F64 {
  const g = new Float64Array(coords.length);
  for (let j = 0; j < coords.length; j++) g[j] = a[coords[j]];
  return g;
}

// ---------------------------------------------------------------------------------------------------
// matrix products

/** C[M,N] = alpha·op(A)·op(B) + beta·C, row-major; A is [M,K] or (transA) [K,M]; B is [K,N] or [N,K].
 *  With beta == 0 the old C is ignored (BLAS convention). */
export function gemm(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
                     A: ArrayLike<number>, B: ArrayLike<number>, beta: number, C: F64): void {
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) {
        const a = transA ? A[k * M + i] : A[i * K + k];
        const b = transB ? B[j * K + k] : B[k * N + j];
        s += a * b;
      }
      const c = i * N + j;
      C[c] = alpha * s + (beta === 0 ? 0 : beta * C[c]);
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// embedding

export function embeddingForward(table: ArrayLike<number>, ids: ArrayLike<number>, rows: number, V: number,
                                 D: number): F64 {
  const out = new Float64Array(rows * D);
  for (let r = 0; r < rows; r++) {
    const id = ids[r];
    if (id < 0 || id >= V) throw new RangeError(`ref embedding: id ${id} at row ${r}`);
    for (let d = 0; d < D; d++) out[r * D + d] = table[id * D + d];
  }
  return out;
}

/** dtable[ids[r],:] += dout[r,:] */
export function embeddingBackward(dtable: F64, dout: ArrayLike<number>, ids: ArrayLike<number>, rows: number,
                                  D: number): void {
  for (let r = 0; r < rows; r++) {
    for (let d = 0; d < D; d++) dtable[ids[r] * D + d] += dout[r * D + d];
  }
}

// ---------------------------------------------------------------------------------------------------
// RMSNorm (no gain)

export function rmsnorm(x: ArrayLike<number>, R: number, C: number): { y: F64; rstd: F64 } {
  const y = new Float64Array(R * C);
  const rstd = new Float64Array(R);
  for (let r = 0; r < R; r++) {
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[r * C + c] * x[r * C + c];
    const s = 1 / Math.sqrt(ss / C + RMS_EPS);
    rstd[r] = s;
    for (let c = 0; c < C; c++) y[r * C + c] = x[r * C + c] * s;
  }
  return { y, rstd };
}

// ---------------------------------------------------------------------------------------------------
// RoPE

/** Rotates one head vector x[off .. off+H) in place for position `pos` (sign = -1: inverse rotation). */
function rotateHead(x: F64, off: number, H: number, pos: number, sign: number): void {
  const half = H / 2;
  for (let i = 0; i < half; i++) {
    const freq = Math.pow(ROPE_BASE, (-2 * i) / H);
    const ang = pos * freq;
    const c = Math.cos(ang);
    const s = sign * Math.sin(ang);
    const x1 = x[off + i];
    const x2 = x[off + half + i];
    x[off + i] = x1 * c - x2 * s;
    x[off + half + i] = x2 * c + x1 * s;
  }
}

/** Returns a copy of x with `heads` heads of size H rotated at every (b, t), position pos0 + t.
 *  Layout: element (b, t, head, i) at b*strideB + t*strideTok + head*H + i; everything else is copied. */
export function rope(x: ArrayLike<number>, B: number, T: number, heads: number, H: number, strideB: number,
                     strideTok: number, pos0: number, inverse = false): F64 {
  if (H % 2 !== 0) throw new Error(`rope: odd head size ${H}`);
  const y = Float64Array.from(x);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let n = 0; n < heads; n++) rotateHead(y, b * strideB + t * strideTok + n * H, H, pos0 + t, inverse ? -1 : 1);
    }
  }
  return y;
}

/** Fused q/k post-processing over x [B*T, 3, N, H]: q, k ← RoPE(RMSNorm_H(·)), v copied; rstd [B*T, 2, N]. */
export function qkNormRope(x: ArrayLike<number>, B: number, T: number, N: number, H: number,
                           pos0: number): { y: F64; rstd: F64 } {
  const y = Float64Array.from(x);
  const rstd = new Float64Array(B * T * 2 * N);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const tok = b * T + t;
      for (let part = 0; part < 2; part++) {
        for (let n = 0; n < N; n++) {
          const off = ((tok * 3 + part) * N + n) * H;
          let ss = 0;
          for (let i = 0; i < H; i++) ss += x[off + i] * x[off + i];
          const s = 1 / Math.sqrt(ss / H + RMS_EPS);
          rstd[(tok * 2 + part) * N + n] = s;
          for (let i = 0; i < H; i++) y[off + i] = x[off + i] * s;
          rotateHead(y, off, H, pos0 + t, 1);
        }
      }
    }
  }
  return { y, rstd };
}

// ---------------------------------------------------------------------------------------------------
// attention

/** Causal softmax attention with scale 1/sqrt(H). Nkv key/value heads (default N); query head n reads key/value
 *  head floor(n / (N/Nkv)). Each token's qkv row is [N·H q | Nkv·H k | Nkv·H v] ([3, N, H] when Nkv = N);
 *  out [B, T, N, H]; probs [B, N, T, T]; lse [B, N, T] the log-sum-exp of each row of scaled scores. */
export function attention(qkv: ArrayLike<number>, B: number, T: number, N: number, H: number,
                          Nkv = N): { out: F64; probs: F64; lse: F64 } {
  const out = new Float64Array(B * T * N * H);
  const probs = new Float64Array(B * N * T * T);
  const lse = new Float64Array(B * N * T);
  const scale = 1 / Math.sqrt(H);
  const row = (N + 2 * Nkv) * H; // floats per token
  const group = N / Nkv;
  const q = (b: number, t: number, n: number, i: number) => qkv[(b * T + t) * row + n * H + i];
  const k = (b: number, t: number, n: number, i: number) => qkv[(b * T + t) * row + N * H + Math.floor(n / group) * H + i];
  const v = (b: number, t: number, n: number, i: number) =>
    qkv[(b * T + t) * row + (N + Nkv) * H + Math.floor(n / group) * H + i];
  const score = new Float64Array(T);
  for (let b = 0; b < B; b++) {
    for (let n = 0; n < N; n++) {
      for (let t = 0; t < T; t++) {
        let mx = -Infinity;
        for (let s = 0; s <= t; s++) {
          let d = 0;
          for (let i = 0; i < H; i++) d += q(b, t, n, i) * k(b, s, n, i);
          score[s] = d * scale;
          mx = Math.max(mx, score[s]);
        }
        let z = 0;
        for (let s = 0; s <= t; s++) z += Math.exp(score[s] - mx);
        const prow = ((b * N + n) * T + t) * T;
        lse[(b * N + n) * T + t] = mx + Math.log(z);
        for (let s = 0; s <= t; s++) probs[prow + s] = Math.exp(score[s] - mx) / z;
        for (let i = 0; i < H; i++) {
          let o = 0;
          for (let s = 0; s <= t; s++) o += probs[prow + s] * v(b, s, n, i);
          out[((b * T + t) * N + n) * H + i] = o;
        }
      }
    }
  }
  return { out, probs, lse };
}

/** Gradient of Σ dout·attention(qkv).out with respect to qkv (same layout as qkv), from the formulas:
 *  dP = dO·Vᵀ, dS = P ⊙ (dP − rowsum(P ⊙ dP)), dQ = scale·dS·K, dK = scale·dSᵀ·Q, dV = Pᵀ·dO; a key/value head
 *  collects dK and dV from every query head that reads it. */
export function attentionBackward(qkv: ArrayLike<number>, dout: ArrayLike<number>, B: number, T: number, N: number,
                                  H: number, Nkv = N): F64 {
  const { probs } = attention(qkv, B, T, N, H, Nkv);
  const row = (N + 2 * Nkv) * H;
  const group = N / Nkv;
  const scale = 1 / Math.sqrt(H);
  const dqkv = new Float64Array(B * T * row);
  const dP = new Float64Array(T);
  for (let b = 0; b < B; b++) {
    for (let n = 0; n < N; n++) {
      const kv = Math.floor(n / group);
      const qAt = (t: number) => (b * T + t) * row + n * H;
      const kAt = (s: number) => (b * T + s) * row + N * H + kv * H;
      const vAt = (s: number) => (b * T + s) * row + (N + Nkv) * H + kv * H;
      const gAt = (t: number) => ((b * T + t) * N + n) * H;
      for (let t = 0; t < T; t++) {
        const prow = ((b * N + n) * T + t) * T;
        let c = 0;
        for (let s = 0; s <= t; s++) {
          let d = 0;
          for (let i = 0; i < H; i++) d += dout[gAt(t) + i] * qkv[vAt(s) + i];
          dP[s] = d;
          c += probs[prow + s] * d;
        }
        for (let s = 0; s <= t; s++) {
          const p = probs[prow + s];
          const dS = p * (dP[s] - c);
          for (let i = 0; i < H; i++) {
            dqkv[qAt(t) + i] += scale * dS * qkv[kAt(s) + i];
            dqkv[kAt(s) + i] += scale * dS * qkv[qAt(t) + i];
            dqkv[vAt(s) + i] += p * dout[gAt(t) + i];
          }
        }
      }
    }
  }
  return dqkv;
}

/** Decoding form: Tq queries at positions pos0+i attend to cached keys/values 0..pos0+i.
 *  qkv [B, Tq, N + 2·Nkv, H] (only q is read); kCache, vCache [B, Tmax, Nkv, H]; returns out [B, Tq, N, H]. */
export function attentionDecode(qkv: ArrayLike<number>, kCache: ArrayLike<number>, vCache: ArrayLike<number>,
                                B: number, Tq: number, N: number, H: number, Tmax: number, pos0: number,
                                Nkv = N): F64 {
  const out = new Float64Array(B * Tq * N * H);
  const scale = 1 / Math.sqrt(H);
  const row = (N + 2 * Nkv) * H;
  const cached = (b: number, s: number, n: number, i: number) => ((b * Tmax + s) * Nkv + Math.floor(n / (N / Nkv))) * H + i;
  for (let b = 0; b < B; b++) {
    for (let n = 0; n < N; n++) {
      for (let t = 0; t < Tq; t++) {
        const last = pos0 + t;
        const score = new Float64Array(last + 1);
        let mx = -Infinity;
        for (let s = 0; s <= last; s++) {
          let d = 0;
          for (let i = 0; i < H; i++) {
            d += qkv[(b * Tq + t) * row + n * H + i] * kCache[cached(b, s, n, i)];
          }
          score[s] = d * scale;
          mx = Math.max(mx, score[s]);
        }
        let z = 0;
        for (let s = 0; s <= last; s++) z += Math.exp(score[s] - mx);
        for (let i = 0; i < H; i++) {
          let o = 0;
          for (let s = 0; s <= last; s++) o += (Math.exp(score[s] - mx) / z) * vCache[cached(b, s, n, i)];
          out[((b * Tq + t) * N + n) * H + i] = o;
        }
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// GELU (tanh approximation)

const GELU_C = Math.sqrt(2 / Math.PI);

export function geluScalar(x: number): number {
  return 0.5 * x * (1 + Math.tanh(GELU_C * (x + 0.044715 * x * x * x)));
}

export function gelu(x: ArrayLike<number>): F64 {
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) y[i] = geluScalar(x[i]);
  return y;
}

/** gelu'(x) in closed form: with t = tanh(u), u = c(x + 0.044715x³), 0.5(1 + t) + 0.5x(1 − t²)·c(1 + 3·0.044715x²). */
export function geluGradScalar(x: number): number {
  const t = Math.tanh(GELU_C * (x + 0.044715 * x * x * x));
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELU_C * (1 + 3 * 0.044715 * x * x);
}

export function geluGrad(x: ArrayLike<number>): F64 {
  const d = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) d[i] = geluGradScalar(x[i]);
  return d;
}

// ---------------------------------------------------------------------------------------------------
// losses

export function logSoftmaxRow(logits: ArrayLike<number>, off: number, V: number): F64 {
  let mx = -Infinity;
  for (let v = 0; v < V; v++) mx = Math.max(mx, logits[off + v]);
  let z = 0;
  for (let v = 0; v < V; v++) z += Math.exp(logits[off + v] - mx);
  const lse = mx + Math.log(z);
  const out = new Float64Array(V);
  for (let v = 0; v < V; v++) out[v] = logits[off + v] - lse;
  return out;
}

/** Σ_r w[r]·(logsumexp(logits[r]) − logits[r, t_r]); rows with w = 0 skipped (rowLoss 0). */
export function crossEntropy(logits: ArrayLike<number>, targets: ArrayLike<number>, weights: ArrayLike<number>,
                             R: number, V: number): { loss: number; rowLoss: F64 } {
  const rowLoss = new Float64Array(R);
  let loss = 0;
  for (let r = 0; r < R; r++) {
    if (weights[r] === 0) continue;
    const t = targets[r];
    if (t < 0 || t >= V) throw new RangeError(`ref crossEntropy: target ${t} at row ${r}`);
    const ls = logSoftmaxRow(logits, r * V, V);
    rowLoss[r] = -ls[t];
    loss += weights[r] * rowLoss[r];
  }
  return { loss, rowLoss };
}

/** Σ_r w[r]·Σ_v p(v)(log p(v) − log q(v)), p = softmax(logitsP[r]), q = softmax(logitsQ[r]). */
export function klDiv(logitsP: ArrayLike<number>, logitsQ: ArrayLike<number>, weights: ArrayLike<number>,
                      R: number, V: number): { loss: number; rowLoss: F64 } {
  const rowLoss = new Float64Array(R);
  let loss = 0;
  for (let r = 0; r < R; r++) {
    const lp = logSoftmaxRow(logitsP, r * V, V);
    const lq = logSoftmaxRow(logitsQ, r * V, V);
    let kl = 0;
    for (let v = 0; v < V; v++) kl += Math.exp(lp[v]) * (lp[v] - lq[v]);
    rowLoss[r] = kl;
    loss += weights[r] * kl;
  }
  return { loss, rowLoss };
}

export function softmaxRow(logits: ArrayLike<number>, off: number, V: number, temperature = 1): F64 {
  const scaled = new Float64Array(V);
  for (let v = 0; v < V; v++) scaled[v] = logits[off + v] / temperature;
  const ls = logSoftmaxRow(scaled, 0, V);
  return ls.map(Math.exp);
}

// ---------------------------------------------------------------------------------------------------
// optimizers (in place, float64)

export function adamwStep(p: F64, g: ArrayLike<number>, m: F64, v: F64, lr: number, b1: number, b2: number,
                          eps: number, wd: number, bc1: number, bc2: number): void {
  for (let i = 0; i < p.length; i++) {
    p[i] -= lr * wd * p[i];
    m[i] = b1 * m[i] + (1 - b1) * g[i];
    v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
    p[i] -= (lr * (m[i] / bc1)) / (Math.sqrt(v[i] / bc2) + eps);
  }
}

export function sgdStep(p: F64, g: ArrayLike<number>, lr: number, wd: number): void {
  for (let i = 0; i < p.length; i++) p[i] -= lr * (g[i] + wd * p[i]);
}

// ---------------------------------------------------------------------------------------------------
// The Hugging Face family's kernels (hf_kernels.cc)

/** RMSNorm with an optional weight: y = gain·x/sqrt(mean(x²) + eps) per row of C; rstd per row. */
export function rmsnormGain(x: ArrayLike<number>, R: number, C: number, gain: ArrayLike<number> | null,
                            eps: number): { y: F64; rstd: F64 } {
  const y = new Float64Array(R * C);
  const rstd = new Float64Array(R);
  for (let r = 0; r < R; r++) {
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[r * C + c] * x[r * C + c];
    const s = 1 / Math.sqrt(ss / C + eps);
    rstd[r] = s;
    for (let c = 0; c < C; c++) y[r * C + c] = x[r * C + c] * s * (gain ? gain[c] : 1);
  }
  return { y, rstd };
}

/** Gradients of Σ dy·rmsnormGain(x, gain) with respect to x and gain, from the chain rule written out:
 *  with s = (mean(x²) + eps)^(−1/2), ∂y_i/∂x_j = g_i·(s·δ_ij − x_i·x_j·s³/C). */
export function rmsnormGainGrad(dy: ArrayLike<number>, x: ArrayLike<number>, gain: ArrayLike<number>, R: number,
                                C: number, eps: number): { dx: F64; dgain: F64 } {
  const dx = new Float64Array(R * C);
  const dgain = new Float64Array(C);
  for (let r = 0; r < R; r++) {
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[r * C + c] ** 2;
    const s = 1 / Math.sqrt(ss / C + eps);
    let gx = 0;  // Σ_i dy_i·g_i·x_i
    for (let c = 0; c < C; c++) gx += dy[r * C + c] * gain[c] * x[r * C + c];
    for (let c = 0; c < C; c++) {
      dx[r * C + c] = dy[r * C + c] * gain[c] * s - (x[r * C + c] * s ** 3 * gx) / C;
      dgain[c] += dy[r * C + c] * x[r * C + c] * s;
    }
  }
  return { dx, dgain };
}

/** q/k preparation over rows [q heads | k heads | v heads] ((N + 2·Nkv)·H wide), position pos0 + t for row b·T + t:
 *  mode 0 nothing, 1 RMSNorm over H, 2 RMSNorm times gq / gk; then RoPE with angle pos·invFreq[i]:
 *  [x1·cos − x2·sin, x2·cos + x1·sin]. v copied. rstd [B·T, N + Nkv] (mode > 0). */
export function qkRope(x: ArrayLike<number>, B: number, T: number, N: number, Nkv: number, H: number, pos0: number,
                       invFreq: ArrayLike<number>, mode: number, gq: ArrayLike<number> | null,
                       gk: ArrayLike<number> | null, eps: number): { y: F64; rstd: F64 } {
  const W = (N + 2 * Nkv) * H, heads = N + Nkv, half = H / 2;
  const y = Float64Array.from(x);
  const rstd = new Float64Array(B * T * heads);
  for (let row = 0; row < B * T; row++) {
    const pos = pos0 + (row % T);
    for (let j = 0; j < heads; j++) {
      const off = row * W + j * H;
      const u = new Float64Array(H);
      let s = 1;
      if (mode > 0) {
        let ss = 0;
        for (let h = 0; h < H; h++) ss += x[off + h] ** 2;
        s = 1 / Math.sqrt(ss / H + eps);
        rstd[row * heads + j] = s;
      }
      const g = mode === 2 ? (j < N ? gq! : gk!) : null;
      for (let h = 0; h < H; h++) u[h] = x[off + h] * s * (g ? g[h] : 1);
      for (let i = 0; i < half; i++) {
        const a = pos * invFreq[i], c = Math.cos(a), sn = Math.sin(a);
        y[off + i] = u[i] * c - u[i + half] * sn;
        y[off + half + i] = u[i + half] * c + u[i] * sn;
      }
    }
  }
  return { y, rstd };
}

/** Gradients of Σ dy·qkRope(x, gq, gk): with respect to x (v's passed through) and to gq, gk (mode 2). Per head:
 *  e = Rᵀ·dy (the rotation is orthogonal), then the weighted RMSNorm's gradient as in rmsnormGainGrad. */
export function qkRopeGrad(dy: ArrayLike<number>, x: ArrayLike<number>, B: number, T: number, N: number, Nkv: number,
                           H: number, pos0: number, invFreq: ArrayLike<number>, mode: number,
                           gq: ArrayLike<number> | null, gk: ArrayLike<number> | null,
                           eps: number): { dx: F64; dgq: F64; dgk: F64 } {
  const W = (N + 2 * Nkv) * H, heads = N + Nkv, half = H / 2;
  const dx = Float64Array.from(dy);
  const dgq = new Float64Array(H), dgk = new Float64Array(H);
  const ones = new Float64Array(H).fill(1);
  for (let row = 0; row < B * T; row++) {
    const pos = pos0 + (row % T);
    for (let j = 0; j < heads; j++) {
      const off = row * W + j * H;
      const e = new Float64Array(H);
      for (let i = 0; i < half; i++) {
        const a = pos * invFreq[i], c = Math.cos(a), sn = Math.sin(a);
        e[i] = dy[off + i] * c + dy[off + half + i] * sn;
        e[i + half] = dy[off + half + i] * c - dy[off + i] * sn;
      }
      if (mode === 0) {
        for (let h = 0; h < H; h++) dx[off + h] = e[h];
        continue;
      }
      const xs = Array.from({ length: H }, (_, h) => x[off + h]);
      const g = mode === 2 ? (j < N ? gq! : gk!) : ones;
      const { dx: dxh, dgain } = rmsnormGainGrad(e, xs, g, 1, H, eps);
      for (let h = 0; h < H; h++) dx[off + h] = dxh[h];
      if (mode === 2) for (let h = 0; h < H; h++) (j < N ? dgq : dgk)[h] += dgain[h];
    }
  }
  return { dx, dgq, dgk };
}

export function silu(z: number): number {
  return z / (1 + Math.exp(-z));
}

/** silu'(z) = σ(z)·(1 + z·(1 − σ(z))). */
export function siluGrad(z: number): number {
  const sg = 1 / (1 + Math.exp(-z));
  return sg * (1 + z * (1 - sg));
}

/** act [R, F] = silu(gate)·up with gu [R, 2F] = [gate | up]. */
export function swiglu(gu: ArrayLike<number>, R: number, F: number): F64 {
  const act = new Float64Array(R * F);
  for (let r = 0; r < R; r++)
    for (let f = 0; f < F; f++) act[r * F + f] = silu(gu[r * 2 * F + f]) * gu[r * 2 * F + F + f];
  return act;
}

/** Gradient of Σ dact·swiglu(gu) with respect to gu [R, 2F]. */
export function swigluGrad(dact: ArrayLike<number>, gu: ArrayLike<number>, R: number, F: number): F64 {
  const dgu = new Float64Array(R * 2 * F);
  for (let r = 0; r < R; r++)
    for (let f = 0; f < F; f++) {
      const z = gu[r * 2 * F + f], up = gu[r * 2 * F + F + f], d = dact[r * F + f];
      dgu[r * 2 * F + f] = d * up * siluGrad(z);
      dgu[r * 2 * F + F + f] = d * silu(z);
    }
  return dgu;
}

/** y [R, C] + b [C] on every row. */
export function biasAdd(y: ArrayLike<number>, b: ArrayLike<number>, R: number, C: number): F64 {
  const out = Float64Array.from(y);
  for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) out[r * C + c] += b[c];
  return out;
}

/** Half formats: bf16 (kind 0: 8 exponent bits, 7 fraction bits) and IEEE binary16 (kind 1: 5 and 10). */
function halfFormat(kind: number): { eBits: number; fBits: number; bias: number } {
  return kind === 0 ? { eBits: 8, fBits: 7, bias: 127 } : { eBits: 5, fBits: 10, bias: 15 };
}

/** The value of a half bit pattern, from its fields: (−1)^s·2^(e−bias)·(1 + f/2^fBits), subnormals 2^(1−bias)·f/2^fBits. */
export function halfValue(bits: number, kind: number): number {
  const { eBits, fBits, bias } = halfFormat(kind);
  const sign = bits >> 15 ? -1 : 1;
  const e = (bits >> fBits) & ((1 << eBits) - 1), f = bits & ((1 << fBits) - 1);
  if (e === (1 << eBits) - 1) return f === 0 ? sign * Infinity : NaN;
  if (e === 0) return sign * 2 ** (1 - bias) * (f / 2 ** fBits);
  return sign * 2 ** (e - bias) * (1 + f / 2 ** fBits);
}

/** v rounded to the nearest half value, ties to the even fraction; past the largest finite value plus half a step:
 *  ±inf. Works on float64 values (each float32 is one exactly). NaN → NaN. */
export function roundToHalf(v: number, kind: number): number {
  if (Number.isNaN(v)) return NaN;
  if (v === 0 || !Number.isFinite(v)) return v;
  const { eBits, fBits, bias } = halfFormat(kind);
  const a = Math.abs(v);
  const emax = (1 << eBits) - 2 - bias;
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;  // log2 rounding
  if (2 ** (e + 1) <= a) e++;
  const q = 2 ** (Math.max(e, 1 - bias) - fBits);  // spacing of the halves around a
  const m = a / q;  // exact: a power-of-two scaling
  let n = Math.floor(m);
  const rest = m - n;
  if (rest > 0.5 || (rest === 0.5 && n % 2 === 1)) n++;
  const out = n * q;
  const maxFinite = 2 ** emax * (2 - 2 ** -fBits);
  return Math.sign(v) * (out > maxFinite ? Infinity : out);
}

/** The nucleus distribution of one row: softmax(logits/temperature) on the topK largest (≤ 0: all), then the
 *  smallest set of the most probable (ties: lower index first) whose mass reaches topP, renormalised. */
export function nucleusProbs(row: ArrayLike<number>, temperature: number, topK: number, topP: number): F64 {
  const V = row.length;
  const order = Array.from({ length: V }, (_, v) => v).sort((a, b) => row[b] - row[a] || a - b);
  const kept = topK > 0 && topK < V ? order.slice(0, topK) : order;
  const mx = row[kept[0]];
  const w = new Float64Array(V);
  let z = 0;
  for (const v of kept) z += (w[v] = Math.exp((row[v] - mx) / temperature));
  const p = new Float64Array(V);
  let cum = 0, mass = 0;
  const nucleus: number[] = [];
  for (const v of kept) {
    if (cum >= topP) break;
    nucleus.push(v);
    cum += w[v] / z;
  }
  for (const v of nucleus) mass += w[v];
  for (const v of nucleus) p[v] = w[v] / mass;
  return p;
}
