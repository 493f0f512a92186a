/**
 * A synthetic language with a known answer: a random first-order Markov chain over `symbols`
 * states. Its entropy rate is the best loss any model can reach, so a training run can be checked
 * against it. Token ids are 1..symbols; id 0 is reserved as the dataset token id.
 */
import { Rng } from '../util/rng.js';

export interface MarkovChain {
  symbols: number;
  /** Row-stochastic transition matrix [symbols, symbols]. */
  P: Float64Array;
  /** Stationary distribution. */
  stationary: Float64Array;
  /** Entropy rate Σ_i π_i H(P_i), nats per token. */
  entropyRate: number;
  /** Entropy of the stationary distribution, nats. */
  stationaryEntropy: number;
}

/** Rows are softmax(N(0, sharpness²)) — larger sharpness, lower entropy. */
export function makeMarkovChain(symbols: number, sharpness: number, seed: number): MarkovChain {
  const rng = new Rng(seed);
  const S = symbols;
  const P = new Float64Array(S * S);
  for (let i = 0; i < S; i++) {
    let m = -Infinity;
    const l = new Float64Array(S);
    for (let j = 0; j < S; j++) m = Math.max(m, (l[j] = rng.normal() * sharpness));
    let z = 0;
    for (let j = 0; j < S; j++) z += l[j] = Math.exp(l[j]! - m);
    for (let j = 0; j < S; j++) P[i * S + j] = l[j]! / z;
  }
  let pi = new Float64Array(S).fill(1 / S);
  for (let it = 0; it < 10000; it++) {
    const nx = new Float64Array(S);
    for (let i = 0; i < S; i++) for (let j = 0; j < S; j++) nx[j]! += pi[i]! * P[i * S + j]!;
    let diff = 0;
    for (let j = 0; j < S; j++) diff += Math.abs(nx[j]! - pi[j]!);
    pi = nx;
    if (diff < 1e-15) break;
  }
  let entropyRate = 0, stationaryEntropy = 0;
  for (let i = 0; i < S; i++) {
    if (pi[i]! > 0) stationaryEntropy -= pi[i]! * Math.log(pi[i]!);
    for (let j = 0; j < S; j++) {
      const p = P[i * S + j]!;
      if (p > 0) entropyRate -= pi[i]! * p * Math.log(p);
    }
  }
  return { symbols, P, stationary: pi, entropyRate, stationaryEntropy };
}

function draw(p: Float64Array, offset: number, n: number, u: number): number {
  let c = 0;
  for (let j = 0; j < n - 1; j++) {
    c += p[offset + j]!;
    if (u < c) return j;
  }
  return n - 1;
}

/** `n` tokens of one long chain started from the stationary distribution (ids 1..symbols). */
export function sampleMarkov(chain: MarkovChain, n: number, seed: number): Uint16Array {
  const rng = new Rng(seed);
  const S = chain.symbols;
  const out = new Uint16Array(n);
  let s = draw(chain.stationary, 0, S, rng.uniform());
  for (let t = 0; t < n; t++) {
    out[t] = s + 1;
    s = draw(chain.P, s * S, S, rng.uniform());
  }
  return out;
}

/**
 * The best achievable mean NTP loss on sequences of length T whose position 0 is replaced by the
 * dataset token id: the first prediction sees no symbol (stationary entropy), the other T−2 see the
 * previous one (entropy rate).
 */
export function bestMarkovLoss(chain: MarkovChain, T: number): number {
  return (chain.stationaryEntropy + (T - 2) * chain.entropyRate) / (T - 1);
}
