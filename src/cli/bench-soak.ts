import { ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { blockPlannerThread, PlannerThread } from '../controller/planner-thread.js';
import type { PlanRequest, PlanResult, RecedingPlanner } from '../planners/receding.js';
import { plannerDescriptor } from '../planners/registry.js';
import { Rng } from '../random.js';
import { RunSummary, runLoop } from '../run/loop.js';
import { assemble } from '../run/setup.js';
import { Command, JSON_OPTION, optionalInteger, printJson, table, outputFolder } from './command.js';
import { progressBar } from './progress.js';
import { shutdown } from '../shutdown.js';
import { RUN_OPTIONS, runOptions } from './run.js';
import { InputError } from '../input-error.js';

/**
 * Faults, on a fixed schedule from the start of the run (seconds): what a
 * controller on a robot meets sooner or later. A planner stall blocks the
 * planner's thread outright (a hung kernel), so with `plannerThread: main`
 * it blocks the commands too.
 */
const SCHEDULE = {
  sensorOutage: { everyS: 20, forS: 1 },
  nanBurst: { everyS: 15, forS: 0.3 },
  plannerException: { everyS: 11 },
  plannerStall: { everyS: 17, periods: 5 },
  parameterChange: { everyS: 3 },
};

const within = (t: number, everyS: number, forS: number) => t > 5 && t % everyS < forS;

/** The real planner, failing or stalling on schedule. */
function faultyPlanner(inner: RecedingPlanner, periodS: () => number, clock: () => number): RecedingPlanner {
  let lastException = -Infinity;
  let lastStall = -Infinity;
  return {
    name: inner.name,
    reset: () => inner.reset(),
    updateParams: (c) => inner.updateParams(c),
    async plan(req: PlanRequest): Promise<PlanResult> {
      const t = clock();
      if (t > 5 && t - lastException >= SCHEDULE.plannerException.everyS) {
        lastException = t;
        throw new Error('injected planner exception');
      }
      if (t > 5 && t - lastStall >= SCHEDULE.plannerStall.everyS) {
        lastStall = t;
        blockPlannerThread(inner, SCHEDULE.plannerStall.periods * periodS() * 1000);
      }
      return inner.plan(req);
    },
  };
}

const MB = 2 ** 20;

/** Memory every 10 s: RSS, and each V8 heap in use (after a collection with --expose-gc) and committed (the young generation included). */
interface MemorySample {
  timeS: number;
  rssMB: number;
  heapMB: number;
  heapCommittedMB: number;
  plannerHeapMB: number;
  plannerHeapCommittedMB: number;
}

/** A second process keeping one core busy (the machine is not ours alone on a robot either). */
function coreLoad(): ChildProcess {
  return spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' });
}

/** A soak keeps no per-tick records, so it may run a day. */
const SOAK_MAX_DURATION_S = 86_400;

export const benchSoakCommand: Command = {
  name: 'bench soak',
  summary: 'Real-time soak with injected faults (sensor outages, NaN bursts, planner exceptions and stalls, parameter changes every few seconds, optional CPU load): command-period jitter, deadline misses, fallbacks by reason, heap and RSS over time.',
  usage: 'bench soak --system NAME [--planner NAME] [--duration SEC] [--params FILE.yaml] [--set key=value] [--no-faults] [--load N] [--out DIR] [--json]  (run node with --expose-gc for heap levels after collection)',
  options: {
    ...RUN_OPTIONS,
    'no-faults': { type: 'boolean', description: 'run without injected faults (a baseline)' },
    load: { type: 'string', description: 'processes loading one core each (default 0)', valueName: 'N' },
    out: { type: 'string', description: 'where to write results.json (default runs/bench-soak-SYSTEM-TIME)', valueName: 'DIR' },
    json: JSON_OPTION,
  },
  interruptible: true,
  async run(values) {
    const { system, params, durationS, lockstep } = runOptions(values, SOAK_MAX_DURATION_S);
    if (lockstep) throw new InputError('bench soak runs in real time: drop --lockstep');
    const faults = !values['no-faults'];
    const load = optionalInteger(values, 'load', 0, 0);
    if (load > 16) throw new InputError(`--load must be <= 16, got ${load}`);
    const out = outputFolder(values, `bench-soak-${system}`);
    let simTimeS = 0;
    let periodS = 0;
    let thread: PlannerThread | undefined;
    const { session, sim } = await assemble(params, {
      lockstep: false,
      wrapPlanner: (p) => {
        if (p instanceof PlannerThread) thread = p;
        return faults ? faultyPlanner(p, () => periodS, () => simTimeS) : p;
      },
    });
    periodS = session.periodS;
    // what the session could not do as asked (a commandPriority not permitted, a plannerNice elsewhere than Linux): the soak's figures depend on it
    for (const note of session.notes) console.error(`warning: ${note}`);
    const loaders = Array.from({ length: load }, coreLoad);
    const rng = new Rng(params.controller.seed + 7);
    const modes = new Map<string, number>();
    // the planner's own figures over the plans that landed (MPPI's iterations, TSMC's beta, the feedback reserve): how much less it planned under load, in constant memory
    const plannerInfo = new Map<string, { plans: number; sum: number; min: number; max: number }>();
    const memory: MemorySample[] = [];
    let lastChange = 0;
    const bar = progressBar(`soak ${system}`, !values.json);
    let jitterMs: RunSummary['commandJitterMs'] = null;
    let goal: { success: boolean; timeToGoalS: number | null; heldFraction: number | null; endedInGoal: boolean } | null = null;
    try {
      const { summary } = await runLoop(sim, session, {
        durationS, lockstep: false, keepRecords: false, signal: shutdown.signal,
        measurementFilter: faults ? (t, y) => {
          simTimeS = t;
          if (within(t, SCHEDULE.sensorOutage.everyS, SCHEDULE.sensorOutage.forS)) return undefined;
          if (within(t, SCHEDULE.nanBurst.everyS, SCHEDULE.nanBurst.forS)) return y.map(() => NaN);
          return y;
        } : undefined,
        onTick: (r, k, total) => {
          const key = r.tick.mode === 'ok' ? 'ok' : `${r.tick.mode}: ${r.tick.reason.replace(/[\d.]+/g, '#')}`;
          modes.set(key, (modes.get(key) ?? 0) + 1);
          if (r.tick.planned) {
            for (const [name, v] of Object.entries(r.tick.info)) {
              if (!Number.isFinite(v)) continue;
              let s = plannerInfo.get(name);
              if (!s) plannerInfo.set(name, (s = { plans: 0, sum: 0, min: Infinity, max: -Infinity }));
              s.plans++;
              s.sum += v;
              s.min = Math.min(s.min, v);
              s.max = Math.max(s.max, v);
            }
          }
          if (faults && r.timeS - lastChange >= SCHEDULE.parameterChange.everyS) {
            lastChange = r.timeS;
            const { liveKey } = plannerDescriptor(session.planner.name);
            const base = session.params.planner[liveKey] as number;
            session.requestParameters({ [`${session.planner.name}.${liveKey}`]: base * (0.5 + rng.uniform()) });
          }
          if (k % Math.max(1, Math.round(session.rateHz * 10)) === 0) {
            // with node --expose-gc the heap is measured after a collection: its level, not the sawtooth
            (globalThis as { gc?: () => void }).gc?.();
            const m = process.memoryUsage();
            const sample: MemorySample = {
              timeS: r.timeS, rssMB: m.rss / MB, heapMB: m.heapUsed / MB, heapCommittedMB: m.heapTotal / MB, plannerHeapMB: NaN, plannerHeapCommittedMB: NaN,
            };
            memory.push(sample);
            // the planner thread has a heap of its own (answered after its current plan)
            void thread?.heap().then((h) => {
              sample.plannerHeapMB = (h?.usedBytes ?? NaN) / MB;
              sample.plannerHeapCommittedMB = (h?.committedBytes ?? NaN) / MB;
            });
          }
          bar.update((k + 1) / total, `t=${r.timeS.toFixed(0)}s`);
        },
      });
      jitterMs = summary.commandJitterMs;
      goal = { success: summary.success, timeToGoalS: summary.timeToGoalS, heldFraction: summary.heldFraction, endedInGoal: summary.endedInGoal };
    } finally {
      for (const l of loaders) l.kill();
      session.dispose();
      bar.done();
    }
    if (shutdown.received) console.error(`interrupted (${shutdown.received}) after ${session.controller.counters.ticks} ticks: results.json holds the soak up to it`);
    const periodMs = 1000 * session.periodS;
    const c = session.controller.counters;
    // memory after the first minute (or the first tenth) against the end: the warm-up allocates
    const settled = memory.filter((m) => m.timeS >= Math.min(60, durationS / 10));
    const none: MemorySample = { timeS: NaN, rssMB: NaN, heapMB: NaN, heapCommittedMB: NaN, plannerHeapMB: NaN, plannerHeapCommittedMB: NaN };
    const first = settled[0] ?? memory[0] ?? none;
    const last = memory.at(-1) ?? none;
    const result = {
      system, planner: session.planner.name, durationS, faults, load, periodMs, notes: session.notes,
      // a signal ends the soak early: the figures cover the ticks up to it
      interrupted: shutdown.received ?? null,
      jitterMs: jitterMs ?? { p50: NaN, p99: NaN, max: NaN },
      // whether the controller reached the goal and held it (the share of the ticks after in the goal region)
      goal,
      ticks: c.ticks, deadlineMisses: c.deadlineMisses, plannerErrors: c.plannerErrors, rejectedStates: c.rejectedStates, staleTicks: c.staleTicks,
      modes: Object.fromEntries([...modes].sort((a, b) => b[1] - a[1])),
      plannerInfo: Object.fromEntries([...plannerInfo].map(([name, s]) => [name, { plans: s.plans, mean: s.sum / s.plans, min: s.min, max: s.max }])),
      memory: {
        start: first, end: last, heapChange: last.heapMB / first.heapMB - 1, rssChange: last.rssMB / first.rssMB - 1,
        plannerHeapChange: last.plannerHeapMB / first.plannerHeapMB - 1, samples: memory,
      },
    };
    writeFileSync(join(out, 'results.json'), `${JSON.stringify(result, null, 1)}\n`);
    if (values.json) return printJson({ ...result, memory: { ...result.memory, samples: undefined }, out });
    console.log(`${result.planner} on ${system}, ${durationS} s real time, faults ${faults ? 'on' : 'off'}, load ${load}: ${c.ticks} ticks of ${periodMs.toFixed(1)} ms`);
    console.log(`  command-period jitter p50 ${result.jitterMs.p50.toFixed(2)} ms, p99 ${result.jitterMs.p99.toFixed(2)} ms, max ${result.jitterMs.max.toFixed(1)} ms`);
    if (goal) console.log(`  goal ${goal.success ? `reached at ${goal.timeToGoalS?.toFixed(2)} s, in it ${(100 * (goal.heldFraction ?? 0)).toFixed(1)}% of the time after` : 'not reached'}${goal.endedInGoal ? ', in it at the end' : ''}`);
    console.log(`  deadline misses ${c.deadlineMisses}, planner errors ${c.plannerErrors}, rejected states ${c.rejectedStates}, stale ticks ${c.staleTicks}`);
    console.log(`  heap ${first.heapMB.toFixed(1)} -> ${last.heapMB.toFixed(1)} MB (${(100 * result.memory.heapChange).toFixed(1)}%), RSS ${first.rssMB.toFixed(1)} -> ${last.rssMB.toFixed(1)} MB (${(100 * result.memory.rssChange).toFixed(1)}%) from t=${first.timeS.toFixed(0)} s`);
    console.log(`  heap committed (young generation included) ${first.heapCommittedMB.toFixed(1)} -> ${last.heapCommittedMB.toFixed(1)} MB`);
    if (thread) console.log(`  planner thread heap ${first.plannerHeapMB.toFixed(1)} -> ${last.plannerHeapMB.toFixed(1)} MB (${(100 * result.memory.plannerHeapChange).toFixed(1)}%), committed ${first.plannerHeapCommittedMB.toFixed(1)} -> ${last.plannerHeapCommittedMB.toFixed(1)} MB`);
    console.log(table([...modes].sort((a, b) => b[1] - a[1]).map(([k, n]) => [n, k]), ['ticks', 'mode: reason']));
    console.log(table(Object.entries(result.plannerInfo).map(([name, s]) => [name, s.mean.toPrecision(4), s.min.toPrecision(4), s.max.toPrecision(4)]), ['planner figure', 'mean', 'min', 'max']));
    console.log(`wrote ${join(out, 'results.json')}`);
  },
};
