import type { Rng } from '../random.js';

/** One dense layer: y = x W + b, W stored row-major as [inputs][outputs]. */
export interface DenseLayer {
  inputs: number;
  outputs: number;
  weight: Float32Array;
  bias: Float32Array;
}

/** A multilayer perceptron with ELU between its layers and a linear output. */
export interface Mlp {
  layers: DenseLayer[];
}

/** Glorot-uniform weights and zero biases from a seeded stream: the same seed gives the same network. */
export function initMlp(rng: Rng, sizes: readonly number[], outputGain = 1): Mlp {
  if (sizes.length < 2 || !sizes.every((s) => Number.isInteger(s) && s > 0)) throw new Error(`layer sizes must be at least two positive integers, got [${sizes.join(', ')}]`);
  const layers: DenseLayer[] = [];
  for (let l = 0; l + 1 < sizes.length; l++) {
    const [inputs, outputs] = [sizes[l], sizes[l + 1]];
    const limit = Math.sqrt(6 / (inputs + outputs)) * (l + 2 === sizes.length ? outputGain : 1);
    const weight = new Float32Array(inputs * outputs);
    for (let k = 0; k < weight.length; k++) weight[k] = (2 * rng.uniform() - 1) * limit;
    layers.push({ inputs, outputs, weight, bias: new Float32Array(outputs) });
  }
  return { layers };
}

export function cloneMlp(net: Mlp): Mlp {
  return { layers: net.layers.map((l) => ({ ...l, weight: l.weight.slice(), bias: l.bias.slice() })) };
}

export const mlpInputs = (net: Mlp): number => net.layers[0].inputs;
export const mlpOutputs = (net: Mlp): number => net.layers[net.layers.length - 1].outputs;

/**
 * The forward pass in f64 from the f32 weights, for `count` rows of input:
 * what the planner runs at the control rate. Batches here are small (the
 * policy's samples per time step), where a plain loop beats a tensor
 * library's per-call overhead; the trainer's tensors compute the same function.
 */
export function mlpForward(net: Mlp, input: Float64Array, count: number): Float64Array {
  let x = input;
  for (let l = 0; l < net.layers.length; l++) {
    const { inputs, outputs, weight, bias } = net.layers[l];
    const y = new Float64Array(count * outputs);
    const hidden = l + 1 < net.layers.length;
    for (let r = 0; r < count; r++) {
      const xo = r * inputs;
      const yo = r * outputs;
      for (let o = 0; o < outputs; o++) y[yo + o] = bias[o];
      for (let i = 0; i < inputs; i++) {
        const xi = x[xo + i];
        if (xi === 0) continue;
        const wo = i * outputs;
        for (let o = 0; o < outputs; o++) y[yo + o] += xi * weight[wo + o];
      }
      if (hidden) for (let o = 0; o < outputs; o++) if (y[yo + o] < 0) y[yo + o] = Math.expm1(y[yo + o]);
    }
    x = y;
  }
  return x;
}
