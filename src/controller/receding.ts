import type { RolloutBackend } from '../kernels/backend.js';
import type { Model } from '../models/model.js';
import { num, ParamsOf } from '../params.js';
import { Rng } from '../random.js';
import { MPPI_PARAMS, mppi } from '../planners/mppi.js';
import type { PRIOR_PARAMS } from '../prior/params.js';
import type { LearnedPrior, ModelStep } from '../prior/runtime.js';
import { ControlPrior, controlScaling, toControls, TrajectoryTarget } from '../planners/problem.js';
import { boundedCoordinates } from '../planners/solve.js';
import { projectedAdam } from '../planners/gradient.js';
import { runTsmc, TSMC_PARAMS } from '../planners/tsmc.js';

/** What a receding-horizon planner is asked each tick (planner state units). */
export interface PlanRequest {
  x0: readonly number[];
  uPrev: readonly number[];
  reference: readonly number[];
  /** performance.now() time by which the plan should be ready */
  deadline?: number;
  /**
   * model steps since the previous plan started (default 1): the warm start
   * is shifted by this much, so a plan rate below 1 / dtS stays aligned in time
   */
  shiftSteps?: number;
}

/** A plan in detail, for status and the dashboard. */
export interface PlanDiagnostics {
  /** TSMC: the tempering ladder, one entry per level */
  ladder?: { beta: number[]; essRatio: number[]; acceptance: number[] };
  /** MPPI: the last iteration's sample costs: min, p10, median, p90 */
  costSpread?: number[];
  /** MPPI: sampling std of each control at the first step (normalised units) */
  sigma?: number[];
  /** why part of the planner was switched off for this plan (e.g. a learned prior's non-finite output) */
  notice?: string;
}

export interface PlanResult {
  /** horizon x controlDim physical controls; the first row is applied now */
  controls: Float64Array;
  cost: number;
  /** planner-specific numbers for status and logs */
  info: Record<string, number>;
  diagnostics?: PlanDiagnostics;
}

/** One planner interface, many planners (mjpc style); the controller is independent of which. */
export interface RecedingPlanner {
  readonly name: 'tsmc' | 'mppi';
  /** one plan; the planner owns its random stream, so a seeded planner is reproducible wherever it runs */
  plan(req: PlanRequest): Promise<PlanResult>;
  /** forget the warm start (e.g. after a long outage) */
  reset(): void;
  /** live parameter changes, validated by the planner's schema; called between plans */
  updateParams(changes: Readonly<Record<string, unknown>>): void;
}

/** z shifted `steps` steps earlier; the last step is held. */
export function shiftSequence(z: Float64Array, m: number, steps = 1): Float64Array {
  const out = new Float64Array(z.length);
  const by = Math.min(Math.max(0, Math.round(steps)), z.length / m - 1) * m;
  out.set(z.subarray(by));
  const last = z.subarray(z.length - m);
  for (let i = z.length - by; i < z.length; i += m) out.set(last, i);
  return out;
}

/** A learned prior as MPPI uses it (PO-MPC): the networks, a model step to roll the policy, and the live settings `prior.*`. */
export interface PriorGuide {
  prior: LearnedPrior;
  step: ModelStep;
  settings: ParamsOf<typeof PRIOR_PARAMS>;
}

/** Live changes: the planner's own keys bare; how the prior is used as `prior.KEY` (every planner). */
export function applyPlannerChanges(params: object, guide: PriorGuide | undefined, changes: Readonly<Record<string, unknown>>): void {
  for (const [k, v] of Object.entries(changes)) {
    if (k.startsWith('prior.')) {
      if (guide) (guide.settings as Record<string, unknown>)[k.slice('prior.'.length)] = v;
    } else (params as Record<string, unknown>)[k] = v;
  }
}

