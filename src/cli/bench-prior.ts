import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { lineChart, Series } from '../plot/svg.js';
import { loadCheckpoint } from '../prior/checkpoint.js';
import { runLoop } from '../run/loop.js';
import { assemble, controllerParameterTable, resolveRunParams, RunParams } from '../run/setup.js';
import { quantile } from '../samplers/stats.js';
import { Command, JSON_OPTION, optionalInteger, parseNumber, printJson, stringOpt, table, outputFolder } from './command.js';
import { progressBar } from './progress.js';
import { RUN_OPTIONS, runOptions } from './run.js';
import { InputError } from '../input-error.js';

/** How a configuration uses its prior. */
const VARIANTS = {
  plain: {},
  prior: {},
  value: { 'prior.policySamples': 0 },
  policy: { 'prior.value': false },
} as const;
type Variant = keyof typeof VARIANTS;

export interface Cell {
  horizon: number;
  samples: number;
  variant: Variant;
  prior?: string;
  successes: number;
  seeds: number;
  timeToGoalS: { median: number | null; max: number | null };
  solveMsP50: number;
}

/**
 * The benefit of learned priors in closed loop: for each prior (its horizon
 * is the plan's), MPPI at each sample count M without the prior and with it,
 * over the same seeds; at one M also with each part alone (the value
 * bootstrap without policy samples, the policy samples without the value).
 */
export const benchPriorCommand: Command = {
  name: 'bench prior',
  summary: 'Closed-loop benefit of learned priors: success rate and time to goal against M and the horizon, with and without each learned part; table, results.json and a plot.',
  usage: 'bench prior --system NAME --prior DIR [--prior DIR ...] [--samples 16,64,256,1024] [--parts-at M] [--baseline-horizon H] [--seeds N] [--duration SEC] [--params FILE.yaml] [--set key=value] [--x0 ..] [--out DIR] [--json]',
  options: {
    ...RUN_OPTIONS,
    prior: { type: 'string', multiple: true, description: 'a trained prior (repeat for priors of other horizons)', valueName: 'DIR' },
    samples: { type: 'string', description: 'MPPI sample counts M (default 16,64,256,1024)', valueName: 'M,...' },
    'parts-at': { type: 'string', description: 'the M at which each learned part is also measured alone (default 64; 0 = none)', valueName: 'M' },
    'baseline-horizon': { type: 'string', description: 'also measure plain MPPI at this horizon and every M (e.g. the system\'s default; 0 = none)', valueName: 'H' },
    seeds: { type: 'string', description: 'seeds per configuration, 0..N-1 (default 20)', valueName: 'N' },
    out: { type: 'string', description: 'output folder (default runs/bench-prior-SYSTEM-TIME)', valueName: 'DIR' },
    json: JSON_OPTION,
  },
  async run(values) {
    const priors = (values.prior as string[] | undefined) ?? [];
    if (priors.length === 0) throw new InputError('--prior DIR is required (repeat it for priors of other horizons)');
    const { system, durationS } = runOptions({ ...values, prior: undefined, lockstep: true });
    const samples = (stringOpt(values, 'samples') ?? '16,64,256,1024').split(',').map((t) => parseNumber('--samples', t));
    if (samples.some((m) => !Number.isInteger(m) || m < 2)) throw new InputError(`--samples must be integers >= 2, got ${stringOpt(values, 'samples')}`);
    const partsAt = optionalInteger(values, 'parts-at', 64, 0);
    const baselineH = optionalInteger(values, 'baseline-horizon', 0, 0);
    const seeds = optionalInteger(values, 'seeds', 20, 1);
    const out = outputFolder(values, `bench-prior-${system}`);
    const configs: { horizon: number; samples: number; variant: Variant; prior?: string }[] = [];
    for (const dir of priors) {
      const horizon = loadCheckpoint(dir).meta.horizon;
      for (const m of samples) {
        configs.push({ horizon, samples: m, variant: 'plain' }, { horizon, samples: m, variant: 'prior', prior: dir });
        if (m === partsAt) configs.push({ horizon, samples: m, variant: 'value', prior: dir }, { horizon, samples: m, variant: 'policy', prior: dir });
      }
    }
    if (baselineH > 0) for (const m of samples) configs.push({ horizon: baselineH, samples: m, variant: 'plain' });
    const base = runOptions({ ...values, prior: undefined, lockstep: true, set: [...((values.set as string[] | undefined) ?? []), 'planner=mppi'] });
    const bar = progressBar(`bench prior ${system}`, !values.json);
    const cells: Cell[] = [];
    for (const [k, c] of configs.entries()) {
      const flat: Record<string, unknown> = { ...flatOf(base.params), 'model.horizon': c.horizon, 'mppi.samples': c.samples, ...(c.prior ? { 'prior.path': c.prior, ...VARIANTS[c.variant] } : {}) };
      const params = resolveRunParams(system, flat);
      const runs = [];
      for (let seed = 0; seed < seeds; seed++) {
        const { session, sim } = await assemble({ ...params, controller: { ...params.controller, seed } }, { lockstep: true });
        try {
          const { summary } = await runLoop(sim, session, {
            durationS, lockstep: true, keepRecords: false,
            onTick: (_r, i, total) => bar.update((k + (seed + (i + 1) / total) / seeds) / configs.length, `H ${c.horizon} M ${c.samples} ${c.variant} seed ${seed}`),
          });
          runs.push(summary);
        } finally {
          session.dispose();
        }
      }
      const ttg = runs.filter((r) => r.success).map((r) => r.timeToGoalS!);
      cells.push({
        ...c, seeds, successes: ttg.length,
        timeToGoalS: { median: ttg.length ? quantile(ttg, 0.5) : null, max: ttg.length ? Math.max(...ttg) : null },
        solveMsP50: quantile(runs.map((r) => r.solveMs.p50), 0.5),
      });
    }
    bar.done();
    writeFileSync(join(out, 'results.json'), `${JSON.stringify({ system, seeds, durationS, cells, params: base.params }, null, 1)}\n`);
    writeFileSync(join(out, 'prior-benefit.svg'), benefitChart(system, cells));
    if (values.json) return printJson({ system, seeds, durationS, cells, out });
    console.log(table(cells.map((c) => [c.horizon, c.samples, c.variant, `${c.successes}/${c.seeds}`, c.timeToGoalS.median ?? '-', c.timeToGoalS.max ?? '-', c.solveMsP50]),
      ['H', 'M', 'variant', 'successes', 'time to goal median [s]', 'max [s]', 'solve p50 [ms]']));
    console.log(`wrote ${join(out, 'results.json')} and ${join(out, 'prior-benefit.svg')}`);
  },
};

