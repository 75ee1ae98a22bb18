import { availableParallelism } from 'node:os';
import type { Model } from '../models/model.js';
import { CostGrad, normalizeRequest, NormalizedRequest, RolloutBackend, RolloutRequest, Trajectories } from './backend.js';
import { buildStepGraphs, StepGraphs } from './graphs.js';
import { jsKernelSource, jsScratchLength, KernelKind } from './js-source.js';
import { wasmKernelSource } from './wasm-source.js';
import { reachable } from '../expr/grad.js';
import { sharedZeros, WorkerPool } from './pool.js';

// Below this many rollout steps a batch runs on the calling thread: waking workers would cost more.
const PARALLEL_MIN_STEPS = 1024;
// A step with fewer operations than this runs faster as JavaScript (see CpuBackend.register).
const WASM_MIN_OPERATIONS = 64;

/** Operations one sample's step computes in this kernel (forward, plus backward for gradients). */
function stepOperations(g: StepGraphs, kind: KernelKind): number {
  const outputs = [...g.next, g.stage, ...(kind === 'grad' ? [...g.gradX, ...g.gradU, ...g.gradPrev] : [])];
  return reachable(outputs).filter((e) => e.op !== 'input' && e.op !== 'const').length;
}

const pools = new Map<number, WorkerPool>();

/** One pool per thread count, shared by every model in the process. */
export function workerPool(threads: number): WorkerPool {
  let pool = pools.get(threads);
  if (!pool) {
    pool = new WorkerPool(threads);
    pools.set(threads, pool);
  }
  return pool;
}

/** How CPU kernels are emitted: WebAssembly with two samples per SIMD vector, or plain JavaScript (the reference). */
export type CpuKernelCode = 'wasm' | 'js';

export interface CpuBackendOptions {
  /** Threads including the caller's (default: all cores). */
  threads?: number;
  /** default wasm; a model whose WebAssembly the engine refuses (a size limit) runs the JavaScript kernels */
  code?: CpuKernelCode;
}

let nextModelId = 0;

/** f64 rollout kernels generated from the model definition, run across cores. */
export class CpuBackend implements RolloutBackend {
  readonly kind = 'cpu' as const;
  readonly threads: number;
  private readonly pool: WorkerPool;
  private readonly graphs = new Map<boolean, StepGraphs>();
  private readonly id = nextModelId++;
  private readonly keys = new Set<string>();
  private readonly requestedCode: CpuKernelCode;
  private readonly codes = new Map<string, CpuKernelCode>();
  /** staging buffers of batches not in flight (one set per batch in flight) */
  private readonly stagingSets: SharedStaging[] = [];
  /** why a kernel runs as JavaScript although WebAssembly was asked for, if one does */
  wasmRefused?: string;

  constructor(readonly model: Model, options: CpuBackendOptions = {}) {
    this.threads = options.threads ?? availableParallelism();
    this.pool = workerPool(this.threads);
    this.requestedCode = options.code ?? 'wasm';
  }

  private kernel(kind: KernelKind, noise: boolean): string {
    const key = `${this.id}:${kind}:${noise}`;
    if (!this.pool.has(key)) {
      let g = this.graphs.get(noise);
      if (!g) {
        g = buildStepGraphs(this.model, noise);
        this.graphs.set(noise, g);
      }
      this.register(key, g, kind);
      this.keys.add(key);
    }
    return key;
  }

  /**
   * WebAssembly where asked for, where the step has enough arithmetic to gain
   * from the vector lanes (below that, copying samples in and out costs more:
   * measured 1.3-1.8x slower for the double integrator and Shekel, 0.5-0.8x
   * the time for the pendulum's gradient and every larger model) and where
   * the engine takes it; else JavaScript. The pool compiles on this thread
   * before any worker sees the kernel, so the engine's limits show here.
   * The choice depends on the model only, never on timing, so runs repeat.
   */
  private register(key: string, g: StepGraphs, kind: KernelKind): void {
    if (this.requestedCode === 'wasm' && this.wasmRefused === undefined && stepOperations(g, kind) >= WASM_MIN_OPERATIONS) {
      try {
        this.pool.register(key, wasmKernelSource(g, kind), 0);
        this.codes.set(key, 'wasm');
        return;
      } catch (err) {
        this.wasmRefused = (err as Error).message;
      }
    }
    this.pool.register(key, jsKernelSource(g, kind), jsScratchLength(g, kind));
    this.codes.set(key, 'js');
  }

