import { FeedbackBuilder } from '../controller/feedback.js';
import { fromPhysical, type Model } from '../models/model.js';
import { ClosedLoop, type PolicyShape } from './closed-loop.js';
import type { PolicyTask } from './tasks.js';

/** iLQG's time between two looks at the event loop [ms]: a signal is heard this soon, and each slice costs one linearisation more */
const LESSON_SLICE_MS = 200;

/** What one round's teacher found: the policy's own cost, and the path it is to track next. */
export interface Lesson {
  /** the policy's cost on the task's own cost, from the task's start */
  policyCost: number;
  /** the cost of the path iLQG found from the policy's closed loop (at most policyCost) */
  teacherCost: number;
  /** iLQG's iterations that lowered the cost */
  teacherIterations: number;
  /** the path, (T + 1) x n model units: the next round's cost reference per step; undefined where the policy's own rollout is not finite (nothing to teach from) */
  track: Float64Array | undefined;
}

/**
 * train.teacher = ilqg: policy iteration with a trajectory optimiser as the
 * teacher, for a task that starts from one state (guided policy search, in
 * the spirit of Levine and Koltun 2013 and Mordatch and Todorov 2014). Each
 * round the policy is rolled out from the start, iLQG (the controller's own,
 * FeedbackBuilder.optimise, on the task's own cost) finds a cheaper path
 * near that closed loop, and the next round's rollouts are scored against
 * that path step by step, as train.track scores them against a recording.
 *
 * Why: a policy's cost over a long horizon is a sharp landscape (the TSMC
 * paper's Section S-X.D: the closed loop's gradients grow through the
 * policy's own state sensitivity), and on the cart double pendulum TSMC:D
 * on the task's own cost gave a swing-up up for cheaper non-swing-ups
 * (measured, docs/results.md). An open-loop path is optimised well by iLQG,
 * whose feedback gains keep each step near the last path, and following a
 * path is a smooth problem for the policy's gradients. The teacher only
 * proposes: what the run keeps is the policy whose own cost is lowest.
 */
export class IlqgTeacher {
  private readonly plain: ClosedLoop;
  private readonly ilqg: FeedbackBuilder;
  private readonly start: number[];

  constructor(task: PolicyTask, readonly model: Model, shape: PolicyShape, readonly iterations: number) {
    if (task.starts.kind !== 'point') throw new Error(`task ${task.name} starts from a region: the teacher plans from one start (train.ts refuses this first)`);
    // the task's own cost: no track, no training noise
    this.plain = new ClosedLoop(model, shape, model.horizon, model.goal);
    this.ilqg = new FeedbackBuilder(model);
    this.start = fromPhysical(model, task.starts.y);
  }

  /** The policy's own cost from the task's start. */
  cost(theta: Float64Array): number {
    return this.plain.evaluate(theta, this.start, 1);
  }

  /**
   * The policy's cost and, from its closed loop, the cheaper path near it
   * that the next round tracks. iLQG runs in slices of about
   * LESSON_SLICE_MS with the event loop let in between, so a signal is heard
   * within one (a lesson can take minutes); once `signal` is aborted the
   * lesson ends with the path found so far. The slices repeat one
   * uninterrupted run exactly, wherever they fall.
   */
  async lesson(theta: Float64Array, signal?: AbortSignal): Promise<Lesson> {
    const own = this.plain.rollout(theta, this.start);
    if (!Number.isFinite(own.cost)) return { policyCost: own.cost, teacherCost: own.cost, teacherIterations: 0, track: undefined };
    // u_{-1} as the closed loop has it: the control's centre
    const uRest = Array.from(this.plain.shape.controlCenter);
    const slice = (controls: Float64Array, done: number, regularisation?: number) =>
      this.ilqg.optimise(this.start, controls, uRest, this.model.goal, { iterations: this.iterations - done, regularisation, untilMs: performance.now() + LESSON_SLICE_MS });
    let found = slice(own.controls, 0);
    let iterations = found.iterations;
    while (!found.converged && iterations < this.iterations) {
      await new Promise((resolve) => setImmediate(resolve));
      if (signal?.aborted) break;
      found = slice(found.controls, iterations, found.regularisation);
      iterations += found.iterations;
    }
    return { policyCost: own.cost, teacherCost: found.cost, teacherIterations: iterations, track: found.states };
  }
}
