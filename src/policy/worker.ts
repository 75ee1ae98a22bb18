import { parentPort, workerData } from 'node:worker_threads';
import { closedLoopFor, ClosedLoopMessage, ClosedLoopSpec, runJob } from './pool.js';

// One thread of a ClosedLoopPool: the same closed loop as the main thread's, built from the task's name.
const loop = closedLoopFor(workerData as ClosedLoopSpec);
parentPort!.on('message', (message: ClosedLoopMessage) => {
  if ('track' in message) {
    loop.setTrack(message.track);
    return;
  }
  const result = runJob(loop, message);
  parentPort!.postMessage(result, [result.energy.buffer as ArrayBuffer, result.grad.buffer as ArrayBuffer]);
});
