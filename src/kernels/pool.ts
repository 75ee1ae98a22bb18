import { availableParallelism } from 'node:os';
import { MessageChannel, MessagePort, Worker } from 'node:worker_threads';
import { compileKernelSource, CpuKernel } from './js-source.js';

/** Slots of the pool's shared control words. */
export const GEN = 0; // bumped to wake workers
export const STOP = 1; // workers exit when set

/** Slots of a job's control words (one block per job slot). */
export const NEXT = 0; // next unclaimed sample
export const DONE = 1; // workers finished with the job
export const FAILED = 2; // a worker's kernel threw
const JOB_WORDS = 4;
/** Jobs that may be in flight at once (each has its own control block). */
const JOB_SLOTS = 16;

export interface KernelArgs {
  U: Float64Array; X0: Float64Array; UP: Float64Array; R: Float64Array; W: Float64Array;
  C: Float64Array; A: Float64Array;
}

export interface JobMessage { type: 'job'; key: string; args: KernelArgs; samples: number; chunk: number; slot: number }
export interface RegisterMessage { type: 'register'; key: string; source: string; scratchLength: number }
export interface UnregisterMessage { type: 'unregister'; key: string }
export type PoolMessage = JobMessage | RegisterMessage | UnregisterMessage;

/** The control words of a job's slot, within the pool's job block. */
export function jobControl(jobs: Int32Array, slot: number): Int32Array {
  return jobs.subarray(slot * JOB_WORDS, (slot + 1) * JOB_WORDS);
}

/** Claims chunks of samples from the job's counter until none are left. */
export function drain(job: Int32Array, fn: CpuKernel, scratch: Float64Array, msg: Omit<JobMessage, 'type' | 'key'>): void {
  const { args: a, samples, chunk } = msg;
  for (;;) {
    const start = Atomics.add(job, NEXT, chunk);
    if (start >= samples) return;
    fn(a.U, a.X0, a.UP, a.R, a.W, a.C, a.A, scratch, start, Math.min(samples, start + chunk));
  }
}

interface Registered { fn: CpuKernel; scratch: Float64Array }

/** A batch handed to the workers: `complete` helps them finish it and waits for the rest. */
export interface PoolJob {
  complete(): void;
}

/**
 * Runs generated kernels over a batch of samples on the calling thread plus
 * `threads - 1` workers sharing memory. A synchronous `run` has the caller
 * take a share of the work, then wait on an atomic counter, so dispatch costs
 * microseconds rather than an event-loop round trip. `submit` hands a batch to
 * the workers and returns at once: the caller can prepare the next batch
 * (a sampler's bookkeeping for another group of particles) while they run,
 * and joins in when it calls `complete`. Workers take jobs in order.
 */
export class WorkerPool {
  readonly threads: number;
  private readonly ctl: Int32Array;
  private readonly jobs: Int32Array;
  private readonly ports: MessagePort[] = [];
  private readonly workers: Worker[] = [];
  private readonly kernels = new Map<string, Registered>();
  private readonly freeSlots: number[] = Array.from({ length: JOB_SLOTS }, (_, i) => JOB_SLOTS - 1 - i);
  private closed = false;

  constructor(threads = availableParallelism()) {
    if (!Number.isInteger(threads) || threads < 1) throw new Error(`threads must be a positive integer, got ${threads}`);
    this.threads = threads;
    this.ctl = new Int32Array(new SharedArrayBuffer(4 * Int32Array.BYTES_PER_ELEMENT));
    this.jobs = new Int32Array(new SharedArrayBuffer(JOB_SLOTS * JOB_WORDS * Int32Array.BYTES_PER_ELEMENT));
    for (let i = 1; i < threads; i++) {
      const { port1, port2 } = new MessageChannel();
      const worker = new Worker(new URL('./worker.js', import.meta.url), {
        workerData: { control: this.ctl.buffer, jobs: this.jobs.buffer, port: port2 },
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

  /** Whether `submit` can take another job now (workers exist and a job slot is free). */
  get canSubmit(): boolean {
    return this.workers.length > 0 && this.freeSlots.length > 0 && !this.closed;
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

  private registered(key: string): Registered {
    if (this.closed) throw new Error('worker pool is closed');
    const k = this.kernels.get(key);
    if (!k) throw new Error(`internal: kernel ${key} is not registered`);
    return k;
  }

  /** Runs a registered kernel over samples [0, samples). Arrays handed to workers must live in shared memory. */
  run(key: string, args: KernelArgs, samples: number, parallel: boolean): void {
    const k = this.registered(key);
    if (!parallel || !this.canSubmit) {
      k.fn(args.U, args.X0, args.UP, args.R, args.W, args.C, args.A, k.scratch, 0, samples);
      return;
    }
    this.submit(key, args, samples).complete();
  }

  /** Hands a batch to the workers (arrays in shared memory); the caller must `complete` it. Needs `canSubmit`. */
  submit(key: string, args: KernelArgs, samples: number): PoolJob {
    const k = this.registered(key);
    const slot = this.freeSlots.pop();
    if (slot === undefined || this.workers.length === 0) throw new Error('internal: no worker or job slot free');
    const job = jobControl(this.jobs, slot);
    Atomics.store(job, NEXT, 0);
    Atomics.store(job, DONE, 0);
    Atomics.store(job, FAILED, 0);
    // Two samples a claim (a WebAssembly kernel's vector pair): a thread that wakes late still finds work, and no thread waits long for the last claim.
    const msg: JobMessage = { type: 'job', key, args, samples, chunk: 2, slot };
    for (const port of this.ports) port.postMessage(msg);
    Atomics.add(this.ctl, GEN, 1);
    Atomics.notify(this.ctl, GEN);
    let completed = false;
    return {
      complete: () => {
        if (completed) return;
        completed = true;
        try {
          drain(job, k.fn, k.scratch, msg);
        } finally {
          waitForWorkers(job, this.workers.length);
          this.freeSlots.push(slot);
        }
        if (Atomics.load(job, FAILED)) throw new Error(`a worker thread failed while running ${key}`);
      },
    };
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

/** Waits until every worker has finished its share of a job (spinning first measured slower on this 2-core VM). */
function waitForWorkers(job: Int32Array, workers: number): void {
  for (let d = Atomics.load(job, DONE); d < workers; d = Atomics.load(job, DONE)) Atomics.wait(job, DONE, d);
}

export function sharedZeros(length: number): Float64Array {
  return new Float64Array(new SharedArrayBuffer(Math.max(8, length * 8)), 0, length);
}
