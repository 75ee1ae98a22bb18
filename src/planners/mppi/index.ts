import type { ParamsOf } from '../../params.js';
import type { PlannerDescriptor } from '../descriptor.js';
import { GpuMppiPlanner } from './gpu.js';
import { MPPI_PARAMS } from './mppi.js';
import { MppiPlanner } from './receding.js';

/** PO-MPC-style MPPI (eq. 11), with a learned prior's policy samples and value when one is given; CPU or GPU-resident. */
export const MPPI: PlannerDescriptor = {
  name: 'mppi',
  summary: 'PO-MPC-style MPPI: J iterations of M samples, elite-weighted; a learned prior adds policy samples and a terminal value',
  schema: MPPI_PARAMS,
  distils: true,
  gpu: true,
  sizeKey: 'samples',
  liveKey: 'temperature',
  prior: 'optional',
  readsValue: (s) => s.value && s.valueWeight > 0,
  consistency: (v): Record<string, string> => ((v.sigmaMin as number) > (v.sigmaMax as number) ? { sigmaMin: `mppi.sigmaMin ${v.sigmaMin} must not exceed mppi.sigmaMax ${v.sigmaMax}` } : {}),
  build({ model, backend, params, rng, seed, guide, gpu }) {
    const p = params as ParamsOf<typeof MPPI_PARAMS>;
    return gpu ? GpuMppiPlanner.create(model, gpu, p, seed, guide) : new MppiPlanner(model, backend, p, rng, guide, seed);
  },
  charts: [
    { title: 'MPPI: sample cost spread of the last iteration, per plan', kind: 'time', series: ['cost_spread'], lineLabels: ['min', 'p10', 'median', 'p90'], log: true },
    { title: 'MPPI: sampling std per control at the first step', kind: 'time', series: ['sigma'], perControl: true },
  ],
};
