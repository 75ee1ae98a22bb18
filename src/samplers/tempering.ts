import type { Rng } from '../random.js';
import { resample, ResamplingScheme } from './resampling.js';
import { ess, logSumExp, normalise, quantile } from './stats.js';
import { copyParticle, emptyState, initParticles, MoveInfo, MoveKernel, ParticleState, Target } from './target.js';

export interface TemperingParams {
  /** target ESS fraction after each reweighting, in (0, 1) */
  rho: number;
  resampling: ResamplingScheme;
  movesPerLevel: number;
  /** safety cap on the number of tempering levels */
  maxLevels: number;
  /** initial step size handed to the kernel factory */
  stepSize: number;
  /**
   * Adapt the step size between moves towards this mean acceptance (0 = fixed).
   * The population's acceptance at the previous move sets the next step, the
   * usual adaptive-SMC practice: targets sharpen by orders of magnitude
   * between beta = 0 and 1, and no fixed step suits them all.
   */
  targetAcceptance: number;
  /**
   * Mass matrix of the moves: identity, or diagonal with the inverse mass set
   * to the population's per-dimension variance at each level (the tempered
   * target's own scales, estimated from the reweighted particles; Buchholz,
   * Chopin and Jacob 2021). Default identity.
   */
  massMatrix?: MassMatrix;
}

export type MassMatrix = 'identity' | 'diagonal';

export interface LevelInfo {
  beta: number;
  /** step size used by this level's last move */
  stepSize: number;
  /** ESS after reweighting, before resampling */
  ess: number;
  acceptance: number;
  divergent: number;
  gradientEvaluations: number;
  energyMin: number;
  energyMedian: number;
  energyMax: number;
  /** particles whose energy was NaN or infinite (treated as infinite cost) */
  nonFinite: number;
  /** how many of the initial particles the population still descends from after this level's resampling: N at the start, 1 when every particle is a copy of one line (the moves then explore from a single point) */
  lineages: number;
  /** wall time of the level [ms] */
  wallMs: number;
}

export interface TemperedState {
  particles: ParticleState;
  beta: number;
  stepSize: number;
  logZ: number;
  levels: LevelInfo[];
  /** each particle's ancestor among the initial particles, through every resampling */
  roots: Int32Array;
}

/**
 * Tempered SMC (TSMC paper §II): from prior samples at beta = 0, repeatedly
 * choose the next beta by bisection so the ESS after reweighting is rho N,
 * accumulate the normalising-constant estimate, resample, and rejuvenate with
 * a move kernel that leaves the current tempered target invariant.
 */
