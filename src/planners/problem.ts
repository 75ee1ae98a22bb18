import type { RolloutBackend } from '../kernels/backend.js';
import { ControlScaling, controlScaling, isIdentityScaling, toControls } from '../models/controls.js';
import type { Rng } from '../random.js';
import type { Evaluation, Target } from '../samplers/target.js';

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
    const e = new Float64Array(dim);
    for (let i = 0; i < count; i++) {
      const o = i * dim;
      let u = 0;
      for (let k = 0; k < dim; k++) {
        const v = z[o + k] - mean[k];
        const prev = k >= m ? z[o + k - m] - mean[k - m] : 0;
        e[k] = v - gamma * prev;
        u += e[k] * e[k];
      }
      value[i] = 0.5 * inv * u;
      for (let k = 0; k < dim; k++) grad[o + k] = inv * (e[k] - (k + m < dim ? gamma * e[k + m] : 0));
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
    const { cost, grad } = await this.backend.costGrad({ x0: this.context.x0, uPrev: this.context.uPrev, reference: this.context.reference, controls: this.controls(z, count) });
    const { dim } = this;
    const { scale } = this.scaling;
    const m = scale.length;
    const energy = new Float64Array(count);
    const energyGrad = new Float64Array(count * dim);
    for (let i = 0; i < count; i++) {
      const e = cost[i];
      if (!Number.isFinite(e)) {
        // A NaN or infinite cost is an infinitely bad trajectory, never a number to average; its gradient stays zero.
        energy[i] = Infinity;
        this.nonFinite++;
        continue;
      }
      energy[i] = e;
      const o = i * dim;
      energyGrad.set(grad.subarray(o, o + dim), o);
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
