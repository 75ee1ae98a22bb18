import { choice, num, ParamsOf, resolveParams, text } from '../params.js';
import { InputError } from '../input-error.js';

/** The tensor backends training can run on. */
export const TRAIN_BACKENDS = ['wasm', 'cpu', 'webgpu'] as const;
export type TrainBackend = (typeof TRAIN_BACKENDS)[number];

/** `train-prior`'s parameters (keys of `--set train.KEY=V`, and the named flags). */
export const TRAIN_PARAMS = {
  episodes: num(40, 'closed-loop episodes against the simulator', { min: 1, max: 1e6, integer: true }),
  episodeS: num(8, 'length of one episode [s]', { min: 0.1, max: 3600 }),
  startSpread: num(0.3, 'std of the random offset added to each physical state of the system\'s x0 at an episode\'s start', { min: 0, max: 100 }),
  kl: choice('reverse', ['reverse', 'forward'] as const, 'how the adaptive prior is fitted to the planner: reverse KL (eq. (8)/(12), mode-seeking) or forward KL (eq. (9)/(13), covering)'),
  lambda: text('1', 'KL weight lambda of eqs. (17)/(18): 0 recovers TD-MPC2\'s update, inf BMPC\'s imitation', { maxLength: 32 }),
  entropy: num(1e-4, 'entropy weight alpha of eq. (18)', { min: 0, max: 100 }),
  gamma: num(0.97, 'discount per model step', { min: 0, max: 1, exclusive: true }),
  nStep: num(5, 'steps of observed cost before the TD target bootstraps (eq. (15) with n steps)', { min: 1, max: 1000, integer: true }),
  batch: num(256, 'transitions per update', { min: 1, max: 65536, integer: true }),
  updatesPerStep: num(1, 'gradient updates per environment step (1 / n_d2u)', { min: 0, max: 100, integer: true }),
  learningRate: num(1e-3, 'Adam learning rate', { min: 0, max: 1, exclusive: true }),
  gradClip: num(20, 'global gradient-norm clip per network', { min: 0, max: 1e9, exclusive: true }),
  tau: num(0.01, 'Polyak rate of the target networks', { min: 0, max: 1, exclusive: true }),
  width: num(64, 'units per hidden layer (sized for the control rate: the planner runs the networks on the CPU every plan)', { min: 1, max: 4096, integer: true }),
  depth: num(2, 'hidden layers', { min: 1, max: 8, integer: true }),
  policySamples: num(32, 'MPPI samples drawn from the sampling policy during training (n_pi)', { min: 0, max: 1 << 20, integer: true }),
  reanalyzeEvery: num(0, 'lazy reanalyze: every this many updates, re-plan a few buffered states with the current networks (0 = off)', { min: 0, max: 1e6, integer: true }),
  reanalyzeCount: num(8, 'states re-planned per reanalyze', { min: 1, max: 4096, integer: true }),
  capacity: num(100000, 'replay buffer size [transitions], allocated at start', { min: 1, max: 2e6, integer: true }),
  checkpointEvery: num(10, 'episodes between checkpoints (the last episode always writes one); each checkpoint whose last checkpointEvery episodes ended in the goal more often than any before (or as often, at a lower mean cost) is also kept in --out/best', { min: 1, max: 1e6, integer: true }),
  valueMix: num(1, 'TRT-SMC\'s value mixing sigma: each TD target bootstraps from valueMix x the target network + (1 - valueMix) x the acting planner\'s own cost-to-go estimate at that state (its plan\'s cost: SPO\'s and TRT-SMC\'s SMC estimate, which then wants their gamma at train.gamma); 1: the network alone', { min: 0, max: 1 }),
  teacherModel: text('', 'model overrides (key=value,...) for the planner that acts while training, e.g. "wEnergy=10,terminalLqr=1": a teacher with hand-made cost terms whose behaviour the prior learns from, while its value learns the costs of model.* (empty: the planner uses model.* itself, with the value)', { maxLength: 1024 }),
  backend: choice('wasm', TRAIN_BACKENDS, 'TensorFlow.js backend for training: wasm (CPUs), webgpu (GPUs), cpu (pure JS, slowest)'),
} as const;
export type TrainParams = ParamsOf<typeof TRAIN_PARAMS>;

/** lambda as text: a non-negative number or `inf`. */
export function parseLambda(text: string): number {
  const t = text.trim().toLowerCase();
  if (t === 'inf' || t === 'infinity') return Infinity;
  const v = Number(t);
  if (t === '' || !Number.isFinite(v) || v < 0) throw new InputError(`train.lambda must be a non-negative number or inf, got ${JSON.stringify(text)}`);
  return v;
}

export function resolveTrainParams(overrides: Record<string, unknown>): TrainParams {
  const p = resolveParams('train', TRAIN_PARAMS, overrides);
  parseLambda(p.lambda);
  parseOverrideList('train.teacherModel', p.teacherModel);
  if (p.valueMix < 1 && p.teacherModel.trim()) throw new InputError(`train.valueMix ${p.valueMix} needs the acting planner to plan with the value, and train.teacherModel '${p.teacherModel}' makes it a teacher without it (its plans' costs are the teacher's): set one of them`);
  return p;
}

/** "a=1,b=2" as {a: 1, b: 2}. */
export function parseOverrideList(label: string, text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const item of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const eq = item.indexOf('=');
    const v = Number(item.slice(eq + 1));
    if (eq <= 0 || item.slice(eq + 1).trim() === '' || !Number.isFinite(v)) throw new InputError(`${label} must be key=number pairs separated by commas, got ${JSON.stringify(item)}`);
    out[item.slice(0, eq).trim()] = v;
  }
  return out;
}
