import { Worker } from 'node:worker_threads';
import type { PlannerSpec } from './planner-spec.js';
import type { PlanRequest, PlanResult, RecedingPlanner } from '../planners/receding.js';
import { InputError } from '../input-error.js';

/** A V8 heap's levels: in use, and committed (what it holds of the process's memory, the young generation included). */
export interface HeapLevels {
  usedBytes: number;
  committedBytes: number;
}

/**
 * The planner thread's young generation, capped. Left to V8, it doubles its
 * semi-spaces as plans keep objects alive across scavenges: to 8 MB in the
 * first 20 s and to 16 MB after about 90 s of a 40 Hz acrobot run, a +16 MB
 * step in RSS long after start-up (bench soak's committed-heap samples). With
 * the cap the thread reaches its final size in the warm-up; scavenges come
 * twice as often and cost the same each (they copy the live objects, not the space).
 */
const PLANNER_YOUNG_GENERATION_MB = 24;

/** Main thread to planner thread. */
export type ToPlanner =
  | { type: 'plan'; id: number; req: Omit<PlanRequest, 'deadline'> & { deadlineEpochMs?: number } }
  | { type: 'reset' }
  | { type: 'update'; changes: Record<string, unknown> }
  | { type: 'block'; ms: number }
  | { type: 'heap'; id: number }
  | { type: 'close' };

/** Planner thread to main thread. */
export type FromPlanner =
  | { type: 'ready'; niceProblem?: string }
  /** building the planner failed; `input`: because of what the user gave (exit 2), not a failure */
  | { type: 'failed'; message: string; input: boolean }
  | { type: 'result'; id: number; result: PlanResult }
  | { type: 'error'; id: number; message: string }
  | { type: 'heap'; id: number; heap: HeapLevels };

interface Pending { resolve: (r: PlanResult) => void; reject: (e: Error) => void }

/**
 * How long a disposed planner thread may take to finish the plan it is in
 * before it is terminated. A GPU plan gets longer: its first plans compile
 * the kernels (seconds each on a software adapter with a cold shader cache),
 * and terminating the thread while Dawn still owes it a promise aborts the
 * whole process (exit 134 after the run's summary).
 */
const CLOSE_GRACE_MS = { cpu: 2000, webgpu: 60_000 } as const;

const closing = new Set<Promise<void>>();

/** Resolves when every disposed planner thread has ended: the process exits after it (cli/main). */
export async function plannerThreadsClosed(): Promise<void> {
  await Promise.all([...closing]);
}

/**
 * A receding-horizon planner running in its own thread: the command side
 * never waits on it unless it chooses to, so a planner that stalls (a hung
 * kernel, a long collection pause, a pathological state) cannot hold a
 * command back. The CPU kernels' worker pool lives inside that thread.
 * Requests are answered in order; parameter changes and resets are queued
 * behind the plan in progress. A thread that dies fails its plan with the
 * reason and is started afresh (cold) on the next request.
 */
export class PlannerThread implements RecedingPlanner {
  readonly name: PlannerSpec['planner'];
  private worker: Worker | undefined;
  private starting: Promise<Worker> | undefined;
  private readonly pending = new Map<number, Pending>();
  private readonly heapQueries = new Map<number, (heap: HeapLevels | undefined) => void>();
  private nextId = 0;
  private disposed = false;
  /** why the planner thread runs at the command thread's priority although plannerNice asked otherwise */
  priorityProblem?: string;

  private constructor(private readonly spec: PlannerSpec) {
    this.name = spec.planner;
  }

  /** Starts the thread and builds the planner there; a bad spec fails here with the builder's reason. */
  static async start(spec: PlannerSpec): Promise<PlannerThread> {
    const t = new PlannerThread(spec);
    await t.thread();
    return t;
  }

