import type { PlanFeedback } from '../controller/feedback.js';
import type { ParamsOf } from '../params.js';
import type { PRIOR_PARAMS } from '../learned/params.js';
import type { LearnedPrior, ModelStep } from '../learned/runtime.js';

/** What a receding-horizon planner is asked each tick (planner state units). */
export interface PlanRequest {
  x0: readonly number[];
  uPrev: readonly number[];
  reference: readonly number[];
  /** performance.now() time by which the plan should be ready */
  deadline?: number;
  /**
   * model steps since the previous plan started (default 1): the warm start
   * is shifted by this much, so a plan rate below 1 / dtS stays aligned in time
   */
  shiftSteps?: number;
  /**
   * build the plan's feedback (predicted states and gains; with `refine`, one
   * iLQG step on its controls) where the planner runs, so the command thread
   * does not: planners on their own thread do (PlannerThread)
   */
  feedback?: { refine: boolean };
}

/**
 * A plan in detail, for status and the dashboard: named series of numbers,
 * as the planner's descriptor declares them (`charts` in the registry), so a
 * new planner needs no message or dashboard change. Names are snake_case,
 * as they go on the wire (`PlannerStatus.series`).
 */
export interface PlanDiagnostics {
  series?: Record<string, number[]>;
  /** why part of the planner was switched off for this plan (e.g. a learned prior's non-finite output) */
  notice?: string;
}

export interface PlanResult {
  /** horizon x controlDim physical controls; the first row is applied now */
  controls: Float64Array;
  cost: number;
  /** planner-specific numbers for status and logs */
  info: Record<string, number>;
  diagnostics?: PlanDiagnostics;
  /** the plan's feedback, when asked for and built where the planner ran (its `controls` are then the plan's, refined or not) */
  feedback?: PlanFeedback;
}

/** One planner interface, many planners (mjpc style); the controller is independent of which. */
export interface RecedingPlanner {
  /** the registry's name of the planner */
  readonly name: string;
  /** one plan; the planner owns its random stream, so a seeded planner is reproducible wherever it runs */
  plan(req: PlanRequest): Promise<PlanResult>;
  /** forget the warm start (e.g. after a long outage) */
  reset(): void;
  /** live parameter changes, validated by the planner's schema; called between plans */
  updateParams(changes: Readonly<Record<string, unknown>>): void;
  /**
   * the last plan's first-step action distribution (normalised mean and std
   * per control): what train-prior distils into the policy (PO-MPC's
   * (a_bar_0, sigma_0); SPO's and TRT-SMC's q-hat). Planners without one cannot train a prior.
   */
  firstStep?(): { mean: number[]; sigma: number[] } | undefined;
}

/** z shifted `steps` steps earlier; the last step is held. */
export function shiftSequence(z: Float64Array, m: number, steps = 1): Float64Array {
  const out = new Float64Array(z.length);
  const by = Math.min(Math.max(0, Math.round(steps)), z.length / m - 1) * m;
  out.set(z.subarray(by));
  const last = z.subarray(z.length - m);
  for (let i = z.length - by; i < z.length; i += m) out.set(last, i);
  return out;
}

/** A learned prior as a planner uses it: the networks, a model step to roll the policy, and the live settings `prior.*`. */
export interface PriorGuide {
  prior: LearnedPrior;
  step: ModelStep;
  settings: ParamsOf<typeof PRIOR_PARAMS>;
}

/** Live changes: the planner's own keys bare; how the prior is used as `prior.KEY` (every planner). */
export function applyPlannerChanges(params: object, guide: PriorGuide | undefined, changes: Readonly<Record<string, unknown>>): void {
  for (const [k, v] of Object.entries(changes)) {
    if (k.startsWith('prior.')) {
      if (guide) (guide.settings as Record<string, unknown>)[k.slice('prior.'.length)] = v;
    } else (params as Record<string, unknown>)[k] = v;
  }
}

