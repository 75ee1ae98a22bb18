import type { Rng } from '../../random.js';
import { resample, ResamplingScheme } from '../../samplers/resampling.js';
import { ess, logSumExp, normalise as normaliseLogWeights } from '../../samplers/stats.js';

/**
 * SMC planning over time (SPO Algorithm 1; TRT-SMC Algorithm 2 with its
 * proposal and statistics): K particles start at x0 and are stepped through
 * the model one action at a time, each action drawn from a proposal built on
 * the learned policy. Weights follow the advantage (SPO eq. (10)), in cost
 * units: log w += log(pi / q) - gamma^t (c_t + gamma V(x_{t+1}) - V(x_t)) / eta,
 * so over the depth they telescope to the rollout's discounted cost plus the
 * value bootstrap at the depth reached. Every `resampleEvery` steps the particles
 * are resampled (ancestors, states, trajectories) and the weights reset.
 * One pass, O(K) memory; the only communication between particles is the
 * resampling.
 */

/** The problem one plan solves, in the planner's units (controls normalised to [-1, 1] where bounded). */
export interface SmcProblem {
  stateDim: number;
  controlDim: number;
  x0: readonly number[];
  /** the physical control applied before x0 (costs may see it) */
  uPrev: readonly number[];
  /** the learned policy pi(.|x) (normalised mean and std) and value V(x) (cost-to-go) of `count` states */
  policyValue(states: Float64Array, count: number): { mean: Float64Array; std: Float64Array; value: Float64Array };
  /** x' = f(x, u) and the stage cost l(x, u, u_prev), u physical */
  step(x: readonly number[], u: readonly number[]): number[];
  stageCost(x: readonly number[], u: readonly number[], uPrev: readonly number[]): number;
  /** the model's terminal cost, added with the value where the pass ends (as MPPI closes its plans); absent: none */
  terminalCost?(x: readonly number[]): number;
  /** normalised to physical control */
  toPhysical(z: ArrayLike<number>): number[];
  /** the value's discount per step */
  gamma: number;
}

/** Actions for the K particles at one step, and log(pi / q) of each (0 when the proposal is the policy itself). */
export interface ProposalDraw {
  actions: Float64Array;
  logCorrection: Float64Array;
  /** a figure of this step's proposal for the diagnostics (e.g. TRT-SMC's mean inverse temperature) */
  figure?: number;
}

/**
 * Builds the proposal at one step from the policy's output at the particles'
 * states. `overwritten` marks the particles whose action the loop replaces
 * (the warm start and the draws around it): a proposal may skip their costly
 * work but draws their random numbers all the same, so every other
 * particle's draw is the one it would be without the mark.
 */
export type Proposal = (states: Float64Array, count: number, policy: { mean: Float64Array; std: Float64Array }, rng: Rng, overwritten?: Uint8Array) => ProposalDraw;

export interface SmcSettings {
  particles: number;
  depth: number;
  resampleEvery: number;
  resampling: ResamplingScheme;
  /** temperature of the advantage weights (cost units); with `klBound` > 0 it is solved per plan from the dual (SPO eq. (7)) instead */
  eta: number;
  klBound: number;
  /**
   * TRT-SMC's revived resampling: a particle whose state turns terminal
   * (non-finite) keeps its last non-terminal state as its reference, and
   * resampled particles continue from their parent's reference state
   */
  revive: boolean;
  /** performance.now() time to stop at; the depth reached is reported */
  deadline?: number;
  /**
   * a guide: depth x m normalised actions (the shifted previous plan) that
   * particle 0 follows instead of drawing, as long as it or an offspring survives
   * resampling (its proposal correction is 0: the warm start is trusted as a
   * policy draw). The previous optimum stays in reach, as TSMC keeps it.
   */
  guide?: Float64Array;
  /**
   * with a guide: particles 1..count draw around it (the guide's action plus
   * the policy's std x stdScale, clipped where bounded) instead of from the
   * proposal, each weighed by log pi / q of its own draw, so the last plan is
   * refined from tick to tick as MPPI refines its mean; count at most K - 2
   * (particle 0 is the exact warm start, the last the policy's mean)
   */
  guideDraws?: { count: number; stdScale: number; bounded: readonly boolean[] };
  /** the ancestor draw (tests fix the resampling history); default `resample(rng, w, resampling)` */
  resampleIndices?: (weights: Float64Array, rng: Rng) => Int32Array;
}

