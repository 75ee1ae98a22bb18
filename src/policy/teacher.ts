import { FeedbackBuilder } from '../controller/feedback.js';
import { fromPhysical, type Model } from '../models/model.js';
import { ClosedLoop, type PolicyShape, type RolloutNoise } from './closed-loop.js';
import type { PolicyTask } from './tasks.js';

/** iLQG's time between two looks at the event loop [ms]: a signal is heard this soon, and each slice costs one linearisation more */
const LESSON_SLICE_MS = 200;

/**
 * With training noise, a policy's own cost is judged on its noise-free
 * rollout and this many less one draws of the noise of its own (not the
 * training's): judged on the training's few fixed draws, Adam finds policies
 * that swing up under exactly those and not without noise (measured: 974.3
 * on 4 training draws, 3316.8 noise-free; docs/results.md).
 */
export const JUDGED_ROLLOUTS = 16;

/** What one round's teacher found: the policy's own cost, and the path it is to track next. */
export interface Lesson {
  /** the policy's own cost (IlqgTeacher.cost) */
  policyCost: number;
  /** the cost of the path iLQG found from the policy's noise-free closed loop (at most that loop's cost) */
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
  /** the closed loop with the training noise, where there is any: what a policy's own cost is judged on */
  private readonly noisy: ClosedLoop | undefined;
  private readonly ilqg: FeedbackBuilder;
  private readonly start: number[];
  private readonly noisyStarts: Float64Array;

  /** `noise`: the training rollouts' noise, where there is any; a policy's own cost is judged under it (see cost). */
  constructor(task: PolicyTask, readonly model: Model, shape: PolicyShape, readonly iterations: number, noise?: RolloutNoise) {
    if (task.starts.kind !== 'point') throw new Error(`task ${task.name} starts from a region: the teacher plans from one start (train.ts refuses this first)`);
    // the task's own cost: no track, no training noise
    this.plain = new ClosedLoop(model, shape, model.horizon, model.goal);
    // draws of its own: streams (seed + 2, + 3) the training's (seed, seed + 1) do not use
    this.noisy = noise && new ClosedLoop(model, shape, model.horizon, model.goal, { ...noise, seed: noise.seed + 2 });
    this.ilqg = new FeedbackBuilder(model);
    this.start = fromPhysical(model, task.starts.y);
    this.noisyStarts = new Float64Array((JUDGED_ROLLOUTS - 1) * this.start.length).map((_, k) => this.start[k % this.start.length]);
  }

  /**
   * The policy's own cost: the task's cost from its start; with training
   * noise, the mean over its noise-free rollout and JUDGED_ROLLOUTS - 1 draws
   * of that noise: what each round starts from and the checkpoint keeps the
   * least of. Judged noise-free only, a fragile start's noise-free cost stood
   * against every policy the noisy rounds found (measured, docs/results.md).
   */
  cost(theta: Float64Array): number {
    return this.judged(theta, this.noiseFreeCost(theta));
  }

  /** The own cost from the noise-free one already rolled out. */
  private judged(theta: Float64Array, quiet: number): number {
    if (!this.noisy) return quiet;
    const draws = JUDGED_ROLLOUTS - 1;
    return (quiet + draws * this.noisy.evaluate(theta, this.noisyStarts, draws)) / JUDGED_ROLLOUTS;
  }

  /** The task's cost from its start without noise (the paper's figure). */
  noiseFreeCost(theta: Float64Array): number {
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
    // iLQG improves the noise-free closed loop: a path is one realisation, and the noise-free one is the task's
    const own = this.plain.rollout(theta, this.start);
    const policyCost = this.judged(theta, own.cost);
    if (!Number.isFinite(own.cost)) return { policyCost, teacherCost: own.cost, teacherIterations: 0, track: undefined };
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
    return { policyCost, teacherCost: found.cost, teacherIterations: iterations, track: found.states };
  }
}
