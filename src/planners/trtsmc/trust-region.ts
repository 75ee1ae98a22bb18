/**
 * TRT-SMC's trust-region twisted proposal at one state (eq. (7), Appendix
 * B.5): over B atoms drawn from the policy, q_b ∝ exp(-beta Q_b) (Q a cost
 * here, so lower is better) with beta found by bisection so that
 * KL(q || uniform over the atoms) = eps_alpha = alpha KL(pi* || uniform),
 * pi* the greedy policy (uniform over the atoms of least Q). alpha = 0 gives
 * the prior (uniform), alpha = 1 the greedy policy.
 */
export interface TrustRegionStep {
  /** probabilities over the atoms */
  probs: Float64Array;
  /** the inverse temperature found (0: the prior; Infinity: greedy) */
  beta: number;
  /** KL(q || uniform) reached, and the bound */
  kl: number;
  bound: number;
}

function boltzmann(q: ArrayLike<number>, beta: number, min: number, out: Float64Array): number {
  let total = 0;
  for (let b = 0; b < q.length; b++) total += (out[b] = Number.isFinite(q[b]) ? Math.exp(-beta * (q[b] - min)) : 0);
  let kl = 0;
  for (let b = 0; b < q.length; b++) {
    out[b] /= total;
    if (out[b] > 0) kl += out[b] * Math.log(out[b] * q.length);
  }
  return kl;
}

export function trustRegion(q: ArrayLike<number>, alpha: number): TrustRegionStep {
  const B = q.length;
  const probs = new Float64Array(B);
  let min = Infinity;
  for (let b = 0; b < B; b++) if (q[b] < min) min = q[b];
  // an atom with a non-finite Q gets no mass; none finite: the prior
  if (!Number.isFinite(min)) return { probs: probs.fill(1 / B), beta: 0, kl: 0, bound: 0 };
  const tie = 1e-12 * Math.max(1, Math.abs(min));
  let ties = 0;
  for (let b = 0; b < B; b++) if (q[b] - min <= tie) ties++;
  const greedyKl = Math.log(B / ties);
  const bound = alpha * greedyKl;
  if (alpha >= 1 || bound >= greedyKl) {
    for (let b = 0; b < B; b++) probs[b] = q[b] - min <= tie ? 1 / ties : 0;
    return { probs, beta: Infinity, kl: greedyKl, bound };
  }
  if (bound <= 0) {
    const kl = boltzmann(q, 0, min, probs);
    return { probs, beta: 0, kl, bound };
  }
  // KL rises monotonically with beta from 0 to greedyKl: bracket, then bisect on log beta
  const finite = Array.from(q).filter(Number.isFinite);
  const spread = Math.max(...finite) - min;
  let lo = 0;
  let hi = 1 / Math.max(spread, 1e-300);
  while (boltzmann(q, hi, min, probs) < bound && hi < 1e300) {
    lo = hi;
    hi *= 4;
  }
  // to 1e-6 of the bound: the planner solves this at every particle and step
  for (let k = 0; k < 200 && hi - lo > 1e-14 * hi; k++) {
    const mid = 0.5 * (lo + hi);
    const kl = boltzmann(q, mid, min, probs);
    if (Math.abs(kl - bound) < 1e-6) return { probs, beta: mid, kl, bound };
    if (kl < bound) lo = mid;
    else hi = mid;
  }
  const beta = 0.5 * (lo + hi);
  const kl = boltzmann(q, beta, min, probs);
  return { probs, beta, kl, bound };
}
