import { fromPhysical, Model } from '../models/model.js';
import type { Rng } from '../random.js';
import { copyParticle, emptyState, Evaluation, MoveKernel, ParticleState, Target } from '../samplers/target.js';
import type { ClosedLoop } from './closed-loop.js';
import { ClosedLoopEvaluator, runJob } from './pool.js';

/** A point or a box of initial states, in physical units (the simulator's, e.g. the pendulum's omega in rad/s). */
export type StartRegion =
  | { kind: 'point'; y: readonly number[] }
  | { kind: 'box'; lower: readonly number[]; upper: readonly number[] };

/**
 * Where a task's rollouts start: the distribution mu of initial states. A
 * mixture is drawn stratified: of B starts, each part gets its share (largest
 * remainders), in the parts' order, so a small batch still holds every part.
 */
export type StartDistribution = StartRegion | { kind: 'mixture'; parts: readonly { share: number; region: StartRegion }[] };

/** How many of `count` starts each part of a mixture gets: share x count, the remainders to the largest fractions. */
export function mixtureCounts(shares: readonly number[], count: number): number[] {
  const total = shares.reduce((a, b) => a + b, 0);
  const exact = shares.map((s) => (s / total) * count);
  const counts = exact.map(Math.floor);
  const order = exact.map((_, k) => k).sort((a, b) => (exact[b] - counts[b]) - (exact[a] - counts[a]) || a - b);
  for (let r = count - counts.reduce((a, b) => a + b, 0), i = 0; r > 0; r--, i++) counts[order[i]]++;
  return counts;
}

/** `count` draws from mu in physical units (row-major). */
export function drawPhysicalStarts(rng: Rng, mu: StartDistribution, count: number): number[][] {
  if (mu.kind === 'mixture') {
    const counts = mixtureCounts(mu.parts.map((p) => p.share), count);
    return mu.parts.flatMap((p, k) => drawPhysicalStarts(rng, p.region, counts[k]));
  }
  if (mu.kind === 'point') return Array.from({ length: count }, () => [...mu.y]);
  return Array.from({ length: count }, () => mu.lower.map((lo, j) => lo + (mu.upper[j] - lo) * rng.uniform()));
}

/** Physical rows as model states, row-major. */
export function toModelStarts(model: Model, rows: readonly (readonly number[])[]): Float64Array {
  const n = model.stateDim;
  const out = new Float64Array(rows.length * n);
  rows.forEach((y, b) => out.set(fromPhysical(model, y), b * n));
  return out;
}

/**
 * The policy-optimisation targets of the TSMC paper, Section IV: positions
 * are policy parameters theta (d of them), the energy the mean closed-loop
 * cost over B initial states, the prior p0(theta) an independent Gaussian
 * (std per parameter; its mean zero, or a policy trained before).
 *
 * TSMC:D (`carried` false): the B starts are drawn from mu once and fixed
 * (eqs. (21)-(22)). TSMC:E (`carried` true): each particle carries its own
 * B starts after its d parameters (position = [theta | x0(1..B)], eq. (24));
 * the energy's gradient there is zero and the moves hold them (inverse mass 0,
 * see `heldStartsMass`); `startsRefresh` moves them.
 */
export class PolicyTarget implements Target {
  readonly dim: number;
  readonly parameters: number;
  private readonly starts?: Float64Array;
  private readonly inverseVariance: Float64Array;
  /** the prior's mean (train.init: a policy trained before; train.teacher: the last round's best); zero when none is given */
  private priorMean: Float64Array;
  /** Wall time spent in the rollouts and their gradients (the evaluator's, or this thread's), so far; the rest of a run is the sampler's own work. */
  rolloutMs = 0;

