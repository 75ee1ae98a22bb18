import { availableParallelism } from 'node:os';
import { createBackend, WebGpuBackend } from '../kernels/index.js';
import type { GpuCounters } from '../kernels/webgpu.js';
import type { BackendKind, RolloutBackend } from '../kernels/index.js';
import { loadSystem } from '../models/index.js';
import { Model, resolveModel } from '../models/model.js';
import type { ParamsOf, ParamValue } from '../params.js';
import { Rng } from '../random.js';
import { compileStepFunction } from '../kernels/js-source.js';
import { buildStepGraphs } from '../kernels/graphs.js';
import type { PRIOR_PARAMS } from '../learned/params.js';
import { LearnedPrior } from '../learned/runtime.js';
import type { PriorGuide, RecedingPlanner } from '../planners/receding.js';
import { plannerDescriptor } from '../planners/registry.js';
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
  /** a name in the planner registry */
  planner: string;
  /** the planner's own parameters */
  params: Record<string, ParamValue>;
  /** a learned prior (`prior.path`, loaded here, in the planner's thread) and how it is used */
  prior?: ParamsOf<typeof PRIOR_PARAMS>;
  backend: BackendKind;
  /** CPU threads including the planning thread (0 = all cores) */
  threads: number;
  seed: number;
  /** niceness the planner's thread takes before it builds anything (its kernel threads inherit it); 0 = unchanged */
  nice?: number;
  /**
   * webgpu only: 'resident' (default) runs the planner's iterations on the GPU where it has a GPU path;
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
  const descriptor = plannerDescriptor(spec.planner);
  const model = resolveModel(await loadSystem(spec.system), spec.model);
  const wantsGpu = spec.backend === 'webgpu' && spec.gpuPath !== 'rollouts';
  if (spec.backend === 'webgpu' && !descriptor.gpu) throw new InputError(`planner ${descriptor.name} runs on the CPU only (no GPU path yet): backend cpu`);
  // a prior that does not fit (or a planner that needs one and has none) is refused before anything is compiled
  if (spec.prior?.path) {
    const problem = descriptor.priorProblem?.(spec.prior, wantsGpu);
    if (problem) throw new InputError(problem);
  } else if (descriptor.prior === 'required') {
    throw new InputError(`planner ${descriptor.name} plans with a learned prior: set prior.path (--prior DIR on the command line; a directory from train-prior)`);
  }
  const guide = spec.prior?.path ? priorGuide(spec, model) : undefined;
  if (guide && guide.prior.meta.hasValue === false && descriptor.readsValue(spec.prior!)) {
    throw new InputError(`prior '${spec.prior!.path}' holds a policy only (train-policy), no learned value, and planner ${descriptor.name} would bootstrap from its value: ${descriptor.name === 'mppi' ? 'set prior.value false' : 'use planner mppi or tsmc with it'}`);
  }
  const backend = await createBackend(model, spec.backend, { threads: spec.threads > 0 ? spec.threads : availableParallelism() });
  const gpu = backend instanceof WebGpuBackend && wantsGpu ? backend : undefined;
  // the planner owns a copy of its parameters: live changes must not leak into the caller's
  const planner = await descriptor.build({ model, backend, params: { ...spec.params }, seed: spec.seed, rng: new Rng(spec.seed), guide, gpu });
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
    // train-prior distils the first step's distribution of whichever path plans
    ...(inner.firstStep ? { firstStep: () => inner.firstStep!() } : {}),
  };
}

function priorGuide(spec: PlannerSpec, model: Model): PriorGuide {
  const prior = LearnedPrior.load(spec.prior!.path, model);
  const step = compileStepFunction(buildStepGraphs(model, false));
  const noise = new Array<number>(model.noiseDim).fill(0);
  return { prior, step: (x, u) => step(x, u, noise), settings: { ...spec.prior! } };
}
