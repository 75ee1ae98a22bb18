import { InputError } from '../input-error.js';
import { fromPhysical, inGoalRegion, stateAngles, type Model } from '../models/model.js';
import { readControlLog } from '../sysid/log.js';
import { startRegionProblem, type PolicyTask } from './tasks.js';

/** How far (model units, each state; angles wrapped) a tracked log's first state may be from the task's start. */
export const TRACK_START_TOLERANCE = 0.05;

/**
 * train.track: a recorded run (its MCAP log, as `run --out` writes it) as
 * the training closed loop's cost reference, step by step: the rollouts are
 * scored against where the recorded controller was t steps in, and against
 * the goal from the step it first entered the goal region. A demonstration
 * as shaping: on the cart double pendulum the task's own cost ranks policies
 * that never swing up above the first ones that do (docs/results.md), and a
 * policy trained to follow an MPC's swing-up swings up itself. The policy
 * still sees its error from the goal only, so it deploys as any other.
 *
 * Returns (T + 1) x n model-unit rows, the log's state nearest each step's
 * time; refuses, with one line, what cannot be tracked from the task's start.
 */
export function trackReference(task: PolicyTask, model: Model, path: string): Float64Array {
  const what = `train.track = ${path}`;
  if (task.starts.kind !== 'point') throw new InputError(startRegionProblem(task, what, 'a recorded run is tracked from the one state it starts at')!);
  const log = readControlLog(path, model);
  const n = model.stateDim;
  const states = log.states.map((y) => fromPhysical(model, y));
  if (states.length < 2) throw new InputError(`${what}: the log has ${states.length} state${states.length === 1 ? '' : 's'}, a run to track needs many`);
  const start = fromPhysical(model, task.starts.y);
  const angle = stateAngles(model.def);
  const off = states[0].map((v, j) => {
    const d = v - start[j];
    return Math.abs(angle[j] ? Math.atan2(Math.sin(d), Math.cos(d)) : d);
  });
  if (off.some((d) => d > TRACK_START_TOLERANCE)) {
    const fmt = (x: readonly number[]) => `[${x.map((v) => +v.toFixed(3)).join(', ')}]`;
    throw new InputError(`${what}: the log starts at ${fmt(log.states[0])}, task ${task.name} at ${fmt(task.starts.y)} (more than ${TRACK_START_TOLERANCE} apart): record a run from the task's start (run --x0 ${task.starts.y.join(',')})`);
  }
  const arrival = states.findIndex((x) => inGoalRegion(model, x) === true);
  if (arrival < 0) throw new InputError(`${what}: the log never enters ${model.name}'s goal region: track a run that reaches it`);
  const t0 = log.timesS[0];
  const track = new Float64Array((model.horizon + 1) * n);
  let k = 0;
  for (let t = 0; t <= model.horizon; t++) {
    const timeS = t0 + t * model.dtS;
    // the sample nearest the step's time, up to the arrival; the goal after it
    while (k < arrival && Math.abs(log.timesS[k + 1] - timeS) <= Math.abs(log.timesS[k] - timeS)) k++;
    track.set(k < arrival ? states[k] : model.goal, t * n);
  }
  return track;
}

/** The cost reference train.track asks for (absent: the goal), refused where the closed loop cannot carry it. */
export function costTrack(task: PolicyTask, settings: { track: string; backend: string }, model: Model): Float64Array | undefined {
  if (settings.track === '') return undefined;
  if (settings.backend !== 'cpu') throw new InputError(`train.track runs on the CPU closed loop only: set train.backend to cpu, or leave train.track empty`);
  return trackReference(task, model, settings.track);
}
