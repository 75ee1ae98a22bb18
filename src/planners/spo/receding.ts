import { compileStageCostFunction, compileStepFunction, compileTerminalCostFunction } from '../../kernels/js-source.js';
import { buildStepGraphs } from '../../kernels/graphs.js';
import type { Model } from '../../models/model.js';
import { choice, flag, num, ParamsOf } from '../../params.js';
import type { Rng } from '../../random.js';
import { controlScaling } from '../../models/controls.js';
import { applyPlannerChanges, PlanRequest, PlanResult, PriorGuide, RecedingPlanner, shiftSequence } from '../receding.js';
import { LOG_STD_RANGE } from '../../learned/networks.js';
import { guideDrawLast, normalise, Proposal, SmcProblem, SmcResult, smcOverTime } from './smc.js';

/** SMC planning over time: the parameters SPO and TRT-SMC share (`spo.*`, `trtsmc.*`). */
export const SMC_TIME_PARAMS = {
  particles: num(16, 'particles K, stepped through the model together', { min: 2, max: 4096, integer: true }),
  depth: num(0, 'planning depth h in model steps (0 = the model\'s horizon; at most the horizon); the learned value closes each particle at the depth reached', { min: 0, max: 10000, integer: true }),
  resampleEvery: num(2, 'resample every r steps (r >= depth: never, plain importance sampling)', { min: 1, max: 10000, integer: true }),
  resampling: choice('systematic', ['systematic', 'multinomial'] as const, 'resampling scheme'),
  eta: num(1, 'temperature of the advantage weights exp(A / eta), in cost units (used when klBound is 0)', { min: 0, max: 1e9, exclusive: true }),
  klBound: num(0, 'when > 0: eta is solved each plan from SPO\'s dual (eq. (7)) for this KL bound between q-hat and the policy, over the first step\'s advantages', { min: 0, max: 100 }),
  gamma: num(1, 'discount of the advantages along the depth: the weights telescope to the discounted cost plus gamma^h V at the depth (1: the value closes the plan as MPPI\'s terminal cost does, which is what train-value fits; a TD-trained prior\'s own gamma is in its meta.json)', { min: 0.5, max: 1 }),
  policyStdScale: num(1, 'multiplies the policy\'s std when it proposes actions (weights are corrected by pi / q): wider proposals explore more at small K', { min: 0, max: 100, exclusive: true }),
  command: choice('mean', ['mean', 'sample'] as const, 'the command from q-hat: its weighted mean, or a draw from it'),
  meanParticle: flag(true, 'one particle follows the policy\'s mean (no noise): the policy\'s own choice is always among the candidates'),
  warmStart: flag(true, 'one particle follows the shifted previous plan (while it or an offspring survives resampling), so the last plan stays in reach'),
  warmStartShare: num(0, 'with warmStart: the share of the particles that draw around the shifted previous plan (the policy\'s std x warmStartStdScale) rather than from the policy, each weighed by pi / q of its own draw, so the last plan is refined from tick to tick as MPPI refines its mean; at most K - 2 particles', { min: 0, max: 1 }),
  warmStartStdScale: num(0.1, 'multiplies the policy\'s std for the draws around the previous plan (warmStartShare)', { min: 0, max: 100, exclusive: true }),
  distilStdMin: num(0.02, `least std of q-hat's first step as train-prior distils it into the sampling policy (normalised units; never below the policy's own least, ${Math.exp(LOG_STD_RANGE[0]).toFixed(2)}; MPPI's sigmaMin is its counterpart): with greedy weights, or most particles drawn around the last plan, q-hat shows almost no spread, and a policy fitted to that proposes too narrowly to explore`, { min: 0, max: 2 }),
} as const;

export type SmcTimeParams = ParamsOf<typeof SMC_TIME_PARAMS>;

/** How a member of the family proposes actions and reads q-hat; the loop, the plan and the diagnostics are shared. */
export interface SmcVariant {
  name: string;
  /** the proposal for this plan's settings */
  proposal(params: Readonly<Record<string, unknown>>, bounded: readonly boolean[], guide: PriorGuide, reference: readonly number[]): Proposal;
  /** q-hat over the root particles (K weights summing to 1) */
  rootWeights(r: SmcResult): Float64Array;
  /** TRT-SMC: revived resampling */
  revive(params: Readonly<Record<string, unknown>>): boolean;
  /** a name for the proposal's per-step figure, if it has one (an info key and a series) */
  figureName?: string;
  /** the same choices for the GPU-resident pass (src/kernels/wgsl-smc-time.ts): the trust-region proposal, and q-hat from the backed-up statistics (else the surviving weights) */
  gpu: { trustRegion: boolean; backedUp: boolean };
}

/**
 * Gaussian draws from pi (std times `scale`), clipped to the bounds, with
 * log pi / q of each draw; with `meanParticle` the last particle takes the
 * policy's mean (a draw with no noise, as PO-MPC's first policy sample is).
 */
