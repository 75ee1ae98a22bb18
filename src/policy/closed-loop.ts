import { buildStepGraphs } from '../kernels/graphs.js';
import { compileVectorKernel, VectorKernel } from '../kernels/js-source.js';
import type { Model } from '../models/model.js';
import { boundedControls, defaultFeatures, featureDim, StateFeatures } from '../learned/networks.js';
import { controlScaling } from '../models/controls.js';
import type { Mlp } from '../learned/mlp.js';
import { Rng } from '../random.js';
import { catchControl, catchGate, catchGateSlope, PolicyCatch } from './catch.js';

/**
 * A deterministic feedback policy u = center + scale * squash(MLP(features(x))),
 * blended with an LQR balance near the goal where it has a catch (catch.ts):
 * the priors' features (angles as sin/cos of their error from the reference,
 * the other states as error / scale), ELU between layers as the priors' MLP
 * has, and tanh on bounded controls, so a trained policy is the mean of a
 * prior checkpoint's sampling policy exactly (see toPriorPolicy).
 */
export interface PolicyShape {
  features: StateFeatures;
  hidden: readonly number[];
  controlDim: number;
  /** which normalised controls are squashed into [-1, 1] */
  bounded: readonly boolean[];
  controlCenter: ArrayLike<number>;
  controlScale: ArrayLike<number>;
  /** the LQR balance that takes over near the goal (absent: the network alone) */
  catch?: PolicyCatch;
}

/**
 * Noise in the training rollouts, as the simulator adds it: white process
 * noise (std per sqrt(second) on `states`, model units) and measurement
 * noise (std on every state the policy and its catch see; the dynamics and
 * costs keep the true state). One fixed draw per start, step and state
 * (common random numbers), so the energy stays a function of theta and its
 * gradient exact. Start b's draws do not depend on the batch.
 */
export interface RolloutNoise {
  std: number;
  states: readonly number[];
  /** the measurement noise's std (0: the policy sees the true state) */
  measurementStd?: number;
  seed: number;
}

export const layerSizes = (s: PolicyShape): number[] => [featureDim(s.features), ...s.hidden, s.controlDim];

/** Parameters theta, layer by layer: the weights [inputs][outputs] row-major, then the biases (the priors' layout). */
export function parameterCount(sizes: readonly number[]): number {
  let p = 0;
  for (let l = 0; l + 1 < sizes.length; l++) p += (sizes[l] + 1) * sizes[l + 1];
  return p;
}

/**
 * The prior p0(theta): independent Gaussians, a weight's std Glorot's
 * sqrt(2 / (inputs + outputs)) and a bias's `biasStd`, all times `scale`.
 * Initial particles are draws from it (the tempering starts at beta = 0).
 */
export function priorStd(sizes: readonly number[], scale = 1, biasStd = 0.1): Float64Array {
  const std = new Float64Array(parameterCount(sizes));
  let o = 0;
  for (let l = 0; l + 1 < sizes.length; l++) {
    const [inputs, outputs] = [sizes[l], sizes[l + 1]];
    std.fill(scale * Math.sqrt(2 / (inputs + outputs)), o, o + inputs * outputs);
    o += inputs * outputs;
    std.fill(scale * biasStd, o, o + outputs);
    o += outputs;
  }
  return std;
}

export function drawFromPrior(rng: Rng, std: Float64Array, count: number, mean?: Float64Array): Float64Array {
  const out = rng.fillNormal(new Float64Array(count * std.length));
  for (let i = 0; i < out.length; i++) out[i] = out[i] * std[i % std.length] + (mean?.[i % std.length] ?? 0);
  return out;
}

/**
 * The policy as a prior checkpoint's Gaussian sampling network: the same
 * layers in f32, the output layer widened by a log-std head with zero weights
 * and a constant bias, so gaussianHead gives the policy as the mean and
 * `stdNormalised` as the std everywhere.
 */
export function toPriorPolicy(theta: Float64Array, sizes: readonly number[], logStdBias: number): Mlp {
  const layers: Mlp['layers'] = [];
  let o = 0;
  for (let l = 0; l + 1 < sizes.length; l++) {
    const [inputs, outputs] = [sizes[l], sizes[l + 1]];
    const last = l + 2 === sizes.length;
    const width = last ? 2 * outputs : outputs;
    const weight = new Float32Array(inputs * width);
    for (let i = 0; i < inputs; i++) for (let k = 0; k < outputs; k++) weight[i * width + k] = theta[o + i * outputs + k];
    o += inputs * outputs;
    const bias = new Float32Array(width);
    for (let k = 0; k < outputs; k++) bias[k] = theta[o + k];
    if (last) bias.fill(logStdBias, outputs);
    o += outputs;
    layers.push({ inputs, outputs: width, weight, bias });
  }
  return { layers };
}

