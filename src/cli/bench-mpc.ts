import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RunSummary, runLoop } from '../run/loop.js';
import { assemble } from '../run/setup.js';
import { quantile } from '../samplers/stats.js';
import { Command, JSON_OPTION, optionalInteger, printJson, stringOpt, table, outputFolder } from './command.js';
import type { RecedingPlanner } from '../planners/receding.js';
import { progressBar } from './progress.js';
import { InputError } from '../input-error.js';
import { CONTROLLER_PARAMS } from '../controller/controller.js';
import { RUN_OPTIONS, runOptions } from './run.js';

export const benchMpcCommand: Command = {
  name: 'bench mpc',
  summary: 'Closed-loop benchmark: the embedded run over many seeds; success rate, time to goal, final error, solve-time percentiles and deadline misses.',
  usage: 'bench mpc --system NAME [--planner NAME] [--prior DIR] [--seeds N] [--seed K] [--duration SEC] [--planner-outage AT,PERIODS] [--params FILE.yaml] [--set key=value] [--x0 a,b,...] [--lockstep] [--out DIR] [--json]',
  options: {
    ...RUN_OPTIONS,
    seeds: { type: 'string', description: 'number of seeds, K..K+N-1 for --seed K (default 20, from 0)', valueName: 'N' },
    'planner-outage': { type: 'string', description: 'fault injection: every plan asked for from AT seconds of simulated time on, for PERIODS plan periods, fails (the controller follows its last plan while it is young enough, then its fallback)', valueName: 'AT,PERIODS' },
    out: { type: 'string', description: 'where to write results.json (default runs/bench-mpc-SYSTEM-TIME)', valueName: 'DIR' },
    json: JSON_OPTION,
  },
  check(values) {
    benchMpcOptions(values);
  },
  async run(values) {
    const { system, params, durationS, lockstep, seeds, firstSeed, outage } = benchMpcOptions(values);
    const out = outputFolder(values, `bench-mpc-${system}`);
    const bar = progressBar(`${params.controller.planner} ${system}`, !values.json);
    const runs: ({ seed: number } & RunSummary)[] = [];
    for (let seed = firstSeed; seed < firstSeed + seeds; seed++) {
      let clock = () => 0;
      const wrapPlanner = outage ? (p: RecedingPlanner) => withOutage(p, outage, () => clock()) : undefined;
      const { session, sim } = await assemble({ ...params, controller: { ...params.controller, seed } }, { lockstep, wrapPlanner });
      if (outage) outage.periodS = session.planPeriodS;
      clock = () => sim.timeS;
      const { summary } = await runLoop(sim, session, {
        durationS, lockstep,
        onTick: (_r, k, total) => bar.update((seed - firstSeed + (k + 1) / total) / seeds, `seed ${seed}`),
      });
      session.dispose();
      runs.push({ seed, ...summary });
    }
    bar.done();
    const ok = runs.filter((r) => r.success);
    const ttg = ok.map((r) => r.timeToGoalS!);
    const result = {
      system, planner: params.controller.planner, lockstep, seeds, firstSeed, durationS,
      successes: ok.length,
      endedInGoal: runs.filter((r) => r.endedInGoal).length,
      ...(outage ? { plannerOutage: { atS: outage.atS, periods: outage.periods, periodS: outage.periodS } } : {}),
      timeToGoalS: { median: quantile(ttg, 0.5), max: ttg.length ? Math.max(...ttg) : null },
      solveMs: { p50: quantile(runs.map((r) => r.solveMs.p50), 0.5), p99: Math.max(...runs.map((r) => r.solveMs.p99)), max: Math.max(...runs.map((r) => r.solveMs.max)) },
      deadlineMisses: runs.reduce((s, r) => s + r.deadlineMisses, 0),
      runs,
    };
    writeFileSync(join(out, 'results.json'), `${JSON.stringify({ ...result, params }, null, 1)}\n`);
    if (values.json) return printJson({ ...result, out });
    console.log(table(runs.map((r) => [r.seed, String(r.success), r.timeToGoalS ?? '-', r.heldFraction === null ? '-' : `${(100 * r.heldFraction).toFixed(0)}%`, r.heldRmsError === null ? '-' : +r.heldRmsError.toPrecision(3), r.finalError, r.solveMs.p50, r.solveMs.p99, r.deadlineMisses]),
      ['seed', 'success', 'goal at [s]', 'in goal after', 'rms error after', 'final error', 'solve p50', 'solve p99', 'misses']));
    console.log(`\n${result.planner} on ${system}${lockstep ? ' (lockstep)' : ''}${outage ? `, planner out for ${outage.periods} plan periods from ${outage.atS} s` : ''}: ${ok.length}/${seeds} successes, ${result.endedInGoal} ended in the goal region; time to goal median ${result.timeToGoalS.median.toFixed(2)} s, max ${result.timeToGoalS.max?.toFixed(2) ?? '-'} s; solve p99 (worst run) ${result.solveMs.p99.toFixed(1)} ms; deadline misses ${result.deadlineMisses}`);
    const gpu = ['gpuSubmits', 'gpuReadbacks', 'gpuKiBUp', 'gpuKiBDown'].map((k) => runs.map((r) => r.plannerInfo[k]).filter((v) => v !== undefined));
    if (gpu[0].length) {
      const span = (v: { min: number; max: number }[]) => `${+Math.min(...v.map((x) => x.min)).toPrecision(3)}-${+Math.max(...v.map((x) => x.max)).toPrecision(3)}`;
      console.log(`GPU per tick: ${span(gpu[0])} submits, ${span(gpu[1])} read-backs, ${span(gpu[2])} KiB up, ${span(gpu[3])} KiB down`);
    }
    console.log(`wrote ${join(out, 'results.json')}`);
  },
};

/** The run's options, and the seeds: N of them from --seed (default 0). */
function benchMpcOptions(values: Record<string, unknown>) {
  const run = runOptions(values);
  const seeds = optionalInteger(values, 'seeds', 20, 1);
  const firstSeed = run.params.controller.seed;
  const maxSeed = CONTROLLER_PARAMS.seed.max!;
  if (firstSeed + seeds - 1 > maxSeed) throw new InputError(`--seed ${firstSeed} with --seeds ${seeds} runs past the largest seed ${maxSeed}`);
  const text = stringOpt(values, 'planner-outage');
  let outage: Outage | undefined;
  if (text !== undefined) {
    const [at, periods, ...rest] = text.split(',').map((v) => Number(v.trim()));
    if (rest.length || !(at >= 0) || !Number.isInteger(periods) || periods < 1) throw new InputError(`--planner-outage ${text}: expected AT,PERIODS (seconds >= 0, a whole number of plan periods >= 1), e.g. 6,10`);
    outage = { atS: at, periods, periodS: 0 };
  }
  return { ...run, seeds, firstSeed, outage };
}

interface Outage {
  atS: number;
  periods: number;
  /** the plan period, known once the session is built */
  periodS: number;
}

/** The real planner, failing every plan asked for during the outage (simulated time from `clock`). */
function withOutage(inner: RecedingPlanner, outage: Outage, clock: () => number): RecedingPlanner {
  return {
    name: inner.name,
    reset: () => inner.reset(),
    updateParams: (c) => inner.updateParams(c),
    plan(req) {
      const t = clock();
      if (t >= outage.atS - 1e-9 && t < outage.atS + outage.periods * outage.periodS - 1e-9) return Promise.reject(new Error('injected planner outage'));
      return inner.plan(req);
    },
  };
}