export function policyProposal(scale: number, bounded: readonly boolean[], meanParticle = false): Proposal {
  return (_states, count, policy, rng) => {
    const m = bounded.length;
    const actions = new Float64Array(count * m);
    const logCorrection = new Float64Array(count);
    for (let i = 0; i < count; i++) {
      for (let j = 0; j < m; j++) {
        const k = i * m + j;
        const e = meanParticle && i === count - 1 ? 0 : rng.normal();
        let z = policy.mean[k] + scale * policy.std[k] * e;
        if (bounded[j]) z = z > 1 ? 1 : z < -1 ? -1 : z;
        actions[k] = z;
        // log N(z; mu, s) - log N(z; mu, scale s), at the unclipped draw
        if (scale !== 1) logCorrection[i] += -0.5 * (scale * e) ** 2 + 0.5 * e * e + Math.log(scale);
      }
    }
    return { actions, logCorrection };
  };
}

/**
 * An SMC-over-time planner in receding horizon (SPO and TRT-SMC): each
 * tick runs one pass of K particles from the current state. The command is
 * read from q-hat over the root particles' first actions (its weighted mean,
 * or a draw); the published plan is the ancestral trajectory of the
 * best-weighted particle, continued by the policy's mean beyond the depth
 * reached, so the plan topic and the command side's interpolation work as
 * with the other planners. Under a deadline the pass stops at the depth
 * reached (the value closes it there) and says so.
 */
export class SmcTimePlanner implements RecedingPlanner {
  readonly name: string;
  private readonly step;
  private readonly stageCost;
  private readonly terminalCost;
  private readonly scaling;
  private readonly bounded: boolean[];
  /** the last published plan (normalised), for the warm start */
  private last: Float64Array | undefined;
  /** q-hat's mean and std over the root actions of the last plan */
  private first: { mean: number[]; sigma: number[] } | undefined;

  constructor(
    readonly model: Model,
    readonly params: SmcTimeParams & Record<string, unknown>,
    private readonly rng: Rng,
    readonly guide: PriorGuide,
    private readonly variant: SmcVariant,
  ) {
    this.name = variant.name;
    const graphs = buildStepGraphs(model, false);
    const step = compileStepFunction(graphs);
    const noise = new Array<number>(model.noiseDim).fill(0);
    this.step = (x: readonly number[], u: readonly number[]) => step(x, u, noise);
    this.stageCost = compileStageCostFunction(graphs);
    this.terminalCost = compileTerminalCostFunction(graphs);
    this.scaling = controlScaling(model);
    this.bounded = guide.prior.meta.bounded;
  }

  reset(): void {
    this.last = undefined;
    this.first = undefined;
  }

  firstStep(): { mean: number[]; sigma: number[] } | undefined {
    return this.first;
  }

  updateParams(changes: Readonly<Record<string, unknown>>): void {
    applyPlannerChanges(this.params, this.guide, changes);
  }

  /** The problem one pass solves from this request (the GPU-resident pass solves the same; its tests replay it here). */
  problem(req: PlanRequest): SmcProblem {
    const { model } = this;
    const m = model.controlDim;
    const prior = this.guide.prior;
    return {
      stateDim: model.stateDim, controlDim: m, x0: req.x0, uPrev: req.uPrev,
      // the value as MPPI takes it: prior.value switches it, prior.valueWeight scales it
      policyValue: (x, count) => {
        const out = prior.policyValue(x, count, req.reference);
        const { value: on, valueWeight } = this.guide.settings;
        for (let i = 0; i < count; i++) out.value[i] = on ? valueWeight * out.value[i] : 0;
        return out;
      },
      step: this.step,
      stageCost: (x, u, uPrev) => this.stageCost(x, u, uPrev, req.reference),
      terminalCost: (x) => this.terminalCost(x, req.reference),
      toPhysical: (z) => this.toPhysical(z),
      gamma: this.params.gamma,
    };
  }

  /** A normalised control as a physical one. */
  private toPhysical(z: ArrayLike<number>): number[] {
    return Array.from({ length: this.model.controlDim }, (_, j) => this.scaling.center[j] + this.scaling.scale[j] * z[j]);
  }

