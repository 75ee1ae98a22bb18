import Fastify from 'fastify';
import { Counter, Gauge, Registry } from 'prom-client';
import type { SweepProgress } from './sweep.js';

/**
 * A sweep's figures in Prometheus form (sweep --serve): cells by state,
 * queue depth, workers, jobs per second. Updated with the progress bar;
 * scraping costs the sweep nothing.
 */
export class SweepMetrics {
  readonly registry = new Registry();
  private readonly cells: Gauge;
  private readonly depth: Gauge;
  private readonly workers: Gauge;
  private readonly rate: Gauge;
  private readonly finished: Counter;
  private seenDone = -1;

  constructor() {
    const r = [this.registry];
    this.cells = new Gauge({ name: 'tempered_mpc_sweep_cells', help: 'the sweep\'s cells by state', labelNames: ['state'], registers: r });
    this.depth = new Gauge({ name: 'tempered_mpc_sweep_queue_depth', help: 'cells waiting for a worker', registers: r });
    this.workers = new Gauge({ name: 'tempered_mpc_sweep_workers', help: 'workers taking jobs from the queue (the local pool\'s size without one)', registers: r });
    this.rate = new Gauge({ name: 'tempered_mpc_sweep_jobs_per_second', help: 'cells finished per second since the sweep started', registers: r });
    this.finished = new Counter({ name: 'tempered_mpc_sweep_cells_finished_total', help: 'cells finished by this sweep process (done now, not earlier runs)', registers: r });
  }

  observe(p: SweepProgress): void {
    for (const [state, v] of [['done', p.done], ['running', p.running], ['failed', p.failed], ['waiting', p.waiting]] as const) this.cells.set({ state }, v);
    this.depth.set(p.waiting);
    this.workers.set(p.workers);
    this.rate.set(p.jobsPerS);
    if (this.seenDone >= 0 && p.done > this.seenDone) this.finished.inc(p.done - this.seenDone);
    this.seenDone = p.done;
  }
}

/** /metrics and /healthz on host:port (loopback unless asked); resolves to the address and a close function. */
export async function serveSweepMetrics(metrics: SweepMetrics, host: string, port: number): Promise<{ address: string; close: () => Promise<void> }> {
  const app = Fastify({ logger: false });
  app.get('/healthz', async () => ({ ok: true }));
  app.get('/metrics', async (_req, reply) => {
    reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });
  try {
    const address = await app.listen({ host, port });
    return { address, close: () => app.close() };
  } catch (e) {
    throw new Error(`the metrics server could not listen on ${host}:${port}: ${(e as Error).message}`);
  }
}
