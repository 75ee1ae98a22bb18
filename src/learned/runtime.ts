import type { Model } from '../models/model.js';
import type { Rng } from '../random.js';
import { controlScaling } from '../models/controls.js';
import { loadCheckpoint, PriorError, PriorMeta } from './checkpoint.js';
import { compileMlp, MlpKernel, mlpInputs, mlpOutputs } from './mlp.js';
import { catchControl, catchGate, type PolicyCatch } from '../policy/catch.js';
import { featureDim, policyAt, PriorNetworks, qAt, stateFeatures } from './networks.js';

/** One model step in planner units, x' = f(x, u) (physical controls). */
export type ModelStep = (x: readonly number[], u: readonly number[]) => number[];

/**
 * A trained prior as the planner uses it: the sampling policy's Gaussian
 * and the value bootstrap V(x) = Q(x, mean of pi_s(x)), computed in plain
 * f64 from the checkpoint's weights (no tensor library on the control path).
 */
export class LearnedPrior {
  private readonly policyNet: MlpKernel;
  private readonly qNet: MlpKernel;

  /** `networks` are compiled here: later changes to them are not seen (build a new LearnedPrior) */
  private constructor(readonly meta: PriorMeta, readonly networks: PriorNetworks) {
    this.policyNet = compileMlp(networks.policy);
    this.qNet = compileMlp(networks.q);
  }

  /**
   * Loads a checkpoint for this model, refusing (PriorError, one line) a prior made for another system, dimensions, horizon or step;
   * `use` 'policy' (the policy alone, as a feedback controller) does not check the horizon, which only the value depends on.
   */
  static load(dir: string, model: Model, use: 'planner' | 'policy' = 'planner'): LearnedPrior {
    const { meta, networks } = loadCheckpoint(dir);
    const problem = mismatch(meta, model, use);
    if (problem) throw new PriorError(`prior '${dir}' ${problem}`);
    return LearnedPrior.fromNetworks(meta, networks, dir);
  }

  /** A prior from networks in memory (the trainer's current ones), checked for consistent sizes. */
  static fromNetworks(meta: PriorMeta, networks: PriorNetworks, label = 'in memory'): LearnedPrior {
    const f = featureDim(meta.features);
    const m = meta.controlDim;
    for (const [name, inputs, outputs] of [['policy', f, 2 * m], ['prior', f, 2 * m], ['q', f + m, 1], ['qLambda', f + m, 1]] as const) {
      const net = networks[name];
      if (mlpInputs(net) !== inputs || mlpOutputs(net) !== outputs) {
        throw new PriorError(`prior '${label}': network '${name}' maps ${mlpInputs(net)} -> ${mlpOutputs(net)}, its metadata needs ${inputs} -> ${outputs}`);
      }
    }
    return new LearnedPrior(meta, networks);
  }

  /** pi_s(.|x) for `count` states: mean and std in normalised control units; the mean with the policy's catch where it has one. */
  policy(x: ArrayLike<number>, count: number, reference: ArrayLike<number>): { mean: Float64Array; std: Float64Array } {
    const out = policyAt(this.policyNet, stateFeatures(this.meta.features, x, count, reference), count, this.meta.bounded);
    if (this.meta.catch) this.caught(out.mean, x, count, reference, this.meta.catch);
    return out;
  }

  /** The catch blended into the network's means, in normalised units, as the closed loop it was trained in blends it in model units. */
  private caught(mean: Float64Array, x: ArrayLike<number>, count: number, reference: ArrayLike<number>, c: PolicyCatch): void {
    const { stateDim: n, controlDim: m, controlCenter: center, controlScale: scale } = this.meta;
    const e = new Float64Array(n);
    for (let r = 0; r < count; r++) {
      const g = catchGate(c, this.meta.features.angle, x, r * n, reference, e);
      for (let j = 0; j < m; j++) {
        const lqr = catchControl(c, e, j, this.meta).u;
        mean[r * m + j] = (1 - g) * mean[r * m + j] + (g * (lqr - center[j])) / scale[j];
      }
    }
  }

  /**
   * The policy's mean at one state (model units) as a physical command: what
   * a feedback policy commands (bench policy, the controller's fallback:
   * policy). Null when the network's output is not finite.
   */
  command(x: ArrayLike<number>, reference: ArrayLike<number>): number[] | null {
    const { mean } = this.policy(x, 1, reference);
    const { controlCenter: center, controlScale: scale, bounded } = this.meta;
    const u: number[] = [];
    for (let j = 0; j < mean.length; j++) {
      let z = mean[j];
      if (!Number.isFinite(z)) return null;
      if (bounded[j]) z = z > 1 ? 1 : z < -1 ? -1 : z;
      u.push(center[j] + scale[j] * z);
    }
    return u;
  }

  /**
   * V(x) = Q(x, mean pi_s(x)) for `count` states, in cost units, raised to
   * the prior's `valueFloor` where it has one: a planner minimising cost
   * seeks out any state where the network undershoots, and a value below the
   * least cost-to-go there is never right.
   */
  value(x: ArrayLike<number>, count: number, reference: ArrayLike<number>): Float64Array {
    const features = stateFeatures(this.meta.features, x, count, reference);
    const { mean } = policyAt(this.policyNet, features, count, this.meta.bounded);
    if (this.meta.catch) this.caught(mean, x, count, reference, this.meta.catch);
    return this.floored(qAt(this.qNet, features, mean, count));
  }

