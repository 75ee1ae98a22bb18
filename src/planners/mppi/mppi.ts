import { choice, num, ParamsOf } from '../../params.js';
import type { Rng } from '../../random.js';

export const MPPI_PARAMS = {
  samples: num(512, 'rollouts per iteration per nominal (M)', { min: 2, max: 1 << 20, integer: true }),
  iterations: num(6, 'MPPI iterations per plan (J)', { min: 1, max: 1000, integer: true }),
  elites: num(64, 'top-K elite samples used in the update (0 = all)', { min: 0, max: 1 << 20, integer: true }),
  temperature: num(1, 'MPPI temperature beta of the elite weights exp(-(J - J_min)/beta)', { min: 0, max: 1e12, exclusive: true }),
  sigmaMin: num(0.05, 'lower clamp of the per-step sampling std (normalised units)', { min: 0, max: 100 }),
  sigmaMax: num(2, 'initial std and upper clamp (normalised units)', { min: 0, max: 100, exclusive: true }),
  sigmaWarmStart: choice('max', ['max', 'carry'] as const, 'per-step std at a new tick: reset to sigmaMax (PO-MPC) or carried over from the last tick (shifted, x1.5)'),
  noiseCorrelation: num(0, 'AR(1) correlation of the sampling noise along the horizon (0 = white, as in PO-MPC)', { min: 0, max: 0.999 }),
} as const;

/** MPPI's settings: the schema's, plus whether sigma adapts (false: fixed at sigmaMax, the TSMC paper's Parallel-MPPI baseline). */
export type MppiParams = Omit<ParamsOf<typeof MPPI_PARAMS>, 'sigmaWarmStart'> & { adaptSigma: boolean };

/** Unit-variance noise along a horizon: white, or AR(1)-correlated per control channel. */
function fillNoise(rng: Rng, out: Float64Array, m: number, rho: number): void {
  const innovation = Math.sqrt(1 - rho * rho);
  for (let k = 0; k < out.length; k++) out[k] = k < m || rho === 0 ? rng.normal() : rho * out[k - m] + innovation * rng.normal();
}

/** Extra proposal sequences mixed into each iteration's samples (e.g. from a learned policy prior). */
export type ProposalHook = (rng: Rng, nominal: Float64Array, count: number) => Float64Array;

export interface MppiResult {
  /** final means, P x d */
  means: Float64Array;
  sigmas: Float64Array;
  /** best sample seen for each nominal and its cost */
  best: Float64Array;
  bestCost: Float64Array;
  /** the final mean's cost for each nominal */
  meanCost: Float64Array;
  rollouts: number;
  iterations: number;
  /** the last iteration's sample costs of the first nominal: min, p10, median, p90 (finite ones) */
  costSpread: number[];
}

/**
 * MPPI in the PO-MPC form (eq. 11) over P independent nominal sequences at
 * once, so one batched rollout call serves them all: each iteration samples
 * M sequences a = mean + sigma * eps per nominal, keeps the top-K, weights
 * them by exp(-(J - J_min)/temperature), and moves the mean by the weighted
 * noise; sigma_t becomes the weighted noise spread, clamped to
 * [sigmaMin, sigmaMax]. Positions are normalised controls, clipped to
 * [-1, 1] on `bounded` coordinates.
 */
