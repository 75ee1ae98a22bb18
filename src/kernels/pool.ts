import { availableParallelism } from 'node:os';
import { MessageChannel, MessagePort, Worker } from 'node:worker_threads';
import { compileKernelSource, CpuKernel } from './js-source.js';

/** Slots of the shared control word array. */
export const GEN = 0; // bumped to wake workers
export const DONE = 1; // workers finished with the current job
export const NEXT = 2; // next unclaimed sample
export const FAILED = 3; // a worker's kernel threw
export const STOP = 4; // workers exit when set

export interface KernelArgs {
  U: Float64Array; X0: Float64Array; UP: Float64Array; R: Float64Array; W: Float64Array;
  C: Float64Array; A: Float64Array;
}

export interface JobMessage { type: 'job'; key: string; args: KernelArgs; samples: number; chunk: number }
export interface RegisterMessage { type: 'register'; key: string; source: string; scratchLength: number }
export interface UnregisterMessage { type: 'unregister'; key: string }
export type PoolMessage = JobMessage | RegisterMessage | UnregisterMessage;

/** Claims chunks of samples from the shared counter until none are left. */
export function drain(ctl: Int32Array, fn: CpuKernel, scratch: Float64Array, job: Omit<JobMessage, 'type' | 'key'>): void {
  const { args: a, samples, chunk } = job;
  for (;;) {
    const start = Atomics.add(ctl, NEXT, chunk);
    if (start >= samples) return;
    fn(a.U, a.X0, a.UP, a.R, a.W, a.C, a.A, scratch, start, Math.min(samples, start + chunk));
  }
}

interface Registered { fn: CpuKernel; scratch: Float64Array }

/**
 * Runs generated kernels over a batch of samples on the calling thread plus
 * `threads - 1` workers sharing memory. Calls are synchronous: the caller
 * takes a share of the work, then waits on an atomic counter, so dispatch
 * costs microseconds rather than an event-loop round trip.
 */
export class WorkerPool {
  readonly threads: number;
  private readonly ctl: Int32Array;
  private readonly ports: MessagePort[] = [];
  private readonly workers: Worker[] = [];
  private readonly kernels = new Map<string, Registered>();
  private closed = false;

  constructor(threads = availableParallelism()) {
    if (!Number.isInteger(threads) || threads < 1) throw new Error(`threads must be a positive integer, got ${threads}`);
    this.threads = threads;
    this.ctl = new Int32Array(new SharedArrayBuffer(8 * Int32Array.BYTES_PER_ELEMENT));
    for (let i = 1; i < threads; i++) {
      const { port1, port2 } = new MessageChannel();
      const worker = new Worker(new URL('./worker.js', import.meta.url), {
        workerData: { control: this.ctl.buffer, port: port2 },
        transferList: [port2],
      });
      worker.unref();
      this.workers.push(worker);
      this.ports.push(port1);
    }
  }

  has(key: string): boolean {
    return this.kernels.has(key);
  }

  register(key: string, source: string, scratchLength: number): void {
    if (this.kernels.has(key)) return;
    this.kernels.set(key, { fn: compileKernelSource(source), scratch: new Float64Array(scratchLength) });
    const msg: RegisterMessage = { type: 'register', key, source, scratchLength };
    for (const port of this.ports) port.postMessage(msg);
  }

  unregister(key: string): void {
    if (!this.kernels.delete(key)) return;
    const msg: UnregisterMessage = { type: 'unregister', key };
    for (const port of this.ports) port.postMessage(msg);
  }

  /** Runs a registered kernel over samples [0, samples). Arrays handed to workers must live in shared memory. */
  run(key: string, args: KernelArgs, samples: number, parallel: boolean): void {
    if (this.closed) throw new Error('worker pool is closed');
    const k = this.kernels.get(key);
    if (!k) throw new Error(`internal: kernel ${key} is not registered`);
    if (!parallel || this.workers.length === 0) {
      k.fn(args.U, args.X0, args.UP, args.R, args.W, args.C, args.A, k.scratch, 0, samples);
      return;
    }
    const chunk = Math.max(1, Math.ceil(samples / (this.threads * 8)));
    const ctl = this.ctl;
    Atomics.store(ctl, NEXT, 0);
    Atomics.store(ctl, DONE, 0);
    Atomics.store(ctl, FAILED, 0);
    const msg: JobMessage = { type: 'job', key, args, samples, chunk };
    for (const port of this.ports) port.postMessage(msg);
    Atomics.add(ctl, GEN, 1);
    Atomics.notify(ctl, GEN);
    try {
      drain(ctl, k.fn, k.scratch, msg);
    } finally {
      for (let d = Atomics.load(ctl, DONE); d < this.workers.length; d = Atomics.load(ctl, DONE)) Atomics.wait(ctl, DONE, d);
    }
    if (Atomics.load(ctl, FAILED)) throw new Error(`a worker thread failed while running ${key}`);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    Atomics.store(this.ctl, STOP, 1);
    Atomics.add(this.ctl, GEN, 1);
    Atomics.notify(this.ctl, GEN);
    for (const port of this.ports) port.close();
  }
}

/** Copies into shared memory unless the array already lives there. */
export function shared(a: Float64Array): Float64Array {
  if (a.buffer instanceof SharedArrayBuffer) return a;
  const s = new Float64Array(new SharedArrayBuffer(Math.max(8, a.byteLength)), 0, a.length);
  s.set(a);
  return s;
}

export function sharedZeros(length: number): Float64Array {
  return new Float64Array(new SharedArrayBuffer(Math.max(8, length * 8)), 0, length);
}
