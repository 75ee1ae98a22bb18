import { availableParallelism } from 'node:os';
import type { Model } from '../models/model.js';
import { CostGrad, normalizeRequest, NormalizedRequest, RolloutBackend, RolloutRequest, Trajectories } from './backend.js';
import { buildStepGraphs, StepGraphs } from './graphs.js';
import { jsKernelSource, jsScratchLength, KernelKind } from './js-source.js';
import { shared, sharedZeros, WorkerPool } from './pool.js';

// Below this many rollout steps a batch runs on the calling thread: waking workers would cost more.
const PARALLEL_MIN_STEPS = 1024;

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

export interface CpuBackendOptions {
  /** Threads including the caller's (default: all cores). */
  threads?: number;
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

  constructor(readonly model: Model, options: CpuBackendOptions = {}) {
    this.threads = options.threads ?? availableParallelism();
    this.pool = workerPool(this.threads);
  }

  private kernel(kind: KernelKind, noise: boolean): string {
    const key = `${this.id}:${kind}:${noise}`;
    if (!this.pool.has(key)) {
      let g = this.graphs.get(noise);
      if (!g) {
        g = buildStepGraphs(this.model, noise);
        this.graphs.set(noise, g);
      }
      this.pool.register(key, jsKernelSource(g, kind), jsScratchLength(g, kind));
      this.keys.add(key);
    }
    return key;
  }

  private run(kind: KernelKind, r: NormalizedRequest, A: Float64Array): Float64Array {
    const key = this.kernel(kind, r.noise !== undefined);
    const C = sharedZeros(r.samples);
    const parallel = r.samples > 1 && r.samples * this.model.horizon >= PARALLEL_MIN_STEPS;
    const wrap = parallel ? shared : (a: Float64Array) => a;
    this.pool.run(key, {
      U: wrap(r.controls), X0: wrap(r.x0), UP: wrap(r.uPrev), R: wrap(r.reference),
      W: r.noise ? wrap(r.noise) : EMPTY, C, A,
    }, r.samples, parallel);
    return C;
  }

  costSync(req: RolloutRequest): Float64Array {
    return this.run('cost', normalizeRequest(this.model, req), EMPTY);
  }

  costGradSync(req: RolloutRequest): CostGrad {
    const r = normalizeRequest(this.model, req);
    const grad = sharedZeros(r.controls.length);
    return { cost: this.run('grad', r, grad), grad };
  }

  trajectoriesSync(req: RolloutRequest): Trajectories {
    const r = normalizeRequest(this.model, req);
    const states = sharedZeros(r.samples * (this.model.horizon + 1) * this.model.stateDim);
    return { cost: this.run('trajectory', r, states), states };
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
