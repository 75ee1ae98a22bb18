import type { RolloutBackend } from '../kernels/backend.js';
import { ControlScaling, controlScaling, isIdentityScaling, toControls } from '../models/controls.js';
import type { Rng } from '../random.js';
import type { Evaluation, PendingEvaluation, Target } from '../samplers/target.js';

export type PriorKind = 'ar1' | 'gaussian';

/**
 * Prior over normalised control sequences (T steps of m controls).
 * ar1: z = mean + v, v_t = gamma v_{t-1} + eps_t, eps_t ~ N(0, sigma^2 I), v_{-1} = 0
 * (the TSMC paper's smoothness prior); gaussian: v ~ N(0, sigma^2 I).
 */
export class ControlPrior {
  readonly mean: Float64Array;

  constructor(
    readonly horizon: number,
    readonly controlDim: number,
    readonly kind: PriorKind,
    readonly sigma: number,
    readonly gamma: number,
    mean?: Float64Array,
  ) {
    const d = horizon * controlDim;
    if (mean && mean.length !== d) throw new Error(`prior mean has ${mean.length} values, expected ${d}`);
    this.mean = mean ?? new Float64Array(d);
  }

  get dim(): number {
    return this.horizon * this.controlDim;
  }

  sample(rng: Rng, count: number): Float64Array {
    const { dim, controlDim: m, mean } = this;
    const gamma = this.kind === 'ar1' ? this.gamma : 0;
    const out = new Float64Array(count * dim);
    for (let i = 0; i < count; i++) {
      for (let k = 0; k < dim; k++) {
        const prev = k >= m ? out[i * dim + k - m] - mean[k - m] : 0;
        out[i * dim + k] = mean[k] + gamma * prev + this.sigma * rng.normal();
      }
    }
    return out;
  }

  /** U0 = -log p0 up to a constant, and its gradient, for each of `count` sequences. */
  evaluate(z: Float64Array, count: number, value: Float64Array, grad: Float64Array): void {
    const { dim, controlDim: m, mean } = this;
    const gamma = this.kind === 'ar1' ? this.gamma : 0;
    const inv = 1 / (this.sigma * this.sigma);
    // e = innovations of the AR(1) recursion; U0 = |e|^2 / (2 sigma^2), dU0/dz_k = (e_k - gamma e_{k+m}) / sigma^2
    const e = new Float64Array(dim);
    for (let i = 0; i < count; i++) {
      const o = i * dim;
      let u = 0;
      for (let k = 0; k < m; k++) {
        const v = z[o + k] - mean[k];
        e[k] = v;
        u += v * v;
      }
      for (let k = m; k < dim; k++) {
        const v = z[o + k] - mean[k] - gamma * (z[o + k - m] - mean[k - m]);
        e[k] = v;
        u += v * v;
      }
      value[i] = 0.5 * inv * u;
      const last = dim - m;
      for (let k = 0; k < last; k++) grad[o + k] = inv * (e[k] - gamma * e[k + m]);
      for (let k = last; k < dim; k++) grad[o + k] = inv * e[k];
    }
  }
}

export interface RolloutContext {
  x0?: ArrayLike<number>;
  uPrev?: ArrayLike<number>;
  reference?: ArrayLike<number>;
}

/** The Boltzmann-tilted trajectory-optimisation target: E(z) = J(u(z)), prior p0 over z. */
export class TrajectoryTarget implements Target {
  readonly dim: number;
  readonly scaling: ControlScaling;
  private readonly identity: boolean;
  /** energy evaluations whose result was NaN or infinite */
  nonFinite = 0;

  constructor(
    readonly backend: RolloutBackend,
    readonly prior: ControlPrior,
    readonly lambda: number,
    readonly context: RolloutContext = {},
  ) {
    const { model } = backend;
    this.dim = model.horizon * model.controlDim;
    if (prior.dim !== this.dim) throw new Error(`prior dimension ${prior.dim} does not match the system's ${this.dim}`);
    this.scaling = controlScaling(model);
    this.identity = isIdentityScaling(this.scaling);
  }

  private controls(z: Float64Array, count: number): Float64Array {
    const zs = z.subarray(0, count * this.dim);
    return this.identity ? zs : toControls(zs, this.scaling);
  }

  async evaluate(z: Float64Array, count: number): Promise<Evaluation> {
    const { cost, grad } = await this.backend.costGrad(this.request(z, count));
    return this.finish(z, count, cost, grad);
  }

  /** On a CPU backend the rollouts start on its worker threads at once; elsewhere this is `evaluate` when the result is asked for. */
  submit(z: Float64Array, count: number): PendingEvaluation {
    const { backend } = this;
    if (!backend.submitCostGrad) return { result: () => this.evaluate(z, count) };
    const pending = backend.submitCostGrad(this.request(z, count));
    return {
      result: async () => {
        const { cost, grad } = pending.result();
        return this.finish(z, count, cost, grad);
      },
    };
  }

  private request(z: Float64Array, count: number) {
    return { x0: this.context.x0, uPrev: this.context.uPrev, reference: this.context.reference, controls: this.controls(z, count) };
  }

  private finish(z: Float64Array, count: number, cost: Float64Array, grad: Float64Array): Evaluation {
    const { dim } = this;
    const { scale } = this.scaling;
    const m = scale.length;
    // the backend's arrays are this call's own: scaled and cleaned in place
    const energy = cost;
    const energyGrad = grad;
    for (let i = 0; i < count; i++) {
      const o = i * dim;
      if (!Number.isFinite(energy[i])) {
        // A NaN or infinite cost is an infinitely bad trajectory, never a number to average; its gradient is zero.
        energy[i] = Infinity;
        energyGrad.fill(0, o, o + dim);
        this.nonFinite++;
        continue;
      }
      if (!this.identity) for (let k = o; k < o + dim; k += m) for (let j = 0; j < m; j++) energyGrad[k + j] *= scale[j];
    }
    const prior = new Float64Array(count);
    const priorGrad = new Float64Array(count * this.dim);
    this.prior.evaluate(z, count, prior, priorGrad);
    return { energy, energyGrad, prior, priorGrad };
  }

  /** Costs only (no gradient), for sampling-only planners. */
  async energies(z: Float64Array, count: number): Promise<Float64Array> {
    const cost = await this.backend.cost({ x0: this.context.x0, uPrev: this.context.uPrev, reference: this.context.reference, controls: this.controls(z, count) });
    return cost.map((c) => {
      if (Number.isFinite(c)) return c;
      this.nonFinite++;
      return Infinity;
    });
  }
}