export function temperedSmc(target: Target, kernelFor: (stepSize: number, inverseMass?: Float64Array) => MoveKernel, params: TemperingParams) {
  return {
    /** Particles taken as draws from the tempered target at startBeta (0: the prior); `roots` carries their ancestry on from an earlier run (default: each its own). */
    async init(positions: Float64Array, startBeta = 0, roots?: Int32Array): Promise<TemperedState> {
      const particles = await initParticles(target, positions);
      return { particles, beta: startBeta, stepSize: params.stepSize, logZ: 0, levels: [], roots: roots ?? Int32Array.from({ length: particles.count }, (_, i) => i) };
    },

    /** One level: reweight to the next beta, resample, move. */
    async step(rng: Rng, state: TemperedState): Promise<TemperedState> {
      const startMs = performance.now();
      const { particles, beta } = state;
      const n = particles.count;
      const energy = particles.energy;
      const nonFinite = energy.reduce((c, e) => c + (Number.isFinite(e) ? 0 : 1), 0);
      if (nonFinite === n) throw new Error('every particle has a non-finite energy (NaN or infinite cost); cannot reweight');
      const lambda = target.lambda;
      const incr = (delta: number) => Float64Array.from(energy, (e) => (Number.isFinite(e) ? (-delta / lambda) * e : -Infinity));
      const next = nextBeta(beta, (delta) => ess(incr(delta)), params.rho * n);
      const logIncr = incr(next - beta);
      // particles are equally weighted on entry (resampled every level): log Z_k/Z_{k-1} = log mean exp(incr)
      const logZ = state.logZ + logSumExp(logIncr) - Math.log(n);
      const essAfter = ess(logIncr);
      const weights = normalise(logIncr);
      const inverseMass = params.massMatrix === 'diagonal' ? populationVariance(particles.positions, weights, target.dim) : undefined;
      const ancestors = resample(rng, weights, params.resampling, n);
      const roots = Int32Array.from(ancestors, (a) => state.roots[a]);
      let moved = emptyState(n, target.dim);
      ancestors.forEach((a, i) => copyParticle(particles, a, moved, i, target.dim));
      const infos: MoveInfo[] = [];
      let stepSize = state.stepSize;
      let used = stepSize;
      for (let k = 0; k < params.movesPerLevel; k++) {
        used = stepSize;
        const r = await kernelFor(stepSize, inverseMass).step(rng, target, moved, next);
        moved = r.state;
        infos.push(r.info);
        if (params.targetAcceptance > 0) stepSize *= Math.exp(Math.max(-2, Math.min(1, 2 * (r.info.acceptance - params.targetAcceptance))));
      }
      const mean = (f: (i: MoveInfo) => number) => (infos.length ? infos.reduce((s, i) => s + f(i), 0) / infos.length : 0);
      const e = moved.energy;
      const level: LevelInfo = {
        beta: next,
        stepSize: used,
        ess: essAfter,
        acceptance: mean((i) => i.acceptance),
        divergent: mean((i) => i.divergent),
        gradientEvaluations: infos.reduce((s, i) => s + i.gradientEvaluations, 0),
        energyMin: Math.min(...e),
        energyMedian: quantile(e, 0.5),
        energyMax: Math.max(...e),
        nonFinite,
        lineages: new Set(roots).size,
        wallMs: performance.now() - startMs,
      };
      return { particles: moved, beta: next, stepSize, logZ, levels: [...state.levels, level], roots };
    },

    /**
     * Runs levels until beta reaches 1. With `deadline` (a performance.now()
     * time) it is an anytime sampler: it stops after the level that crosses
     * the deadline and returns the particles of the beta reached.
     */
    async run(
      rng: Rng, positions: Float64Array, onLevel?: (s: TemperedState) => void, deadline?: number, startBeta = 0,
      /** expected wall time of a level (e.g. measured on the previous MPC tick), so even the first level is judged */
      expectedLevelMs = 0,
    ): Promise<TemperedState> {
      let s = await this.init(positions, startBeta);
      let levelMs = expectedLevelMs;
      while (s.beta < 1) {
        // stop when the next level, judged by the slowest so far, would end past the deadline
        if (deadline !== undefined && (s.levels.length > 0 || levelMs > 0) && performance.now() + levelMs >= deadline) return s;
        if (s.levels.length >= params.maxLevels) {
          if (deadline !== undefined) return s;
          throw new Error(`tempering did not reach beta = 1 within maxLevels = ${params.maxLevels} (beta = ${s.beta.toExponential(3)}); raise lambda or maxLevels`);
        }
        s = await this.step(rng, s);
        levelMs = Math.max(levelMs, s.levels[s.levels.length - 1].wallMs);
        onLevel?.(s);
      }
      return s;
    },
  };
}

/** Largest beta' in (beta, 1] whose ESS is at least the target, by bisection on the increment. */
export function nextBeta(beta: number, essOf: (delta: number) => number, targetEss: number): number {
  const room = 1 - beta;
  if (essOf(room) >= targetEss) return 1;
  let lo = 0;
  let hi = room;
  for (let it = 0; it < 60; it++) {
    const mid = 0.5 * (lo + hi);
    if (essOf(mid) >= targetEss) lo = mid;
    else hi = mid;
  }
  // Guarantee progress even when a single particle dominates at any positive increment.
  return beta + Math.max(lo, room * 1e-12, Number.EPSILON * Math.max(beta, 1e-300));
}

/**
 * Per-dimension weighted variance of the particles, shrunk towards its mean
 * over dimensions (as Stan regularises its adapted metric) so a dimension the
 * population has collapsed in still moves.
 */
export function populationVariance(positions: Float64Array, weights: Float64Array, dim: number): Float64Array {
  const n = weights.length;
  const mean = new Float64Array(dim);
  const variance = new Float64Array(dim);
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) mean[j] += weights[i] * positions[i * dim + j];
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < dim; j++) {
      const d = positions[i * dim + j] - mean[j];
      variance[j] += weights[i] * d * d;
    }
  }
  const essN = 1 / weights.reduce((s, w) => s + w * w, 0);
  const average = variance.reduce((s, v) => s + v, 0) / dim;
  const shrink = 5 / (essN + 5);
  for (let j = 0; j < dim; j++) variance[j] = (1 - shrink) * variance[j] + shrink * average;
  if (!(average > 0) || !Number.isFinite(average)) variance.fill(1);
  return variance;
}