export interface SmcResult {
  /** each root particle's first action (K x m, normalised) */
  rootActions: Float64Array;
  /** SPO's q-hat: the surviving particles' normalised weights summed onto their root ancestors (K) */
  survivingWeights: Float64Array;
  /** TRT-SMC's backed-up ancestor log-statistics Q-hat (K): the running sum of log mean incremental weight over each root's descendants */
  backedUp: Float64Array;
  /**
   * for each root, the sum of the steps' log mean incremental weight over all
   * particles, over the steps the root had descendants: backedUp minus this
   * compares roots fairly when some lose every descendant early (a step a root
   * misses counts as an average one, not as a free one)
   */
  backedUpBaseline: Float64Array;
  /** the final particles: log weights, root ancestors, trajectories (K x depthReached x m, ancestral: copied with their particle at resampling), states */
  logWeights: Float64Array;
  ancestors: Int32Array;
  trajectories: Float64Array;
  states: Float64Array;
  depthReached: number;
  /** ESS / K after each step's weight update (before any resampling) */
  essRatios: number[];
  /** the proposal's figure per step, where it has one */
  proposalFigures: number[];
  resamples: number;
  eta: number;
  /** V(x0) from the network, and the SMC estimate V(x0) - eta log mean exp(Q-hat) (TRT-SMC's value target) */
  valueRoot: number;
  valueSmc: number;
}

/** log of the mean of exp(xs) (over the entries `idx` when given). */
const logMeanExp = (xs: ArrayLike<number>, idx?: ArrayLike<number>): number =>
  (idx ? logSumExp(Array.from(idx, (k) => xs[k])) - Math.log(idx.length) : logSumExp(xs) - Math.log(xs.length));

/** Normalised weights from log weights; all -inf: uniform, so the caller can still read something. */
export function normalise(logW: ArrayLike<number>): Float64Array {
  return logSumExp(logW) === -Infinity ? new Float64Array(logW.length).fill(1 / logW.length) : normaliseLogWeights(logW);
}

/**
 * eta minimising SPO's dual g(eta) = eta eps + eta log mean exp(A / eta)
 * over the given advantages (eq. (7), the states' expectation replaced by
 * this plan's root): golden-section search on log eta in [1e-4, 1e4] x the advantages' spread.
 */
export function dualEta(advantages: ArrayLike<number>, klBound: number): number {
  const finite = Array.from(advantages).filter(Number.isFinite);
  if (finite.length < 2) return 1;
  const spread = Math.max(...finite) - Math.min(...finite);
  if (!(spread > 0)) return 1;
  const g = (logEta: number) => {
    const eta = Math.exp(logEta);
    return eta * klBound + eta * logMeanExp(finite.map((a) => a / eta));
  };
  let lo = Math.log(1e-4 * spread);
  let hi = Math.log(1e4 * spread);
  const r = (Math.sqrt(5) - 1) / 2;
  let a = hi - r * (hi - lo);
  let b = lo + r * (hi - lo);
  let ga = g(a);
  let gb = g(b);
  for (let k = 0; k < 80; k++) {
    if (ga < gb) {
      hi = b; b = a; gb = ga; a = hi - r * (hi - lo); ga = g(a);
    } else {
      lo = a; a = b; ga = gb; b = lo + r * (hi - lo); gb = g(b);
    }
  }
  return Math.exp((lo + hi) / 2);
}

