import * as tf from '@tensorflow/tfjs';
import { gpuContext } from '../kernels/webgpu.js';
import type { Mlp } from '../learned/mlp.js';
import { LOG_STD_RANGE } from '../learned/networks.js';
import type { TrainBackend } from './train-params.js';

/**
 * The trainer's tensor side (TensorFlow.js): the same networks and heads as
 * the plain-number runtime (mlp.ts, networks.ts), as variables to train.
 */


/**
 * Selects the tensor backend: WASM on CPUs (its binary ships in the
 * package; ~4x the pure-JS backend here), WebGPU where an adapter exists,
 * the pure-JS CPU backend as the slow fallback.
 */
export async function useBackend(name: TrainBackend): Promise<string> {
  if (name === 'wasm') await import('@tensorflow/tfjs-backend-wasm');
  if (name === 'webgpu') {
    const gpu = await gpuContext();
    const g = globalThis as { navigator?: { gpu?: unknown } };
    // Node 20 has no navigator: the tfjs WebGPU backend finds Dawn's GPU object where a browser has it
    if (!g.navigator) Object.defineProperty(globalThis, 'navigator', { value: {}, configurable: true, writable: true });
    g.navigator!.gpu ??= gpu.instance;
    await import('@tensorflow/tfjs-backend-webgpu');
  }
  if (!(await tf.setBackend(name))) throw new Error(`the TensorFlow.js backend '${name}' could not start`);
  await tf.ready();
  return tf.getBackend();
}

export interface LayerVariables { weight: tf.Variable; bias: tf.Variable }
export type NetVariables = LayerVariables[];

let created = 0;

/** Variables holding a network's weights (names unique in the process: tfjs registers them globally). */
export function toVariables(net: Mlp, name: string, trainable = true): NetVariables {
  const run = created++;
  return net.layers.map((l, i) => ({
    weight: tf.variable(tf.tensor2d(l.weight, [l.inputs, l.outputs]), trainable, `${name}/${i}/kernel#${run}`),
    bias: tf.variable(tf.tensor1d(l.bias), trainable, `${name}/${i}/bias#${run}`),
  }));
}

/**
 * Copies the variables' values back into the plain network (for the planner
 * and checkpoints). Reads are asynchronous: the WebGPU backend in Node has no
 * synchronous read.
 */
export async function readVariables(vars: NetVariables, into: Mlp): Promise<void> {
  const values = await Promise.all(vars.flatMap((v) => [v.weight.data(), v.bias.data()]));
  vars.forEach((_, i) => {
    into.layers[i].weight.set(values[2 * i] as Float32Array);
    into.layers[i].bias.set(values[2 * i + 1] as Float32Array);
  });
}

export function forward(vars: NetVariables, x: tf.Tensor2D): tf.Tensor2D {
  let h = x;
  vars.forEach((l, i) => {
    h = tf.add(tf.matMul(h, l.weight), l.bias);
    if (i + 1 < vars.length) h = tf.elu(h);
  });
  return h;
}

/** Mean and log-std of a Gaussian head, as gaussianHead() computes them in plain numbers. */
export function head(raw: tf.Tensor2D, bounded: readonly boolean[]): { mean: tf.Tensor2D; logStd: tf.Tensor2D } {
  const m = bounded.length;
  const [a, s] = tf.split(raw, [m, m], 1) as [tf.Tensor2D, tf.Tensor2D];
  const mask = tf.tensor2d([bounded.map((b) => (b ? 1 : 0))], [1, m]);
  const mean = tf.add(tf.mul(mask, tf.tanh(a)), tf.mul(tf.sub(1, mask), a)) as tf.Tensor2D;
  const [lo, hi] = LOG_STD_RANGE;
  const logStd = tf.add(lo, tf.mul(0.5 * (hi - lo), tf.add(tf.tanh(s), 1))) as tf.Tensor2D;
  return { mean, logStd };
}

/** KL[N(muA, e^{2 logA}) || N(muB, e^{2 logB})] per row, summed over controls. */
export function klRows(muA: tf.Tensor2D, logA: tf.Tensor2D, muB: tf.Tensor2D, logB: tf.Tensor2D): tf.Tensor1D {
  const varRatio = tf.exp(tf.mul(2, tf.sub(logA, logB)));
  const d2 = tf.div(tf.square(tf.sub(muA, muB)), tf.exp(tf.mul(2, logB)));
  return tf.sum(tf.add(tf.sub(logB, logA), tf.mul(0.5, tf.sub(tf.add(varRatio, d2), 1))), 1) as tf.Tensor1D;
}

/**
 * The adaptive prior's loss per row (eqs. (12)/(13) at one step): the KL
 * between pi_p(.|x) and the planner's stored first-step Gaussian, reverse
 * KL[pi_p || pi_P] or forward KL[pi_P || pi_p].
 */
export function adaptivePriorKl(kind: 'reverse' | 'forward', prior: NetVariables, features: tf.Tensor2D, plannerMean: tf.Tensor2D, plannerLogStd: tf.Tensor2D, bounded: readonly boolean[]): tf.Tensor1D {
  const p = head(forward(prior, features), bounded);
  return kind === 'reverse' ? klRows(p.mean, p.logStd, plannerMean, plannerLogStd) : klRows(plannerMean, plannerLogStd, p.mean, p.logStd);
}

/** symlog and symexp as tensors (networks.ts has them for numbers). */
export const symlogT = (v: tf.Tensor): tf.Tensor => tf.mul(tf.sign(v), tf.log1p(tf.abs(v)));
export const symexpT = (y: tf.Tensor): tf.Tensor => tf.mul(tf.sign(y), tf.sub(tf.exp(tf.abs(y)), 1));

/** Entropy of the diagonal Gaussian per row. */
export function entropyRows(logStd: tf.Tensor2D): tf.Tensor1D {
  return tf.sum(tf.add(logStd, 0.5 * Math.log(2 * Math.PI * Math.E)), 1) as tf.Tensor1D;
}

/**
 * Scales gradients so their global norm is at most `clip` (on the device: no
 * read back). A non-finite norm zeroes the step: one overflowing batch must
 * not turn the weights into NaN for good.
 */
export function clipGradients(grads: tf.NamedTensorMap, clip: number): tf.NamedTensorMap {
  const names = Object.keys(grads);
  const norm = tf.sqrt(tf.addN(names.map((k) => tf.sum(tf.square(grads[k])))));
  const finite = tf.isFinite(norm);
  const factor = tf.where(finite, tf.minimum(1, tf.div(clip, tf.add(norm, 1e-12))), tf.zerosLike(norm));
  return Object.fromEntries(names.map((k) => [k, tf.where(tf.logicalAnd(finite, tf.isFinite(grads[k])), tf.mul(grads[k], factor), tf.zerosLike(grads[k]))]));
}

/** theta_target <- tau theta + (1 - tau) theta_target (Algorithm 2, lines 26-27). */
export function polyak(target: NetVariables, source: NetVariables, tau: number): void {
  tf.tidy(() => {
    target.forEach((t, i) => {
      t.weight.assign(tf.add(tf.mul(tau, source[i].weight), tf.mul(1 - tau, t.weight)));
      t.bias.assign(tf.add(tf.mul(tau, source[i].bias), tf.mul(1 - tau, t.bias)));
    });
  });
}
