import { parentPort, workerData } from 'node:worker_threads';
import { closedLoopFor, ClosedLoopJob, ClosedLoopSpec, runJob } from './pool.js';

// One thread of a ClosedLoopPool: the same closed loop as the main thread's, built from the task's name.
const loop = closedLoopFor(workerData as ClosedLoopSpec);
parentPort!.on('message', (job: ClosedLoopJob) => {
  const result = runJob(loop, job);
  parentPort!.postMessage(result, [result.energy.buffer as ArrayBuffer, result.grad.buffer as ArrayBuffer]);
});
