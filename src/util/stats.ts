/** Rank statistics for the experiments' grids. */

/** 1-based ranks of `x`, tied values sharing the mean of the ranks they span. */
export function averageRanks(x: readonly number[]): number[] {
  const order = x.map((v, i) => i).sort((a, b) => x[a]! - x[b]!);
  const ranks = new Array<number>(x.length);
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && x[order[j + 1]!] === x[order[i]!]) j++;
    // Positions i..j (0-based) hold one value: ranks i+1..j+1, whose mean is (i+j)/2 + 1.
    for (let k = i; k <= j; k++) ranks[order[k]!] = (i + j) / 2 + 1;
    i = j + 1;
  }
  return ranks;
}

function pearson(x: readonly number[], y: readonly number[]): number | null {
  const n = x.length;
  const mx = x.reduce((s, v) => s + v, 0) / n;
  const my = y.reduce((s, v) => s + v, 0) / n;
  let sxy = 0, sxx = 0, syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = x[i]! - mx, dy = y[i]! - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  return sxx > 0 && syy > 0 ? sxy / Math.sqrt(sxx * syy) : null;
}

/**
 * Spearman's rank correlation: the Pearson correlation of the average ranks (so ties are handled).
 * Null when there are fewer than two pairs or either side is constant.
 */
export function spearman(x: readonly number[], y: readonly number[]): number | null {
  if (x.length !== y.length) throw new Error(`spearman: ${x.length} x values against ${y.length} y values`);
  if (x.length < 2) return null;
  return pearson(averageRanks(x), averageRanks(y));
}
