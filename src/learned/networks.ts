import { stateAngles } from '../models/model.js';
import type { Model } from '../models/model.js';
import { Rng } from '../random.js';
import { buildStepGraphs } from '../kernels/graphs.js';
import { compileStageCostFunction } from '../kernels/js-source.js';
import { boundedCoordinates } from '../models/controls.js';
import { cloneMlp, initMlp, Mlp, MlpKernel } from './mlp.js';

/** The networks of a prior, as PO-MPC names them. */
export interface PriorNetworks {
  /** sampling policy pi_s(u|x): proposes samples to MPPI */
  policy: Mlp;
  /** adaptive prior pi_p(u|x): distilled from the planner's own action distribution */
  prior: Mlp;
  /** Q(x, u) of the sampling policy, a cost-to-go in symlog units (see qAt): the value bootstrap */
  q: Mlp;
  /** the KL-regularised Q^lambda of eq. (16)/(17) */
  qLambda: Mlp;
  qTarget: Mlp;
  qLambdaTarget: Mlp;
}
export const NETWORK_NAMES = ['policy', 'prior', 'q', 'qLambda', 'qTarget', 'qLambdaTarget'] as const;

/**
 * How a state enters the networks, relative to the reference: angles as
 * (sin, cos) of their difference, and every state whose cost is not periodic
 * (all but the angles the costs wrap) also as its difference divided by a
 * scale: the value must tell a full turn from none where the cost does.
 */
export interface StateFeatures {
  /** (sin, cos) of the difference */
  angle: boolean[];
  /** the difference / scale */
  raw: boolean[];
  scale: number[];
}

/** The log-std range of the Gaussian policies, in normalised control units. */
export const LOG_STD_RANGE: readonly [number, number] = [Math.log(0.02), Math.log(2)];

/**
 * Features from the model: the angles it declares; an angle also enters as is unless
 * its stage cost is periodic in it (checked numerically: the cost at seeded
 * random states, and a full turn away). Scales start at 1; the trainer fits
 * them to its first data.
 */
export function defaultFeatures(model: Model): StateFeatures {
  const angle = stateAngles(model.def);
  const cost = compileStageCostFunction(buildStepGraphs(model, false));
  const rng = new Rng(1);
  const periodic = (j: number) => Array.from({ length: 3 }, () => {
    const x = Array.from({ length: model.stateDim }, () => 2 * rng.normal());
    const u = Array.from({ length: model.controlDim }, () => 0.5 * rng.normal());
    const turned = x.map((v, k) => (k === j ? v + 2 * Math.PI : v));
    const a = cost(x, u, u, model.goal);
    return Math.abs(cost(turned, u, u, model.goal) - a) <= 1e-9 * Math.max(1, Math.abs(a));
  }).every(Boolean);
  return { angle, raw: angle.map((a, j) => !a || !periodic(j)), scale: new Array<number>(model.stateDim).fill(1) };
}

export const featureDim = (f: StateFeatures): number => f.angle.filter(Boolean).length * 2 + f.raw.filter(Boolean).length;

/** Features of `count` states (row-major), relative to `reference`. */
export function stateFeatures(f: StateFeatures, x: ArrayLike<number>, count: number, reference: ArrayLike<number>): Float64Array {
  const n = f.angle.length;
  const d = featureDim(f);
  const out = new Float64Array(count * d);
  for (let r = 0; r < count; r++) {
    let k = r * d;
    for (let j = 0; j < n; j++) {
      const e = x[r * n + j] - reference[j];
      if (f.angle[j]) {
        out[k++] = Math.sin(e);
        out[k++] = Math.cos(e);
      }
      if (f.raw[j]) out[k++] = e / f.scale[j];
    }
  }
  return out;
}

export interface NetworkSizes {
  stateDim: number;
  controlDim: number;
  features: StateFeatures;
  hidden: readonly number[];
}

export function initNetworks(rng: Rng, s: NetworkSizes): PriorNetworks {
  const f = featureDim(s.features);
  const policy = initMlp(rng, [f, ...s.hidden, 2 * s.controlDim], 0.1);
  const prior = initMlp(rng, [f, ...s.hidden, 2 * s.controlDim], 0.1);
  const q = initMlp(rng, [f + s.controlDim, ...s.hidden, 1], 0.1);
  const qLambda = initMlp(rng, [f + s.controlDim, ...s.hidden, 1], 0.1);
  return { policy, prior, q, qLambda, qTarget: cloneMlp(q), qLambdaTarget: cloneMlp(qLambda) };
}

/**
 * A Gaussian head's mean and std from its raw outputs [mean | logStd]: the
 * mean squashed by tanh on bounded controls (normalised to [-1, 1]), the
 * log-std squashed into LOG_STD_RANGE. The trainer's tensors use the same map.
 */
export function gaussianHead(raw: Float64Array, count: number, bounded: readonly boolean[]): { mean: Float64Array; std: Float64Array } {
  const m = bounded.length;
  const mean = new Float64Array(count * m);
  const std = new Float64Array(count * m);
  const [lo, hi] = LOG_STD_RANGE;
  for (let r = 0; r < count; r++) {
    for (let j = 0; j < m; j++) {
      const a = raw[r * 2 * m + j];
      mean[r * m + j] = bounded[j] ? Math.tanh(a) : a;
      std[r * m + j] = Math.exp(lo + 0.5 * (hi - lo) * (Math.tanh(raw[r * 2 * m + m + j]) + 1));
    }
  }
  return { mean, std };
}

/** Which normalised controls are bounded to [-1, 1]. */
export function boundedControls(model: Model): boolean[] {
  const inHorizon = boundedCoordinates(model);
  return Array.from({ length: model.controlDim }, (_, j) => inHorizon(j));
}

/** The policy's Gaussian at `count` feature rows. */
export function policyAt(net: MlpKernel, features: Float64Array, count: number, bounded: readonly boolean[]): { mean: Float64Array; std: Float64Array } {
  return gaussianHead(net.forward(features, count), count, bounded);
}

/**
 * Values are learned in symlog units, symlog(v) = sign(v) log(1 + |v|)
 * (TD-MPC2's choice): a cost-to-go spans 0 at the goal to ~100 while
 * swinging, and near the goal, where a controller balances, an error of
 * 0.01 in the network's output is 0.01 of cost rather than 1% of the range.
 */
export const symexp = (y: number): number => Math.sign(y) * Math.expm1(Math.abs(y));
export const symlog = (v: number): number => Math.sign(v) * Math.log1p(Math.abs(v));

/** Q at `count` (feature, normalised control) pairs, in cost units. */
export function qAt(net: MlpKernel, features: Float64Array, z: ArrayLike<number>, count: number): Float64Array {
  const d = features.length / count;
  const m = z.length / count;
  const input = new Float64Array(count * (d + m));
  for (let r = 0; r < count; r++) {
    input.set(features.subarray(r * d, (r + 1) * d), r * (d + m));
    for (let j = 0; j < m; j++) input[r * (d + m) + d + j] = z[r * m + j];
  }
  return net.forward(input, count).map(symexp);
}