/**
 * PO-MPC-style MPPI (eq. 11): warm-started from the shifted mean (zero,
 * i.e. the centre of the limits, at the first tick), J iterations of M
 * samples and K elites; the final mean's first action is applied. With a
 * learned prior, `prior.policySamples` of the M samples are drawn by
 * rolling the sampling policy through the model (once per plan, reused by
 * every iteration, as TD-MPC2 does), and every sample's cost gains the
 * learned value of its last state (eq. (10)). A prior whose output goes
 * non-finite is switched off for that plan, with a notice.
 */
export class MppiPlanner implements RecedingPlanner {
  readonly name = 'mppi';
  private mean: Float64Array | undefined;
  private sigma: Float64Array | undefined;
  private readonly scaling;
  private readonly dim: number;

  constructor(
    readonly model: Model,
    readonly backend: RolloutBackend,
    readonly params: ParamsOf<typeof MPPI_PARAMS>,
    private readonly rng: Rng,
    readonly guide?: PriorGuide,
  ) {
    this.scaling = controlScaling(model);
    this.dim = model.horizon * model.controlDim;
  }

  reset(): void {
    this.mean = undefined;
    this.sigma = undefined;
  }

  updateParams(changes: Readonly<Record<string, unknown>>): void {
    applyPlannerChanges(this.params, this.guide, changes);
  }

  async plan(req: PlanRequest): Promise<PlanResult> {
    const shift = req.shiftSteps ?? 1;
    const init = this.mean ? shiftSequence(this.mean, this.model.controlDim, shift) : new Float64Array(this.dim);
    const context = { x0: req.x0, uPrev: req.uPrev, reference: req.reference };
    const notices: string[] = [];
    const g = this.guide;
    const useValue = g !== undefined && g.settings.value && g.settings.valueWeight > 0;
    let valueOff = false;
    const n = this.model.stateDim;
    const H = this.model.horizon;
    const cost = async (z: Float64Array, count: number) => {
      const controls = toControls(z.subarray(0, count * this.dim), this.scaling);
      if (!useValue || valueOff) return this.backend.cost({ ...context, controls });
      const { cost: c, states } = await this.backend.trajectories({ ...context, controls });
      const last = new Float64Array(count * n);
      for (let i = 0; i < count; i++) last.set(states.subarray((i * (H + 1) + H) * n, (i * (H + 1) + H + 1) * n), i * n);
      const v = g.prior.value(last, count, req.reference);
      // a non-finite value of a finite rollout is the network's fault: plan without it
      if (v.some((x, i) => !Number.isFinite(x) && Number.isFinite(c[i]))) {
        valueOff = true;
        notices.push('the learned value went non-finite; planned without it');
        return c;
      }
      return c.map((x, i) => x + g.settings.valueWeight * v[i]);
    };
    const p = this.params;
    const sigma0 = p.sigmaWarmStart === 'carry' && this.sigma
      ? shiftSequence(this.sigma, this.model.controlDim, shift).map((s) => Math.min(p.sigmaMax, Math.max(p.sigmaMin, 1.5 * s)))
      : undefined;
    let proposals: { hook: () => Float64Array; count: number } | undefined;
    const count = g ? Math.min(g.settings.policySamples, p.samples) : 0;
    if (g && count > 0) {
      const drawn = g.prior.rollout(this.rng, g.step, req.x0, req.reference, count, H, g.settings.policyStdScale);
      if (drawn) proposals = { hook: () => drawn, count };
      else notices.push('the learned policy went non-finite; planned without its samples');
    }
    const r = await mppi(this.rng, cost, init, this.dim, this.model.controlDim, boundedCoordinates(this.model), { ...p, adaptSigma: true }, proposals, req.deadline, sigma0);
    this.mean = r.means;
    this.sigma = r.sigmas;
    const useMean = r.meanCost[0] <= r.bestCost[0];
    return {
      controls: toControls(useMean ? r.means : r.best, this.scaling),
      cost: Math.min(r.meanCost[0], r.bestCost[0]),
      info: { iterations: r.iterations, rollouts: r.rollouts },
      diagnostics: {
        costSpread: r.costSpread, sigma: Array.from(r.sigmas.subarray(0, this.model.controlDim)),
        ...(notices.length ? { notice: notices.join('; ') } : {}),
      },
    };
  }

