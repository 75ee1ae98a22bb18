/**
 * The adaptive scales S_p, S_KL and S_Q of PO-MPC (eqs. (12), (13), (17),
 * (18)): a running estimate of the spread between the 5th and 95th
 * percentiles of a loss term over each batch, so terms that differ by
 * orders of magnitude can be weighed by lambda alone. Losses are divided by
 * max(1, S). Updated as an exponential average with rate `tau` (TD-MPC2's
 * RunningScale); the first batch sets it outright.
 */
export class PercentileScale {
  value = 1;
  private started = false;

  constructor(readonly tau = 0.01) {
    if (!(tau > 0 && tau <= 1)) throw new Error(`scale rate tau must be in (0, 1], got ${tau}`);
  }

  /** Folds one batch of a loss term in; non-finite entries are ignored. Returns the new scale. */
  update(values: ArrayLike<number>): number {
    const spread = percentileSpread(values);
    if (spread === undefined) return this.value;
    this.value = this.started ? this.value + this.tau * (spread - this.value) : spread;
    this.started = true;
    return this.value;
  }

  /** The divisor of the loss term: max(1, S). */
  get divisor(): number {
    return Math.max(1, this.value);
  }

  toJSON(): { value: number; started: boolean; tau: number } {
    return { value: this.value, started: this.started, tau: this.tau };
  }

  static fromJSON(o: { value: number; started: boolean; tau: number }): PercentileScale {
    const s = new PercentileScale(o.tau);
    s.value = o.value;
    s.started = o.started;
    return s;
  }
}

/** p95 - p5 of the finite values (linear interpolation between order statistics); undefined when none are finite. */
export function percentileSpread(values: ArrayLike<number>): number | undefined {
  const sorted = Array.from(values).filter(Number.isFinite).sort((a, b) => a - b);
  if (sorted.length === 0) return undefined;
  return percentile(sorted, 0.95) - percentile(sorted, 0.05);
}

/** The q-quantile of sorted values, interpolating linearly between order statistics. */
export function percentile(sorted: readonly number[], q: number): number {
  const at = q * (sorted.length - 1);
  const lo = Math.floor(at);
  const hi = Math.min(sorted.length - 1, lo + 1);
  return sorted[lo] + (at - lo) * (sorted[hi] - sorted[lo]);
}
