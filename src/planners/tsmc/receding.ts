import type { RolloutBackend } from '../../kernels/backend.js';
import type { Model } from '../../models/model.js';
import { num, ParamsOf } from '../../params.js';
import type { Rng } from '../../random.js';
import { projectedAdam } from '../gradient.js';
import { ControlPrior, TrajectoryTarget } from '../problem.js';
import { controlScaling, toControls } from '../../models/controls.js';
import { applyPlannerChanges, PlanRequest, PlanResult, PriorGuide, RecedingPlanner, shiftSequence } from '../receding.js';
import { boundedCoordinates } from '../../models/controls.js';
import { runTsmc, TSMC_PARAMS } from './tsmc.js';

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
        series: { ladder_beta: s.levels.map((l) => l.beta), ladder_ess_ratio: s.levels.map((l) => l.ess / N), ladder_acceptance: s.levels.map((l) => l.acceptance) },
        ...(notices.length ? { notice: notices.join('; ') } : {}),
      },
    };
  }
}
