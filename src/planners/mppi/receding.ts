import type { RolloutBackend } from '../../kernels/backend.js';
import type { Model } from '../../models/model.js';
import type { ParamsOf } from '../../params.js';
import type { Rng } from '../../random.js';
import { controlScaling, toControls } from '../../models/controls.js';
import { applyPlannerChanges, PlanRequest, PlanResult, PriorGuide, RecedingPlanner, shiftSequence } from '../receding.js';
import { boundedCoordinates } from '../../models/controls.js';
import { MPPI_PARAMS, mppi } from './mppi.js';
import { mppiNoise, policyNoise } from '../../kernels/wgsl-mppi.js';

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
  /** plans made: with a seed, the count that keys each plan's draws, as the GPU planner's tick does */
  private tick = 0;

  /**
   * With `seed`, the noise and the policy's draws are the GPU-resident
   * planner's Philox streams for that seed (the controller's planner: CPU and
   * GPU plans of a seed then differ by f32 rounding only); without, they come
   * from `rng` in order.
   */
  constructor(
    readonly model: Model,
    readonly backend: RolloutBackend,
    readonly params: ParamsOf<typeof MPPI_PARAMS>,
    private readonly rng: Rng,
    readonly guide?: PriorGuide,
    private readonly seed?: number,
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
      const drawn = g.prior.rollout(this.rng, g.step, req.x0, req.reference, count, H, g.settings.policyStdScale, this.seed !== undefined ? policyNoise(this.seed, this.tick) : undefined);
      if (drawn) proposals = { hook: () => drawn, count };
      else notices.push('the learned policy went non-finite; planned without its samples');
    }
    const noise = this.seed !== undefined ? mppiNoise(this.seed, this.tick, this.model.controlDim, p.noiseCorrelation) : undefined;
    this.tick++;
    const r = await mppi(this.rng, cost, init, this.dim, this.model.controlDim, boundedCoordinates(this.model), { ...p, adaptSigma: true }, proposals, req.deadline, sigma0, noise);
    this.mean = r.means;
    this.sigma = r.sigmas;
    const useMean = r.meanCost[0] <= r.bestCost[0];
    return {
      controls: toControls(useMean ? r.means : r.best, this.scaling),
      cost: Math.min(r.meanCost[0], r.bestCost[0]),
      info: { iterations: r.iterations, rollouts: r.rollouts },
      diagnostics: {
        series: { cost_spread: r.costSpread, sigma: Array.from(r.sigmas.subarray(0, this.model.controlDim)) },
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
