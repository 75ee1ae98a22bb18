import { availableParallelism } from 'node:os';
import { createBackend, WebGpuBackend } from '../kernels/index.js';
import type { GpuCounters } from '../kernels/webgpu.js';
import { GpuMppiPlanner } from './gpu-mppi.js';
import { GpuTsmcPlanner } from './gpu-tsmc.js';
import type { BackendKind, RolloutBackend } from '../kernels/index.js';
import { modelDefinition } from '../models/index.js';
import { Model, resolveModel } from '../models/model.js';
import type { ParamsOf, ParamValue } from '../params.js';
import type { MPPI_PARAMS } from '../planners/mppi.js';
import { Rng } from '../random.js';
import { compileStepFunction } from '../kernels/js-source.js';
import { buildStepGraphs } from '../kernels/graphs.js';
import type { PRIOR_PARAMS } from '../prior/params.js';
import { LearnedPrior } from '../prior/runtime.js';
import { MPC_TSMC_PARAMS, MppiPlanner, PriorGuide, RecedingPlanner, TsmcPlanner } from './receding.js';
import { InputError } from '../input-error.js';

/**
 * Everything that builds a receding-horizon planner, as plain data: it
 * crosses into the planner's own thread by structured clone, and the same
 * spec built on either side gives the same planner and random stream.
 */
export interface PlannerSpec {
  system: string;
  /** model overrides, as the user gave them */
  model: Record<string, unknown>;
  planner: 'tsmc' | 'mppi';
  /** the planner's own parameters */
  params: Record<string, ParamValue>;
  /** a learned prior (`prior.path`, loaded here, in the planner's thread) and how it is used */
  prior?: ParamsOf<typeof PRIOR_PARAMS>;
  backend: BackendKind;
  /** CPU threads including the planning thread (0 = all cores) */
  threads: number;
  seed: number;
  /**
   * webgpu only: 'resident' (default) runs whole MPPI iterations and TSMC levels on the GPU;
   * 'rollouts' keeps the planner on the CPU and uses the GPU as a rollout
   * service (the path before the GPU-resident planner; `bench planner` compares them)
   */
  gpuPath?: 'resident' | 'rollouts';
}

export interface BuiltPlanner {
  model: Model;
  backend: RolloutBackend;
  planner: RecedingPlanner;
}

export async function buildPlanner(spec: PlannerSpec): Promise<BuiltPlanner> {
  const model = resolveModel(modelDefinition(spec.system), spec.model);
  // a prior that does not fit is refused before anything is compiled
  const guide = spec.prior?.path ? priorGuide(spec, model) : undefined;
  const backend = await createBackend(model, spec.backend, { threads: spec.threads > 0 ? spec.threads : availableParallelism() });
  // the planner owns a copy of its parameters: live changes must not leak into the caller's
  const rng = new Rng(spec.seed);
  const mppiParams = { ...spec.params } as ParamsOf<typeof MPPI_PARAMS>;
  let planner: RecedingPlanner;
  const tsmcParams = { ...spec.params } as ParamsOf<typeof MPC_TSMC_PARAMS>;
  const resident = backend instanceof WebGpuBackend && spec.gpuPath !== 'rollouts';
  if (spec.planner === 'tsmc' && resident && guide) {
    throw new InputError('prior.path is set, but the GPU-resident TSMC (backend webgpu) does not use a learned prior: clear prior.path, or backend cpu');
  }
  if (spec.planner === 'tsmc') planner = resident ? await GpuTsmcPlanner.create(model, backend, tsmcParams, spec.seed) : new TsmcPlanner(model, backend, tsmcParams, rng, guide);
  else if (resident) planner = await GpuMppiPlanner.create(model, backend, mppiParams, spec.seed, guide);
  else planner = new MppiPlanner(model, backend, mppiParams, rng, guide);
  return { model, backend, planner: backend instanceof WebGpuBackend ? countingRoundTrips(planner, backend.counters) : planner };
}

/** The planner, with each plan's GPU round trips (submits, read-backs, waits, KiB each way) added to its info. */
function countingRoundTrips(inner: RecedingPlanner, counters: GpuCounters): RecedingPlanner {
  return {
    name: inner.name,
    async plan(req) {
      const before = counters.snapshot();
      const r = await inner.plan(req);
      return { ...r, info: { ...r.info, ...counters.since(before) } };
    },
    reset: () => inner.reset(),
    updateParams: (changes) => inner.updateParams(changes),
  };
}

function priorGuide(spec: PlannerSpec, model: Model): PriorGuide {
  if (spec.planner === 'tsmc' && spec.prior!.tsmcCentre !== 'policy') {
    throw new InputError('prior.path is set, but TSMC uses a learned prior only to centre its sampling prior on the policy: set prior.tsmcCentre: policy, or clear prior.path');
  }
  const prior = LearnedPrior.load(spec.prior!.path, model);
  const step = compileStepFunction(buildStepGraphs(model, false));
  const noise = new Array<number>(model.noiseDim).fill(0);
  return { prior, step: (x, u) => step(x, u, noise), settings: { ...spec.prior! } };
}