export function smcOverTime(problem: SmcProblem, settings: SmcSettings, proposal: Proposal, rng: Rng): SmcResult {
  const { stateDim: n, controlDim: m } = problem;
  const K = settings.particles;
  const h = settings.depth;
  let states = new Float64Array(K * n);
  for (let i = 0; i < K; i++) states.set(problem.x0, i * n);
  let reference = states.slice();
  let uPrev: number[][] = Array.from({ length: K }, () => [...problem.uPrev]);
  let logW = new Float64Array(K);
  let ancestors = Int32Array.from({ length: K }, (_, i) => i);
  let trajectories = new Float64Array(K * h * m);
  const rootActions = new Float64Array(K * m);
  const backedUp = new Float64Array(K);
  const backedUpBaseline = new Float64Array(K);
  const essRatios: number[] = [];
  const proposalFigures: number[] = [];
  let resamples = 0;
  let eta = settings.eta;
  let here = problem.policyValue(states, K);
  const valueRoot = here.value[0];
  /**
   * Adds a step's log incremental weights: to the particles' weights, and
   * (TRT-SMC Algorithm 2, lines 8-9) to each root's statistic the log mean
   * over its descendants, with the step's mean over all particles as its baseline.
   */
  const addIncrement = (increment: Float64Array) => {
    const members: number[][] = Array.from({ length: K }, () => []);
    for (let i = 0; i < K; i++) members[ancestors[i]].push(i);
    const stepMean = logMeanExp(increment);
    for (let j = 0; j < K; j++) {
      if (!members[j].length) continue;
      backedUp[j] += logMeanExp(increment, members[j]);
      if (Number.isFinite(stepMean)) backedUpBaseline[j] += stepMean;
    }
    for (let i = 0; i < K; i++) logW[i] += increment[i];
  };
  let depthReached = 0;
  let slowestStepMs = 0;
  let guided = settings.guide ? 0 : -1;
  for (let t = 0; t < h; t++) {
    // anytime: a plan always has its first step; a later one only if it can end by the deadline (judged by the slowest step so far)
    const stepStart = performance.now();
    if (t > 0 && settings.deadline !== undefined && stepStart + slowestStepMs >= settings.deadline) break;
    const overwritten = new Uint8Array(K);
    if (settings.guide && settings.guideDraws) overwritten.fill(1, 1, guideDrawLast(settings.guideDraws.count, K) + 1);
    if (guided >= 0) overwritten[guided] = 1;
    const draw = proposal(states, K, here, rng, overwritten);
    if (settings.guide && settings.guideDraws) drawAroundGuide(draw, settings.guide.subarray(t * m, (t + 1) * m), here, settings.guideDraws, rng);
    if (guided >= 0) {
      draw.actions.set(settings.guide!.subarray(t * m, (t + 1) * m), guided * m);
      draw.logCorrection[guided] = 0;
    }
    if (draw.figure !== undefined) proposalFigures.push(draw.figure);
    const next = new Float64Array(K * n);
    const costs = new Float64Array(K);
    const terminal = new Uint8Array(K);
    for (let i = 0; i < K; i++) {
      const x = Array.from(states.subarray(i * n, (i + 1) * n));
      const z = draw.actions.subarray(i * m, (i + 1) * m);
      const u = problem.toPhysical(z);
      costs[i] = problem.stageCost(x, u, uPrev[i]);
      const x1 = problem.step(x, u);
      next.set(x1, i * n);
      uPrev[i] = u;
      trajectories.set(z, (i * h + t) * m);
      if (t === 0) rootActions.set(z, i * m);
      terminal[i] = x1.every(Number.isFinite) && Number.isFinite(costs[i]) ? 0 : 1;
    }
    const ahead = problem.policyValue(next, K);
    // advantages in reward units: minus (cost now + discounted value ahead - value here)
    const advantage = new Float64Array(K);
    for (let i = 0; i < K; i++) {
      const a = -(costs[i] + problem.gamma * ahead.value[i] - here.value[i]);
      advantage[i] = terminal[i] || !Number.isFinite(a) ? -Infinity : a;
    }
    if (t === 0 && settings.klBound > 0) eta = dualEta(advantage, settings.klBound);
    const increment = new Float64Array(K);
    // the advantage of step t counts gamma^t: the increments then telescope to the discounted cost plus gamma^h V at the depth,
    // the quantity the value was trained on (undiscounted, each step would add (1 - gamma) V and favour states the value calls bad)
    const discount = problem.gamma ** t;
    for (let i = 0; i < K; i++) increment[i] = advantage[i] === -Infinity ? -Infinity : draw.logCorrection[i] + discount * advantage[i] / eta;
    addIncrement(increment);
    for (let i = 0; i < K; i++) if (!terminal[i]) reference.set(next.subarray(i * n, (i + 1) * n), i * n);
    const w = normalise(logW);
    essRatios.push(logW.some(Number.isFinite) ? ess(logW) / K : 1);
    states = next;
    here = ahead;
    depthReached = t + 1;
    slowestStepMs = Math.max(slowestStepMs, performance.now() - stepStart);
    // resample every r steps, but not after the last: q-hat reads the final weights
    if ((t + 1) % settings.resampleEvery !== 0 || t + 1 >= h) continue;
    if (!logW.some(Number.isFinite)) break;
    const idx = settings.resampleIndices ? settings.resampleIndices(w, rng) : resample(rng, w, settings.resampling);
    const from = settings.revive ? reference : states;
    const pick = <T extends Float64Array | Int32Array>(src: T, width: number): T => {
      const out = new (src.constructor as { new(len: number): T })(K * width);
      for (let i = 0; i < K; i++) out.set(src.subarray(idx[i] * width, (idx[i] + 1) * width), i * width);
      return out;
    };
    guided = guided >= 0 ? idx.indexOf(guided) : -1;
    states = pick(from, n);
    reference = states.slice();
    ancestors = pick(ancestors, 1);
    trajectories = pick(trajectories, h * m);
    uPrev = Array.from(idx, (k) => uPrev[k]);
    here = { mean: pick(here.mean, m), std: pick(here.std, m), value: pick(here.value, 1) };
    // a revived particle continues from its reference state: its policy and value are those of that state
    if (settings.revive) here = problem.policyValue(states, K);
    logW = new Float64Array(K);
    resamples++;
  }
  // where the pass ended: the model's terminal cost joins the value bootstrap, as it closes MPPI's and TSMC's plans
  if (problem.terminalCost && depthReached > 0) {
    const discount = problem.gamma ** depthReached;
    const increment = new Float64Array(K);
    for (let i = 0; i < K; i++) {
      const c = problem.terminalCost(Array.from(states.subarray(i * n, (i + 1) * n)));
      increment[i] = Number.isFinite(c) ? -discount * c / eta : -Infinity;
    }
    addIncrement(increment);
  }
  const final = normalise(logW);
  const survivingWeights = new Float64Array(K);
  for (let i = 0; i < K; i++) survivingWeights[ancestors[i]] += final[i];
  const valueSmc = valueRoot - eta * logMeanExp(backedUp);
  return {
    rootActions, survivingWeights, backedUp, backedUpBaseline, logWeights: logW, ancestors,
    trajectories: depthReached === h ? trajectories : cut(trajectories, K, h, depthReached, m),
    states, depthReached, essRatios, proposalFigures, resamples, eta, valueRoot, valueSmc,
  };
}

