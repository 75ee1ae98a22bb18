import type { RolloutBackend } from '../kernels/backend.js';
import type { WebGpuBackend } from '../kernels/webgpu.js';
import type { Model } from '../models/model.js';
import type { ParamsOf, ParamValue, Schema } from '../params.js';
import type { PRIOR_PARAMS } from '../learned/params.js';
import type { Rng } from '../random.js';
import type { PriorGuide, RecedingPlanner } from './receding.js';

/** What a planner's builder gets: the resolved model, its kernels, the planner's own parameters (a copy it owns), its random stream. */
export interface PlannerBuildContext {
  model: Model;
  backend: RolloutBackend;
  params: Record<string, ParamValue>;
  seed: number;
  rng: Rng;
  /** the learned prior, when `prior.path` is set (checked by `priorProblem` first) */
  guide?: PriorGuide;
  /** the GPU backend when the GPU-resident path is asked for (backend webgpu): the planner runs its iterations there if it can */
  gpu?: WebGpuBackend;
}

/**
 * One chart of a planner's diagnostics on the dashboard, drawn from the
 * named series of its plans (`PlanDiagnostics.series`, `PlannerStatus.series`).
 * - `last`: the series of the last plan against their index (e.g. one point per tempering level);
 * - `time`: element k of each named series over time, one line per element
 *   (labels: `lineLabels`, or the controls' names when `perControl`).
 */
export interface PlannerChart {
  title: string;
  kind: 'last' | 'time';
  series: readonly string[];
  /** `last`: one label per series */
  labels?: readonly string[];
  /** `time`: one label per element */
  lineLabels?: readonly string[];
  perControl?: boolean;
  log?: boolean;
}

/**
 * A planner, all in one place (mjpc style): its name, its parameter schema
 * (keys `NAME.KEY` everywhere: YAML, --set, ROS, HTTP; a model's own tuning of it lives with the model),
 * its builder (CPU, and GPU where it has one), what it needs of a learned
 * prior, and the charts of its diagnostics. Registered with one line in
 * `registry.ts`; no door names a planner.
 */
export interface PlannerDescriptor {
  readonly name: string;
  /** one line for help texts and the parameter's description */
  readonly summary: string;
  readonly schema: Schema;
  /** whether it reports its first-step action distribution (`RecedingPlanner.firstStep`), so train-prior can act with it and distil it */
  readonly distils: boolean;
  /** whether it has a GPU-resident path (backend webgpu); without one it runs on the CPU only */
  readonly gpu: boolean;
  /** the key that sizes the planner (samples, particles): `bench planner` sweeps it */
  readonly sizeKey: string;
  /** a key `bench soak` changes live while it runs */
  readonly liveKey: string;
  /** whether a learned prior is needed (`required`) or may guide it (`optional`) */
  readonly prior: 'optional' | 'required';
  /** why the prior settings do not suit this planner (one line), or undefined */
  priorProblem?(settings: ParamsOf<typeof PRIOR_PARAMS>, gpuResident: boolean): string | undefined;
  /** whether it bootstraps from the prior's learned value with these settings (a policy-only checkpoint, from train-policy, is refused then) */
  readsValue(settings: ParamsOf<typeof PRIOR_PARAMS>): boolean;
  /** rules across this planner's keys (bare), checked on every change: key -> reason */
  consistency?(values: Readonly<Record<string, ParamValue>>): Record<string, string>;
  build(ctx: PlannerBuildContext): RecedingPlanner | Promise<RecedingPlanner>;
  readonly charts: readonly PlannerChart[];
}