  async plan(req: PlanRequest): Promise<PlanResult> {
    const worker = await this.thread();
    const id = this.nextId++;
    const { deadline, ...rest } = req;
    const msg: ToPlanner = {
      type: 'plan', id,
      // the threads' performance clocks have different origins: the deadline crosses as wall time
      req: { ...rest, x0: [...req.x0], uPrev: [...req.uPrev], reference: [...req.reference], deadlineEpochMs: deadline === undefined ? undefined : performance.timeOrigin + deadline },
    };
    return new Promise<PlanResult>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      // a plan in flight keeps the process alive; an idle planner thread does not
      worker.ref();
      worker.postMessage(msg);
    });
  }

  /** the planner's parameters, as last sent to its thread (changes are applied there in order, before the next plan) */
  get params(): Readonly<PlannerSpec['params']> {
    return this.spec.params;
  }

  reset(): void {
    this.post({ type: 'reset' });
  }

  updateParams(changes: Readonly<Record<string, unknown>>): void {
    this.spec.params = { ...this.spec.params, ...(changes as PlannerSpec['params']) };
    this.post({ type: 'update', changes: { ...changes } });
  }

  /**
   * Fault injection (tests, `bench soak`): the planner's thread is blocked
   * for `ms` before it takes its next message, as a hung kernel would block it.
   */
  blockFor(ms: number): void {
    this.post({ type: 'block', ms });
  }

  /**
   * The planner thread's heap (in use after a collection when node runs with
   * --expose-gc, and committed), answered after the plan in progress;
   * undefined when no thread is running. process.memoryUsage() sees only the
   * main thread's heap.
   */
  async heap(): Promise<HeapLevels | undefined> {
    const worker = this.worker;
    if (!worker) return undefined;
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.heapQueries.set(id, resolve);
      worker.postMessage({ type: 'heap', id } satisfies ToPlanner);
    });
  }

  /**
   * Fails what is pending and lets the thread end after the plan it is in
   * (terminated after CLOSE_GRACE_MS if that plan hangs): a thread stopped
   * while a GPU plan awaits its queue takes the process down with it (Dawn
   * aborts on a promise it never settled). `plannerThreadsClosed` awaits it.
   */
  dispose(): void {
    this.disposed = true;
    for (const answer of this.heapQueries.values()) answer(undefined);
    this.heapQueries.clear();
    this.fail(new Error('the planner thread was shut down'));
    const worker = this.worker;
    this.worker = undefined;
    if (!worker) return;
    const closed = new Promise<void>((resolve) => {
      const timer = setTimeout(() => void worker.terminate().then(() => resolve()), CLOSE_GRACE_MS[this.spec.backend]);
      worker.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    closing.add(closed);
    void closed.then(() => closing.delete(closed));
    worker.postMessage({ type: 'close' } satisfies ToPlanner);
  }

  private post(msg: ToPlanner): void {
    // a thread that is not running has nothing to reset or update: a fresh one starts from the spec
    this.worker?.postMessage(msg);
  }

  private thread(): Promise<Worker> {
    if (this.disposed) return Promise.reject(new Error('the planner thread was shut down'));
    if (this.worker) return Promise.resolve(this.worker);
    this.starting ??= new Promise<Worker>((resolve, reject) => {
      const worker = new Worker(new URL('./planner-worker.js', import.meta.url), {
        workerData: this.spec,
        resourceLimits: { maxYoungGenerationSizeMb: PLANNER_YOUNG_GENERATION_MB },
      });
      worker.once('message', (m: FromPlanner) => {
        if (m.type === 'ready') {
          this.priorityProblem = m.niceProblem;
          worker.unref();
          this.worker = worker;
          worker.on('message', (msg: FromPlanner) => this.answer(msg));
          resolve(worker);
        } else {
          void worker.terminate();
          reject(m.type === 'failed' ? (m.input ? new InputError(m.message) : new Error(m.message)) : new Error(`planner thread: unexpected first message ${m.type}`));
        }
      });
      worker.on('error', (e) => {
        reject(e);
        this.died(worker, `the planner thread failed: ${e.message}`);
      });
      worker.on('exit', (code) => this.died(worker, `the planner thread exited (code ${code})`));
    }).finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  private answer(msg: FromPlanner): void {
    if (msg.type === 'heap') {
      this.heapQueries.get(msg.id)?.(msg.heap);
      this.heapQueries.delete(msg.id);
      return;
    }
    if (msg.type !== 'result' && msg.type !== 'error') return;
    const p = this.pending.get(msg.id);
    if (!p) return;
    this.pending.delete(msg.id);
    if (this.pending.size === 0) this.worker?.unref();
    if (msg.type === 'result') p.resolve(msg.result);
    else p.reject(new Error(msg.message));
  }

  private died(worker: Worker, reason: string): void {
    if (this.worker !== worker) return;
    this.worker = undefined;
    this.fail(new Error(reason));
  }

  private fail(e: Error): void {
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }
}

/**
 * Fault injection (tests, `bench soak`): blocks the thread the planner runs
 * on for `ms`, as a hung kernel would; with the planner on the main thread
 * that blocks the commands too, which is why it has its own.
 */
export function blockPlannerThread(planner: RecedingPlanner, ms: number): void {
  if (planner instanceof PlannerThread) planner.blockFor(ms);
  else Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
