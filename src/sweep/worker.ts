import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Job } from 'bullmq';
import { loadBullmq, QUEUE_NAME, QueuedJob, redisConnection } from '../queue/redis.js';
import { checkJob, JobFailure, jobKind, JobResult, removeFolder, runJob, scratchFolder } from './jobs.js';
import { QUEUE_ENV } from '../cli/train-actor.js';

export interface WorkerOptions {
  url: string;
  concurrency: number;
  /** where each job's output folder goes */
  out: string;
  /** how long a job stays with a worker that stops answering before another may take it [s] */
  lockS: number;
  maxMemoryMb: number;
  log: (line: string) => void;
}

/**
 * A BullMQ worker running each job in a child process (runJob). A job whose
 * command line its own checks refuse fails at once, without retries (a
 * queue anyone can write to must not make it run anything else); a job
 * that fails for other reasons fails with its reason. stop(): the jobs
 * under way are killed and put back on the queue for another worker (those
 * that cannot start over, train-prior's actors, fail).
 */
export async function startWorker(opts: WorkerOptions) {
  const connection = redisConnection(opts.url);
  const me = `${hostname()}:${process.pid}`;
  const running = new Map<string, AbortController>();
  let stopping = false;
  const scratch = scratchFolder();
  const { UnrecoverableError, WaitingError, Worker } = await loadBullmq();
  const worker = new Worker<QueuedJob, JobResult>(QUEUE_NAME, async (job: Job<QueuedJob, JobResult>, token?: string) => {
    const id = job.id!;
    try {
      await checkJob(job.data, scratch);
    } catch (e) {
      throw new UnrecoverableError(`refused: ${(e as Error).message}`);
    }
    const abort = new AbortController();
    running.set(id, abort);
    opts.log(`cell ${job.data.cell} (${id}): ${job.data.argv.slice(0, 2).join(' ')} started`);
    try {
      const result = await runJob(job.data, { out: join(opts.out, id), maxMemoryMb: opts.maxMemoryMb, signal: abort.signal, worker: me, env: { [QUEUE_ENV]: opts.url } });
      opts.log(`cell ${job.data.cell} (${id}): done in ${result.wallS.toFixed(1)} s`);
      return result;
    } catch (e) {
      if (stopping && jobKind(job.data.kind).restartable) {
        // back to the queue at once, for another worker (not counted as a failure)
        await job.moveToWait(token);
        throw new WaitingError();
      }
      const why = stopping ? 'its worker stopped mid-job' : e instanceof JobFailure ? e.message : (e as Error).message;
      opts.log(`cell ${job.data.cell} (${id}): failed: ${why}`);
      throw new UnrecoverableError(why);
    } finally {
      running.delete(id);
    }
  }, {
    connection, concurrency: opts.concurrency, autorun: false,
    lockDuration: opts.lockS * 1000,
    stalledInterval: Math.max(500, (opts.lockS * 1000) / 2),
    // a worker lost mid-job (killed, its machine gone) gives the job back; a job that kills every worker that takes it is failed at the third
    maxStalledCount: 3,
    name: me,
  });
  return {
    worker,
    me,
    running: () => running.size,
    run: () => worker.run(),
    /** Kills the jobs under way (they go back to the queue) and closes the worker. */
    async stop() {
      stopping = true;
      for (const a of running.values()) a.abort();
      // the killed jobs put themselves back before the worker closes
      const deadline = Date.now() + 5000;
      while (running.size && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      await worker.close(true);
      removeFolder(scratch);
    },
  };
}

