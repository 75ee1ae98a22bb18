import type { Model } from '../models/model.js';

/** A batch of M control sequences to roll out from one initial state. */
export interface RolloutRequest {
  /** M * horizon * controlDim values, sample-major then time then control. */
  controls: Float64Array;
  /** Initial state (default: the model's x0). */
  x0?: ArrayLike<number>;
  /** u_{-1}, the last applied control, seen by costs with smoothness terms (default zeros). */
  uPrev?: ArrayLike<number>;
  /** Goal/reference state for the costs (default: the model's goal). */
  reference?: ArrayLike<number>;
  /** Per-step exogenous noise, M * horizon * noiseDim (e.g. Gumbel samples); zero when absent. */
  noise?: Float64Array;
}

export interface CostGrad { cost: Float64Array; grad: Float64Array }
export interface Trajectories { cost: Float64Array; states: Float64Array }

/** One interface over the CPU and WebGPU rollout kernels of a model. */
/** Every result array is fresh and the caller's own to keep or change. */
export interface RolloutBackend {
  readonly kind: 'cpu' | 'webgpu';
  readonly model: Model;
  /** Total cost J for each sample. */
  cost(req: RolloutRequest): Promise<Float64Array>;
  /** J and dJ/dU (same layout as the controls) for each sample. */
  costGrad(req: RolloutRequest): Promise<CostGrad>;
  /** J and the states x_0..x_T, M * (horizon + 1) * stateDim. */
  trajectories(req: RolloutRequest): Promise<Trajectories>;
  /**
   * costGrad started in the background where the backend has threads for it
   * (CPU workers): returns at once; `result` joins in and waits. The
   * request's arrays must stay unchanged until then.
   */
  submitCostGrad?(req: RolloutRequest): { result(): CostGrad };
  dispose(): void;
}

export interface NormalizedRequest {
  samples: number;
  controls: Float64Array;
  x0: Float64Array;
  uPrev: Float64Array;
  reference: Float64Array;
  noise: Float64Array | undefined;
}

function vector(label: string, v: ArrayLike<number> | undefined, fallback: readonly number[], length: number): Float64Array {
  const out = Float64Array.from(v ?? fallback);
  if (out.length !== length) throw new Error(`${label} has ${out.length} entries, expected ${length}`);
  return out;
}

/** Checks dimensions and fills defaults; the kernels themselves trust their inputs. */
export function normalizeRequest(model: Model, req: RolloutRequest): NormalizedRequest {
  const per = model.horizon * model.controlDim;
  const { controls } = req;
  if (!(controls instanceof Float64Array)) throw new Error('controls must be a Float64Array');
  if (controls.length === 0 || controls.length % per !== 0) {
    throw new Error(`controls has ${controls.length} values, expected a positive multiple of horizon*controlDim = ${model.horizon}*${model.controlDim}`);
  }
  const samples = controls.length / per;
  const n = model.stateDim;
  let noise: Float64Array | undefined;
  if (req.noise !== undefined) {
    const want = samples * model.horizon * model.noiseDim;
    if (model.noiseDim === 0) throw new Error(`system '${model.name}' takes no noise inputs`);
    if (req.noise.length !== want) throw new Error(`noise has ${req.noise.length} values, expected ${want}`);
    noise = req.noise;
  }
  return {
    samples,
    controls,
    x0: vector('x0', req.x0, model.x0, n),
    uPrev: vector('uPrev', req.uPrev, new Array<number>(model.controlDim).fill(0), model.controlDim),
    reference: vector('reference', req.reference, model.goal, n),
    noise,
  };
}