/**
 * Particles 1..count: the guide's action plus N(0, (stdScale sigma)^2) at the
 * particle's policy std sigma, clipped where bounded; log pi / q at the
 * unclipped draw (as the policy's own wide draws are corrected).
 */
function drawAroundGuide(
  draw: ProposalDraw, guide: ArrayLike<number>, policy: { mean: Float64Array; std: Float64Array },
  { count, stdScale, bounded }: { count: number; stdScale: number; bounded: readonly boolean[] }, rng: Rng,
): void {
  const m = guide.length;
  const last = guideDrawLast(count, draw.logCorrection.length);
  for (let i = 1; i <= last; i++) {
    let logCorrection = 0;
    for (let j = 0; j < m; j++) {
      const k = i * m + j;
      const e = rng.normal();
      const z = guide[j] + stdScale * policy.std[k] * e;
      // log N(z; mu, sigma) - log N(z; guide, stdScale sigma)
      logCorrection += -0.5 * ((z - policy.mean[k]) / policy.std[k]) ** 2 + 0.5 * e * e + Math.log(stdScale);
      draw.actions[k] = bounded[j] ? Math.min(1, Math.max(-1, z)) : z;
    }
    draw.logCorrection[i] = logCorrection;
  }
}

/** The last particle that draws around the guide: 1..count, at most K - 2 (particle 0 is the warm start, the last the policy's mean). */
export const guideDrawLast = (count: number, K: number): number => Math.max(0, Math.min(count, K - 2));

/** The first `d` steps of each of K trajectories of h steps. */
function cut(z: Float64Array, K: number, h: number, d: number, m: number): Float64Array {
  const out = new Float64Array(K * d * m);
  for (let i = 0; i < K; i++) out.set(z.subarray(i * h * m, (i * h + d) * m), i * d * m);
  return out;
}
