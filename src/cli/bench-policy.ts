import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Simulator, resolveSimParams } from '../../sim/simulator.js';
import { LearnedPrior, mismatch } from '../learned/runtime.js';
import { loadCheckpoint, PriorError } from '../learned/checkpoint.js';
import { fromPhysical, inGoalRegion, Model, physicalNames, withUnit } from '../models/model.js';
import { modelDefinition } from '../models/index.js';
import { buildStepGraphs } from '../kernels/graphs.js';
import { compileStageCostFunction, compileTerminalCostFunction } from '../kernels/js-source.js';
import { controlScaling } from '../models/controls.js';
import { goalDistance, GoalTracker } from '../run/loop.js';
import { lineChart } from '../plot/svg.js';
import { quantile } from '../samplers/stats.js';
import { Command, JSON_OPTION, optionalInteger, outputFolder, printJson, requireString } from './command.js';
import { progressBar } from './progress.js';
import { splitSets } from './train-prior.js';
import { InputError } from '../input-error.js';
import { POLICY_TASK_NAMES, policyTask, PolicyTask, taskModel, taskPlant } from '../policy/tasks.js';
import { mixtureCounts, type StartDistribution } from '../policy/target.js';

export const benchPolicyCommand: Command = {
  name: 'bench policy',
  summary: 'A trained policy alone in closed loop with the simulator, from a grid over the task\'s initial states: successes (goal region reached and held), mean trajectory cost over the task\'s horizon.',
  usage: `bench policy --task ${POLICY_TASK_NAMES.join('|')} --prior DIR [--starts N] [--seconds S] [--seed K] [--set sim.KEY=value] [--out DIR] [--json]`,
  options: {
    task: { type: 'string', description: `the task the policy was trained on: ${POLICY_TASK_NAMES.join(', ')}`, valueName: 'NAME' },
    prior: { type: 'string', description: 'the policy: a prior checkpoint (train-policy or train-prior --out) for the task\'s system and step', valueName: 'DIR' },
    starts: { type: 'string', description: 'initial states: a grid of about N over a box distribution (20 x 20 for 400), N noise seeds from a single start, alike unless the simulator has noise (--set sim.processNoise=...) (default 400 for a box, 20 for a point)', valueName: 'N' },
    seconds: { type: 'string', description: 'how long each start runs (default: the task\'s episode)', valueName: 'S' },
    seed: { type: 'string', description: 'seed of the simulator\'s noise for the first start (default 1)', valueName: 'K' },
    set: { type: 'string', multiple: true, description: 'a simulator setting, sim.KEY=value (processNoise, measurementNoise, massScale, ...)', valueName: 'sim.KEY=value' },
    out: { type: 'string', description: 'output folder for outcomes.svg (default runs/bench-policy-TASK-TIME)', valueName: 'DIR' },
    json: JSON_OPTION,
  },
  check(values) {
    benchPolicyOptions(values);
  },
  async run(values) {
    const o = benchPolicyOptions(values);
    const { task, policy, plant, cost, starts, durationS } = o;
    const costOf = trajectoryCost(cost);
    if (starts.length > 1 && task.starts.kind === 'point' && o.sim.processNoise === 0 && o.sim.measurementNoise === 0) {
      console.error(`bench policy: note: ${task.name} starts from one state and the simulator has no noise (sim.processNoise and sim.measurementNoise are 0): its ${starts.length} runs are one run repeated; give the noise to tell them apart`);
    }
    const bar = progressBar(`bench policy ${task.name}`, !values.json);
    const outcomes: { start: number[]; success: boolean; firstInGoalS: number | null; timeToGoalS: number | null; closestError: number; closestAtS: number; cost: number; fallbacks: number }[] = [];
    for (let k = 0; k < starts.length; k++) {
      const sim = new Simulator(modelDefinition(task.system), plant.dtS, resolveSimParams({ ...o.sim, x0: starts[k] }), o.seed + k, { ...plant.params });
      const tracker = new GoalTracker(modelDefinition(task.system).goalRegion?.holdS ?? 0);
      const ticks = Math.round(durationS / plant.dtS);
      let fallbacks = 0;
      let closest = { error: Infinity, atS: 0 };
      const states: number[][] = [];
      const controls: number[][] = [];
      for (let t = 0; t < ticks; t++) {
        const x = fromPhysical(plant, sim.measure());
        // a policy whose output is not finite gets the safe command (zero) for that tick
        const u = policy.command(x, plant.goal) ?? (fallbacks++, new Array<number>(plant.controlDim).fill(0));
        if (t < cost.horizon) {
          states.push(fromPhysical(plant, sim.state));
          controls.push(u);
        }
        sim.advance(u);
        const y = sim.state;
        const error = goalDistance(plant, y, plant.goal);
        if (error < closest.error) closest = { error, atS: sim.timeS };
        const xNext = fromPhysical(plant, y);
        tracker.observe(sim.timeS, inGoalRegion(plant, xNext) === true, error);
        if (t + 1 === cost.horizon) states.push(xNext);
      }
      outcomes.push({ start: starts[k], success: tracker.timeToGoalS !== null, firstInGoalS: tracker.firstInGoalS, timeToGoalS: tracker.timeToGoalS, closestError: closest.error, closestAtS: closest.atS, cost: costOf(states, controls), fallbacks });
      bar.update((k + 1) / starts.length, `${outcomes.filter((r) => r.success).length}/${k + 1} succeeded`);
    }
    bar.done();
    const successes = outcomes.filter((r) => r.success).length;
    const reached = outcomes.filter((r) => r.firstInGoalS !== null).length;
    const closestError = quantile(outcomes.map((r) => r.closestError), 0.5);
    const meanCost = outcomes.reduce((s, r) => s + r.cost, 0) / outcomes.length;
    const out = outputFolder(values, `bench-policy-${task.name}`);
    writeFileSync(join(out, 'outcomes.json'), `${JSON.stringify(outcomes, null, 1)}\n`);
    writeFileSync(join(out, 'outcomes.svg'), outcomePlot(task, plant, outcomes));
    const summary = { task: task.name, prior: o.dir, successes, reached, closestErrorMedian: closestError, starts: outcomes.length, meanCost, durationS, sim: o.sim, fallbackTicks: outcomes.reduce((s, r) => s + r.fallbacks, 0), out };
    if (values.json) return printJson(summary);
    console.log(`${task.name}: the policy alone reached and held the goal from ${successes} of ${outcomes.length} starts (reached it from ${reached}); mean trajectory cost over the task's ${cost.horizon} steps ${meanCost.toPrecision(6)}; closest approach to the goal (state distance, median over starts) ${closestError.toPrecision(3)}`);
    console.log(`  plot: ${join(out, 'outcomes.svg')}`);
  },
};

