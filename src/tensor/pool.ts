/**
 * Step-scoped buffer reuse. A training step allocates the same activation and gradient buffers
 * every time; fresh multi-megabyte allocations cost page faults on first touch (several times the
 * arithmetic of an elementwise kernel). Inside `scope(fn)` every buffer taken from `alloc` is
 * recorded and handed back to a free list when `fn` returns, so the next step reuses warm memory.
 * `release` hands a buffer back early (gradients consumed during backward), and `keep(fn)` runs
 * `fn` in a nested scope that releases everything except the array it returns (a frozen model's
 * logits, without its activations). Outside a scope `alloc` is a plain allocation. Nothing
 * allocated in a scope may be used after it ends.
 */
const free = new Map<number, Float32Array[]>();
const stack: Array<Set<Float32Array>> = [];

function toFree(buf: Float32Array): void {
  let list = free.get(buf.length);
  if (!list) free.set(buf.length, (list = []));
  list.push(buf);
}

export function alloc(n: number, zero = true): Float32Array {
  const active = stack[stack.length - 1];
  if (!active) return new Float32Array(n);
  let buf = free.get(n)?.pop();
  if (buf) {
    if (zero) buf.fill(0);
  } else buf = new Float32Array(n);
  active.add(buf);
  return buf;
}

/** Give a buffer back before its scope ends; the caller must hold no other reference to it. */
export function release(buf: Float32Array): void {
  for (let i = stack.length - 1; i >= 0; i--) {
    if (stack[i]!.delete(buf)) {
      toFree(buf);
      return;
    }
  }
}

export function scope<T>(fn: () => T): T {
  stack.push(new Set());
  try {
    return fn();
  } finally {
    for (const buf of stack.pop()!) toFree(buf);
  }
}

/** Run `fn` in a nested scope; everything it allocated is released except the array it returns. */
export function keep(fn: () => Float32Array): Float32Array {
  if (stack.length === 0) return fn();
  const inner = new Set<Float32Array>();
  stack.push(inner);
  let out: Float32Array | undefined;
  try {
    out = fn();
    return out;
  } finally {
    stack.pop();
    for (const buf of inner) {
      if (buf === out) stack[stack.length - 1]!.add(buf);
      else toFree(buf);
    }
  }
}