/** The parameters back from a checkpoint's sampling network (its mean head). */
export function fromPriorPolicy(net: Mlp): { theta: Float64Array; sizes: number[] } {
  const sizes = [net.layers[0].inputs, ...net.layers.map((l, i) => (i + 1 === net.layers.length ? l.outputs / 2 : l.outputs))];
  const theta = new Float64Array(parameterCount(sizes));
  let o = 0;
  net.layers.forEach((layer, l) => {
    const outputs = sizes[l + 1];
    for (let i = 0; i < layer.inputs; i++) for (let k = 0; k < outputs; k++) theta[o + i * outputs + k] = layer.weight[i * layer.outputs + k];
    o += layer.inputs * outputs;
    for (let k = 0; k < outputs; k++) theta[o + k] = layer.bias[k];
    o += outputs;
  });
  return { theta, sizes };
}

/**
 * Closed-loop rollouts x_{t+1} = f(x_t, pi_theta(x_t)) from B starts for
 * T steps, and the exact gradient of their mean cost with respect to theta
 * (TSMC paper Theorem 2 with the policy inside the loop: the adjoint
 * recursion gains the policy's state Jacobian, and each step's control
 * gradient is pulled back through the network).
 *
 * The model's step, costs and their vector-Jacobian products come from the
 * same step graphs as the planners' kernels (one small allocation-free
 * function each); the network runs as dense matrix loops batched over the
 * B starts, so a 2 x 32 MLP costs about (d + 32 + m) x 32 multiply-adds per
 * start and step forward and twice that back, not thousands of unrolled
 * scalar expressions. Everything is f64.
 */
export class ClosedLoop {
  readonly sizes: number[];
  readonly parameters: number;
  private readonly n: number;
  private readonly m: number;
  private readonly d: number;
  private readonly forward: VectorKernel;
  private readonly backward: VectorKernel;
  private readonly terminal: VectorKernel;
  private capacity = 0;
  // per step t and start b: state, control, features, every layer's output
  private xs = new Float64Array(0);
  private us = new Float64Array(0);
  private acts: Float64Array[] = [];
  // the catch per step t, start b and control: its gate, the network's control, the LQR's, whether the LQR saturated
  private gates = new Float64Array(0);
  private netUs = new Float64Array(0);
  private lqrUs = new Float64Array(0);
  private saturated = new Uint8Array(0);
  // noise per start b, step t and noisy state k at (b * T + t) * states + k
  private noiseDraws = new Float64Array(0);
  // measurement noise per start b, step t and state j at (b * T + t) * n + j
  private measurementDraws = new Float64Array(0);
  // what the policy saw at step t, start b: xs plus the measurement noise ((T + 1) x batch x n, as xs); xs itself without it
  private seen = new Float64Array(0);
  private readonly uRest: Float64Array;
  private costTrack: Float64Array | undefined;

  /**
   * `reference`: what the policy's features and catch see, and the costs'
   * reference; `track` ((T + 1) x n, model units, train.track): the costs'
   * reference at each step instead, so the rollouts are scored against a
   * recorded trajectory while the policy still sees its error from the goal.
   */
  constructor(readonly model: Model, readonly shape: PolicyShape, readonly horizon: number, readonly reference: readonly number[], readonly noise?: RolloutNoise, track?: Float64Array) {
    this.n = model.stateDim;
    this.setTrack(track);
    this.m = model.controlDim;
    this.sizes = layerSizes(shape);
    this.d = this.sizes[0];
    this.parameters = parameterCount(this.sizes);
    if (shape.controlDim !== this.m || shape.features.angle.length !== this.n) {
      throw new Error(`policy shape (${shape.features.angle.length} states, ${shape.controlDim} controls) does not fit ${model.name} (${this.n}, ${this.m})`);
    }
    const g = buildStepGraphs(model, false);
    const args = [['X', 'x', this.n], ['U', 'u', this.m], ['P', 'p', this.m], ['R', 'r', this.n]] as const;
    this.forward = compileVectorKernel([...g.next, g.stage], args);
    this.backward = compileVectorKernel([...g.gradX, ...g.gradU, ...g.gradPrev], [...args, ['A', 'a', this.n]]);
    this.terminal = compileVectorKernel([g.terminal, ...g.gradTerminal], [['X', 'x', this.n], ['R', 'r', this.n]]);
    // u_{-1}, which costs on the control's rate see at t = 0: the control's centre (0 where symmetric)
    this.uRest = Float64Array.from(shape.controlCenter);
  }