/** The run's parameters as flat keys again (so one configuration can change a few of them): the controller's table, and the simulator's. */
function flatOf(p: RunParams): Record<string, unknown> {
  const flat: Record<string, unknown> = { ...controllerParameterTable(p).values };
  for (const [k, v] of Object.entries(p.sim)) flat[`sim.${k}`] = v;
  for (const [k, v] of Object.entries(p.simModel)) flat[`sim.model.${k}`] = v;
  return flat;
}

function benefitChart(system: string, cells: Cell[]): string {
  const horizons = [...new Set(cells.map((c) => c.horizon))];
  const series = (y: (c: Cell) => number | null, variant: Variant): Series[] => horizons
    .map((h, i) => {
      const row = cells.filter((c) => c.horizon === h && c.variant === variant).sort((a, b) => a.samples - b.samples);
      return { name: `${variant}, H ${h}`, x: row.map((c) => Math.log2(c.samples)), y: row.map((c) => y(c) ?? NaN), dashed: variant === 'plain', color: ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e'][i % 4] };
    })
    .filter((s) => s.x.length > 1);
  const rate = (c: Cell) => c.successes / c.seeds;
  const ttg = (c: Cell) => c.timeToGoalS.median;
  return lineChart(`bench prior ${system}: MPPI with (solid) and without (dashed) the learned prior`, [
    { title: 'success rate', xLabel: 'log2 M (samples per iteration)', series: [...series(rate, 'prior'), ...series(rate, 'plain')] },
    { title: 'time to goal, median of successes [s]', xLabel: 'log2 M', series: [...series(ttg, 'prior'), ...series(ttg, 'plain')] },
  ], 2);
}
