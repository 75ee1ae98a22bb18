import { Worker } from 'node:worker_threads';
import { ClosedLoop, policyShape, RolloutNoise } from './closed-loop.js';
import { policyTask, taskModel } from './tasks.js';
import type { PolicyCatch } from './catch.js';

/** What a thread needs to build the same closed loop: a registered task by name (its model, costs and network). */
export interface ClosedLoopSpec {
  task: string;
  /** the task's model parameters changed */
  model: Readonly<Record<string, number>>;
  /** the policy's catch (train.catch), as the main thread built it */
  catch?: PolicyCatch;
  /** the training rollouts' noise (train.processNoise, train.measurementNoise) */
  noise?: RolloutNoise;
  /** the costs' reference per step (train.track) */
  track?: Float64Array;
}

export function closedLoopFor(spec: ClosedLoopSpec): ClosedLoop {
  const task = policyTask(spec.task);
  const model = taskModel(task, spec.model);
  return new ClosedLoop(model, policyShape(model, task.hidden, task.rawScale, spec.catch), model.horizon, model.goal, spec.noise, spec.track);
}

/** `count` policies (rows of `thetas`), each from its own starts (`starts` rows of batch x n) or all from the same (one row). */
export interface ClosedLoopJob {
  thetas: Float64Array;
  starts: Float64Array;
  perPolicyStarts: boolean;
  count: number;
  batch: number;
  /** where the mean gradients go (count x parameters long, or longer); absent: a fresh array */
  gradInto?: Float64Array;
}

/** Runs jobs elsewhere than the calling thread (worker threads, the GPU). */
export interface ClosedLoopEvaluator {
  /** The job's mean costs and gradients: the gradients in the job's `gradInto`, else like the costs in arrays of the caller's own (nothing the evaluator reuses). */
  evaluate(job: ClosedLoopJob): Promise<{ energy: Float64Array; grad: Float64Array }>;
  /** The costs' reference per step for the jobs after this call (train.teacher's rounds); absent where the evaluator cannot carry one. */
  setTrack?(track: Float64Array | undefined): void;
  dispose(): void;
}

/** A pool worker's messages: a job, or the costs' new reference per step for the jobs after it. */
export type ClosedLoopMessage = ClosedLoopJob | { track: Float64Array | undefined };

export function runJob(loop: ClosedLoop, job: ClosedLoopJob): { energy: Float64Array; grad: Float64Array } {
  const p = loop.parameters;
  const rows = job.batch * loop.model.stateDim;
  const energy = new Float64Array(job.count);
  const grad = job.gradInto?.subarray(0, job.count * p) ?? new Float64Array(job.count * p);
  for (let i = 0; i < job.count; i++) {
    const starts = job.perPolicyStarts ? job.starts.subarray(i * rows, (i + 1) * rows) : job.starts;
    energy[i] = loop.evaluate(job.thetas.subarray(i * p, (i + 1) * p), starts, job.batch, { grad: grad.subarray(i * p, (i + 1) * p) });
  }
  return { energy, grad };
}

/**
 * Closed-loop rollouts with gradients on several threads: the calling
 * thread takes one share of the policies and each worker another (policies
 * are independent, so results do not depend on the split). A worker builds
 * its closed loop from the task's name, so only registered tasks run here.
 */
export class ClosedLoopPool implements ClosedLoopEvaluator {
  private readonly workers: Worker[];

  constructor(readonly loop: ClosedLoop, spec: ClosedLoopSpec, threads: number) {
    this.workers = Array.from({ length: Math.max(0, threads - 1) }, () => {
      const w = new Worker(new URL('./worker.js', import.meta.url), { workerData: spec });
      w.unref();
      return w;
    });
  }

  setTrack(track: Float64Array | undefined): void {
    this.loop.setTrack(track);
    // the workers take messages in order: every job after this one sees the new track
    for (const w of this.workers) w.postMessage({ track } satisfies ClosedLoopMessage);
  }

  get threads(): number {
    return this.workers.length + 1;
  }

  async evaluate(job: ClosedLoopJob): Promise<{ energy: Float64Array; grad: Float64Array }> {
    const p = this.loop.parameters;
    const rows = job.batch * this.loop.model.stateDim;
    const shares = this.threads;
    const bounds = Array.from({ length: shares + 1 }, (_, k) => Math.round((k * job.count) / shares));
    const part = (k: number): ClosedLoopJob => ({
      ...job,
      gradInto: undefined, // a worker's share comes back in its own message; the caller's array is filled here
      count: bounds[k + 1] - bounds[k],
      thetas: job.thetas.slice(bounds[k] * p, bounds[k + 1] * p),
      starts: job.perPolicyStarts ? job.starts.slice(bounds[k] * rows, bounds[k + 1] * rows) : job.starts,
    });
    const remote = this.workers.map((w, k) => new Promise<{ energy: Float64Array; grad: Float64Array }>((resolve, reject) => {
      const share = part(k + 1);
      const onError = (e: Error) => reject(e);
      w.once('error', onError);
      w.once('message', (r: { energy: Float64Array; grad: Float64Array }) => {
        w.off('error', onError);
        resolve(r);
      });
      w.postMessage(share, [share.thetas.buffer as ArrayBuffer, ...(job.perPolicyStarts ? [share.starts.buffer as ArrayBuffer] : [])]);
    }));
    const own = runJob(this.loop, part(0));
    const all = [own, ...(await Promise.all(remote))];
    const energy = new Float64Array(job.count);
    const grad = job.gradInto?.subarray(0, job.count * p) ?? new Float64Array(job.count * p);
    all.forEach((r, k) => {
      energy.set(r.energy, bounds[k]);
      grad.set(r.grad, bounds[k] * p);
    });
    return { energy, grad };
  }

  dispose(): void {
    for (const w of this.workers) void w.terminate();
  }
}
