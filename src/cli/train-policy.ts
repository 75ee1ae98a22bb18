import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { lineChart } from '../plot/svg.js';
import { Command, JSON_OPTION, MAX_THREADS, optionalInteger, parseNumber, printJson, stringOpt } from './command.js';
import { progressBar } from './progress.js';
import { shutdown } from '../shutdown.js';
import { PROJECT_VERSION, splitSets, trainingOut } from './train-prior.js';
import { InputError } from '../input-error.js';
import { loadCheckpoint } from '../learned/checkpoint.js';
import { POLICY_TASK_NAMES, policyTask, PolicyTask, taskModel } from '../policy/tasks.js';
import { checkInitialPolicy, teacherProblem, policyCatch, rolloutNoise, PolicyLevel, POLICY_METHODS, POLICY_TRAIN_PARAMS, resolvePolicySettings, trainPolicy } from '../policy/train.js';


export const trainPolicyCommand: Command = {
  name: 'train-policy',
  summary: 'Train a neural feedback policy by tempered SMC on exact closed-loop gradients (TSMC:D, TSMC:E; TSMC paper Section IV) or by multi-start Adam; the output is a prior checkpoint (--prior DIR: MPPI\'s sampling policy, the controller\'s fallback: policy).',
  usage: `train-policy --task ${POLICY_TASK_NAMES.join('|')} [--method ${POLICY_METHODS.join('|')}] [--particles N] [--batch B] [--seed K] [--set train.KEY=value] [--set model.KEY=value] [--threads N] [--init DIR] [--out DIR] [--resume] [--json]`,
  options: {
    task: { type: 'string', description: `the paper's task: ${POLICY_TASK_NAMES.join(', ')}`, valueName: 'NAME' },
    method: { type: 'string', description: `${POLICY_METHODS.join(', ')} (default tsmc-d); the same as --set train.method=M`, valueName: 'M' },
    particles: { type: 'string', description: 'particles N (default: the task\'s); the same as --set train.particles=N', valueName: 'N' },
    batch: { type: 'string', description: 'initial states B per evaluation (default: the task\'s); the same as --set train.batch=B', valueName: 'B' },
    seed: { type: 'string', description: 'seed (default 0); the same as --set train.seed=K', valueName: 'K' },
    set: { type: 'string', multiple: true, description: `a training setting, train.KEY=value (${Object.keys(POLICY_TRAIN_PARAMS).join(', ')}), or a model parameter of the task, model.KEY=value (e.g. model.dtS and model.horizon to match a controller's step)`, valueName: 'KEY=value' },
    init: { type: 'string', description: 'a policy of this task (train-policy --out) to centre the prior on and draw the initial particles around, e.g. to refine it on a longer horizon; the same as --set train.init=DIR', valueName: 'DIR' },
    out: { type: 'string', description: 'output folder, a prior checkpoint (default runs/policy-TASK-TIMESTAMP)', valueName: 'DIR' },
    resume: { type: 'boolean', description: 'continue the run in --out from its last level' },
    threads: { type: 'string', description: `threads for the rollouts (default all ${MAX_THREADS} cores); the result does not depend on it`, valueName: 'N' },
    json: JSON_OPTION,
  },
  interruptible: true,
  // a tempering level runs to its end (a minute or so at the defaults) before the checkpoint and curve are written
  interruptGraceS: 180,
  interruptFinishing: 'the current tempering level, its checkpoint and the curve',
  check(values) {
    trainPolicyOptions(values);
  },
  async run(values) {
    const { task, settings, threads, model } = trainPolicyOptions(values);
    // its network learned to swing up into the catch: without it nothing holds the goal, which may be meant (say so, do not refuse)
    if (settings.init && settings.catch === 'none' && loadCheckpoint(settings.init).meta.catch) {
      console.error(`train-policy: note: train.init '${settings.init}' was trained with a catch (train.catch = lqr) and this run trains without one; give --set train.catch=lqr to keep it`);
    }
    const out = trainingOut(values, `policy-${task.name}`);
    const bar = progressBar(`train-policy ${task.name} ${settings.method}`, !values.json);
    const lessonNote = (l: PolicyLevel) => l.lesson
      ? ` (round from own cost ${l.lesson.policyCost.toPrecision(6)}: iLQG's path ${l.lesson.teacherCost.toPrecision(6)} in ${l.lesson.teacherIterations} iterations, ${l.lesson.wallS.toFixed(1)} s)`
      : '';
    const line = (l: PolicyLevel) => settings.method === 'gradient'
      ? `block ${l.level}: best ${l.energy[0].toPrecision(6)} median ${l.energy[3].toPrecision(6)}${lessonNote(l)}`
      : `level ${l.level} beta ${l.beta.toExponential(2)} ESS ${l.ess.toFixed(0)} lineages ${l.lineages} acc ${l.acceptance.toFixed(2)} best ${l.energy[0].toPrecision(6)} median ${l.energy[3].toPrecision(6)}`;
    let collapseSaid = false;
    const result = await trainPolicy(task, settings, {
      out, resume: values.resume === true, version: PROJECT_VERSION, signal: shutdown.signal, threads, model,
      onLevel: (l) => {
        // beta climbs unevenly; its log is the better progress measure
        const fraction = settings.method === 'gradient' ? (l.level * 50) / settings.iterations : l.beta >= 1 ? 1 : Math.max(0, 1 + Math.log10(Math.max(l.beta, 1e-6)) / 6);
        bar.update(fraction, line(l));
        if (!values.json && !process.stderr.isTTY) console.error(`${line(l)}, ${l.wallS.toFixed(1)} s (rollouts ${l.rolloutS!.toFixed(1)} s)`);
        // said once: from here the levels refine one policy, not a population (docs/policies.md, lineages)
        if (l.lineages === 1 && settings.particles > 1 && !collapseSaid) {
          collapseSaid = true;
          console.error(`train-policy: note: from level ${l.level} every particle descends from one initial particle (lineages 1 of ${settings.particles}): the population has collapsed onto one line, and the levels left refine one policy`);
        }
      },
    });
    bar.done();
    writeFileSync(join(out, 'curve.json'), `${JSON.stringify(result.levels, null, 1)}\n`);
    writeFileSync(join(out, 'curve.svg'), energyCurve(task, settings.method, result.levels));
    const paperWallS = settings.method === 'gradient' || !task.paper ? null : task.paper.wallS[settings.method];
    const summary = {
      task: task.name, system: task.system, method: settings.method, out, particles: settings.particles, batch: settings.batch,
      // with a teacher, the policy's own cost (its energy with the task's reference, not a round's path)
      // with training noise, judged under it (its noise-free rollout and draws of its own); noiseFreeCost then gives it without
      seed: settings.seed, teacher: settings.teacher, levels: result.levels.length, finished: result.finished, bestEnergy: result.best.energy, noiseFreeCost: result.noiseFreeCost ?? null,
      gradientEvaluationsPerParticle: result.gradientEvaluations, wallS: result.wallS,
      // of wallS, the rollouts and their gradients; the rest is the sampler's own work
      rolloutS: result.rolloutS,
      paper: task.paper ? { particles: task.paper.particles, batch: task.paper.batch, wallS: paperWallS, costs: task.paper.costs ?? null } : null,
      interrupted: shutdown.received ?? null,
    };
    // a checkpoint holds a policy either way; one whose every rollout diverged is no result
    if (!Number.isFinite(result.best.energy) && !summary.interrupted) {
      throw new Error(`no policy gave a finite cost in ${summary.levels} ${settings.method === 'gradient' ? 'block' : 'level'}${summary.levels === 1 ? '' : 's'}: every closed-loop rollout diverged (look at train.processNoise ${settings.processNoise}, train.priorScale ${settings.priorScale}, model.dtS ${taskModel(task, model).dtS}); ${out} holds the last policy, not a trained one`);
    }
    if (summary.interrupted) console.error(`interrupted (${summary.interrupted}) after ${summary.levels} levels: ${out} holds them (continue with --resume)`);
    if (values.json) return printJson(summary);
    console.log(`${task.name} by ${settings.method}${settings.teacher === 'none' ? '' : ` with teacher ${settings.teacher}`}: best ${settings.teacher === 'none' ? 'energy' : 'own cost'} ${result.best.energy.toPrecision(6)}${result.noiseFreeCost === undefined ? '' : ` under the training noise (${result.noiseFreeCost.toPrecision(6)} without)`} after ${summary.levels} ${settings.method === 'gradient' ? 'blocks of 50 iterations' : 'levels'}${result.finished ? '' : ' (not finished)'}, ${summary.gradientEvaluationsPerParticle.toFixed(0)} gradient evaluations per particle, ${summary.wallS.toFixed(1)} s (rollouts ${summary.rolloutS.toFixed(1)} s)`);
    if (paperWallS !== null && task.paper) console.log(`  the paper: ${paperWallS} s on two workstation GPUs at N = ${task.paper.particles}, B = ${task.paper.batch} (here N = ${settings.particles}, B = ${settings.batch})`);
    if (task.paper?.costs) console.log(`  the paper's costs: TSMC ${task.paper.costs.tsmc}, PPO ${task.paper.costs.ppo}, SAC ${task.paper.costs.sac} (PPO and SAC are not run here)`);
    console.log(`  policy: ${out} (use: bench policy --task ${task.name} --prior ${out}; run --prior ${out} --set prior.value=false); curve: ${join(out, 'curve.svg')}`);
  },
};