function benchPolicyOptions(values: Record<string, unknown>) {
  const task = policyTask(requireString(values, 'task'));
  const dir = requireString(values, 'prior');
  // the task's model as the policy was trained on it (train-policy --set model.KEY=value is recorded in the checkpoint)
  const { meta, networks } = loadCheckpoint(dir);
  const trained = (meta.training.model ?? {}) as Record<string, number>;
  const cost = taskModel(task, trained);
  const plant = taskPlant(task, trained);
  const problem = mismatch(meta, cost, 'policy');
  if (problem) throw new PriorError(`prior '${dir}' ${problem}`);
  const policy = LearnedPrior.fromNetworks(meta, networks, dir);
  const { own, rest } = splitSets(values, 'sim');
  if (rest.length) throw new InputError(`--set ${rest[0]}: bench policy takes sim.KEY=value only`);
  const sim = Object.fromEntries(Object.entries(resolveSimParams(own)).filter(([k]) => k !== 'x0'));
  if (own.x0 !== undefined) throw new InputError('--set sim.x0: bench policy chooses the starts (--starts N over the task\'s initial states)');
  const count = optionalInteger(values, 'starts', task.starts.kind === 'box' ? 400 : 20, 1, 100000);
  const durationS = values.seconds === undefined ? task.episodeS : Number(values.seconds);
  if (!(durationS > 0 && durationS <= 3600)) throw new InputError(`--seconds ${String(values.seconds)}: expected a number of seconds in (0, 3600]`);
  const seed = optionalInteger(values, 'seed', 1, 0, 2 ** 31 - 1 - count);
  return { task, dir, policy, plant, cost, sim, starts: gridStarts(task.starts, count), durationS, seed };
}

/** About `count` starts covering the distribution: a grid of cell centres over a box, the point repeated, each part of a mixture its share (physical units). */
export function gridStarts(mu: StartDistribution, count: number): number[][] {
  if (mu.kind === 'mixture') {
    const counts = mixtureCounts(mu.parts.map((p) => p.share), count);
    return mu.parts.flatMap((p, k) => (counts[k] ? gridStarts(p.region, counts[k]) : []));
  }
  if (mu.kind === 'point') return Array.from({ length: count }, () => [...mu.y]);
  const dims = mu.lower.length;
  const k = Math.max(1, Math.round(count ** (1 / dims)));
  const rows: number[][] = [];
  const index = new Array<number>(dims).fill(0);
  for (let r = 0; r < k ** dims; r++) {
    rows.push(index.map((i, j) => mu.lower[j] + ((i + 0.5) / k) * (mu.upper[j] - mu.lower[j])));
    for (let j = 0; j < dims && ++index[j] === k; j++) index[j] = 0;
  }
  return rows;
}

/** The task's trajectory cost of a recorded closed loop (states x_0..x_T, controls u_0..u_{T-1}, model units; u_{-1} the control's centre, as in training). */
function trajectoryCost(model: Model): (states: number[][], controls: number[][]) => number {
  const graphs = buildStepGraphs(model, false);
  const stage = compileStageCostFunction(graphs);
  const terminal = compileTerminalCostFunction(graphs);
  const rest = Array.from(controlScaling(model).center);
  return (states, controls) => {
    let c = 0;
    for (let t = 0; t < controls.length; t++) c += stage(states[t], controls[t], t === 0 ? rest : controls[t - 1], model.goal);
    return c + terminal(states[states.length - 1], model.goal);
  };
}

function outcomePlot(task: PolicyTask, plant: Model, outcomes: { start: number[]; success: boolean; cost: number }[]): string {
  const ok = outcomes.filter((o) => o.success);
  const failed = outcomes.filter((o) => !o.success);
  if (task.starts.kind === 'box' && task.starts.lower.length === 2) {
    const [xLabel, yLabel] = physicalNames(plant).map((name, i) => withUnit(name, plant.def.physicalUnits[i]));
    return lineChart(`bench policy ${task.name}: starts that reached and held the goal (${ok.length}/${outcomes.length})`, [
      { title: 'starts: succeeded and failed', xLabel, yLabel,
        series: [{ name: 'succeeded', x: ok.map((o) => o.start[0]), y: ok.map((o) => o.start[1]), markers: true }, { name: 'failed', x: failed.map((o) => o.start[0]), y: failed.map((o) => o.start[1]), markers: true }] },
    ], 1, 520, 480);
  }
  return lineChart(`bench policy ${task.name}: trajectory cost per start (${ok.length}/${outcomes.length} succeeded)`, [
    { title: 'trajectory cost over the task\'s horizon', xLabel: 'start', series: [{ name: 'cost', x: outcomes.map((_, i) => i), y: outcomes.map((o) => o.cost) }] },
  ], 1);
}