export async function mppi(
  rng: Rng,
  cost: (z: Float64Array, count: number) => Promise<Float64Array>,
  initialMeans: Float64Array,
  dim: number,
  controlDim: number,
  bounded: (k: number) => boolean,
  p: MppiParams,
  proposals?: { hook: ProposalHook; count: number },
  /** performance.now() time after which no further iteration starts (at least one always runs) */
  deadline?: number,
  /** initial per-step std (default sigmaMax everywhere) */
  initialSigmas?: Float64Array,
  /** unit noise for sample i at an iteration (one nominal only); default drawn from `rng` in order */
  noise?: (out: Float64Array, sample: number, iteration: number) => void,
): Promise<MppiResult> {
  const P = initialMeans.length / dim;
  if (noise && P !== 1) throw new Error('mppi: a noise source counts the samples of one nominal, not of several');
  const M = p.samples;
  const K = p.elites > 0 ? Math.min(p.elites, M) : M;
  const means = initialMeans.slice();
  const sigmas = initialSigmas ? initialSigmas.slice() : new Float64Array(P * dim).fill(p.sigmaMax);
  const best = initialMeans.slice();
  const bestCost = new Float64Array(P).fill(Infinity);
  const mask = Uint8Array.from({ length: dim }, (_, k) => (bounded(k) ? 1 : 0));
  const clip = (k: number, v: number) => (mask[k] ? (v > 1 ? 1 : v < -1 ? -1 : v) : v);
  const z = new Float64Array(P * M * dim);
  const eps = new Float64Array(dim);
  let rollouts = 0;
  let iterations = 0;
  let iterationMs = 0;
  let costSpread: number[] = [];
  for (let it = 0; it < p.iterations; it++) {
    if (deadline !== undefined && it > 0 && performance.now() + iterationMs >= deadline) break;
    const t0 = performance.now();
    iterations++;
    for (let q = 0; q < P; q++) {
      const extra = proposals ? proposals.hook(rng, means.subarray(q * dim, (q + 1) * dim), Math.min(proposals.count, M)) : undefined;
      const fromPolicy = extra ? extra.length / dim : 0;
      for (let i = 0; i < M; i++) {
        const o = (q * M + i) * dim;
        if (i < fromPolicy) {
          for (let k = 0; k < dim; k++) z[o + k] = clip(k, extra![i * dim + k]);
          continue;
        }
        if (i === fromPolicy && p.adaptSigma) {
          // the current mean itself competes, so an iteration never discards a good warm start
          for (let k = 0; k < dim; k++) z[o + k] = means[q * dim + k];
          continue;
        }
        if (noise) noise(eps, i, it);
        else fillNoise(rng, eps, controlDim, p.noiseCorrelation);
        const mo = q * dim;
        for (let k = 0; k < dim; k++) {
          const v = means[mo + k] + sigmas[mo + k] * eps[k];
          z[o + k] = mask[k] ? (v > 1 ? 1 : v < -1 ? -1 : v) : v;
        }
      }
    }
    const J = await cost(z, P * M);
    rollouts += P * M;
    for (let q = 0; q < P; q++) {
      const order = Array.from({ length: M }, (_, i) => i).sort((a, b) => finite(J[q * M + a]) - finite(J[q * M + b]));
      if (q === 0) {
        const sorted = order.map((i) => J[i]).filter(Number.isFinite);
        const at = (f: number) => sorted[Math.min(sorted.length - 1, Math.floor(f * (sorted.length - 1)))];
        costSpread = sorted.length ? [sorted[0], at(0.1), at(0.5), at(0.9)] : [];
      }
      const elite = order.slice(0, K);
      const jMin = finite(J[q * M + elite[0]]);
      if (jMin < bestCost[q]) {
        bestCost[q] = jMin;
        best.set(z.subarray((q * M + elite[0]) * dim, (q * M + elite[0] + 1) * dim), q * dim);
      }
      if (!Number.isFinite(jMin)) continue; // nothing usable this iteration: keep the mean
      const w = elite.map((i) => Math.exp(-(finite(J[q * M + i]) - jMin) / p.temperature));
      const wSum = w.reduce((a, b) => a + b, 0);
      for (let k = 0; k < dim; k++) {
        const mk = means[q * dim + k];
        let shift = 0;
        let spread = 0;
        elite.forEach((i, e) => {
          const d = z[(q * M + i) * dim + k] - mk;
          shift += w[e] * d;
          spread += w[e] * d * d;
        });
        means[q * dim + k] = clip(k, mk + shift / wSum);
        if (p.adaptSigma) sigmas[q * dim + k] = Math.min(p.sigmaMax, Math.max(p.sigmaMin, Math.sqrt(spread / wSum)));
      }
    }
    iterationMs = performance.now() - t0;
  }
  const meanCost = (await cost(means, P)).map(finite);
  rollouts += P;
  for (let q = 0; q < P; q++) {
    if (meanCost[q] < bestCost[q]) {
      bestCost[q] = meanCost[q];
      best.set(means.subarray(q * dim, (q + 1) * dim), q * dim);
    }
  }
  return { means, sigmas, best, bestCost, meanCost, rollouts, iterations, costSpread };
}

const finite = (v: number) => (Number.isFinite(v) ? v : Infinity);