  /** the costs' reference per step ((T + 1) x n), or undefined: the reference */
  get track(): Float64Array | undefined {
    return this.costTrack;
  }

  /** Scores the rollouts against `track` from the next evaluation on (train.teacher refreshes it between rounds). */
  setTrack(track: Float64Array | undefined): void {
    if (track && track.length !== (this.horizon + 1) * this.n) throw new Error(`track holds ${track.length} values, expected ${this.horizon + 1} steps of ${this.n} states`);
    this.costTrack = track && Float64Array.from(track);
  }

  /** One rollout of theta from `start` (n values): its cost, states ((T + 1) x n) and controls (T x m), copies of the caller's own. */
  rollout(theta: Float64Array, start: ArrayLike<number>): { cost: number; states: Float64Array; controls: Float64Array } {
    const cost = this.evaluate(theta, start, 1);
    return { cost, states: this.xs.slice(0, (this.horizon + 1) * this.n), controls: this.us.slice(0, this.horizon * this.m) };
  }

  private reserve(batch: number): void {
    if (batch <= this.capacity) return;
    const T = this.horizon;
    this.capacity = batch;
    this.xs = new Float64Array((T + 1) * batch * this.n);
    this.us = new Float64Array(T * batch * this.m);
    this.acts = this.sizes.map((w) => new Float64Array(T * batch * w));
    if (this.noise) {
      const scale = this.noise.std * Math.sqrt(this.model.dtS);
      this.noiseDraws = new Rng(this.noise.seed).fillNormal(new Float64Array(batch * T * this.noise.states.length)).map((v) => v * scale);
    }
    const measured = this.noise?.measurementStd ?? 0;
    if (measured > 0) {
      // a stream of its own, so adding it leaves the process draws as they were
      this.measurementDraws = new Rng(this.noise!.seed + 1).fillNormal(new Float64Array(batch * T * this.n)).map((v) => v * measured);
      this.seen = new Float64Array(this.xs.length);
    } else this.seen = this.xs;
    if (this.shape.catch) {
      this.gates = new Float64Array(T * batch);
      this.netUs = new Float64Array(T * batch * this.m);
      this.lqrUs = new Float64Array(T * batch * this.m);
      this.saturated = new Uint8Array(T * batch * this.m);
    }
  }

