import { MessagePort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { compileKernelSource, CpuKernel } from './js-source.js';
import { DONE, drain, FAILED, GEN, jobControl, PoolMessage, STOP } from './pool.js';

const { control, jobs: jobBlock, port } = workerData as { control: SharedArrayBuffer; jobs: SharedArrayBuffer; port: MessagePort };
const ctl = new Int32Array(control);
const jobs = new Int32Array(jobBlock);
const kernels = new Map<string, { fn: CpuKernel; scratch: Float64Array }>();

function handle(msg: PoolMessage): void {
  if (msg.type === 'register') {
    kernels.set(msg.key, { fn: compileKernelSource(msg.source), scratch: new Float64Array(msg.scratchLength) });
    return;
  }
  if (msg.type === 'unregister') {
    kernels.delete(msg.key);
    return;
  }
  const job = jobControl(jobs, msg.slot);
  try {
    const k = kernels.get(msg.key);
    if (!k) throw new Error(`kernel ${msg.key} not registered`);
    drain(job, k.fn, k.scratch, msg);
  } catch {
    Atomics.store(job, FAILED, 1);
  } finally {
    Atomics.add(job, DONE, 1);
    Atomics.notify(job, DONE);
  }
}

// Start from generation 0: a job posted before this worker booted is still seen.
let seen = 0;
while (!Atomics.load(ctl, STOP)) {
  Atomics.wait(ctl, GEN, seen);
  seen = Atomics.load(ctl, GEN);
  for (let m = receiveMessageOnPort(port); m; m = receiveMessageOnPort(port)) handle(m.message as PoolMessage);
}
port.close();