  async plan(req: PlanRequest): Promise<PlanResult> {
    const p = this.params;
    const { model } = this;
    const m = model.controlDim;
    const H = model.horizon;
    const depth = p.depth > 0 ? Math.min(p.depth, H) : H;
    const prior = this.guide.prior;
    const r = smcOverTime(this.problem(req), {
      particles: p.particles, depth, resampleEvery: p.resampleEvery, resampling: p.resampling, eta: p.eta, klBound: p.klBound,
      revive: this.variant.revive(p), deadline: req.deadline,
      guide: p.warmStart && this.last ? shiftSequence(this.last, m, req.shiftSteps ?? 1).subarray(0, depth * m) : undefined,
      guideDraws: { count: guideDrawCount(p), stdScale: p.warmStartStdScale, bounded: this.bounded },
    }, this.variant.proposal(p, this.bounded, this.guide, req.reference), this.rng);
    const K = p.particles;
    const q = this.variant.rootWeights(r);
    if (!q.every(Number.isFinite)) throw new Error(`${this.name}: q-hat is not finite (the learned prior's output or the model went non-finite at every particle)`);
    const command = new Float64Array(m);
    if (p.command === 'sample') {
      let u = this.rng.uniform();
      let j = 0;
      while (j < K - 1 && (u -= q[j]) > 0) j++;
      command.set(r.rootActions.subarray(j * m, (j + 1) * m));
    } else {
      for (let j = 0; j < K; j++) for (let k = 0; k < m; k++) command[k] += q[j] * r.rootActions[j * m + k];
    }
    // the published plan: the best-weighted particle's ancestral trajectory, then the policy's mean to the horizon
    const w = normalise(r.logWeights);
    let best = 0;
    for (let i = 1; i < K; i++) if (w[i] > w[best]) best = i;
    const d = r.depthReached;
    const z = new Float64Array(H * m);
    z.set(r.trajectories.subarray(best * d * m, (best + 1) * d * m));
    z.set(command, 0);
    let x = Float64Array.from(r.states.subarray(best * model.stateDim, (best + 1) * model.stateDim));
    for (let t = d; t < H; t++) {
      const { mean } = prior.policy(x, 1, req.reference);
      z.set(mean, t * m);
      x = Float64Array.from(this.step(Array.from(x), this.toPhysical(mean)));
    }
    this.last = z;
    this.first = firstStepOf(q, r.rootActions, m, p.distilStdMin);
    const controls = new Float64Array(H * m);
    for (let t = 0; t < H; t++) controls.set(this.toPhysical(z.subarray(t * m, (t + 1) * m)), t * m);
    return {
      controls,
      // the plan's cost in the value's units: V(x0) from the SMC estimate
      cost: r.valueSmc,
      ...smcTimeReport(this.variant, {
        particles: K, horizon: H, depthAsked: depth, depthReached: d, stopped: d < depth, essRatios: r.essRatios, finalEss: r.essRatios.at(-1) ?? 1,
        resamples: r.resamples, eta: r.eta, valueRoot: r.valueRoot, valueSmc: r.valueSmc, qHat: q, figures: r.proposalFigures,
      }),
    };
  }
}

/** What one pass reports (its status figures and series), the same from the CPU and the GPU-resident pass. */
export interface SmcTimePass {
  particles: number;
  horizon: number;
  depthAsked: number;
  depthReached: number;
  /** the deadline stopped the pass before the depth asked */
  stopped: boolean;
  essRatios: number[];
  finalEss: number;
  resamples: number;
  eta: number;
  valueRoot: number;
  valueSmc: number;
  qHat: ArrayLike<number>;
  /** the proposal's figure per step, where the variant has one */
  figures: number[];
}

export function smcTimeReport(variant: SmcVariant, pass: SmcTimePass): Pick<PlanResult, 'info' | 'diagnostics'> {
  const { figureName } = variant;
  const { figures, depthReached: d } = pass;
  return {
    info: {
      depth: d, rollouts: (pass.particles * d) / pass.horizon, essRatio: pass.finalEss, resamples: pass.resamples, eta: pass.eta,
      valueRoot: pass.valueRoot, valueSmc: pass.valueSmc,
      ...(figureName && figures.length ? { [figureName]: figures.reduce((a, b) => a + b, 0) / figures.length } : {}),
    },
    diagnostics: {
      series: {
        ess_ratio: pass.essRatios,
        q_hat: Array.from(pass.qHat),
        ...(figureName ? { [snake(figureName)]: figures } : {}),
      },
      ...(pass.stopped ? { notice: `the deadline stopped the pass at depth ${d} of ${pass.depthAsked}` } : {}),
    },
  };
}

/** How many particles draw around the previous plan: warmStartShare of K, leaving the exact warm start and the mean particle theirs. */
export function guideDrawCount(p: Pick<SmcTimeParams, 'particles' | 'warmStartShare'>): number {
  return guideDrawLast(Math.round(p.warmStartShare * p.particles), p.particles);
}

/** The floor of the first step's std that train-prior distils: `distilStdMin`, never below the policy's least std. */
export const distilStdFloor = (distilStdMin: number): number => Math.max(Math.exp(LOG_STD_RANGE[0]), distilStdMin);

/** q-hat's weighted mean and std per control (the std floored by `distilStdFloor`): the distribution the M-step distils. */
function firstStepOf(q: Float64Array, actions: Float64Array, m: number, distilStdMin: number): { mean: number[]; sigma: number[] } {
  const mean = new Array<number>(m).fill(0);
  const sigma = new Array<number>(m).fill(0);
  for (let j = 0; j < q.length; j++) for (let k = 0; k < m; k++) mean[k] += q[j] * actions[j * m + k];
  for (let j = 0; j < q.length; j++) for (let k = 0; k < m; k++) sigma[k] += q[j] * (actions[j * m + k] - mean[k]) ** 2;
  const floor = distilStdFloor(distilStdMin);
  return { mean, sigma: sigma.map((v) => Math.max(floor, Math.sqrt(v))) };
}

const snake = (name: string) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
