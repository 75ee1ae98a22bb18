import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { lineChart, Series } from '../plot/svg.js';
import { loadCheckpoint } from '../learned/checkpoint.js';
import { lockstepEpisodes } from '../run/episodes.js';
import { controllerParameterTable, resolveRunParams, RunParams } from '../run/setup.js';
import { Command, JSON_OPTION, optionalInteger, parseNumber, printJson, stringOpt, table, outputFolder } from './command.js';
import { progressBar } from './progress.js';
import { RUN_OPTIONS, runOptions } from './run.js';
import { InputError } from '../input-error.js';
import { plannerDescriptor } from '../planners/registry.js';

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
  usage: 'bench prior --system NAME --prior DIR [--prior DIR ...] [--samples 16,64,256,1024] [--compare spo,trtsmc,mppi --budgets 160,640,2560] [--parts-at M] [--baseline-horizon H] [--seeds N] [--duration SEC] [--params FILE.yaml] [--set key=value] [--x0 ..] [--out DIR] [--json]',
  options: {
    ...RUN_OPTIONS,
    prior: { type: 'string', multiple: true, description: 'a trained prior (repeat for priors of other horizons)', valueName: 'DIR' },
    samples: { type: 'string', description: 'MPPI sample counts M (default 16,64,256,1024)', valueName: 'M,...' },
    'parts-at': { type: 'string', description: 'the M at which each learned part is also measured alone (default 64; 0 = none)', valueName: 'M' },
    'baseline-horizon': { type: 'string', description: 'also measure plain MPPI at this horizon and every M (e.g. the system\'s default; 0 = none)', valueName: 'H' },
    compare: { type: 'string', description: 'instead: planners guided by the (first) prior side by side at equal budgets of model steps per tick, e.g. spo,trtsmc,mppi', valueName: 'P,...' },
    budgets: { type: 'string', description: 'with --compare: model steps per tick (default 160,640,2560); MPPI gets budget / (H J) samples, the SMC planners budget / H particles', valueName: 'S,...' },
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
    const compare = stringOpt(values, 'compare');
    if (compare !== undefined) return comparePlanners(values, system, durationS, priors[0], compare, seeds, out);
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
      const outcome = await lockstepEpisodes(resolveRunParams(system, flat), { seeds, durationS, progress: (fraction, note) => bar.update((k + fraction) / configs.length, `H ${c.horizon} M ${c.samples} ${c.variant} ${note}`) });
      cells.push({ ...c, ...outcome });
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

interface CompareCell { planner: string; budget: number; size: number; successes: number; seeds: number; timeToGoalS: { median: number | null; max: number | null }; solveMsP50: number }

/**
 * Planners guided by one prior, side by side at equal budgets of model steps
 * per tick: an SMC-over-time planner steps `particles` particles `H` deep
 * (particles = budget / H; TRT-SMC's atoms are network evaluations, not model
 * steps); MPPI rolls `samples` sequences H long in each of J iterations
 * (samples = budget / (H J)). Everything else is the run's parameters.
 */
async function comparePlanners(values: Record<string, unknown>, system: string, durationS: number, prior: string, compareText: string, seeds: number, out: string) {
  const planners = compareText.split(',').map((t) => t.trim());
  for (const name of planners) plannerDescriptor(name);
  const budgets = (stringOpt(values, 'budgets') ?? '160,640,2560').split(',').map((t) => parseNumber('--budgets', t));
  const horizon = loadCheckpoint(prior).meta.horizon;
  const base = runOptions({ ...values, prior: undefined, lockstep: true });
  const bar = progressBar(`bench prior ${system}: ${planners.join(', ')}`, !values.json);
  const cells: CompareCell[] = [];
  const total = budgets.length * planners.length;
  for (const budget of budgets) {
    for (const planner of planners) {
      const flat: Record<string, unknown> = { ...flatOf(base.params), planner, 'model.horizon': horizon, 'prior.path': prior };
      const iterations = planner === 'mppi' ? base.params.planners.mppi.iterations as number : 1;
      const sizeKey = plannerDescriptor(planner).sizeKey;
      const size = Math.round(budget / (horizon * iterations));
      const most = (plannerDescriptor(planner).schema[sizeKey] as { max?: number }).max ?? Infinity;
      if (size < 2 || size > most) throw new InputError(`--budgets ${budget}: ${planner} would get ${size} ${sizeKey} at H ${horizon}${planner === 'mppi' ? ` and ${iterations} iterations` : ''} (it takes 2 to ${most})`);
      flat[`${planner}.${sizeKey}`] = size;
      const k = cells.length;
      const outcome = await lockstepEpisodes(resolveRunParams(system, flat), { seeds, durationS, progress: (fraction, note) => bar.update((k + fraction) / total, `${budget} steps ${planner} ${sizeKey} ${size} ${note}`) });
      cells.push({ planner, budget, size, ...outcome });
    }
  }
  bar.done();
  writeFileSync(join(out, 'results.json'), `${JSON.stringify({ system, seeds, durationS, prior, horizon, cells, params: base.params }, null, 1)}\n`);
  writeFileSync(join(out, 'planners.svg'), compareChart(system, horizon, cells));
  if (values.json) return printJson({ system, seeds, durationS, cells, out });
  console.log(table(cells.map((c) => [c.budget, c.planner, c.size, `${c.successes}/${c.seeds}`, c.timeToGoalS.median ?? '-', c.timeToGoalS.max ?? '-', c.solveMsP50]),
    ['model steps per tick', 'planner', 'particles / samples', 'successes', 'time to goal median [s]', 'max [s]', 'solve p50 [ms]']));
  console.log(`wrote ${join(out, 'results.json')} and ${join(out, 'planners.svg')}`);
}

function compareChart(system: string, horizon: number, cells: CompareCell[]): string {
  const planners = [...new Set(cells.map((c) => c.planner))];
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd'];
  const series = (y: (c: CompareCell) => number | null): Series[] => planners.map((p, i) => {
    const row = cells.filter((c) => c.planner === p).sort((a, b) => a.budget - b.budget);
    return { name: p, x: row.map((c) => Math.log2(c.budget)), y: row.map((c) => y(c) ?? NaN), color: colors[i % colors.length] };
  });
  return lineChart(`bench prior ${system} (H ${horizon}): planners guided by one prior at equal model steps per tick`, [
    { title: 'success rate', xLabel: 'log2 model steps per tick', series: series((c) => c.successes / c.seeds) },
    { title: 'time to goal, median of successes [s]', xLabel: 'log2 model steps per tick', series: series((c) => c.timeToGoalS.median) },
  ], 2);
}

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