  /**
   * Rolls theta out from `batch` starts (row-major, batch x n). Returns the
   * mean cost; `grad` (length parameters) receives its gradient, `perStart`
   * (length batch) each start's cost, `finalStates` (batch x n) x_T.
   */
  evaluate(theta: Float64Array, starts: ArrayLike<number>, batch: number, out: { grad?: Float64Array; perStart?: Float64Array; finalStates?: Float64Array } = {}): number {
    const { n, m, d, sizes, horizon: T } = this;
    this.reserve(batch);
    const { xs, us, acts, seen } = this;
    const ref = this.reference;
    const track = this.costTrack;
    const costRef = track ?? ref;
    const f = this.shape.features;
    const center = this.shape.controlCenter;
    const scale = this.shape.controlScale;
    const bounded = this.shape.bounded;
    const c = this.shape.catch;
    const e = new Float64Array(n);
    // additive, so the adjoint recursion does not change
    const noisy = this.noise?.states;
    for (let i = 0; i < batch * n; i++) xs[i] = starts[i];
    const costs = out.perStart ?? new Float64Array(batch);
    costs.fill(0, 0, batch);
    const step = new Float64Array(n + 1);
    for (let t = 0; t < T; t++) {
      const x = t * batch * n;
      // measured; additive, so the state's adjoint takes the policy's part unchanged
      if (seen !== xs) for (let b = 0; b < batch; b++) for (let j = 0; j < n; j++) seen[x + b * n + j] = xs[x + b * n + j] + this.measurementDraws[(b * T + t) * n + j];
      // features
      const feat = acts[0];
      const fo = t * batch * d;
      for (let b = 0; b < batch; b++) {
        let k = fo + b * d;
        for (let j = 0; j < n; j++) {
          const e = seen[x + b * n + j] - ref[j];
          if (f.angle[j]) {
            feat[k++] = Math.sin(e);
            feat[k++] = Math.cos(e);
          }
          if (f.raw[j]) feat[k++] = e / f.scale[j];
        }
      }
      // layers
      let o = 0;
      for (let l = 0; l + 1 < sizes.length; l++) {
        const [inputs, outputs] = [sizes[l], sizes[l + 1]];
        const hidden = l + 2 < sizes.length;
        const input = acts[l];
        const output = acts[l + 1];
        const io = t * batch * inputs;
        const oo = t * batch * outputs;
        const bias = o + inputs * outputs;
        for (let b = 0; b < batch; b++) {
          const row = io + b * inputs;
          const dst = oo + b * outputs;
          for (let k = 0; k < outputs; k++) output[dst + k] = theta[bias + k];
          for (let i = 0; i < inputs; i++) {
            const v = input[row + i];
            const w = o + i * outputs;
            for (let k = 0; k < outputs; k++) output[dst + k] += v * theta[w + k];
          }
          if (hidden) for (let k = 0; k < outputs; k++) if (output[dst + k] < 0) output[dst + k] = Math.expm1(output[dst + k]);
        }
        o = bias + outputs;
      }
      // head and model step
      const z = acts[sizes.length - 1];
      const zo = t * batch * m;
      for (let b = 0; b < batch; b++) {
        for (let j = 0; j < m; j++) {
          const k = zo + b * m + j;
          if (bounded[j]) z[k] = Math.tanh(z[k]);
          us[k] = center[j] + scale[j] * z[k];
        }
        if (c) {
          const g = catchGate(c, f.angle, seen, x + b * n, ref, e);
          this.gates[t * batch + b] = g;
          for (let j = 0; j < m; j++) {
            const k = zo + b * m + j;
            const lqr = catchControl(c, e, j, this.shape);
            this.netUs[k] = us[k];
            this.lqrUs[k] = lqr.u;
            this.saturated[k] = lqr.saturated ? 1 : 0;
            us[k] = (1 - g) * us[k] + g * lqr.u;
          }
        }
        const prev = t === 0 ? this.uRest : us;
        const prevOffset = t === 0 ? 0 : (t - 1) * batch * m + b * m;
        this.forward(step, 0, xs, x + b * n, us, zo + b * m, prev, prevOffset, costRef, track ? t * n : 0);
        for (let j = 0; j < n; j++) xs[x + batch * n + b * n + j] = step[j];
        if (noisy) for (let k = 0; k < noisy.length; k++) xs[x + batch * n + b * n + noisy[k]] += this.noiseDraws[(b * T + t) * noisy.length + k];
        costs[b] += step[n];
      }
    }
    const term = new Float64Array(1 + n);
    const last = T * batch * n;
    const adj = new Float64Array(batch * n);
    for (let b = 0; b < batch; b++) {
      this.terminal(term, 0, xs, last + b * n, costRef, track ? T * n : 0);
      costs[b] += term[0];
      for (let j = 0; j < n; j++) adj[b * n + j] = term[1 + j];
    }
    if (out.finalStates) out.finalStates.set(xs.subarray(last, last + batch * n));
    let total = 0;
    for (let b = 0; b < batch; b++) total += costs[b];
    const mean = total / batch;
    if (out.grad) this.backpropagate(theta, batch, adj, out.grad);
    return mean;
  }