function trainPolicyOptions(values: Record<string, unknown>): { task: PolicyTask; settings: ReturnType<typeof resolvePolicySettings>; threads: number; model: Record<string, number> } {
  const name = stringOpt(values, 'task');
  if (!name) throw new InputError(`--task NAME is required: one of ${POLICY_TASK_NAMES.join(', ')}`);
  const task = policyTask(name);
  const { own, rest } = splitSets(values, 'train');
  const { own: modelSets, rest: others } = splitSets({ set: rest }, 'model');
  if (others.length) throw new InputError(`--set ${others[0]}: train-policy takes train.KEY=value (keys: ${Object.keys(POLICY_TRAIN_PARAMS).join(', ')}) and model.KEY=value only`);
  // checked by the model's schema now, not at the first rollout
  const model = taskModel(task, modelSets).params;
  const modelOverrides = Object.fromEntries(Object.keys(modelSets).map((k) => [k, model[k]]));
  for (const key of ['particles', 'batch', 'seed'] as const) {
    const text = stringOpt(values, key);
    if (text !== undefined) own[key] = parseNumber(`--${key}`, text);
  }
  const method = stringOpt(values, 'method');
  if (method !== undefined) own.method = method;
  const init = stringOpt(values, 'init');
  if (init !== undefined) own.init = init;
  const settings = resolvePolicySettings(task, own);
  // refused before --out is made
  if (settings.init) checkInitialPolicy(task, settings.init, modelOverrides);
  policyCatch(task, settings, taskModel(task, modelOverrides));
  rolloutNoise(task, settings, taskModel(task, modelOverrides));
  const teacher = teacherProblem(task, settings);
  if (teacher) throw new InputError(teacher);
  return { task, settings, threads: optionalInteger(values, 'threads', MAX_THREADS, 1, MAX_THREADS, `this machine has ${MAX_THREADS} cores`), model: modelOverrides };
}

