/**
 * An independent float64 forward of the "gpt" model of docs/contract.md §1, written straight from the formulas with
 * plain loops. It shares no code with the product (nor with ref.ts): weights come in the exact checkpoint
 * on-disk layouts, row-major, so a checkpoint can be compared against it without any re-layout logic.
 */

export interface Gpt64Config {
  D: number;
  L: number;
  /** head size (not the number of heads) */
  H: number;
  V: number;
}

/** Weights in the checkpoint layout of docs/contract.md §6 (N = D/H, F = 4D). */
export interface Gpt64Weights {
  embed_in: Float64Array; // [V, D]
  embed_out: Float64Array; // [V, D]
  qkv: Float64Array; // [L, 3, N, D, H]
  out: Float64Array; // [L, N, H, D]
  up: Float64Array; // [L, D, F]
  down: Float64Array; // [L, F, D]
}

const EPS = 1e-6;

function rmsnormInPlace(x: Float64Array): void {
  let ms = 0;
  for (let i = 0; i < x.length; i++) ms += x[i] * x[i];
  ms /= x.length;
  const s = 1 / Math.sqrt(ms + EPS);
  for (let i = 0; i < x.length; i++) x[i] *= s;
}

/** rotate-half RoPE of one head vector at absolute position pos: [x1 cos − x2 sin, x2 cos + x1 sin]. */
function ropeInPlace(x: Float64Array, pos: number): void {
  const H = x.length;
  const half = H / 2;
  for (let i = 0; i < half; i++) {
    const angle = pos * Math.pow(10000, (-2 * i) / H);
    const x1 = x[i];
    const x2 = x[i + half];
    x[i] = x1 * Math.cos(angle) - x2 * Math.sin(angle);
    x[i + half] = x2 * Math.cos(angle) + x1 * Math.sin(angle);
  }
}

function geluTanh(x: number): number {
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
}

/** Logits [B, T, V] for token ids [B, T] (row-major). Position t sits at absolute position t. */
export function gpt64Forward(cfg: Gpt64Config, w: Gpt64Weights, tokens: ArrayLike<number>, B: number, T: number): Float64Array {
  const { D, L, H, V } = cfg;
  if (D % H !== 0) throw new Error(`gpt64: D=${D} is not a multiple of H=${H}`);
  const N = D / H;
  const F = 4 * D;
  const expectLen = (name: string, a: Float64Array, n: number) => {
    if (a.length !== n) throw new Error(`gpt64: ${name} has ${a.length} elements, expected ${n}`);
  };
  expectLen('embed_in', w.embed_in, V * D);
  expectLen('embed_out', w.embed_out, V * D);
  expectLen('qkv', w.qkv, L * 3 * N * D * H);
  expectLen('out', w.out, L * N * H * D);
  expectLen('up', w.up, L * D * F);
  expectLen('down', w.down, L * F * D);

  const logits = new Float64Array(B * T * V);
  for (let b = 0; b < B; b++) {
    // residual stream h[t][d] of this sequence
    const h: Float64Array[] = [];
    for (let t = 0; t < T; t++) {
      const id = tokens[b * T + t];
      if (!(id >= 0 && id < V)) throw new RangeError(`gpt64: token ${id} at (${b}, ${t})`);
      h.push(w.embed_in.slice(id * D, (id + 1) * D));
    }

    for (let l = 0; l < L; l++) {
      // q[t][n], k[t][n], v[t][n]: head vectors of length H
      const q: Float64Array[][] = [];
      const k: Float64Array[][] = [];
      const v: Float64Array[][] = [];
      for (let t = 0; t < T; t++) {
        const a = Float64Array.from(h[t]);
        rmsnormInPlace(a);
        const proj = [0, 1, 2].map((p) => {
          const heads: Float64Array[] = [];
          for (let n = 0; n < N; n++) {
            const head = new Float64Array(H);
            for (let i = 0; i < H; i++) {
              let s = 0;
              for (let d = 0; d < D; d++) s += a[d] * w.qkv[((((l * 3 + p) * N + n) * D + d) * H) + i];
              head[i] = s;
            }
            heads.push(head);
          }
          return heads;
        });
        for (let n = 0; n < N; n++) {
          rmsnormInPlace(proj[0][n]);
          ropeInPlace(proj[0][n], t);
          rmsnormInPlace(proj[1][n]);
          ropeInPlace(proj[1][n], t);
        }
        q.push(proj[0]);
        k.push(proj[1]);
        v.push(proj[2]);
      }

      // causal attention, then the output projection, added to the residual
      const attnOut: Float64Array[] = [];
      for (let t = 0; t < T; t++) {
        const o = new Float64Array(D);
        for (let n = 0; n < N; n++) {
          const scores: number[] = [];
          for (let s = 0; s <= t; s++) {
            let dotqk = 0;
            for (let i = 0; i < H; i++) dotqk += q[t][n][i] * k[s][n][i];
            scores.push(dotqk / Math.sqrt(H));
          }
          const mx = Math.max(...scores);
          const e = scores.map((x) => Math.exp(x - mx));
          const z = e.reduce((acc, x) => acc + x, 0);
          const att = new Float64Array(H);
          for (let s = 0; s <= t; s++) for (let i = 0; i < H; i++) att[i] += (e[s] / z) * v[s][n][i];
          for (let i = 0; i < H; i++) {
            for (let d = 0; d < D; d++) o[d] += att[i] * w.out[((l * N + n) * H + i) * D + d];
          }
        }
        attnOut.push(o);
      }
      for (let t = 0; t < T; t++) for (let d = 0; d < D; d++) h[t][d] += attnOut[t][d];

      // MLP
      for (let t = 0; t < T; t++) {
        const a = Float64Array.from(h[t]);
        rmsnormInPlace(a);
        const g = new Float64Array(F);
        for (let f = 0; f < F; f++) {
          let s = 0;
          for (let d = 0; d < D; d++) s += a[d] * w.up[(l * D + d) * F + f];
          g[f] = geluTanh(s);
        }
        for (let d = 0; d < D; d++) {
          let s = 0;
          for (let f = 0; f < F; f++) s += g[f] * w.down[(l * F + f) * D + d];
          h[t][d] += s;
        }
      }
    }

    for (let t = 0; t < T; t++) {
      const a = Float64Array.from(h[t]);
      rmsnormInPlace(a);
      for (let vv = 0; vv < V; vv++) {
        let s = 0;
        for (let d = 0; d < D; d++) s += a[d] * w.embed_out[vv * D + d];
        logits[(b * T + t) * V + vv] = s;
      }
    }
  }
  return logits;
}

