import { setTimeout as sleep } from 'node:timers/promises';
import type { Controller, TickResult } from '../controller/controller.js';
import type { StateMsg } from '../interfaces/messages.js';
import { fromPhysical, inGoalRegion, Model, physicalAngles, stateDifference, toPhysical } from '../models/model.js';
import { quantile } from '../samplers/stats.js';
import { pushProblem, Simulator } from '../../sim/simulator.js';
import type { ControllerSession } from './session.js';

export interface TickRecord {
  timeS: number;
  /** true physical state at the tick */
  state: number[];
  /** what the sensor measured (empty when nothing was given) */
  measured: number[];
  /** the state message the controller was given, as a ROS node receives it (undefined when none) */
  stateMessage: StateMsg | undefined;
  tick: TickResult;
  inGoal: boolean;
}

export interface RunSummary {
  success: boolean;
  timeToGoalS: number | null;
  /** share of the ticks from timeToGoalS to the end spent in the goal region (null without success) */
  heldFraction: number | null;
  /** RMS over the same ticks of the physical state's distance from the goal (angles wrapped; null without success) */
  heldRmsError: number | null;
  /** when the goal region was first entered, held or not (null: never) */
  firstInGoalS: number | null;
  /** the longest unbroken stay in the goal region [s] */
  longestStayS: number;
  /** whether the last tick was in the goal region */
  endedInGoal: boolean;
  finalError: number;
  solveMs: { p50: number; p99: number; max: number };
  deadlineMisses: number;
  /** real time: how far each interval between two commands leaving strayed from the period [ms] (null in lockstep) */
  commandJitterMs: { p50: number; p99: number; max: number } | null;
  ticks: number;
  plannerErrors: number;
  staleTicks: number;
  rejectedStates: number;
  rejectedGoals: number;
  /** the planner's per-tick figures (e.g. TSMC's final beta) over planned ticks */
  plannerInfo: Record<string, { p50: number; min: number; max: number }>;
  goal: string;
  holdS: number;
  durationS: number;
  rateHz: number;
}

export interface LoopOptions {
  durationS: number;
  /** deterministic: no pacing, no deadlines */
  lockstep: boolean;
  onTick?: (r: TickRecord, index: number, total: number) => void | Promise<void>;
  /** false: records are handed to onTick but not kept (long runs: memory stays flat; the summary still has success and the final error, not the planner figures) */
  keepRecords?: boolean;
  /** fault injection for tests: replaces the measurement given to the controller at a tick (undefined: skip the update) */
  measurementFilter?: (timeS: number, y: number[]) => number[] | undefined;
  /** pause, step, reset and push from outside (the dashboard) */
  control?: SimControl;
  /** ends the run early at the next tick (SIGINT, SIGTERM): what was done is summarised as usual */
  signal?: AbortSignal;
}

/**
 * The embedded run's simulator controls, taken between ticks: pause (the
 * loop waits; real time resumes on a shifted schedule), step (one tick while
 * paused), reset (the plant back to its initial state) and a push.
 */
export class SimControl {
  private pausedFlag = false;
  private steps = 0;
  private wake: (() => void) | undefined;
  private readonly actions: ((sim: Simulator) => void)[] = [];

  get paused(): boolean {
    return this.pausedFlag;
  }

  pause(): void {
    this.pausedFlag = true;
  }

  resume(): void {
    this.pausedFlag = false;
    this.wake?.();
  }

  /** One tick, then paused again. */
  step(): void {
    this.pausedFlag = true;
    this.steps++;
    this.wake?.();
  }

  reset(): void {
    this.actions.push((sim) => sim.reset());
  }

  /** Queues a push of physical state `index` by `size`; a reason when it is not possible. */
  push(index: number, size: number, stateDim: number): string | undefined {
    const problem = pushProblem(stateDim, index, size);
    if (!problem) this.actions.push((sim) => sim.push(index, size));
    return problem;
  }

  /** The loop's gate before a tick: waits while paused (a step lets one tick through); applies queued actions. Returns the milliseconds waited. */
  async gate(sim: Simulator, signal?: AbortSignal): Promise<number> {
    const start = performance.now();
    // a signal ends a pause, so an interrupted run can finish
    const onAbort = () => this.wake?.();
    signal?.addEventListener('abort', onAbort, { once: true });
    while (this.pausedFlag && this.steps === 0 && !signal?.aborted) await new Promise<void>((resolve) => (this.wake = resolve));
    signal?.removeEventListener('abort', onAbort);
    this.wake = undefined;
    if (this.steps > 0) this.steps--;
    for (const act of this.actions.splice(0)) act(sim);
    return performance.now() - start;
  }
}

