import { hostname } from 'node:os';
import { join } from 'node:path';
import { Cell } from './spec.js';
import { JobFailure, JobResult, runJob } from './jobs.js';
import type { Job } from 'bullmq';
import { openQueue, QueuedJob, redisLabel } from '../queue/redis.js';
import { ResultStore } from './results.js';

/** Where a sweep stands, for its progress bar and metrics. */
export interface SweepProgress {
  cells: number;
  done: number;
  running: number;
  failed: number;
  /** waiting on the queue (or the local pool) */
  waiting: number;
  /** workers taking jobs (the local pool's size without a queue) */
  workers: number;
  /** cells finished per second since the sweep started */
  jobsPerS: number;
  etaS: number | null;
  /** Redis is unreachable: the sweep waits for it */
  paused: boolean;
}

export interface SweepRunOptions {
  cells: readonly Cell[];
  store: ResultStore;
  out: string;
  /** redis://...: cells go on the BullMQ queue for workers; absent: a pool of child processes here */
  queue?: string;
  concurrency: number;
  maxMemoryMb: number;
  signal?: AbortSignal;
  onProgress(p: SweepProgress): void;
  log(line: string): void;
}

/** What a sweep ended with. */
export interface SweepOutcome {
  /** stopped by the signal before every cell finished */
  interrupted: boolean;
  /** cells resubmitted after Redis lost them (a restart without persistence) */
  resubmitted: number;
}

/** How often a sweep on a queue looks at every cell it waits for (else only at the jobs that finished) [ms]. */
const FULL_LOOK_MS = 30_000;
/** Extra newest finished jobs read each round. */
const READ_MARGIN = 64;

/** Runs the cells not yet in the store, on the queue or in the local pool, keeping each result as it lands. */
export function runSweep(opts: SweepRunOptions): Promise<SweepOutcome> {
  return opts.queue === undefined ? runLocal(opts) : runOnQueue(opts, opts.queue);
}

function tracker(opts: SweepRunOptions) {
  const t0 = performance.now();
  const doneAtStart = opts.cells.filter((c) => opts.store.has(c.id)).length;
  // the store gains only this sweep's cells while it runs: their count without a pass over every cell at each report
  const storeAtStart = opts.store.doneCount;
  return (running: number, waiting: number, workers: number, paused: boolean) => {
    const done = doneAtStart + opts.store.doneCount - storeAtStart;
    const failed = opts.store.failedCount;
    const elapsedS = (performance.now() - t0) / 1000;
    const jobsPerS = elapsedS > 0 ? (done - doneAtStart) / elapsedS : 0;
    const left = opts.cells.length - done - failed;
    opts.onProgress({ cells: opts.cells.length, done, running, failed, waiting, workers, jobsPerS, etaS: jobsPerS > 0 ? left / jobsPerS : null, paused });
  };
}

async function runLocal(opts: SweepRunOptions): Promise<SweepOutcome> {
  const pending = opts.cells.filter((c) => !opts.store.has(c.id));
  const report = tracker(opts);
  const me = `${hostname()}:${process.pid}`;
  let next = 0;
  let running = 0;
  const lane = async () => {
    while (next < pending.length && !opts.signal?.aborted) {
      const cell = pending[next++];
      running++;
      report(running, pending.length - next, opts.concurrency, false);
      try {
        const result = await runJob(cell, { out: join(opts.out, 'cells', cell.id), maxMemoryMb: opts.maxMemoryMb, signal: opts.signal, worker: me });
        opts.store.add(cell, { result });
      } catch (e) {
        // a cell killed by the signal is not a failure: the next run does it
        if (!opts.signal?.aborted) opts.store.add(cell, { error: e instanceof JobFailure ? e.message : (e as Error).message });
      } finally {
        running--;
        report(running, pending.length - next, opts.concurrency, false);
      }
    }
  };
  report(0, pending.length, opts.concurrency, false);
  await Promise.all(Array.from({ length: Math.min(opts.concurrency, pending.length) }, lane));
  return { interrupted: opts.signal?.aborted === true && pending.some((c) => !opts.store.has(c.id)), resubmitted: 0 };
}