  /** The backward sweep from the terminal adjoints: dJ_mean/dtheta into grad. */
  private backpropagate(theta: Float64Array, batch: number, adj: Float64Array, grad: Float64Array): void {
    const { n, m, d, sizes, horizon: T, xs, us, acts } = this;
    const ref = this.reference;
    const track = this.costTrack;
    const costRef = track ?? ref;
    const f = this.shape.features;
    const scale = this.shape.controlScale;
    const bounded = this.shape.bounded;
    const c = this.shape.catch;
    const e = new Float64Array(n);
    grad.fill(0, 0, this.parameters);
    const carryPrev = new Float64Array(batch * m);
    const vjp = new Float64Array(n + 2 * m);
    const widest = Math.max(...sizes);
    let delta = new Float64Array(batch * widest);
    let below = new Float64Array(batch * widest);
    const offsets: number[] = [];
    for (let l = 0, o = 0; l + 1 < sizes.length; l++) {
      offsets.push(o);
      o += (sizes[l] + 1) * sizes[l + 1];
    }
    for (let t = T - 1; t >= 0; t--) {
      const x = t * batch * n;
      const zo = t * batch * m;
      const z = acts[sizes.length - 1];
      // the model's VJP at (x_t, u_t): new adjoint without the policy's part, and the control gradient
      for (let b = 0; b < batch; b++) {
        const prev = t === 0 ? this.uRest : us;
        const prevOffset = t === 0 ? 0 : (t - 1) * batch * m + b * m;
        this.backward(vjp, 0, xs, x + b * n, us, zo + b * m, prev, prevOffset, costRef, track ? t * n : 0, adj, b * n);
        for (let j = 0; j < n; j++) adj[b * n + j] = vjp[j];
        const g = c ? this.gates[t * batch + b] : 0;
        if (c) catchGate(c, f.angle, this.seen, x + b * n, ref, e);
        for (let j = 0; j < m; j++) {
          let gu = vjp[n + j] + carryPrev[b * m + j];
          carryPrev[b * m + j] = vjp[n + m + j];
          if (c) {
            // u = (1 - g) u_net + g u_lqr: the gate's and the LQR's own state dependence go straight into the adjoint, the network gets (1 - g)
            const k = zo + b * m + j;
            const spread = this.lqrUs[k] - this.netUs[k];
            const row = c.gain[j];
            for (let i = 0; i < n; i++) adj[b * n + i] += gu * (spread * catchGateSlope(c, g, e, i) - (this.saturated[k] ? 0 : g * row[i]));
            gu *= 1 - g;
          }
          const dz = gu * scale[j];
          const zk = z[zo + b * m + j];
          delta[b * m + j] = bounded[j] ? dz * (1 - zk * zk) : dz;
        }
      }
      // through the layers, top down
      for (let l = sizes.length - 2; l >= 0; l--) {
        const [inputs, outputs] = [sizes[l], sizes[l + 1]];
        const o = offsets[l];
        const bias = o + inputs * outputs;
        const input = acts[l];
        const io = t * batch * inputs;
        for (let b = 0; b < batch; b++) {
          const row = io + b * inputs;
          const dr = b * outputs;
          for (let k = 0; k < outputs; k++) grad[bias + k] += delta[dr + k];
          const br = b * inputs;
          for (let i = 0; i < inputs; i++) {
            const v = input[row + i];
            const w = o + i * outputs;
            let s = 0;
            for (let k = 0; k < outputs; k++) {
              grad[w + k] += v * delta[dr + k];
              s += theta[w + k] * delta[dr + k];
            }
            // ELU' from its output: 1 above zero, exp(s) = y + 1 below
            below[br + i] = l > 0 && v < 0 ? s * (v + 1) : s;
          }
        }
        [delta, below] = [below, delta];
      }
      // features to state: delta now holds dJ/dfeatures
      const feat = acts[0];
      for (let b = 0; b < batch; b++) {
        const fo = t * batch * d + b * d;
        let k = 0;
        for (let j = 0; j < n; j++) {
          if (f.angle[j]) {
            // d/de of (sin e, cos e) is (cos e, -sin e)
            adj[b * n + j] += delta[b * d + k] * feat[fo + k + 1] - delta[b * d + k + 1] * feat[fo + k];
            k += 2;
          }
          if (f.raw[j]) adj[b * n + j] += delta[b * d + k++] / f.scale[j];
        }
      }
    }
    for (let i = 0; i < this.parameters; i++) grad[i] /= batch;
  }
}

/** A policy of this width for a model: the priors' default features (raw states divided by `rawScale` where given), its control scaling and bounds. */
export function policyShape(model: Model, hidden: readonly number[], rawScale?: readonly number[], balance?: PolicyCatch): PolicyShape {
  const features = defaultFeatures(model);
  if (rawScale) features.scale = [...rawScale];
  const { center, scale } = controlScaling(model);
  return { features, hidden: [...hidden], controlDim: model.controlDim, bounded: boundedControls(model), controlCenter: center, controlScale: scale, ...(balance ? { catch: balance } : {}) };
}
