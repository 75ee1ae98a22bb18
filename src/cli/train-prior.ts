import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GivenText, keyedRecord } from '../params.js';
import { lineChart } from '../plot/svg.js';
import { Command, JSON_OPTION, optionalInteger, parseNumber, printJson, stringOpt, outputFolder, loadTraining } from './command.js';
import { probeRedis, redisConnection, redisLabel } from '../queue/redis.js';
import { progressBar } from './progress.js';
import { shutdown } from '../shutdown.js';
import { RUN_OPTIONS, runOptions } from './run.js';
import { InputError } from '../input-error.js';
import { plannerDescriptor, PLANNERS } from '../planners/registry.js';
import { resolveTrainParams } from '../prior/train-params.js';

export const PROJECT_VERSION = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

export const trainPriorCommand: Command = {
  name: 'train-prior',
  summary: 'Train a prior (sampling policy, adaptive prior, value), simulation-in-the-loop against the bundled simulator: acting with MPPI (PO-MPC) or with SPO / TRT-SMC (their EM loop), distilling the planner\'s first-step distribution; checkpoints, a learning curve and a resumable run in --out.',
  usage: 'train-prior --system NAME [--planner mppi|spo|trtsmc] [--queue redis://HOST:PORT [--actors N] [--max-lag N]] [--episodes N] [--kl forward|reverse] [--lambda L|inf] [--seed K] [--params FILE.yaml] [--set key=value] [--set train.KEY=value] [--backend wasm|webgpu|cpu] [--out DIR] [--resume] [--json]',
  options: {
    system: RUN_OPTIONS.system,
    params: RUN_OPTIONS.params,
    planner: { type: 'string', description: 'the planner that acts and whose first-step distribution the policy learns: mppi (default, PO-MPC), spo or trtsmc (their EM loop, SPO Algorithm 2 / TRT-SMC Algorithm 3)', valueName: 'NAME' },
    set: { ...RUN_OPTIONS.set, description: 'override a parameter: the run\'s (mppi.KEY, model.KEY, sim.KEY, ...) or training\'s (train.KEY; see docs/priors.md)' },
    seed: RUN_OPTIONS.seed,
    episodes: { type: 'string', description: 'closed-loop episodes (default 40); the same as --set train.episodes=N', valueName: 'N' },
    kl: { type: 'string', description: 'adaptive prior by reverse (default, mode-seeking) or forward (covering) KL', valueName: 'forward|reverse' },
    lambda: { type: 'string', description: 'KL weight of the policy update: 0 (TD-MPC2), 0.1, 1 (default), 9, inf (BMPC imitation)', valueName: 'L' },
    backend: { type: 'string', description: 'TensorFlow.js backend: wasm (default), webgpu, cpu', valueName: 'B' },
    out: { type: 'string', description: 'output folder (default runs/prior-SYSTEM-TIMESTAMP)', valueName: 'DIR' },
    resume: { type: 'boolean', description: 'continue the run in --out where it stopped' },
    queue: { type: 'string', description: 'act on workers: episodes go on the BullMQ queue at this Redis for `tempered-mpc worker`s, the networks come back through it; this process learns', valueName: 'URL' },
    actors: { type: 'string', description: 'with --queue: episodes acted at once (default 1: the same run as without --queue, seed for seed)', valueName: 'N' },
    'max-lag': { type: 'string', description: 'with --queue: steps an actor may plan ahead of the learner (default 0: each plan sees the networks its last step led to)', valueName: 'N' },
    json: JSON_OPTION,
  },
  interruptible: true,
  // an episode runs to its end before the checkpoint is written
  interruptGraceS: 60,
  async check(values) {
    await trainPriorOptions(values);
  },
  async run(values) {
    const { system, params, planner, train, remote } = await trainPriorOptions(values);
    // the tensor library is loaded only by the command that trains
    const { trainPrior } = await loadTraining(() => import('../prior/trainer.js'));
    const out = trainingOut(values, `prior-${system}`);
    const bar = progressBar(`train-prior ${system}`, !values.json);
    if (remote) {
      const probe = await probeRedis(remote.url);
      if ('unreachable' in probe) throw new Error(`cannot reach Redis at ${redisLabel(remote.url)} (${probe.unreachable}): is redis-server running there?`);
    }
    const result = await trainPrior({
      run: params, train, out, resume: values.resume === true, version: PROJECT_VERSION, signal: shutdown.signal,
      remote: remote && { ...remote, log: (line: string) => console.error(`train-prior: ${line}`) },
      onEpisode: ({ episode, episodes, point }) => {
        bar.update(episode / episodes, `ep ${episode}/${episodes} cost ${point.meanCost.toFixed(3)} goal ${point.goalS.toFixed(1)} s`);
        if (!values.json && !process.stderr.isTTY && (episode % 5 === 0 || episode === episodes)) {
          console.error(`episode ${episode}/${episodes}: mean cost ${point.meanCost.toFixed(3)}, ${point.goalS.toFixed(1)} s in the goal region, ${point.wallS.toFixed(1)} s`);
        }
      },
    });
    bar.done();
    const curve = result.curve;
    writeFileSync(join(out, 'learning-curve.json'), `${JSON.stringify(curve, null, 1)}\n`);
    writeFileSync(join(out, 'learning-curve.svg'), learningCurve(system, curve));
    const last = curve.slice(-Math.min(10, curve.length));
    const summary = {
      system, out, backend: result.backend, wallS: result.wallS, episodes: result.meta.episodes, updates: result.meta.updates,
      horizon: result.meta.horizon, interrupted: shutdown.received ?? null, actors: result.actors ?? null, lastEpisodes: { count: last.length, meanCost: mean(last.map((p) => p.meanCost)), endInGoal: last.filter((p) => p.endsInGoal).length },
      best: result.best ?? null,
    };
    if (summary.interrupted) console.error(`interrupted (${summary.interrupted}) after episode ${summary.episodes}: checkpoint written to ${out} (continue with --resume)`);
    if (values.json) return printJson(summary);
    console.log(`trained a prior for ${system} (horizon ${summary.horizon} steps) in ${summary.wallS.toFixed(1)} s wall time on TensorFlow.js ${summary.backend}: ${summary.episodes} episodes, ${summary.updates} updates`);
    if (summary.actors) console.log(`  ${summary.actors.count} actor(s) on workers, max lag ${summary.actors.maxLag}: the networks they planned with were ${summary.actors.staleness.mean.toFixed(2)} updates behind on average, ${summary.actors.staleness.max} at most`);
    console.log(`  last ${last.length} episodes: mean cost ${summary.lastEpisodes.meanCost.toFixed(3)} per step, ${summary.lastEpisodes.endInGoal}/${last.length} end in the goal region`);
    console.log(`  prior: ${out} (use: run --prior ${out} --planner ${planner}, or --set prior.path=${out}); learning curve: ${join(out, 'learning-curve.svg')}`);
    const best = summary.best;
    if (best && best.episode !== summary.episodes) {
      console.log(`  best window: episodes ${best.episode - best.episodes + 1}-${best.episode}, ${best.endInGoal}/${best.episodes} ended in the goal region (mean cost ${best.meanCost.toFixed(3)}): its networks are in ${best.dir}`);
    }
  },
};