  /** The first step's planning distribution of the last plan (normalised): what PO-MPC stores as (a_bar_0, sigma_0). */
  firstStep(): { mean: number[]; sigma: number[] } | undefined {
    const m = this.model.controlDim;
    return this.mean && this.sigma ? { mean: Array.from(this.mean.subarray(0, m)), sigma: Array.from(this.sigma.subarray(0, m)) } : undefined;
  }
}

export const MPC_TSMC_PARAMS = {
  ...TSMC_PARAMS,
  warmSigma: num(0.3, 'prior std around the shifted plan on warm ticks (normalised units)', { min: 0, max: 100, exclusive: true }),
  freshFraction: num(0.25, 'fraction of particles redrawn from the prior each warm tick (the rest are carried over, shifted)', { min: 0, max: 1 }),
  warmStartBeta: num(0.9, 'warm ticks take the carried particles as draws at this beta and temper from there to 1 (0 = from the prior, a full re-solve)', { min: 0, max: 0.99 }),
  polishSteps: num(150, 'projected Adam steps on the best particle before it is applied: a controller wants the optimum, a posterior sample sits ~d lambda/2 above it (0 = off)', { min: 0, max: 100000, integer: true }),
  polishRate: num(0.05, 'Adam learning rate of the polish (normalised control units)', { min: 0, max: 100, exclusive: true }),
} as const;

/**
 * TSMC in receding horizon. The first tick is a cold solve from the AR(1)
 * prior. Later ticks centre the prior on the shifted best plan and start
 * from the previous particles, shifted one step (plus a fraction of fresh
 * prior draws for exploration, and the shifted plan itself). The carried
 * particles were draws from last tick's target, so they are taken as draws
 * at warmStartBeta and tempered from there: a warm tick needs 2-4 levels
 * where a cold solve needs ~15. Under a deadline tempering stops early and
 * the best particle so far is used.
 */
export class TsmcPlanner implements RecedingPlanner {
  readonly name = 'tsmc';
  private particles: Float64Array | undefined;
  private best: Float64Array | undefined;
  /** the step size adapted by the last tick: the target barely changes between ticks */
  private stepSize: number | undefined;
  /** the slowest tempering level of the last tick that ran one [ms], to judge the next tick's first level */
  private levelMs = 0;
  private readonly scaling;
  private readonly dim: number;

  constructor(
    readonly model: Model,
    readonly backend: RolloutBackend,
    readonly params: ParamsOf<typeof MPC_TSMC_PARAMS>,
    private readonly rng: Rng,
    /** a learned prior: with `prior.tsmcCentre: policy` the AR(1) prior is centred on the policy's mean rollout */
    readonly guide?: PriorGuide,
  ) {
    this.scaling = controlScaling(model);
    this.dim = model.horizon * model.controlDim;
  }

  reset(): void {
    this.particles = undefined;
    this.best = undefined;
    this.stepSize = undefined;
    this.levelMs = 0;
  }

  /** A new particle count takes effect at the next tick: the carried particles are cut or topped up with prior draws. */
  updateParams(changes: Readonly<Record<string, unknown>>): void {
    applyPlannerChanges(this.params, this.guide, changes);
  }

  /** The policy's mean rollout from x0 (normalised), when the prior centres TSMC; undefined (with a notice) when it went non-finite. */
  private policyCentre(req: PlanRequest, notices: string[]): Float64Array | undefined {
    const g = this.guide;
    if (!g || g.settings.tsmcCentre !== 'policy') return undefined;
    const mean = g.prior.rollout(this.rng, g.step, req.x0, req.reference, 1, this.model.horizon);
    if (!mean) notices.push('the learned policy went non-finite; the prior is centred on the shifted plan');
    return mean ?? undefined;
  }