function energyCurve(task: PolicyTask, method: string, levels: PolicyLevel[]): string {
  const x = levels.map((l) => l.level);
  const q = (k: number) => levels.map((l) => l.energy[k]);
  const positive = levels.every((l) => l.energy.every((e) => !(e <= 0)));
  const rounds = levels.filter((l) => l.lesson);
  // with a teacher the energies are distances from each round's path; the policies' own costs are the rounds'
  const second = rounds.length
    ? { title: 'each round: its policy\'s own cost, iLQG\'s path', xLabel: 'block where the round began', logY: positive,
      series: [{ name: 'policy', x: rounds.map((l) => l.level), y: rounds.map((l) => l.lesson!.policyCost) }, { name: 'iLQG path', x: rounds.map((l) => l.level), y: rounds.map((l) => l.lesson!.teacherCost) }] }
    : { title: method === 'gradient' ? 'gradient evaluations per block' : 'beta and acceptance', xLabel: 'level',
      series: method === 'gradient' ? [{ name: 'evaluations', x, y: levels.map((l) => l.gradientEvaluations) }]
        : [{ name: 'beta', x, y: levels.map((l) => l.beta) }, { name: 'acceptance', x, y: levels.map((l) => l.acceptance) }] };
  return lineChart(`train-policy ${task.name} (${method}): particle energies per level`, [
    { title: `${rounds.length ? 'tracking energy (from the round\'s path)' : 'energy (mean closed-loop cost)'}: min, p10, p25, median, p75, p90`, xLabel: method === 'gradient' ? 'block of 50 Adam iterations' : 'tempering level', logY: positive,
      series: [['min', 0], ['p10', 1], ['p25', 2], ['median', 3], ['p75', 4], ['p90', 5]].map(([name, k]) => ({ name: name as string, x, y: q(k as number) })) },
    second,
  ], 1);
}