  /** How a kernel (without noise inputs) is emitted; compiles it if it is not yet. */
  codeOf(kind: KernelKind): CpuKernelCode {
    return this.codes.get(this.kernel(kind, false))!;
  }

  /** Runs a kernel over the request: the costs C and the `outLength` outputs A (gradient or states). */
  private run(kind: KernelKind, r: NormalizedRequest, outLength: number): { C: Float64Array; A: Float64Array } {
    return this.submit(kind, r, outLength).result();
  }

  /**
   * Starts a kernel over the request: a batch big enough for the workers is
   * handed to them at once and `result` joins in and waits; a small one (or
   * one while every job slot is taken) runs on this thread when `result` is
   * called; `result` must be called once. Batches for the workers go through shared staging buffers kept
   * between calls (allocating shared memory per call cost more than the
   * copies), and the results come back in fresh arrays the caller owns.
   */
  private submit(kind: KernelKind, r: NormalizedRequest, outLength: number): { result(): { C: Float64Array; A: Float64Array } } {
    const key = this.kernel(kind, r.noise !== undefined);
    const parallel = r.samples > 1 && r.samples * this.model.horizon >= PARALLEL_MIN_STEPS && this.pool.canSubmit;
    if (!parallel) {
      return {
        result: () => {
          const C = new Float64Array(r.samples);
          const A = new Float64Array(outLength);
          this.pool.run(key, { U: r.controls, X0: r.x0, UP: r.uPrev, R: r.reference, W: r.noise ?? EMPTY, C, A }, r.samples, false);
          return { C, A };
        },
      };
    }
    const stage = this.stagingSets.pop() ?? new SharedStaging();
    const args = {
      U: stage.take('U', r.controls), X0: stage.take('X0', r.x0), UP: stage.take('UP', r.uPrev), R: stage.take('R', r.reference),
      W: r.noise ? stage.take('W', r.noise) : EMPTY, C: stage.output('C', r.samples), A: stage.output('A', outLength),
    };
    const job = this.pool.submit(key, args, r.samples);
    return {
      result: () => {
        try {
          job.complete();
          return { C: args.C.slice(), A: args.A.slice() };
        } finally {
          this.stagingSets.push(stage);
        }
      },
    };
  }

  /**
   * Starts dJ/dU for a batch and returns at once where worker threads can take
   * it, so the caller can prepare another batch meanwhile; `result` finishes it.
   */
  submitCostGrad(req: RolloutRequest): { result(): CostGrad } {
    const r = normalizeRequest(this.model, req);
    const pending = this.submit('grad', r, r.controls.length);
    return {
      result: () => {
        const { C, A } = pending.result();
        return { cost: C, grad: A };
      },
    };
  }

  costSync(req: RolloutRequest): Float64Array {
    return this.run('cost', normalizeRequest(this.model, req), 0).C;
  }

  costGradSync(req: RolloutRequest): CostGrad {
    const r = normalizeRequest(this.model, req);
    const { C, A } = this.run('grad', r, r.controls.length);
    return { cost: C, grad: A };
  }

  trajectoriesSync(req: RolloutRequest): Trajectories {
    const r = normalizeRequest(this.model, req);
    const { C, A } = this.run('trajectory', r, r.samples * (this.model.horizon + 1) * this.model.stateDim);
    return { cost: C, states: A };
  }

  async cost(req: RolloutRequest): Promise<Float64Array> {
    return this.costSync(req);
  }

  async costGrad(req: RolloutRequest): Promise<CostGrad> {
    return this.costGradSync(req);
  }

  async trajectories(req: RolloutRequest): Promise<Trajectories> {
    return this.trajectoriesSync(req);
  }

  dispose(): void {
    for (const key of this.keys) this.pool.unregister(key);
    this.keys.clear();
  }
}

const EMPTY = sharedZeros(0);

/** Shared-memory buffers by role, grown (never shrunk) as batches need; views of the requested length. */
class SharedStaging {
  private readonly buffers = new Map<string, Float64Array>();

  /** a buffer of this length (uncleared: a kernel writes each output value) */
  output(role: string, length: number): Float64Array {
    let b = this.buffers.get(role);
    if (!b || b.length < length) {
      b = sharedZeros(Math.max(length, 2 * (b?.length ?? 0)));
      this.buffers.set(role, b);
    }
    return b.subarray(0, length);
  }

  take(role: string, values: ArrayLike<number>): Float64Array {
    const v = this.output(role, values.length);
    v.set(values);
    return v;
  }
}
