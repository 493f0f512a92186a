/**
 * Seeded, deterministic pseudo-random numbers.
 *
 * Every random choice in unforget (weight init, data split, epoch shuffles, sampling, synthetic
 * data) draws from an `Rng`, so a run is reproducible from `run.seed` alone, on any machine.
 *
 * Generator: xoshiro128** (Blackman & Vigna), 128 bits of state, pure 32-bit integer arithmetic with
 * `Math.imul` — fast in V8 and free of BigInt. The state is derived from the seed by a
 * SplitMix-style mixer (murmur3's fmix32 finaliser), so nearby seeds (0, 1, 2, ...) give unrelated
 * streams. `fork(tag)` derives an independent stream from the *seed* and a tag, not from the current
 * position, so a component's stream does not change when another component draws more numbers.
 */

/** murmur3 fmix32: a bijective avalanche mixer on 32-bit words. */
function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const TWO_32 = 4294967296;
const TWO_53 = 9007199254740992;

/** Splits a safe integer into its two's-complement 64-bit low and high words. */
function splitSafeInteger(x: number, what: string): [number, number] {
  if (!Number.isSafeInteger(x)) {
    throw new RangeError(`${what} must be a safe integer, got ${x}`);
  }
  const hi = Math.floor(x / TWO_32);
  const lo = x - hi * TWO_32; // in [0, 2^32) also for negative x
  return [lo >>> 0, hi | 0];
}

/** Two 32-bit hashes of a string (FNV-1a over UTF-16 code units, two different offsets, then mixed). */
function hashString(s: string): [number, number] {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
  }
  return [mix32(a), mix32(b ^ 0x9e3779b9)];
}

/** Anything with a length and numeric index: plain arrays and typed arrays. */
interface IndexedMut<T> {
  length: number;
  [index: number]: T;
}

export class Rng {
  /** The 64-bit key (two 32-bit words) that the stream was derived from; `fork` derives from it. */
  private k0 = 0;
  private k1 = 0;
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;
  /** Second Box–Muller variate, kept for the next `normal()` call. */
  private spareNormal: number | null = null;

  /** `seed` is any safe integer (negative allowed); equal seeds give equal streams. */
  constructor(seed: number) {
    const [lo, hi] = splitSafeInteger(seed, 'Rng seed');
    this.setKey(lo, hi);
  }

  /**
   * A generator at exactly this 128-bit xoshiro state (for tests and for resuming a saved stream).
   * Its fork key is that of seed 0: save and restore the seed too if the resumed stream must fork.
   */
  static fromState(state: readonly [number, number, number, number]): Rng {
    const r = new Rng(0);
    [r.s0, r.s1, r.s2, r.s3] = state.map((w) => w >>> 0) as [number, number, number, number];
    if ((r.s0 | r.s1 | r.s2 | r.s3) === 0) throw new RangeError('Rng state must not be all zero');
    r.spareNormal = null;
    return r;
  }

  /** The current 128-bit state; `Rng.fromState(rng.state())` continues the same uniform stream. */
  state(): [number, number, number, number] {
    return [this.s0, this.s1, this.s2, this.s3];
  }

  /** An identical, independent copy (same key, state and cached normal). */
  clone(): Rng {
    const r = new Rng(0);
    r.k0 = this.k0;
    r.k1 = this.k1;
    [r.s0, r.s1, r.s2, r.s3] = this.state();
    r.spareNormal = this.spareNormal;
    return r;
  }

  private setKey(k0: number, k1: number): void {
    this.k0 = k0 >>> 0;
    this.k1 = k1 >>> 0;
    const s: number[] = [];
    for (let i = 1; i <= 4; i++) {
      s.push(mix32((this.k0 + Math.imul(i, 0x9e3779b9)) ^ mix32(this.k1 ^ Math.imul(i, 0x85ebca6b))));
    }
    // xoshiro's only invalid state is all zeros; the mixer makes it practically impossible, but be exact.
    if ((s[0]! | s[1]! | s[2]! | s[3]!) === 0) s[0] = 1;
    [this.s0, this.s1, this.s2, this.s3] = s as [number, number, number, number];
    this.spareNormal = null;
  }

