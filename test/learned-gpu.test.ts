import assert from 'node:assert/strict';
import { PRIOR_FORMAT, PriorMeta } from '../src/learned/checkpoint.js';
import { compileMlp } from '../src/learned/mlp.js';
import { boundedControls, defaultFeatures, featureDim, initNetworks, NETWORK_NAMES, PriorNetworks } from '../src/learned/networks.js';
import { LearnedPrior } from '../src/learned/runtime.js';
import { controlScaling } from '../src/models/controls.js';
import { modelDefinition } from '../src/models/index.js';
import { resolveModel } from '../src/models/model.js';
import { Rng } from '../src/random.js';
import { skipWithoutWebGpu } from './support/webgpu.js';

/**
 * A prior's networks with seeded random weights (a stand-in for trained
 * ones: the same shapes and code paths; docs/results.md checks a trained
 * prior too), biases and output layers spread wide enough that ELU units
 * sit on both sides of zero and the tanh heads leave their linear range.
 */
function acrobotPrior() {
  const model = resolveModel(modelDefinition('acrobot'));
  const rng = new Rng(5);
  const features = defaultFeatures(model);
  features.scale = features.scale.map((_, j) => 1 + j);
  const hidden = [32, 24];
  const networks = initNetworks(rng, { stateDim: 4, controlDim: 1, features, hidden });
  for (const name of NETWORK_NAMES) {
    for (const layer of networks[name].layers) {
      for (let k = 0; k < layer.bias.length; k++) layer.bias[k] = 0.5 * rng.normal();
      for (let k = 0; k < layer.weight.length; k++) layer.weight[k] *= 3;
    }
  }
  const s = controlScaling(model);
  const meta: PriorMeta = {
    format: PRIOR_FORMAT, version: 'test', system: 'acrobot', stateNames: ['q1', 'q2', 'dq1', 'dq2'], controlNames: ['u'], stateDim: 4, controlDim: 1,
    horizon: model.horizon, dtS: model.dtS, reference: [...model.goal], features, controlCenter: Array.from(s.center), controlScale: Array.from(s.scale),
    bounded: boundedControls(model), hidden, valueTransform: 'symlog', gamma: 0.99, training: {}, episodes: 0, updates: 0,
    savedAt: '', weights: { file: '', bytes: 0, sha256: '' },
  };
  return { model, meta, networks: networks as PriorNetworks };
}

const close = (gpu: ArrayLike<number>, cpu: ArrayLike<number>, what: string, tolerance = 2e-5) => {
  const scale = Math.max(1, ...Array.from(cpu, Math.abs));
  for (let i = 0; i < cpu.length; i++) assert.ok(Math.abs(gpu[i] - cpu[i]) <= tolerance * scale, `${what}[${i}]: GPU ${gpu[i]} vs CPU ${cpu[i]}`);
};