  constructor(
    readonly loop: ClosedLoop,
    readonly lambda: number,
    priorStd: Float64Array,
    readonly batch: number,
    fixedStarts: Float64Array | undefined,
    /** where the rollouts run (a thread pool, the GPU; absent: this thread) */
    private readonly evaluator?: ClosedLoopEvaluator,
    /** the prior's mean (train.init: a policy trained before); absent: zero */
    priorMean?: Float64Array,
  ) {
    this.parameters = loop.parameters;
    if (priorStd.length !== this.parameters) throw new Error(`prior std has ${priorStd.length} values, the policy ${this.parameters} parameters`);
    if (priorMean && priorMean.length !== this.parameters) throw new Error(`prior mean has ${priorMean.length} values, the policy ${this.parameters} parameters`);
    this.priorMean = priorMean ?? new Float64Array(this.parameters);
    this.inverseVariance = priorStd.map((s) => 1 / (s * s));
    this.starts = fixedStarts;
    this.dim = fixedStarts ? this.parameters : this.parameters + batch * loop.model.stateDim;
    if (fixedStarts && fixedStarts.length !== batch * loop.model.stateDim) throw new Error(`${fixedStarts.length / loop.model.stateDim} starts given, batch is ${batch}`);
  }

  /** Centres the prior on `mean` (train.teacher: each round a trust region around the last round's best policy). */
  recentre(mean: Float64Array): void {
    if (mean.length !== this.parameters) throw new Error(`prior mean has ${mean.length} values, the policy ${this.parameters} parameters`);
    this.priorMean = Float64Array.from(mean);
  }

  /** Scores the rollouts against `track` ((T + 1) x n) from the next evaluation on, wherever they run. */
  setTrack(track: Float64Array | undefined): void {
    if (this.evaluator && !this.evaluator.setTrack) throw new Error('the rollouts\' evaluator cannot change the costs\' reference');
    if (this.evaluator?.setTrack) this.evaluator.setTrack(track);
    else this.loop.setTrack(track);
  }

  get carried(): boolean {
    return this.starts === undefined;
  }

  /** The starts of particle i (its own for TSMC:E, the shared ones for TSMC:D). */
  startsOf(positions: Float64Array, i: number): Float64Array {
    return this.starts ?? positions.subarray(i * this.dim + this.parameters, (i + 1) * this.dim);
  }

  async evaluate(positions: Float64Array, count: number, lent?: Evaluation): Promise<Evaluation> {
    const { dim, parameters: p } = this;
    const n = this.loop.model.stateDim;
    // TSMC:D's positions are the weights alone: they go to the rollouts as they are, and the energy's gradient comes back
    // as the evaluation's. At N = 16000 each fresh N x d array costs more (page faults) than the arithmetic on it.
    const weightsOnly = dim === p;
    const thetas = weightsOnly ? positions.subarray(0, count * p) : new Float64Array(count * p);
    const starts = this.starts ?? new Float64Array(count * this.batch * n);
    if (!weightsOnly || !this.starts) {
      for (let i = 0; i < count; i++) {
        if (!weightsOnly) thetas.set(positions.subarray(i * dim, i * dim + p), i * p);
        if (!this.starts) starts.set(positions.subarray(i * dim + p, (i + 1) * dim), i * this.batch * n);
      }
    }
    // TSMC:D's energy gradient is the rollouts' own: they fill the lent array
    const job = { thetas, starts, perPolicyStarts: !this.starts, count, batch: this.batch, gradInto: weightsOnly ? lent?.energyGrad : undefined };
    const rolloutStart = performance.now();
    const { energy, grad } = this.evaluator ? await this.evaluator.evaluate(job) : runJob(this.loop, job);
    this.rolloutMs += performance.now() - rolloutStart;
    const energyGrad = weightsOnly ? grad : lent?.energyGrad.subarray(0, count * dim) ?? new Float64Array(count * dim);
    const out = { energy, energyGrad, prior: lent?.prior.subarray(0, count) ?? new Float64Array(count), priorGrad: lent?.priorGrad.subarray(0, count * dim) ?? new Float64Array(count * dim) };
    const mean = this.priorMean;
    for (let i = 0; i < count; i++) {
      if (!weightsOnly) {
        energyGrad.set(grad.subarray(i * p, (i + 1) * p), i * dim);
        // the carried starts: neither the energy's gradient nor the prior's is taken there
        energyGrad.fill(0, i * dim + p, (i + 1) * dim);
        out.priorGrad.fill(0, i * dim + p, (i + 1) * dim);
      }
      let u0 = 0;
      for (let k = 0; k < p; k++) {
        const offset = thetas[i * p + k] - mean[k];
        const g = offset * this.inverseVariance[k];
        u0 += 0.5 * offset * g;
        out.priorGrad[i * dim + k] = g;
      }
      out.prior[i] = u0;
    }
    return out;
  }

