/**
 * Step-scoped buffer reuse. A training step allocates the same activation and gradient buffers
 * every time; fresh multi-megabyte allocations cost page faults on first touch (several times the
 * arithmetic of an elementwise kernel). Inside `scope(fn)` every buffer taken from `alloc` is
 * recorded and handed back to a free list when `fn` returns, so the next step reuses warm memory.
 * Outside a scope `alloc` is a plain allocation. Nothing allocated in a scope may outlive it.
 */
const free = new Map<number, Float32Array[]>();
let active: Float32Array[] | null = null;

export function alloc(n: number, zero = true): Float32Array {
  if (active === null) return new Float32Array(n);
  const list = free.get(n);
  let buf = list?.pop();
  if (buf) {
    if (zero) buf.fill(0);
  } else buf = new Float32Array(n);
  active.push(buf);
  return buf;
}

export function scope<T>(fn: () => T): T {
  if (active !== null) return fn(); // nested scopes share the outer one
  active = [];
  try {
    return fn();
  } finally {
    for (const buf of active) {
      let list = free.get(buf.length);
      if (!list) free.set(buf.length, (list = []));
      list.push(buf);
    }
    active = null;
  }
}

/** Drop all pooled buffers (e.g. after a phase with different shapes). */
export function releasePool(): void {
  free.clear();
}
