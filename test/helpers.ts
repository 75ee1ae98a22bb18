import { CpuBackend } from '../src/kernels/cpu.js';
import { modelDefinition } from '../src/models/index.js';
import { Model, resolveModel } from '../src/models/model.js';
import { Rng } from '../src/random.js';

export function model(name: string, overrides: Record<string, number> = {}): Model {
  return resolveModel(modelDefinition(name), overrides);
}

export function cpu(m: Model, threads = 1): CpuBackend {
  return new CpuBackend(m, { threads });
}

/**
 * Smooth random control sequences kept away from the clip kinks of each
 * model (where the cost is not differentiable), reproducible from the seed.
 */
export function testControls(m: Model, samples: number, seed: number): Float64Array {
  const rng = new Rng(seed);
  const { horizon: T, controlDim: dim } = m;
  const U = new Float64Array(samples * T * dim);
  for (let s = 0; s < samples; s++) {
    for (let j = 0; j < dim; j++) {
      const phase = 6.283 * rng.uniform();
      const freq = 0.05 + 0.3 * rng.uniform();
      for (let t = 0; t < T; t++) {
        const wave = Math.sin(freq * t + phase);
        // cart-double-pendulum: gentler pushes keep the rollout out of its chaotic regime,
        // where f32 and f64 trajectories separate exponentially
        let v = (m.name === 'cart-double-pendulum' ? 0.15 : 0.6) * wave;
        if (m.name === 'pusher-slider') {
          // e between edges 1 and 2, s inside its limit, vx pushing into edge 1 and vy into edge 2 (no pull kink)
          v = [1.3 + 0.2 * wave, 0.4 * wave, 0.06 + 0.02 * wave, 0.05 + 0.02 * wave][j];
        }
        if (m.name === 'shekel') v = 2 * wave;
        U[(s * T + t) * dim + j] = v;
      }
    }
  }
  return U;
}