  /** Each start's cost J(tau(x0(b), theta)) for particle i's parameters from the given starts. */
  startCosts(positions: Float64Array, i: number, starts: ArrayLike<number>): Float64Array {
    const perStart = new Float64Array(this.batch);
    this.loop.evaluate(positions.subarray(i * this.dim, i * this.dim + this.parameters), starts, this.batch, { perStart });
    return perStart;
  }
}

/** The moves' inverse mass for TSMC:E: the given one (identity if none) on theta, 0 on the carried starts, which the move holds. */
export function heldStartsMass(target: PolicyTarget, inverseMass?: Float64Array): Float64Array {
  const minv = new Float64Array(target.dim);
  for (let k = 0; k < target.parameters; k++) minv[k] = inverseMass ? inverseMass[k] : 1;
  return minv;
}

/**
 * TSMC:E's refresh of the carried starts (Section IV-B, eq. (29)): for each
 * particle and each b, x0'(b) ~ mu, accepted with probability
 * min(1, exp(-(J(x0'(b)) - J(x0(b))) beta / (lambda B))), theta held. An
 * independence Metropolis-Hastings step on p_k(x0 | theta): mu cancels.
 */
export function startsRefresh(draw: (rng: Rng, count: number) => Float64Array): MoveKernel {
  return {
    name: 'starts-refresh',
    async step(rng: Rng, target: Target, s: ParticleState, beta: number) {
      const t = target as PolicyTarget;
      const { dim, parameters: p, batch: B } = t;
      const n = t.loop.model.stateDim;
      const positions = s.positions.slice();
      const changed: number[] = [];
      let accepted = 0;
      for (let i = 0; i < s.count; i++) {
        const current = t.startsOf(positions, i);
        const proposed = draw(rng, B);
        const before = t.startCosts(positions, i, current);
        const after = t.startCosts(positions, i, proposed);
        let any = false;
        for (let b = 0; b < B; b++) {
          const logRatio = -(after[b] - before[b]) * beta / (t.lambda * B);
          if (Number.isFinite(after[b]) && (logRatio >= 0 || rng.uniform() < Math.exp(logRatio))) {
            positions.set(proposed.subarray(b * n, (b + 1) * n), i * dim + p + b * n);
            accepted++;
            any = true;
          }
        }
        if (any) changed.push(i);
      }
      const out = emptyState(s.count, dim);
      for (let i = 0; i < s.count; i++) copyParticle(s, i, out, i, dim);
      if (changed.length) {
        const rows = new Float64Array(changed.length * dim);
        changed.forEach((i, r) => rows.set(positions.subarray(i * dim, (i + 1) * dim), r * dim));
        const fresh: ParticleState = { count: changed.length, positions: rows, ...(await t.evaluate(rows, changed.length)) };
        changed.forEach((i, r) => copyParticle(fresh, r, out, i, dim));
      }
      const share = accepted / (s.count * B);
      return { state: out, info: { acceptance: share, accepted: changed.length / s.count, divergent: 0, gradientEvaluations: changed.length / s.count } };
    },
  };
}

/** A move made of moves applied in turn (each leaves the target invariant, so their composition does): TSMC:E's kernel. */
export function composedMove(moves: readonly MoveKernel[]): MoveKernel {
  return {
    name: moves.map((m) => m.name).join('+'),
    async step(rng, target, s, beta) {
      let state = s;
      const infos = [];
      for (const m of moves) {
        const r = await m.step(rng, target, state, beta);
        state = r.state;
        infos.push(r.info);
      }
      // the first move's acceptance steers the step size; evaluations add up
      return { state, info: { ...infos[0], gradientEvaluations: infos.reduce((a, i) => a + i.gradientEvaluations, 0) } };
    },
  };
}