describe('the learned networks on WebGPU (f32, generated from the checkpoint)', function () {
  this.timeout(120_000);
  before(async function () {
    await skipWithoutWebGpu(this, 'GPU network tests');
  });

  it('every network of a prior: the WGSL forward pass equals the CPU\'s (f64) to f32 precision on random inputs', async () => {
    const { WebGpuBackend } = await import('../src/kernels/webgpu.js');
    const { GpuMlp } = await import('./support/gpu-networks.js');
    const { model, networks } = acrobotPrior();
    const backend = await WebGpuBackend.create(model);
    const rng = new Rng(9);
    for (const name of NETWORK_NAMES) {
      const net = networks[name];
      const rows = 257;
      const input = Float64Array.from({ length: rows * net.layers[0].inputs }, () => 2 * rng.normal());
      const gpu = await GpuMlp.create(backend, net, name);
      try {
        close(await gpu.forward(input, rows), compileMlp(net).forward(input, rows), name);
      } finally {
        gpu.dispose();
      }
    }
  });

  it('the prior as a planner reads it: features, the policy\'s Gaussian and the floored value equal LearnedPrior\'s; weights go up once, each call one upload of its states, one submit, one read-back', async () => {
    const { WebGpuBackend } = await import('../src/kernels/webgpu.js');
    const { GpuPriorNetworks } = await import('./support/gpu-networks.js');
    const rng = new Rng(10);
    const count = 300;
    const x = Float64Array.from({ length: count * 4 }, (_, i) => (i % 4 < 2 ? Math.PI * (2 * rng.uniform() - 1) * 1.5 : 4 * rng.normal()));
    // without a floor, then with one at the values' median (half the states raised to it)
    const { model, meta: plain, networks } = acrobotPrior();
    const unfloored = LearnedPrior.fromNetworks(plain, networks).policyValue(x, count, plain.reference);
    const median = Array.from(unfloored.value).sort((a, b) => a - b)[count / 2];
    const backend = await WebGpuBackend.create(model);
    for (const floor of [undefined, median]) {
      const meta = { ...plain, ...(floor === undefined ? {} : { valueFloor: floor }) };
      const cpu = LearnedPrior.fromNetworks(meta, networks).policyValue(x, count, meta.reference);
      const gpu = await GpuPriorNetworks.create(backend, meta, networks, meta.reference);
      try {
        const before = { ...backend.counters };
        const out = await gpu.policyValue(x, count);
        close(out.mean, cpu.mean, 'mean');
        close(out.std, cpu.std, 'std');
        close(out.value, cpu.value, 'value');
        // the tanh head saturates on some states and not others; the floor binds on about half
        assert.ok(cpu.mean.some((v) => Math.abs(v) > 0.99) && cpu.mean.some((v) => Math.abs(v) < 0.5));
        if (floor !== undefined) assert.ok(out.value.filter((v) => v === Math.fround(floor)).length >= count / 2 - 1);
        const after = backend.counters;
        assert.equal(after.submits - before.submits, 1);
        assert.equal(after.readbacks - before.readbacks, 1);
        assert.equal(after.bytesUp - before.bytesUp, count * 4 * 4 + (1 + 4) * 4, 'the states and the header, not the weights');
      } finally {
        gpu.dispose();
      }
    }
    assert.equal(featureDim(plain.features), networks.policy.layers[0].inputs);
  });
  it('a policy with an LQR catch: the GPU blends the catch into the mean as LearnedPrior does', async () => {
    const { WebGpuBackend } = await import('../src/kernels/webgpu.js');
    const { GpuPriorNetworks } = await import('./support/gpu-networks.js');
    const { goalCatch } = await import('../src/policy/catch.js');
    const { model, meta: plain, networks } = acrobotPrior();
    const meta = { ...plain, catch: goalCatch(model, [0.7, 0.7, 5, 5], 'test') };
    const rng = new Rng(11);
    const count = 200;
    // around the goal at growing distances: inside the gate, across its edge, far out; a full turn off on some (the error wraps)
    const x = Float64Array.from({ length: count * 4 }, (_, i) => meta.reference[i % 4] + (i % 4 < 2 ? 0.6 : 4) * (Math.floor(i / 4) / count) * 2 * rng.normal() + (i % 8 === 0 ? 2 * Math.PI : 0));
    const cpu = LearnedPrior.fromNetworks(meta, networks).policyValue(x, count, meta.reference);
    const without = LearnedPrior.fromNetworks(plain, networks).policyValue(x, count, meta.reference);
    const moved = cpu.mean.filter((v, r) => Math.abs(v - without.mean[r]) > 0.1).length;
    assert.ok(moved > count / 10 && moved < count, `the catch changes some means, not all (${moved} of ${count})`);
    const backend = await WebGpuBackend.create(model);
    const gpu = await GpuPriorNetworks.create(backend, meta, networks, meta.reference);
    try {
      const out = await gpu.policyValue(x, count);
      // the LQR's gains (up to 14 per rad) scale the f32 rounding of the states' errors
      close(out.mean, cpu.mean, 'mean', 1e-4);
      close(out.std, cpu.std, 'std');
    } finally {
      gpu.dispose();
    }
  });
});
