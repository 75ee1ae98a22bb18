import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createBackend } from '../kernels/index.js';
import { readout } from '../models/model.js';
import { SolveMethod, SOLVE_METHODS, resolveSolveParams, solve, SOLVE_SCHEMAS, SolveResult } from '../planners/solve.js';
import { boxPlot, lineChart, Panel } from '../plot/svg.js';
import { quantile } from '../samplers/stats.js';
import { Command, JSON_OPTION, optionalInteger, parseInteger, printJson, stringOpt, table, outputFolder } from './command.js';
import { progressBar } from './progress.js';
import { BACKEND_OPTION, backendFromOptions, modelFromOptions, SET_OPTION, SYSTEM_OPTION } from './rollout.js';
import { InputError } from '../input-error.js';

const METHOD_LABEL: Record<SolveMethod, string> = {
  tsmc: 'TSMC', nuts: 'Parallel-NUTS', mala: 'Parallel-MALA', mppi: 'Parallel-MPPI', gradient: 'Multi-start Adam',
};

export const benchToCommand: Command = {
  name: 'bench to',
  summary: 'Trajectory-optimisation benchmark (TSMC paper §V): TSMC and every baseline from the same initial particles; table, box plots of final costs and best trajectories.',
  usage: 'bench to --system NAME [--methods tsmc,nuts,...] [--particles N] [--seed K] [--backend cpu|webgpu] [--set key=value] [--out DIR] [--json]',
  options: {
    system: SYSTEM_OPTION,
    methods: { type: 'string', description: `comma-separated subset of ${SOLVE_METHODS.join(',')} (default all)`, valueName: 'LIST' },
    particles: { type: 'string', description: 'particles per method (default 100)', valueName: 'N' },
    seed: { type: 'string', description: 'seed of the shared initial particles (default 0)', valueName: 'K' },
    backend: BACKEND_OPTION,
    set: { ...SET_OPTION, description: 'override a system parameter, or a planner parameter for every method that has it' },
    out: { type: 'string', description: 'output folder (default runs/bench-to-SYSTEM-TIME)', valueName: 'DIR' },
    json: JSON_OPTION,
  },
  check(values) {
    benchToOptions(values);
  },
  async run(values) {
    const { model, methods, seed, allParams } = benchToOptions(values);
    const out = outputFolder(values, `bench-to-${model.name}`);
    const backend = await createBackend(model, backendFromOptions(values));

    const results: SolveResult[] = [];
    for (const m of methods) {
      const bar = progressBar(METHOD_LABEL[m].padEnd(16), !values.json);
      results.push(await solve(backend, { planner: m, params: allParams[m], seed, onProgress: (f, note) => bar.update(f, note) }));
      bar.done();
    }
    const summary = results.map((r) => ({
      method: r.planner,
      label: METHOD_LABEL[r.planner],
      best: r.bestCost,
      median: quantile(r.costs, 0.5),
      p90: quantile(r.costs, 0.9),
      goalReached: r.goalReached,
      wallS: r.wallMs / 1000,
      rollouts: r.diagnostics.rollouts,
      finalState: r.bestStates[r.bestStates.length - 1] ?? [],
    }));

    const spread = Math.max(...summary.map((s) => s.p90)) / Math.max(1e-9, Math.min(...summary.map((s) => s.best)));
    writeFileSync(join(out, 'costs.svg'), boxPlot(
      `${model.name}: final particle costs (N=${results[0]?.particles}, seed ${seed})`, 'trajectory cost',
      results.map((r) => ({ name: METHOD_LABEL[r.planner], values: r.costs, note: `${(r.wallMs / 1000).toFixed(1)} s` })),
      spread > 20 && Math.min(...summary.map((s) => s.best)) > 0,
    ));
    writeFileSync(join(out, 'trajectories.svg'), trajectoryChart(model, results));
    writeFileSync(join(out, 'results.json'), `${JSON.stringify({ system: model.name, seed, backend: backend.kind, summary, results }, null, 1)}\n`);
    if (values.json) return printJson({ system: model.name, seed, backend: backend.kind, out, summary });
    console.log(`${model.name}: ${results[0]?.particles} particles per method, seed ${seed}, ${backend.kind} backend`);
    console.log(table(summary.map((s) => [s.label, s.best, s.median, s.p90, String(s.goalReached ?? 'n/a'), s.wallS]),
      ['method', 'best', 'median', 'p90', 'goal', 'wall[s]']));
    console.log(`\nwrote ${join(out, 'costs.svg')}, ${join(out, 'trajectories.svg')}, ${join(out, 'results.json')}`);
  },
};

/** Best trajectory of each method: every state quantity over time (plus the path, for planar systems). */
function trajectoryChart(model: import('../models/model.js').Model, results: SolveResult[]): string {
  const time = Array.from({ length: model.horizon + 1 }, (_, t) => t * model.dtS);
  const readouts = results.map((r) => r.bestStates.map((x) => readout(model, x)));
  const names = Object.keys(readouts[0]?.[0] ?? {});
  const panels: Panel[] = names.map((name) => ({
    title: name,
    xLabel: 'time [s]',
    series: [
      ...results.map((r, i) => ({ name: METHOD_LABEL[r.planner], x: time, y: readouts[i].map((o) => o[name]) })),
      { name: 'goal', x: [0, time[time.length - 1]], y: [readout(model, [...model.goal])[name], readout(model, [...model.goal])[name]], color: '#000000', dashed: true },
    ],
  }));
  if (model.name === 'pusher-slider') {
    panels.unshift({
      title: 'slider path (bx, by) [m]',
      series: [
        ...results.map((r) => ({ name: METHOD_LABEL[r.planner], x: r.bestStates.map((x) => x[0]), y: r.bestStates.map((x) => x[1]) })),
        { name: 'start/goal', x: [model.x0[0], model.goal[0]], y: [model.x0[1], model.goal[1]], color: '#000000', dashed: true },
      ],
    });
  }
  return lineChart(`${model.name}: best trajectory of each method`, panels, 1, 760, 190);
}

/** The system, the methods, the seed and each method's parameters, checked. */
function benchToOptions(values: Record<string, unknown>) {
  const plannerKeys = new Set(SOLVE_METHODS.flatMap((p) => Object.keys(SOLVE_SCHEMAS[p])));
  const { model, rest } = modelFromOptions(values, plannerKeys);
  const methodsText = stringOpt(values, 'methods');
  const methods = (methodsText ? methodsText.split(',').map((s) => s.trim()) : SOLVE_METHODS) as SolveMethod[];
  for (const m of methods) if (!(SOLVE_METHODS as string[]).includes(m)) throw new InputError(`unknown method '${m}' (known: ${SOLVE_METHODS.join(', ')})`);
  const particlesText = stringOpt(values, 'particles');
  if (particlesText !== undefined) rest.particles = parseInteger('--particles', particlesText, 2);
  const seed = optionalInteger(values, 'seed', 0, 0);
  const paramsFor = (m: SolveMethod) => {
    const own = Object.fromEntries(Object.entries(rest).filter(([k]) => Object.hasOwn(SOLVE_SCHEMAS[m], k)));
    return resolveSolveParams(m, model.def, own);
  };
  const allParams = Object.fromEntries(methods.map((m) => [m, paramsFor(m)]));
  return { model, methods, seed, allParams };
}
