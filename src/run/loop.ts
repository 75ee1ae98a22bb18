import { setTimeout as sleep } from 'node:timers/promises';
import { Controller, TickResult } from '../controller/controller.js';
import { fromPhysical, inGoalRegion, Model, physicalNames } from '../models/model.js';
import { quantile } from '../samplers/stats.js';
import type { Simulator } from '../../sim/simulator.js';

export interface TickRecord {
  timeS: number;
  /** true physical state at the tick */
  state: number[];
  /** what the controller was given */
  measured: number[];
  tick: TickResult;
  inGoal: boolean;
}

export interface RunSummary {
  success: boolean;
  timeToGoalS: number | null;
  /** share of the ticks from timeToGoalS to the end spent in the goal region (null without success) */
  heldFraction: number | null;
  finalError: number;
  solveMs: { p50: number; p99: number; max: number };
  deadlineMisses: number;
  ticks: number;
  plannerErrors: number;
  staleTicks: number;
  rejectedStates: number;
  /** the planner's per-tick figures (e.g. TSMC's final beta) over planned ticks */
  plannerInfo: Record<string, { p50: number; min: number; max: number }>;
  goal: string;
  holdS: number;
  durationS: number;
  rateHz: number;
}

export interface LoopOptions {
  durationS: number;
  rateHz: number;
  /** deterministic: no pacing, no deadlines */
  lockstep: boolean;
  onTick?: (r: TickRecord, index: number, total: number) => void | Promise<void>;
  /** fault injection for tests: replaces the measurement given to the controller at a tick (undefined: skip the update) */
  measurementFilter?: (timeS: number, y: number[]) => number[] | undefined;
}

/** Simulation in the loop: measure, tick, apply, advance; paced by the wall clock unless lockstep. */
export async function runLoop(sim: Simulator, controller: Controller, model: Model, opts: LoopOptions): Promise<{ records: TickRecord[]; summary: RunSummary }> {
  const periodS = 1 / opts.rateHz;
  const ticks = Math.max(1, Math.round(opts.durationS * opts.rateHz));
  const records: TickRecord[] = [];
  controller.onState(sim.measure(), 0);
  await controller.prepare();
  const wallStart = performance.now();
  for (let k = 0; k < ticks; k++) {
    const timeS = k * periodS;
    if (!opts.lockstep) {
      const wait = wallStart + timeS * 1000 - performance.now();
      if (wait > 0) await sleep(wait);
    }
    const measuredRaw = sim.measure();
    const measured = opts.measurementFilter ? opts.measurementFilter(timeS, measuredRaw) : measuredRaw;
    if (measured) controller.onState(measured, timeS);
    const tick = await controller.tick(timeS);
    const state = sim.state;
    const record = { timeS, state, measured: measured ?? [], tick, inGoal: goalContains(model, state, controller) };
    records.push(record);
    await opts.onTick?.(record, k, ticks);
    sim.advance(tick.control, periodS);
  }
  return { records, summary: summarize(model, controller, records, opts) };
}

function goalContains(model: Model, physical: number[], controller: Controller): boolean {
  return inGoalRegion(model, fromPhysical(model, physical), controller.currentReference) ?? false;
}

/**
 * Success: the goal region was entered and then held for the model's hold
 * time before the run ended. timeToGoalS is when that held stay began.
 */
export function summarize(model: Model, controller: Controller, records: TickRecord[], opts: { durationS: number; rateHz: number }): RunSummary {
  const holdS = model.def.goalRegion?.holdS ?? 0;
  let timeToGoalS: number | null = null;
  let entered: number | null = null;
  for (const r of records) {
    if (r.inGoal) {
      entered ??= r.timeS;
      if (r.timeS - entered >= holdS - 1e-9) {
        timeToGoalS = entered;
        break;
      }
    } else entered = null;
  }
  const after = timeToGoalS === null ? [] : records.filter((r) => r.timeS >= timeToGoalS! - 1e-9);
  const heldFraction = after.length ? after.filter((r) => r.inGoal).length / after.length : null;
  const solve = records.filter((r) => r.tick.mode === 'ok' || r.tick.mode === 'late').map((r) => r.tick.solveMs);
  const last = records[records.length - 1];
  const goal = fromPhysicalGoal(model, controller);
  const names = physicalNames(model);
  const finalError = last ? Math.sqrt(last.state.reduce((s, v, i) => s + stateDifference(names[i], v, goal[i]) ** 2, 0)) : NaN;
  const c = controller.counters;
  return {
    success: timeToGoalS !== null,
    timeToGoalS,
    heldFraction,
    finalError,
    solveMs: { p50: quantile(solve, 0.5), p99: quantile(solve, 0.99), max: solve.length ? Math.max(...solve) : NaN },
    deadlineMisses: c.deadlineMisses,
    ticks: records.length,
    plannerErrors: c.plannerErrors,
    staleTicks: c.staleTicks,
    rejectedStates: c.rejectedStates,
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
    if (r.tick.mode !== 'ok' && r.tick.mode !== 'late') continue;
    for (const [k, v] of Object.entries(r.tick.info)) {
      if (!Number.isFinite(v)) continue;
      if (!values.has(k)) values.set(k, []);
      values.get(k)!.push(v);
    }
  }
  return Object.fromEntries([...values].map(([k, v]) => [k, { p50: quantile(v, 0.5), min: Math.min(...v), max: Math.max(...v) }]));
}

function fromPhysicalGoal(model: Model, controller: Controller): number[] {
  // the reference in physical units, for the final-error figure
  const phys = model.def.physical;
  const ref = [...controller.currentReference];
  return phys ? phys.toPhysical(ref, model.params as never) : ref;
}

/** Angles (by their conventional names) are compared on the circle. */
function stateDifference(name: string, a: number, b: number): number {
  const d = a - b;
  if (!/^(theta|q\d|th\d|alpha)$/.test(name)) return d;
  return Math.atan2(Math.sin(d), Math.cos(d));
}