/** Checkpoint tensor shapes (docs/contract.md §6) for a config. */
export function gptShapes(cfg: Gpt64Config): Record<keyof Gpt64Weights, number[]> {
  const { D, L, H, V } = cfg;
  const N = D / H;
  const F = 4 * D;
  return {
    embed_in: [V, D],
    embed_out: [V, D],
    qkv: [L, 3, N, D, H],
    out: [L, N, H, D],
    up: [L, D, F],
    down: [L, F, D],
  };
}

/**
 * Random float32 weights with the initialisation scales (N(0,1)·D^-1/2, down N(0,1)·F^-1/2), so
 * activations have realistic magnitudes. `normal` is any standard-normal source (tests pass a seeded one).
 */
export function randomGptWeights(cfg: Gpt64Config, normal: () => number): Record<keyof Gpt64Weights, Float32Array> {
  const shapes = gptShapes(cfg);
  const make = (shape: number[], std: number) => {
    const a = new Float32Array(shape.reduce((x, y) => x * y, 1));
    for (let i = 0; i < a.length; i++) a[i] = normal() * std;
    return a;
  };
  const sD = cfg.D ** -0.5;
  const sF = (4 * cfg.D) ** -0.5;
  return {
    embed_in: make(shapes.embed_in, sD),
    embed_out: make(shapes.embed_out, sD),
    qkv: make(shapes.qkv, sD),
    out: make(shapes.out, sD),
    up: make(shapes.up, sD),
    down: make(shapes.down, sF),
  };
}

/** Float64 copies of float32 weights (exact), for gpt64Forward. */
export function weightsTo64(w: Record<keyof Gpt64Weights, ArrayLike<number>>): Gpt64Weights {
  return {
    embed_in: Float64Array.from(w.embed_in),
    embed_out: Float64Array.from(w.embed_out),
    qkv: Float64Array.from(w.qkv),
    out: Float64Array.from(w.out),
    up: Float64Array.from(w.up),
    down: Float64Array.from(w.down),
  };
}
