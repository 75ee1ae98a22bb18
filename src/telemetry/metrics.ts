import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ControllerCounters, TickMode, TickResult } from '../controller/controller.js';

const MODES: readonly TickMode[] = ['ok', 'late', 'fallback', 'stale', 'waiting'];

/** prom-client's default gauges whose names end in _total (a counter's suffix). */
const NON_COUNTERS_NAMED_TOTAL = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/**
 * The controller's figures in Prometheus form, named by its conventions,
 * with Node's default process metrics (event-loop lag matters for a control
 * loop in Node). Fed once per tick; scraping costs the tick nothing.
 */
export class ControllerMetrics {
  readonly registry = new Registry();
  private readonly solve: Histogram;
  private readonly counters: Record<keyof ControllerCounters, Counter>;
  private readonly seen: ControllerCounters = { ticks: 0, deadlineMisses: 0, plannerErrors: 0, rejectedStates: 0, rejectedGoals: 0, staleTicks: 0 };
  private readonly cost: Gauge;
  private readonly mode: Gauge;
  private readonly plannerFigures: Gauge;

  constructor(planner: string, budgetS: number) {
    collectDefaultMetrics({ register: this.registry });
    // gauges named *_total break Prometheus's naming rule (promtool refuses them); the per-type
    // nodejs_active_{handles,requests,resources} gauges beside them hold the same counts
    for (const name of NON_COUNTERS_NAMED_TOTAL) this.registry.removeSingleMetric(name);
    this.registry.setDefaultLabels({ planner });
    const r = [this.registry];
    // buckets around the budget: what matters is how close to it a solve comes
    const buckets = [0.1, 0.25, 0.5, 0.75, 0.9, 1, 1.25, 2, 5].map((f) => +(f * budgetS).toPrecision(6));
    this.solve = new Histogram({ name: 'tempered_mpc_solve_duration_seconds', help: 'time from starting a plan to its landing', buckets, registers: r });
    const counter = (name: string, help: string) => new Counter({ name: `tempered_mpc_${name}_total`, help, registers: r });
    this.counters = {
      ticks: counter('ticks', 'command ticks'),
      deadlineMisses: counter('deadline_misses', 'ticks whose plan was not ready within the budget'),
      plannerErrors: counter('planner_errors', 'plans that failed (exception or non-finite plan)'),
      rejectedStates: counter('rejected_states', 'state messages refused (size, NaN/Inf, stamp, estimator gate)'),
      rejectedGoals: counter('rejected_goals', 'goal messages refused'),
      staleTicks: counter('stale_ticks', 'ticks without a fresh state (safe command)'),
    };
    this.cost = new Gauge({ name: 'tempered_mpc_plan_cost', help: 'cost of the plan in effect (NaN without one)', registers: r });
    this.mode = new Gauge({ name: 'tempered_mpc_watchdog_mode', help: 'the last tick\'s mode: 1 for the mode it was in, 0 for the others', labelNames: ['mode'], registers: r });
    this.plannerFigures = new Gauge({
      name: 'tempered_mpc_planner_figure', help: 'the planner\'s figures of the last plan (tsmc: beta, essRatio, acceptance, levels; mppi: iterations, rollouts)',
      labelNames: ['figure'], registers: r,
    });
  }

  observe(tick: TickResult, counters: Readonly<ControllerCounters>): void {
    for (const key of Object.keys(this.seen) as (keyof ControllerCounters)[]) {
      const delta = counters[key] - this.seen[key];
      if (delta > 0) this.counters[key].inc(delta);
      this.seen[key] = counters[key];
    }
    if (tick.planned) {
      this.solve.observe(tick.solveMs / 1000);
      for (const [figure, v] of Object.entries(tick.info)) if (Number.isFinite(v)) this.plannerFigures.set({ figure }, v);
    }
    this.cost.set(tick.cost);
    for (const m of MODES) this.mode.set({ mode: m }, m === tick.mode ? 1 : 0);
  }
}
