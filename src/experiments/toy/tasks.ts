/**
 * The toy continual-learning tasks of docs/contract.md §7: add, reversal, sort and modadd on n-digit base-10
 * numbers. Vocabulary: pad 0; one BOS id per task (add 1, reversal 2, sort 3, modadd 4, fixed by
 * name so any task order shares one vocabulary); SEP 5, EQ 6, NULL 7, EOS 8; digits 9..18. The
 * study's models use V = 20 (one spare id), and so do we.
 *
 * A sequence is [BOS, a (n digits), SEP, b (n digits, or n × NULL), EQ, answer (n+1 digits), EOS],
 * length 3n+5.
 */
import { UnforgetError } from '../../errors.js';
import { Rng } from '../../util/rng.js';

export const TASKS = ['add', 'reversal', 'sort', 'modadd'] as const;
export type TaskName = (typeof TASKS)[number];

export const PAD = 0, SEP = 5, EQ = 6, NULL = 7, EOS = 8, DIGIT0 = 9;
export const TOY_VOCAB = 20;

export function bosId(task: TaskName): number {
  return TASKS.indexOf(task) + 1;
}

export function isTask(s: string): s is TaskName {
  return (TASKS as readonly string[]).includes(s);
}

export function seqLength(n: number): number {
  return 3 * n + 5;
}

/** Index of EQ: the prompt is positions 0..eqPos, the answer and EOS follow. */
export function eqPos(n: number): number {
  return 2 * n + 2;
}

function digits(x: number, width: number): number[] {
  const out = new Array<number>(width);
  for (let i = width - 1; i >= 0; i--) {
    out[i] = x % 10;
    x = Math.floor(x / 10);
  }
  return out;
}

/** The answer digits (n+1 of them, most significant first). */
export function answer(task: TaskName, a: number, b: number, n: number, modulus: number): number[] {
  switch (task) {
    case 'add':
      return digits(a + b, n + 1);
    case 'modadd':
      return digits((a + b) % modulus, n + 1);
    case 'reversal':
      return [0, ...digits(a, n).reverse()];
    case 'sort':
      return [0, ...digits(a, n).sort((x, y) => x - y)];
  }
}

export function twoOperands(task: TaskName): boolean {
  return task === 'add' || task === 'modadd';
}

/** One example as token ids. */
export function encodeExample(task: TaskName, a: number, b: number, n: number, modulus: number): number[] {
  const seq = [bosId(task), ...digits(a, n).map((d) => DIGIT0 + d), SEP];
  if (twoOperands(task)) seq.push(...digits(b, n).map((d) => DIGIT0 + d));
  else for (let i = 0; i < n; i++) seq.push(NULL);
  seq.push(EQ, ...answer(task, a, b, n, modulus).map((d) => DIGIT0 + d), EOS);
  return seq;
}

/** `count` examples [count, 3n+5] from a seeded generator (operands uniform in [0, 10^n)). */
export function makeTaskData(task: TaskName, n: number, modulus: number, count: number, seed: number): Int32Array {
  if (!Number.isInteger(n) || n < 1 || n > 6) throw new UnforgetError(`toy.n_digits must be an integer in [1, 6], got ${n}`);
  const T = seqLength(n);
  const hi = 10 ** n;
  const rng = new Rng(seed).fork(task);
  const out = new Int32Array(count * T);
  for (let i = 0; i < count; i++) {
    const a = rng.int(hi), b = rng.int(hi);
    out.set(encodeExample(task, a, b, n, modulus), i * T);
  }
  return out;
}