/** The run's parameters, the acting planner and training's parameters, checked before anything is written. */
async function trainPriorOptions(values: Record<string, unknown>) {
  const { own: trainSets, rest: runSets } = splitSets(values, 'train');
  const planner = stringOpt(values, 'planner') ?? 'mppi';
  if (!plannerDescriptor(planner).distils) throw new InputError(`--planner ${planner}: it reports no first-step distribution to distil (use ${PLANNERS.filter((p) => p.distils).map((p) => p.name).join(', ')})`);
  const { system, params } = runOptions({ ...values, set: runSets, planner, prior: undefined });
  for (const [flag, key] of [['episodes', 'episodes'], ['kl', 'kl'], ['lambda', 'lambda'], ['backend', 'backend']] as const) {
    const v = stringOpt(values, flag);
    if (v !== undefined) trainSets[key] = flag === 'episodes' ? parseNumber('--episodes', v) : v;
  }
  const url = stringOpt(values, 'queue');
  for (const flag of ['actors', 'max-lag']) if (url === undefined && values[flag] !== undefined) throw new InputError(`--${flag} needs --queue (the actors are workers on a queue)`);
  if (url !== undefined) redisConnection(url);
  const remote = url === undefined ? undefined : { url, actors: optionalInteger(values, 'actors', 1, 1, 1024), maxLag: optionalInteger(values, 'max-lag', 0, 0, 1_000_000) };
  return { system, params, planner, train: resolveTrainParams(trainSets), remote };
}

/** `--set` pairs split into the training command's own group (`GROUP.KEY=V`, keys without the prefix) and the rest (the run's). */
export function splitSets(values: Record<string, unknown>, group: string): { own: Record<string, unknown>; rest: string[] } {
  const own: Record<string, unknown> = keyedRecord();
  const rest = ((values.set as string[] | undefined) ?? []).filter((s) => {
    if (!s.startsWith(`${group}.`)) return true;
    const eq = s.indexOf('=');
    if (eq < 0) throw new InputError(`--set ${s}: expected key=value`);
    own[s.slice(group.length + 1, eq)] = new GivenText(s.slice(eq + 1));
    return false;
  });
  return { own, rest };
}

/** A training run's output folder, made: --out, or runs/NAME-TIMESTAMP (a resumed run must name its --out). */
export function trainingOut(values: Record<string, unknown>, name: string): string {
  if (values.resume && !stringOpt(values, 'out')) throw new InputError('--resume needs the --out of the run to continue');
  const out = outputFolder(values, name);
  return out;
}

const mean = (v: number[]) => (v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN);

function learningCurve(system: string, curve: { episode: number; meanCost: number; goalS: number; qLoss: number; priorLoss: number; policyLoss: number }[]): string {
  const x = curve.map((p) => p.episode);
  return lineChart(`train-prior ${system}: learning curve`, [
    { title: 'mean stage cost per step', xLabel: 'episode', series: [{ name: 'cost', x, y: curve.map((p) => p.meanCost) }] },
    { title: 'time in the goal region [s]', xLabel: 'episode', series: [{ name: 'goal', x, y: curve.map((p) => p.goalS) }] },
    { title: 'losses (episode means)', xLabel: 'episode', logY: true, series: [
      { name: 'Q (TD)', x, y: curve.map((p) => Math.max(1e-9, p.qLoss)) },
      { name: 'prior (KL)', x, y: curve.map((p) => Math.max(1e-9, p.priorLoss)) },
    ] },
    { title: 'policy loss (eq. 18)', xLabel: 'episode', series: [{ name: 'policy', x, y: curve.map((p) => p.policyLoss) }] },
  ], 2);
}