/**
 * Simulation in the loop: measure, tick, apply, advance; paced by the wall
 * clock unless lockstep. The measurement reaches the controller as the same
 * state message a ROS node receives, and the first one also warms the
 * planner up, as a node does on activation.
 */
export async function runLoop(sim: Simulator, session: ControllerSession, opts: LoopOptions): Promise<{ records: TickRecord[]; summary: RunSummary }> {
  const { model, controller, codec } = session;
  const periodS = session.periodS;
  const ticks = Math.max(1, Math.round(opts.durationS * session.rateHz));
  const records: TickRecord[] = [];
  const goal = new GoalTracker(model.def.goalRegion?.holdS ?? 0);
  let last: TickRecord | undefined;
  // preallocated, so a long run's bookkeeping does not grow the heap
  const intervalsMs = opts.lockstep ? undefined : new Float64Array(Math.max(1, ticks - 1));
  const solveMs = new Float64Array(ticks);
  let solves = 0;
  let lastCommandMs = 0;
  const give = (y: number[] | undefined, timeS: number): StateMsg | undefined => {
    if (!y) return undefined;
    const msg = codec.encode(y, timeS);
    session.onStateMessage(msg, timeS);
    return msg;
  };
  let measuredRaw = sim.measure();
  let measured = opts.measurementFilter ? opts.measurementFilter(0, measuredRaw) : measuredRaw;
  let stateMessage = give(measured, 0);
  await session.warmUp();
  let wallStart = performance.now();
  const { signal } = opts;
  for (let k = 0; k < ticks && !signal?.aborted; k++) {
    const timeS = k * periodS;
    // a pause shifts the real-time schedule by its length
    if (opts.control) {
      const pausedMs = await opts.control.gate(sim, signal);
      wallStart += pausedMs;
      lastCommandMs += pausedMs;
    }
    if (!opts.lockstep) {
      const wait = wallStart + timeS * 1000 - performance.now();
      if (wait > 0) await sleep(wait, undefined, signal ? { signal } : undefined).catch(() => undefined);
    }
    if (signal?.aborted) break;
    if (k > 0) {
      measuredRaw = sim.measure();
      measured = opts.measurementFilter ? opts.measurementFilter(timeS, measuredRaw) : measuredRaw;
      stateMessage = give(measured, timeS);
    }
    const tick = await session.tick(timeS);
    if (tick.planned) solveMs[solves++] = tick.solveMs;
    if (intervalsMs) {
      const now = performance.now();
      if (k > 0) intervalsMs[k - 1] = now - lastCommandMs;
      lastCommandMs = now;
    }
    const state = sim.state;
    const record = { timeS, state, measured: measured ?? [], stateMessage, tick, inGoal: goalContains(model, state, controller) };
    if (opts.keepRecords !== false) records.push(record);
    // success and the time in the goal need only this much: tracked even when the records are not kept
    goal.observe(timeS, record.inGoal, goalError(model, controller, state));
    last = record;
    await opts.onTick?.(record, k, ticks);
    if (k === 0 && !opts.lockstep) {
      // the periodic schedule starts once the first tick is done, its first-time work (log encoders,
      // telemetry) included: the first plan gets a whole period, as every later one does
      wallStart = performance.now();
      lastCommandMs = wallStart;
    }
    sim.advance(tick.control, periodS);
  }
  const summary = summarize(model, controller, { goal, last, records }, { durationS: opts.durationS, rateHz: session.rateHz, solveMs: solveMs.subarray(0, solves) });
  const done = goal.ticks;
  if (intervalsMs && done > 1) {
    const jitter = Array.from(intervalsMs.subarray(0, done - 1), (d) => Math.abs(d - 1000 * periodS));
    summary.commandJitterMs = { p50: quantile(jitter, 0.5), p99: quantile(jitter, 0.99), max: Math.max(...jitter) };
  }
  return { records, summary };
}

function goalContains(model: Model, physical: number[], controller: Controller): boolean {
  return inGoalRegion(model, fromPhysical(model, physical), controller.currentReference) ?? false;
}

/**
 * Success: the goal region was entered and then held for the model's hold
 * time before the run ended; timeToGoalS is when that held stay began, and
 * heldFraction the share of ticks in the region from then on. Tick by tick,
 * in constant memory: a run may last as long as the robot does.
 */
export class GoalTracker {
  ticks = 0;
  timeToGoalS: number | null = null;
  firstInGoalS: number | null = null;
  longestStayS = 0;
  lastInGoal = false;
  private enteredS: number | null = null;
  /** the current stay's start, after success too (for the longest stay) */
  private stayFromS: number | null = null;
  private ticksSinceEntered = 0;
  private ticksAfter = 0;
  private inGoalAfter = 0;
  private squaredErrorSinceEntered = 0;
  private squaredErrorAfter = 0;

