import { createBackend } from '../kernels/index.js';
import type { RolloutBackend } from '../kernels/index.js';
import { compileStageCostFunction, compileStepFunction } from '../kernels/js-source.js';
import { buildStepGraphs } from '../kernels/graphs.js';
import { modelDefinition } from '../models/index.js';
import { fromPhysical, inGoalRegion, Model, ModelDefinition, resolveModel } from '../models/model.js';
import { controlScaling, ControlScaling, toNormalised } from '../models/controls.js';
import { Rng } from '../random.js';
import { plannerDescriptor } from '../planners/registry.js';
import type { RecedingPlanner } from '../planners/receding.js';
import { controlPeriodS, RunParams } from '../run/setup.js';
import { Simulator } from '../../sim/simulator.js';
import type { LearnedPrior } from '../learned/runtime.js';
import { InputError } from '../input-error.js';
import { parseOverrideList, TrainParams } from './train-params.js';

/**
 * The acting half of train-prior (the E-step), apart from the tensors: the
 * planner guided by the current networks steps the simulator and hands each
 * transition to the learner. The learner runs it in its own process, or
 * actors run it in worker processes (train-prior --queue), with the same
 * random streams, so one actor reproduces the single-process run exactly.
 */

/** One step of an episode, as the learner stores it. */
export interface Transition {
  episode: number;
  /** the step's index in its episode */
  t: number;
  x: number[];
  /** the command in normalised units */
  z: number[];
  cost: number;
  next: number[];
  /** the planner's first-step distribution (mean, std) */
  abar: number[];
  sigma: number[];
  /** the plan's cost: the acting planner's own estimate of the cost-to-go at x (SPO's and TRT-SMC's SMC estimate), for train.valueMix */
  estimate: number;
  /** the true state is in the goal region after the step */
  inGoal: boolean;
  /** the version of the networks the plan used */
  version: number;
}

/** Everything an actor needs, built once per process. */
export interface Acting {
  def: ModelDefinition;
  model: Model;
  periodS: number;
  /** steps per episode */
  ticks: number;
  backend: RolloutBackend;
  reference: number[];
  scaling: ControlScaling;
  stageCost: ReturnType<typeof compileStageCostFunction>;
  /** the planner reads `guide.prior` at every plan: the learner (or an actor's snapshot) replaces it */
  guide: { prior: LearnedPrior; step: (x: readonly number[], u: readonly number[]) => number[]; settings: Record<string, unknown> };
  /** the acting planner, seeded */
  planner(seed: number): Promise<RecedingPlanner>;
  dispose(): void;
}

/** The prior's model, the acting planner's (the same, or a teacher with its own cost terms) and the step, checked. */
export function actingModels(run: RunParams, train: TrainParams): { def: ModelDefinition; model: Model; teacher: Model; periodS: number } {
  const def = modelDefinition(run.system);
  const model = resolveModel(def, run.model);
  const periodS = controlPeriodS(run.controller.rateHz, model.dtS);
  if (Math.abs(periodS - model.dtS) > 1e-9 * model.dtS) {
    throw new InputError(`train-prior needs one model step per control period (a transition is a model step): rateHz ${run.controller.rateHz} gives ${periodS} s, the model's dtS is ${model.dtS} s`);
  }
  const teacherOverrides = parseOverrideList('train.teacherModel', train.teacherModel);
  const teacher = Object.keys(teacherOverrides).length ? resolveModel(def, { ...run.model, ...teacherOverrides }, 'train.teacherModel') : model;
  if (teacher.horizon !== model.horizon || teacher.dtS !== model.dtS) throw new InputError('train.teacherModel may change cost terms, not the horizon or the step');
  return { def, model, teacher, periodS };
}

/** The acting planner (on the prior's own model with its value, or a teacher without it), its backend and the simulator's setting. */
export async function acting(run: RunParams, train: TrainParams, prior: LearnedPrior): Promise<Acting> {
  const { def, model, teacher, periodS } = actingModels(run, train);
  const graphs = buildStepGraphs(model, false);
  const step = compileStepFunction(graphs);
  const noise = new Array<number>(model.noiseDim).fill(0);
  const backend = await createBackend(teacher, run.controller.backend, { threads: run.controller.threads > 0 ? run.controller.threads : undefined });
  const guide = { prior, step: (x: readonly number[], u: readonly number[]) => step(x, u, noise), settings: { ...run.prior, path: '', policySamples: train.policySamples, value: teacher === model } };
  const descriptor = plannerDescriptor(run.controller.planner);
  return {
    def, model, periodS, ticks: Math.max(1, Math.round(train.episodeS / periodS)), backend, reference: [...model.goal], scaling: controlScaling(model), stageCost: compileStageCostFunction(graphs), guide,
    async planner(seed: number) {
      const p = await descriptor.build({ model: teacher, backend, params: { ...run.planners[descriptor.name] }, seed, rng: new Rng(seed), guide });
      if (!p.firstStep) throw new InputError(`planner ${descriptor.name} reports no first-step distribution, so train-prior cannot distil it (use mppi, spo or trtsmc)`);
      return p;
    },
    dispose: () => backend.dispose(),
  };
}

/**
 * An episode's random stream and start: the system's x0 (or sim.x0) plus a
 * seeded offset. The stream goes on into the learner's updates for the
 * episode, so the learner draws the start and sends it to the actor.
 */
export function episodeStart(run: RunParams, a: Pick<Acting, 'def' | 'model'>, startSpread: number, episode: number): { rng: Rng; start: number[] } {
  const rng = new Rng(run.controller.seed * 104729 + episode);
  const x0 = run.sim.x0.length ? run.sim.x0 : [...(a.def.physical ? a.def.physical.toPhysical(a.def.x0 as number[], a.model.params as never) as number[] : a.def.x0)];
  return { rng, start: x0.map((v) => v + startSpread * rng.normal()) };
}

/**
 * One episode against the noisy simulator: plan, command, step, hand the
 * transition over (`learn` returns once the learner has taken it, so the
 * next plan sees the networks it led to), for the episode's length.
 * `before` runs before each plan (an actor brings its snapshot up to date there).
 */
export async function actEpisode(a: Acting, run: RunParams, episode: number, start: readonly number[], version: () => number, learn: (t: Transition) => Promise<void>, before?: () => Promise<void>): Promise<void> {
  const m = a.model.controlDim;
  const sim = new Simulator(a.def, a.periodS, { ...run.sim, x0: [...start] }, run.controller.seed + 1 + episode, { ...run.model, ...run.simModel });
  // each episode's random streams come from the run's seed and the episode's number, so a resumed run draws what an uninterrupted one would have
  const planner = await a.planner(run.controller.seed * 7919 + episode);
  let uPrev = new Array<number>(m).fill(0);
  let x = fromPhysical(a.model, sim.measure());
  for (let t = 0; t < a.ticks; t++) {
    await before?.();
    const used = version();
    const plan = await planner.plan({ x0: x, uPrev, reference: a.reference });
    const u = Array.from(plan.controls.subarray(0, m));
    const first = planner.firstStep!()!;
    const cost = a.stageCost(x, u, uPrev, a.reference);
    sim.advance(u);
    const next = fromPhysical(a.model, sim.measure());
    const inGoal = inGoalRegion(a.model, fromPhysical(a.model, sim.state), a.reference) ?? false;
    await learn({ episode, t, x, z: Array.from(toNormalised(u, a.scaling)), cost, next, abar: Array.from(first.mean), sigma: Array.from(first.sigma), estimate: plan.cost, inGoal, version: used });
    x = next;
    uPrev = u;
  }
}
