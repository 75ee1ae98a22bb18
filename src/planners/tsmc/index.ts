import type { ParamsOf } from '../../params.js';
import type { PlannerDescriptor } from '../descriptor.js';
import { GpuTsmcPlanner } from './gpu.js';
import { MPC_TSMC_PARAMS, TsmcPlanner } from './receding.js';

/** TSMC in receding horizon: tempered SMC over control sequences with HMC/NUTS moves on exact rollout gradients; CPU or GPU-resident. */
export const TSMC: PlannerDescriptor = {
  name: 'tsmc',
  summary: 'tempered SMC over control sequences with HMC/NUTS moves on exact rollout gradients, warm-started from the shifted particles',
  schema: MPC_TSMC_PARAMS,
  distils: false,
  gpu: true,
  sizeKey: 'particles',
  liveKey: 'lambda',
  prior: 'optional',
  readsValue: () => false,
  priorProblem(settings, gpuResident) {
    if (gpuResident) return 'prior.path is set, but the GPU-resident TSMC (backend webgpu) does not use a learned prior: clear prior.path, or backend cpu';
    if (settings.tsmcCentre !== 'policy') return 'prior.path is set, but TSMC uses a learned prior only to centre its sampling prior on the policy: set prior.tsmcCentre: policy, or clear prior.path';
    return undefined;
  },
  build({ model, backend, params, rng, seed, guide, gpu }) {
    const p = params as ParamsOf<typeof MPC_TSMC_PARAMS>;
    return gpu ? GpuTsmcPlanner.create(model, gpu, p, seed) : new TsmcPlanner(model, backend, p, rng, guide);
  },
  charts: [
    {
      title: 'TSMC: tempering ladder of the last plan (x: level)', kind: 'last',
      series: ['ladder_beta', 'ladder_ess_ratio', 'ladder_acceptance'], labels: ['beta', 'ESS / N', 'acceptance'],
    },
  ],
};