async function runOnQueue(opts: SweepRunOptions, url: string): Promise<SweepOutcome> {
  const label = redisLabel(url);
  let paused = false;
  let lost = false;
  let rescan = true;
  const queue = await openQueue<QueuedJob, JobResult>(url, (up, why) => {
    paused = !up;
    if (up) {
      rescan = true;
      opts.log(`Redis at ${label} is back: the sweep goes on (cells it lost are queued again)`);
    }
    else {
      lost = true;
      opts.log(`Redis at ${label} is unreachable (${why}): the sweep is paused and waits for it; results so far are kept in ${join(opts.out, 'results.jsonl')}`);
    }
  });
  const report = tracker(opts);
  const byId = new Map(opts.cells.map((c) => [c.id, c]));
  const data = (c: Cell): QueuedJob => ({ kind: c.kind, argv: c.argv, paramsText: c.paramsText, cell: c.index });
  const submit = async (cells: Cell[]) => {
    for (let i = 0; i < cells.length; i += 500) {
      const chunk = cells.slice(i, i + 500);
      // a failed job left by an earlier run is tried again; a done one is collected as it is
      for (const c of chunk) {
        const old = await queue.getJob(c.id);
        if (old && (await old.isFailed())) await old.remove();
      }
      await queue.addBulk(chunk.map((c) => ({ name: data(c).kind, data: data(c), opts: { jobId: c.id, attempts: 1 } })));
    }
  };
  let resubmitted = 0;
  const failedIds = new Set<string>();
  try {
    await submit(opts.cells.filter((c) => !opts.store.has(c.id)));
    report(0, 0, 0, paused);
    // one command a round says how many jobs finished since the last; only the newest are read then.
    // Every cell is looked at on the first round, after Redis came back, and every FULL_LOOK_MS (finding cells a restarted Redis lost).
    let seen: { completed: number; failed: number } | undefined;
    let lastFullMs = 0;
    let workers = 0;
    let lastWorkersMs = 0;
    const take = (job: Job<QueuedJob, JobResult> | undefined, cell: Cell) => {
      if (!job || opts.store.has(cell.id) || failedIds.has(cell.id)) return;
      if (job.finishedOn && job.returnvalue) opts.store.add(cell, { result: job.returnvalue, queueTimes: { addedMs: job.timestamp, takenMs: job.processedOn ?? job.timestamp, finishedMs: job.finishedOn } });
      else if (job.finishedOn && job.failedReason) {
        failedIds.add(cell.id);
        opts.store.add(cell, { error: job.failedReason });
      }
    };
    while (!opts.signal?.aborted) {
      const pending = [...byId.values()].filter((c) => !opts.store.has(c.id) && !failedIds.has(c.id));
      if (pending.length === 0) break;
      const counts = await queue.getJobCounts('completed', 'failed', 'active', 'wait', 'prioritized');
      const fresh = { completed: counts.completed ?? 0, failed: counts.failed ?? 0 };
      const full = seen === undefined || rescan || Date.now() - lastFullMs > FULL_LOOK_MS || fresh.completed < seen.completed || fresh.failed < seen.failed;
      if (full) {
        rescan = false;
        lastFullMs = Date.now();
        const jobs = await Promise.all(pending.map((c) => queue.getJob(c.id)));
        const missing = pending.filter((_, i) => !jobs[i]);
        pending.forEach((c, i) => take(jobs[i], c));
        // Redis came back empty (restarted without persistence): the cells it lost go on the queue again
        if (missing.length) {
          resubmitted += missing.length;
          await submit(missing);
        }
      } else {
        for (const kind of ['completed', 'failed'] as const) {
          const more = fresh[kind] - seen![kind];
          // a margin: jobs that finished between the count and this read push the counted ones down the list
          if (more > 0) for (const job of await queue.getJobs([kind], 0, more + READ_MARGIN)) if (job?.id && byId.has(job.id)) take(job, byId.get(job.id)!);
        }
      }
      seen = fresh;
      if (Date.now() - lastWorkersMs > 5000) {
        lastWorkersMs = Date.now();
        workers = await queue.getWorkersCount().catch(() => workers);
      }
      report(counts.active ?? 0, (counts.wait ?? 0) + (counts.prioritized ?? 0), workers, paused);
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    await queue.close();
  }
  if (lost) opts.log(`the sweep went on after Redis came back (${resubmitted} cells queued again)`);
  return { interrupted: opts.signal?.aborted === true && opts.cells.some((c) => !opts.store.has(c.id) && !failedIds.has(c.id)), resubmitted };
}