  constructor(private readonly holdS: number) {}

  /** One tick: whether it was in the goal region, and its state's error from the goal (for the held stretch's RMS). */
  observe(timeS: number, inGoal: boolean, error = 0): void {
    this.ticks++;
    this.lastInGoal = inGoal;
    if (inGoal) {
      this.firstInGoalS ??= timeS;
      this.stayFromS ??= timeS;
      this.longestStayS = Math.max(this.longestStayS, timeS - this.stayFromS);
    } else this.stayFromS = null;
    if (this.timeToGoalS !== null) {
      this.ticksAfter++;
      this.squaredErrorAfter += error * error;
      if (inGoal) this.inGoalAfter++;
      return;
    }
    if (!inGoal) {
      this.enteredS = null;
      this.ticksSinceEntered = 0;
      this.squaredErrorSinceEntered = 0;
      return;
    }
    this.enteredS ??= timeS;
    this.ticksSinceEntered++;
    this.squaredErrorSinceEntered += error * error;
    if (timeS - this.enteredS >= this.holdS - 1e-9) {
      // every tick of the stay so far was in the region
      this.timeToGoalS = this.enteredS;
      this.ticksAfter = this.inGoalAfter = this.ticksSinceEntered;
      this.squaredErrorAfter = this.squaredErrorSinceEntered;
    }
  }

  /** RMS of the state's error from the goal from timeToGoalS to the end (null without success): how tightly the goal is held. */
  get heldRmsError(): number | null {
    return this.timeToGoalS === null ? null : Math.sqrt(this.squaredErrorAfter / this.ticksAfter);
  }

  get heldFraction(): number | null {
    return this.timeToGoalS === null ? null : this.inGoalAfter / this.ticksAfter;
  }
}

/** The physical state's distance from the controller's goal (angles wrapped). */
function goalError(model: Model, controller: Controller, state: readonly number[]): number {
  return goalDistance(model, state, controller.currentReference);
}

/** A physical state's distance from a reference (model units), in physical units, angles wrapped. */
export function goalDistance(model: Model, state: readonly number[], reference: readonly number[]): number {
  const goal = toPhysical(model, reference);
  const angles = physicalAngles(model);
  return Math.sqrt(state.reduce((s, v, i) => s + stateDifference(angles[i], v, goal[i]) ** 2, 0));
}

export function summarize(
  model: Model, controller: Controller,
  /** whether and when the goal was reached; the last record; the records kept (planner figures) */
  run: { goal: GoalTracker; last: TickRecord | undefined; records: TickRecord[] },
  opts: { durationS: number; rateHz: number; /** every plan's solve time */ solveMs: ArrayLike<number> },
): RunSummary {
  const { goal: tracker, last, records } = run;
  const holdS = model.def.goalRegion?.holdS ?? 0;
  const solve = Array.from(opts.solveMs);
  const finalError = last ? goalError(model, controller, last.state) : NaN;
  const c = controller.counters;
  return {
    success: tracker.timeToGoalS !== null,
    timeToGoalS: tracker.timeToGoalS,
    heldFraction: tracker.heldFraction,
    heldRmsError: tracker.heldRmsError,
    firstInGoalS: tracker.firstInGoalS,
    longestStayS: tracker.longestStayS,
    endedInGoal: tracker.lastInGoal,
    finalError,
    solveMs: { p50: quantile(solve, 0.5), p99: quantile(solve, 0.99), max: solve.length ? Math.max(...solve) : NaN },
    deadlineMisses: c.deadlineMisses,
    commandJitterMs: null,
    ticks: tracker.ticks,
    plannerErrors: c.plannerErrors,
    staleTicks: c.staleTicks,
    rejectedStates: c.rejectedStates,
    rejectedGoals: c.rejectedGoals,
    plannerInfo: infoStatistics(records),
    goal: model.def.goalRegion?.doc ?? 'none',
    holdS,
    durationS: opts.durationS,
    rateHz: opts.rateHz,
  };
}

function infoStatistics(records: TickRecord[]): RunSummary['plannerInfo'] {
  const values = new Map<string, number[]>();
  for (const r of records) {
    if (!r.tick.planned) continue;
    for (const [k, v] of Object.entries(r.tick.info)) {
      if (!Number.isFinite(v)) continue;
      if (!values.has(k)) values.set(k, []);
      values.get(k)!.push(v);
    }
  }
  return Object.fromEntries([...values].map(([k, v]) => [k, { p50: quantile(v, 0.5), min: Math.min(...v), max: Math.max(...v) }]));
}