  async plan(req: PlanRequest): Promise<PlanResult> {
    const p = this.params;
    const m = this.model.controlDim;
    const shift = req.shiftSteps ?? 1;
    const rng = this.rng;
    const N = p.particles;
    const warm = this.best !== undefined && this.particles !== undefined;
    const notices: string[] = [];
    const policy = this.policyCentre(req, notices);
    const centred = policy !== undefined;
    const centre = policy ?? (warm ? shiftSequence(this.best!, m, shift) : undefined);
    const prior = new ControlPrior(this.model.horizon, m, p.prior, warm ? p.warmSigma : p.priorSigma, p.priorGamma, centre);
    let initial: Float64Array;
    if (warm) {
      initial = new Float64Array(N * this.dim);
      const fresh = prior.sample(rng, N);
      const carried = Math.min(Math.round(N * (1 - p.freshFraction)), this.particles!.length / this.dim);
      for (let i = 0; i < N; i++) {
        const row = i < carried ? shiftSequence(this.particles!.subarray(i * this.dim, (i + 1) * this.dim), m, shift) : fresh.subarray(i * this.dim, (i + 1) * this.dim);
        initial.set(row, i * this.dim);
      }
      // The shifted polished plan joins as one particle: the previous optimum
      // stays in reach, so a tick cannot lose it to an unlucky move (the policy's rollout too, when it centres the prior).
      initial.set(shiftSequence(this.best!, m, shift), 0);
      if (centred && N > 1) initial.set(prior.mean, this.dim);
    } else {
      initial = prior.sample(rng, N);
    }
    const target = new TrajectoryTarget(this.backend, prior, p.lambda, { x0: req.x0, uPrev: req.uPrev, reference: req.reference });
    const stepSize = warm && this.stepSize !== undefined && p.targetAcceptance > 0 ? this.stepSize : p.stepSize;
    const s = await runTsmc(rng, target, initial, { ...p, stepSize, integrationTime: p.leapfrogSteps * p.stepSize }, undefined, req.deadline, warm ? p.warmStartBeta : 0, warm ? this.levelMs : 0);
    const times = s.levels.map((l) => l.wallMs);
    // no level fitted: trust the estimate less, so a slow outlier cannot stop tempering for good
    this.levelMs = times.length ? Math.max(...times) : 0.5 * this.levelMs;
    let bestIndex = 0;
    for (let i = 1; i < N; i++) if (s.particles.energy[i] < s.particles.energy[bestIndex]) bestIndex = i;
    let best = s.particles.positions.slice(bestIndex * this.dim, (bestIndex + 1) * this.dim);
    let bestCost = s.particles.energy[bestIndex];
    if (p.polishSteps > 0 && (req.deadline === undefined || performance.now() < req.deadline)) {
      const polished = await projectedAdam(target, best, 1, boundedCoordinates(this.model), p.polishSteps, p.polishRate, undefined, req.deadline, true);
      best = polished.z;
      bestCost = polished.energy[0];
    }
    this.particles = s.particles.positions;
    this.best = best;
    this.stepSize = s.stepSize;
    return {
      controls: toControls(best, this.scaling),
      cost: bestCost,
      info: {
        levels: s.levels.length, beta: s.beta, stepSize: s.stepSize, logZ: s.logZ, acceptance: s.levels.at(-1)?.acceptance ?? 0,
        essRatio: (s.levels.at(-1)?.ess ?? N) / N,
      },
      diagnostics: {
        ladder: { beta: s.levels.map((l) => l.beta), essRatio: s.levels.map((l) => l.ess / N), acceptance: s.levels.map((l) => l.acceptance) },
        ...(notices.length ? { notice: notices.join('; ') } : {}),
      },
    };
  }
}