  /**
   * An independent stream derived from this generator's seed (and the tags of the forks that led to
   * it) and `tag`. It does not depend on how many numbers were drawn, and `fork(1)` differs from
   * `fork('1')`.
   */
  fork(tag: number | string): Rng {
    let t0: number;
    let t1: number;
    if (typeof tag === 'number') {
      const [lo, hi] = splitSafeInteger(tag, 'Rng fork tag');
      t0 = mix32(lo ^ 0x6e756d62); // 'numb': keeps numeric and string tags in separate domains
      t1 = mix32(hi ^ mix32(lo + 0x7f4a7c15));
    } else {
      [t0, t1] = hashString(tag);
    }
    const r = new Rng(0);
    r.setKey(
      mix32(this.k0 ^ t0 ^ Math.imul(this.k1, 0x27d4eb2f)),
      mix32((this.k1 + t1) ^ Math.imul(this.k0 ^ 0x165667b1, 0x9e3779b1)),
    );
    return r;
  }

  /** The next 32 uniformly distributed bits, as an unsigned integer in [0, 2^32). */
  nextU32(): number {
    const s0 = this.s0;
    let s1 = this.s1;
    let s2 = this.s2;
    let s3 = this.s3;
    const m = Math.imul(s1, 5);
    const r = Math.imul((m << 7) | (m >>> 25), 9);
    const t = s1 << 9;
    s2 ^= s0;
    s3 ^= s1;
    s1 ^= s2;
    const n0 = s0 ^ s3;
    s2 ^= t;
    s3 = (s3 << 11) | (s3 >>> 21);
    this.s0 = n0 >>> 0;
    this.s1 = s1 >>> 0;
    this.s2 = s2 >>> 0;
    this.s3 = s3 >>> 0;
    return r >>> 0;
  }

  /** Uniform in [0, 1) with 53 random bits (every double k·2^-53 equally likely). */
  uniform(): number {
    const a = this.nextU32() >>> 5; // 27 bits
    const b = this.nextU32() >>> 6; // 26 bits
    return (a * 67108864 + b) / TWO_53;
  }

  /** Standard normal N(0, 1) by Box–Muller; every second call returns the cached partner variate. */
  normal(): number {
    if (this.spareNormal !== null) {
      const z = this.spareNormal;
      this.spareNormal = null;
      return z;
    }
    const u1 = 1 - this.uniform(); // (0, 1]: log(u1) is finite
    const u2 = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u1));
    const theta = 2 * Math.PI * u2;
    this.spareNormal = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  /**
   * Uniform integer in [0, n), exactly unbiased (rejection sampling: the `2^k mod n` lowest raw
   * values are redrawn, so every residue is equally likely). `n` is an integer in [1, 2^53].
   */
  int(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > TWO_53) {
      throw new RangeError(`Rng.int: n must be an integer in [1, 2^53], got ${n}`);
    }
    if (n <= TWO_32) {
      const limit = TWO_32 - (TWO_32 % n);
      for (;;) {
        const x = this.nextU32();
        if (x < limit) return x % n;
      }
    }
    const limit = TWO_53 - (TWO_53 % n);
    for (;;) {
      const x = (this.nextU32() >>> 5) * 67108864 + (this.nextU32() >>> 6);
      if (x < limit) return x % n;
    }
  }

  /** Shuffles in place (Fisher–Yates, every permutation equally likely) and returns the same array. */
  shuffle<A extends IndexedMut<unknown>>(arr: A): A {
    for (let i = arr.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = arr[i];
      arr[i] = arr[j];
      arr[j] = tmp;
    }
    return arr;
  }

  /** A uniformly random permutation of 0..n-1. */
  permutation(n: number): Int32Array {
    if (!Number.isInteger(n) || n < 0 || n > 0x7fffffff) {
      throw new RangeError(`Rng.permutation: n must be an integer in [0, 2^31), got ${n}`);
    }
    const p = new Int32Array(n);
    for (let i = 0; i < n; i++) p[i] = i;
    return this.shuffle(p);
  }

  /** Fills `out` with N(0, std²) samples. */
  fillNormal(out: Float32Array | Float64Array, std = 1): typeof out {
    for (let i = 0; i < out.length; i++) out[i] = this.normal() * std;
    return out;
  }

  /** Fills `out` with uniform samples in [0, 1). */
  fillUniform(out: Float64Array | Float32Array): typeof out {
    // A float32 rounding of a value just below 1 can give exactly 1; keep the half-open interval.
    if (out instanceof Float32Array) {
      for (let i = 0; i < out.length; i++) out[i] = (this.nextU32() >>> 8) / 16777216;
    } else {
      for (let i = 0; i < out.length; i++) out[i] = this.uniform();
    }
    return out;
  }
}