  /** pi_s(.|x) and V(x) for `count` states at once (one feature pass): what a planner stepping particles through time needs per step. */
  policyValue(x: ArrayLike<number>, count: number, reference: ArrayLike<number>): { mean: Float64Array; std: Float64Array; value: Float64Array } {
    const features = stateFeatures(this.meta.features, x, count, reference);
    const { mean, std } = policyAt(this.policyNet, features, count, this.meta.bounded);
    if (this.meta.catch) this.caught(mean, x, count, reference, this.meta.catch);
    return { mean, std, value: this.floored(qAt(this.qNet, features, mean, count)) };
  }

  /**
   * Q(x, z) in cost units (floored as the value is) for `count` states with
   * `perState` actions each (normalised, count x perState x m): row r * perState + b
   * is state r's action b.
   */
  q(x: ArrayLike<number>, count: number, z: ArrayLike<number>, perState: number, reference: ArrayLike<number>): Float64Array {
    const features = stateFeatures(this.meta.features, x, count, reference);
    const d = features.length / Math.max(1, count);
    const repeated = new Float64Array(count * perState * d);
    for (let r = 0; r < count; r++) for (let b = 0; b < perState; b++) repeated.set(features.subarray(r * d, (r + 1) * d), (r * perState + b) * d);
    return this.floored(qAt(this.qNet, repeated, z, count * perState));
  }

  private floored(v: Float64Array): Float64Array {
    const floor = this.meta.valueFloor;
    if (floor !== undefined) for (let i = 0; i < v.length; i++) if (v[i] < floor) v[i] = floor;
    return v;
  }

  /**
   * `count` control sequences (normalised, count x horizon x m) drawn by
   * rolling pi_s through the model from x0, batched per time step; the
   * first follows the policy's mean (no noise), the others draw from it
   * with its std times `stdScale`. Null when the policy's output goes
   * non-finite (the caller switches it off).
   */
  rollout(
    rng: Rng, step: ModelStep, x0: readonly number[], reference: ArrayLike<number>, count: number, horizon: number, stdScale = 1,
    /** the normal of sample i, step t, control j (the GPU planner's draws); default drawn from `rng` in order */
    normal?: (sample: number, t: number, j: number) => number,
  ): Float64Array | null {
    const m = this.meta.controlDim;
    const n = this.meta.stateDim;
    const { controlCenter: center, controlScale: scale, bounded } = this.meta;
    const out = new Float64Array(count * horizon * m);
    const states = new Float64Array(count * n);
    for (let i = 0; i < count; i++) states.set(x0, i * n);
    for (let t = 0; t < horizon; t++) {
      const { mean, std } = this.policy(states, count, reference);
      for (let i = 0; i < count; i++) {
        const u: number[] = [];
        for (let j = 0; j < m; j++) {
          let z = mean[i * m + j] + (i === 0 ? 0 : stdScale * std[i * m + j] * (normal ? normal(i, t, j) : rng.normal()));
          if (!Number.isFinite(z)) return null;
          if (bounded[j]) z = z > 1 ? 1 : z < -1 ? -1 : z;
          out[(i * horizon + t) * m + j] = z;
          u.push(center[j] + scale[j] * z);
        }
        const next = step(Array.from(states.subarray(i * n, (i + 1) * n)), u);
        for (let k = 0; k < n; k++) states[i * n + k] = next[k];
      }
    }
    return out;
  }
}

/** Why a prior's metadata does not fit this model (undefined: it fits). */
export function mismatch(meta: PriorMeta, model: Model, use: 'planner' | 'policy' = 'planner'): string | undefined {
  if (meta.system !== model.name) return `was trained for system '${meta.system}', not '${model.name}'`;
  if (meta.stateDim !== model.stateDim || meta.controlDim !== model.controlDim) {
    return `has ${meta.stateDim} states and ${meta.controlDim} controls, system '${model.name}' has ${model.stateDim} and ${model.controlDim}`;
  }
  // a policy maps a state to a control whatever the horizon; a value is the cost-to-go beyond a horizon
  if (use === 'planner' && meta.hasValue !== false && meta.horizon !== model.horizon) return `was trained for a horizon of ${meta.horizon} steps, the controller plans ${model.horizon} (set model.horizon: ${meta.horizon}, or train a prior for ${model.horizon})`;
  if (Math.abs(meta.dtS - model.dtS) > 1e-12 * Math.max(1, model.dtS)) return `was trained with a model step of ${meta.dtS} s, the controller's is ${model.dtS} s`;
  const s = controlScaling(model);
  if (meta.controlScale.some((v, j) => Math.abs(v - s.scale[j]) > 1e-12) || meta.controlCenter.some((v, j) => Math.abs(v - s.center[j]) > 1e-12)) {
    return `was trained for control limits [${meta.controlCenter.map((c, j) => `${c - meta.controlScale[j]}..${c + meta.controlScale[j]}`).join(', ')}], the model's differ`;
  }
  const f = meta.features;
  if (f.angle.length !== model.stateDim || f.raw?.length !== model.stateDim || f.scale?.length !== model.stateDim) return `normalises ${f.angle.length} states, the system has ${model.stateDim}`;
  return undefined;
}
