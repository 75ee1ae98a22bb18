export function logSumExp(v: ArrayLike<number>): number {
  let m = -Infinity;
  for (let i = 0; i < v.length; i++) if (v[i] > m) m = v[i];
  if (m === -Infinity) return -Infinity;
  let s = 0;
  for (let i = 0; i < v.length; i++) s += Math.exp(v[i] - m);
  return m + Math.log(s);
}

/** Normalised weights from log weights. */
export function normalise(logw: ArrayLike<number>): Float64Array {
  const z = logSumExp(logw);
  return Float64Array.from(logw, (l) => Math.exp(l - z));
}

/** Effective sample size 1 / sum w_i^2 of normalised weights (TSMC paper eq. 13). */
export function ess(logw: ArrayLike<number>): number {
  const w = normalise(logw);
  let s = 0;
  for (const x of w) s += x * x;
  return 1 / s;
}

export function quantile(v: ArrayLike<number>, q: number): number {
  const s = Float64Array.from(v).sort();
  if (s.length === 0) return NaN;
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}
