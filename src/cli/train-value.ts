import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { lineChart } from '../plot/svg.js';
import { Command, JSON_OPTION, parseNumber, printJson, stringOpt, loadTraining } from './command.js';
import { progressBar } from './progress.js';
import { shutdown } from '../shutdown.js';
import { RUN_OPTIONS, runOptions } from './run.js';
import { PROJECT_VERSION, splitSets, trainingOut } from './train-prior.js';
import type { SweepPoint } from '../prior/value-iteration.js';
import { InputError } from '../input-error.js';

export const trainValueCommand: Command = {
  name: 'train-value',
  summary: 'Replace a prior\'s learned value by fitted value iteration, MPPI as the improvement operator, on the costs of model.* alone (no hand-made terms); resumable.',
  usage: 'train-value --system NAME --prior DIR [--replay FILE] [--sweeps K] [--seed K] [--params FILE.yaml] [--set key=value] [--set value.KEY=value] [--out DIR] [--resume] [--json]',
  options: {
    system: RUN_OPTIONS.system,
    prior: { type: 'string', description: 'the prior (train-prior --out) whose policy, features and replay buffer are used; its value is replaced', valueName: 'DIR' },
    replay: { type: 'string', description: 'the replay buffer whose states the sweeps plan from (default: DIR/replay.bin); for a train-prior run\'s --out/best, its run\'s --out/replay.bin', valueName: 'FILE' },
    params: RUN_OPTIONS.params,
    set: { ...RUN_OPTIONS.set, description: 'override a parameter: the planner\'s and model\'s (mppi.KEY, model.KEY, prior.KEY: the plans that make the targets) or value iteration\'s (value.KEY; see docs/priors.md)' },
    seed: RUN_OPTIONS.seed,
    sweeps: { type: 'string', description: 'the most value-iteration sweeps (default 16; fewer when the closed-loop check passes); the same as --set value.sweeps=K', valueName: 'K' },
    out: { type: 'string', description: 'output folder, a prior (default runs/value-SYSTEM-TIMESTAMP)', valueName: 'DIR' },
    resume: { type: 'boolean', description: 'continue the run in --out where it stopped' },
    json: JSON_OPTION,
  },
  interruptible: true,
  async run(values) {
    const from = stringOpt(values, 'prior');
    if (!from) throw new InputError('--prior DIR is required: the prior whose value is replaced');
    const { own: valueSets, rest: runSets } = splitSets(values, 'value');
    const { system, params } = runOptions({ ...values, prior: undefined, set: [...runSets, 'planner=mppi'] });
    const sweeps = stringOpt(values, 'sweeps');
    if (sweeps !== undefined) valueSets.sweeps = parseNumber('--sweeps', sweeps);
    const { resolveValueParams, valueIteration } = await loadTraining(() => import('../prior/value-iteration.js'));
    const value = resolveValueParams(valueSets);
    const out = trainingOut(values, `value-${system}`);
    const bar = progressBar(`train-value ${system}`, !values.json);
    let sweepsDone = 0;
    const result = await valueIteration({
      run: params, value, from, replay: stringOpt(values, 'replay'), out, resume: values.resume === true, version: PROJECT_VERSION, signal: shutdown.signal,
      onPlan: (done, total) => bar.update((sweepsDone + done / total) / value.sweeps, `sweep ${sweepsDone + 1}/${value.sweeps}: plan ${done}/${total}`),
      onCheck: (done, total) => bar.update((sweepsDone + 1) / value.sweeps, `sweep ${sweepsDone + 1}/${value.sweeps}: closed-loop check ${done}/${total}`),
      onSweep: ({ sweep, sweeps: total, point, kept }) => {
        sweepsDone = sweep;
        if (!values.json && !process.stderr.isTTY) {
          const check = point.check ? `, check ${point.check.successes}/${point.check.seeds} to the goal (${point.check.wallS.toFixed(0)} s), keeping sweep ${kept}` : '';
          console.error(`sweep ${sweep}/${total}: targets p10/p50/p90 ${point.targets.map((t) => t.toFixed(1)).join(' / ')}, fit loss ${point.fitLoss.toFixed(4)}${point.demoCapped !== undefined ? `, ${point.demoCapped} capped by the demonstrations` : ''}${point.ceilingCapped ? `, ${point.ceilingCapped} at the ceiling` : ''}, value at the start ${point.startValue.toFixed(1)}${check}, ${point.wallS.toFixed(1)} s`);
        }
      },
    });
    bar.done();
    writeFileSync(join(out, 'value-curve.json'), `${JSON.stringify(result.curve, null, 1)}\n`);
    writeFileSync(join(out, 'value-curve.svg'), valueCurve(system, result.curve));
    const last = result.curve[result.curve.length - 1];
    const kept = result.curve.find((p) => p.sweep === result.kept);
    const summary = {
      system, out, from, backend: result.backend, wallS: result.wallS, sweeps: result.curve.length, horizon: result.meta?.horizon ?? NaN, last,
      kept: kept ?? null, checkPassed: result.passed,
      interrupted: shutdown.received ?? null,
    };
    if (summary.interrupted) console.error(`interrupted (${summary.interrupted}) after ${summary.sweeps} whole sweeps: the checkpoint in ${out} holds them (continue with --resume)`);
    if (values.json) return printJson(summary);
    console.log(`fitted the value of ${system} over ${summary.sweeps} sweeps (${summary.sweeps * summary.horizon} model steps) in ${summary.wallS.toFixed(1)} s wall time on TensorFlow.js ${summary.backend}`);
    if (last) console.log(`  last sweep: targets median ${last.targets[1].toFixed(1)}, fit loss ${last.fitLoss.toFixed(4)} (symlog), value at the start state ${last.startValue.toFixed(1)}`);
    if (kept?.check) {
      console.log(`  the prior holds sweep ${kept.sweep}'s value: its closed-loop check reached the goal in ${kept.check.successes}/${kept.check.seeds} episodes${result.passed ? ' (every one: the run stopped there)' : ' (the best of the sweeps checked; none reached it in every episode: check it with bench mpc before use)'}`);
    }
    console.log(`  prior: ${out} (its policy from ${from}; use: run --prior ${out}); curve: ${join(out, 'value-curve.svg')}`);
  },
};

function valueCurve(system: string, curve: SweepPoint[]): string {
  const x = curve.map((p) => p.sweep);
  const checked = curve.filter((p) => p.check);
  return lineChart(`train-value ${system}: value iteration`, [
    { title: 'plan-cost targets', xLabel: 'sweep', logY: true, series: ['p10', 'p50', 'p90'].map((name, k) => ({ name, x, y: curve.map((p) => Math.max(1e-6, p.targets[k])) })) },
    { title: 'value at the start state', xLabel: 'sweep', series: [{ name: 'V(x0)', x, y: curve.map((p) => p.startValue) }] },
    { title: 'fit loss (symlog MSE)', xLabel: 'sweep', logY: true, series: [{ name: 'loss', x, y: curve.map((p) => Math.max(1e-9, p.fitLoss)) }] },
    { title: 'closed-loop check: share of episodes to the goal', xLabel: 'sweep', series: [{ name: 'share', x: checked.map((p) => p.sweep), y: checked.map((p) => p.check!.successes / p.check!.seeds) }] },
  ], 2);
}
