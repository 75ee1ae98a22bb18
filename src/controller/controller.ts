import { fromPhysical, Model } from '../models/model.js';
import { choice, list, num } from '../params.js';
import { Rng } from '../random.js';
import type { PlanResult, RecedingPlanner } from './receding.js';

/** Controller parameters, declared once (ROS parameters, YAML files, --set). */
export const CONTROLLER_PARAMS = {
  planner: choice('tsmc', ['tsmc', 'mppi'] as const, 'planner run every tick', { readOnly: 'the planner is built at configure' }),
  rateHz: num(0, 'control rate [Hz] (0 = 1 / the model\'s dtS)', { min: 0, max: 1000, readOnly: 'the control timer and the simulator period are set at configure' }),
  budgetMs: num(0, 'planning budget per tick [ms] (0 = 80% of the period); enforced in real time, not in lockstep', { min: 0, max: 60000 }),
  staleTimeoutS: num(0.5, 'no fresh state for this long: publish the safe command and flag it; older states are rejected', { min: 0, max: 3600, exclusive: true }),
  futureStampToleranceS: num(0.05, 'a state stamped further ahead of the controller\'s clock than this is rejected (clock skew allowance) [s]', { min: 0, max: 10 }),
  backend: choice('cpu', ['cpu', 'webgpu'] as const, 'rollout kernels: cpu (f64, all cores) or webgpu (f32)', { readOnly: 'the kernels are built at configure' }),
  threads: num(0, 'CPU threads for the cpu backend (0 = all cores)', { min: 0, max: 256, integer: true, readOnly: 'the worker pool is built at configure' }),
  estimator: choice('none', ['none', 'ekf'] as const, 'state estimation before planning: none (plan from the measurement) or ekf (extended Kalman filter on the model, exact Jacobians from its definition)',
    { readOnly: 'the estimator is built at configure' }),
  estimatorProcessNoise: num(0.02, 'EKF process noise: std per model state per sqrt(second), in the model\'s state units (`tempered-mpc systems NAME`)', { min: 0, max: 1e3 }),
  estimatorMeasurementNoise: num(0.01, 'EKF measurement noise: std per physical state', { min: 0, max: 1e3, exclusive: true }),
  estimatorGate: num(30, 'EKF outlier gate: a measurement whose squared Mahalanobis distance exceeds this is refused (0 = no gate)', { min: 0, max: 1e9 }),
  seed: num(0, 'seed of the planner\'s random numbers (an embedded run seeds its simulator with seed + 1)', { min: 0, max: 2 ** 31 - 1, integer: true, readOnly: 'the random stream starts at configure' }),
  jointNames: list('string', 'joint names of the state and goal messages (sensor_msgs/JointState), in order (empty = the system\'s own, see `tempered-mpc systems NAME`)',
    { maxLength: 32, readOnly: 'the state interface is set at configure' }),
} as const;

export type TickMode =
  | 'ok' // planned in time
  | 'late' // planning overran: the previous plan's next action was used
  | 'fallback' // the planner failed: previous plan or safe command
  | 'stale' // no fresh state: safe command
  | 'waiting'; // no state yet: safe command

export interface TickResult {
  timeS: number;
  /** the model state the plan starts from (null when none was planned) */
  fromState: number[] | null;
  control: number[];
  /** plan as horizon rows of physical controls (null when none) */
  plan: number[][] | null;
  mode: TickMode;
  reason: string;
  solveMs: number;
  cost: number;
  info: Record<string, number>;
}

export interface ControllerCounters {
  ticks: number;
  deadlineMisses: number;
  plannerErrors: number;
  rejectedStates: number;
  rejectedGoals: number;
  staleTicks: number;
}

/** The timing rules, changeable between ticks (live parameters). */
export interface ControllerTiming {
  budgetMs: number;
  staleTimeoutS: number;
  /** states stamped further ahead of the clock than this are rejected (default: not checked) */
  futureStampToleranceS?: number;
}

export interface ControllerOptions extends ControllerTiming {
  periodS: number;
  /** enforce the budget (real time); lockstep runs plan to completion */
  enforceDeadline: boolean;
  seed: number;
  /** published when the controller cannot plan (default zeros, clamped to the limits) */
  safeCommand?: readonly number[];
}

/**
 * The receding-horizon controller, free of any transport: timestamped state
 * in, a control and the plan out, every tick. ROS and the embedded loop are
 * two thin doors into this one class.
 *
 * Guarantees: every published control is finite and within the limits; a
 * state with the wrong size or a NaN/Inf is rejected with a reason; with no
 * fresh state within the timeout the safe command is published and flagged;
 * a planner exception never escapes a tick.
 */
export class Controller {
  readonly counters: ControllerCounters = { ticks: 0, deadlineMisses: 0, plannerErrors: 0, rejectedStates: 0, rejectedGoals: 0, staleTicks: 0 };
  lastRejection = '';
  private state: { x: number[]; stampS: number } | undefined;
  private reference: number[];
  private previous: { plan: Float64Array; ageTicks: number } | undefined;
  /** a plan asked for by an earlier tick that has not come back (real time only) */
  private stillPlanning: { sinceMs: number } | undefined;
  private uPrev: number[];
  private readonly rng: Rng;
  readonly safeCommand: number[];

  private readonly options: ControllerOptions;

  constructor(readonly model: Model, readonly planner: RecedingPlanner, options: ControllerOptions) {
    this.options = { ...options };
    this.reference = [...model.goal];
    this.rng = new Rng(options.seed);
    const safe = options.safeCommand ?? new Array<number>(model.controlDim).fill(0);
    if (safe.length !== model.controlDim) throw new Error(`safe command needs ${model.controlDim} values`);
    this.safeCommand = this.clamp(safe.map((v) => (Number.isFinite(v) ? v : 0)));
    this.uPrev = [...this.safeCommand];
  }

  get timing(): Readonly<ControllerTiming & { periodS: number }> {
    return this.options;
  }

  /** New timing rules; the caller applies them between ticks. */
  setTiming(t: ControllerTiming): void {
    Object.assign(this.options, t);
  }

  /**
   * Accepts a physical state measurement; returns a reason when it is
   * rejected (wrong size, NaN/Inf, and with the clock's `nowS`: stamped in
   * the future or older than the stale timeout).
   */
  onState(y: readonly number[], stampS: number, nowS?: number): string | undefined {
    const reason = checkVector('state', y, this.model.stateDim) ?? this.stampProblem(stampS, nowS);
    if (reason) return this.reject('state', reason);
    this.state = { x: fromPhysical(this.model, y), stampS };
    return undefined;
  }

  /** Counts and remembers a refused input (state, goal) from either door. */
  reject(kind: 'state' | 'goal', reason: string): string {
    if (kind === 'state') this.counters.rejectedStates++;
    else this.counters.rejectedGoals++;
    this.lastRejection = reason;
    return reason;
  }

  /** Why a state stamped `stampS` is refused at `nowS` (not finite, from the future, or stale); undefined when it is fine. */
  stampProblem(stampS: number, nowS: number | undefined): string | undefined {
    if (!Number.isFinite(stampS)) return `state stamp is not finite (${stampS})`;
    if (nowS === undefined) return undefined;
    const ahead = stampS - nowS;
    const tolerance = this.options.futureStampToleranceS;
    if (tolerance !== undefined && ahead > tolerance) {
      return `state stamped ${ahead.toFixed(3)} s ahead of the controller's clock (tolerance ${tolerance} s): clocks out of sync?`;
    }
    if (-ahead > this.options.staleTimeoutS) return `state stamped ${(-ahead).toFixed(3)} s ago, older than staleTimeoutS ${this.options.staleTimeoutS} s`;
    return undefined;
  }

  /** Sets the goal/reference state (physical units) at run time. */
  setReference(ref: readonly number[]): string | undefined {
    const reason = checkVector('goal', ref, this.model.stateDim);
    if (reason) return this.reject('goal', reason);
    this.reference = fromPhysical(this.model, ref);
    return undefined;
  }

  /** Whether a state has been accepted (a warm-up solve needs one). */
  get hasState(): boolean {
    return this.state !== undefined;
  }

  get currentReference(): readonly number[] {
    return this.reference;
  }

  /**
   * Plans once from the current state without a deadline, so the first real
   * tick starts warm (a node does this before it reports ready).
   */
  async prepare(): Promise<void> {
    if (!this.state) throw new Error('prepare() needs a state first');
    const r = await this.planner.plan(this.rng, { x0: this.state.x, uPrev: this.uPrev, reference: this.reference });
    // the warm-up plan is not applied; the planner keeps it as its warm start
    void r;
  }

  async tick(nowS: number): Promise<TickResult> {
    this.counters.ticks++;
    const base = { timeS: nowS, solveMs: 0, cost: NaN, info: {}, fromState: null };
    if (!this.state) return this.emit({ ...base, control: this.safeCommand, plan: null, mode: 'waiting', reason: 'no state received yet' });
    const age = nowS - this.state.stampS;
    if (age > this.options.staleTimeoutS) {
      this.counters.staleTicks++;
      this.previous = undefined;
      return this.emit({
        ...base, control: this.safeCommand, plan: null, mode: 'stale',
        reason: `no fresh state for ${age.toFixed(3)} s (timeout ${this.options.staleTimeoutS} s)`,
      });
    }
    const fromState = [...this.state.x];
    if (this.stillPlanning) {
      // a plan from an earlier tick has not come back: follow the previous plan meanwhile
      this.counters.deadlineMisses++;
      const waitedMs = performance.now() - this.stillPlanning.sinceMs;
      return this.fallback({ ...base, fromState }, 'late', `the planner is still working on the plan asked for ${waitedMs.toFixed(0)} ms ago`, 0);
    }
    const start = performance.now();
    // The planner aims 10% inside the budget: its last step and the hand-over must fit too.
    const deadline = start + 0.9 * this.options.budgetMs;
    let result: PlanResult;
    try {
      const planning = this.planner.plan(this.rng, {
        x0: this.state.x, uPrev: this.uPrev, reference: this.reference,
        deadline: this.options.enforceDeadline ? deadline : undefined,
      }).then(checkedPlan);
      if (this.options.enforceDeadline) {
        // The command does not wait for a planner that stalls (a hung GPU call, a slow await): at the
        // budget it follows the previous plan, and the stalled plan is taken when it comes back.
        const outcome = await withinBudget(planning, this.options.budgetMs);
        if (!outcome.done) return this.planningOverran(planning, start, fromState, base);
        result = outcome.value;
      } else result = await planning;
    } catch (e) {
      this.counters.plannerErrors++;
      this.planner.reset();
      return this.fallback({ ...base, fromState }, 'fallback', `planner error: ${(e as Error).message}`, performance.now() - start);
    }
    const solveMs = performance.now() - start;
    if (this.options.enforceDeadline && solveMs > this.options.budgetMs) {
      this.counters.deadlineMisses++;
      // The new plan still warm-starts the next tick through the planner's own state.
      return this.fallback({ ...base, fromState, cost: result.cost, info: result.info }, 'late',
        `planning took ${solveMs.toFixed(1)} ms, over the ${this.options.budgetMs.toFixed(1)} ms budget`, solveMs);
    }
    this.previous = { plan: result.controls, ageTicks: 0 };
    const m = this.model.controlDim;
    return this.emit({
      ...base, fromState, solveMs, cost: result.cost, info: result.info, mode: 'ok', reason: '',
      control: Array.from(result.controls.subarray(0, m)), plan: planRows(result.controls, m),
    });
  }

  /** A plan still running at the budget: counted, and followed once it lands (at the row for the time that has passed). */
  private planningOverran(planning: Promise<PlanResult>, startMs: number, fromState: number[], base: Omit<TickResult, 'control' | 'plan' | 'mode' | 'reason' | 'fromState'>): TickResult {
    this.counters.deadlineMisses++;
    this.stillPlanning = { sinceMs: startMs };
    planning.then(
      (r) => {
        const periodMs = 1000 * this.options.periodS;
        this.previous = { plan: r.controls, ageTicks: Math.floor((performance.now() - startMs) / periodMs) };
      },
      () => {
        this.counters.plannerErrors++;
        this.planner.reset();
      },
    ).finally(() => {
      this.stillPlanning = undefined;
    });
    return this.fallback({ ...base, fromState }, 'late', `planning still running at the ${this.options.budgetMs.toFixed(1)} ms budget`, this.options.budgetMs);
  }

  /** The previous plan's next action if there is one, else the safe command. */
  private fallback(base: Omit<TickResult, 'control' | 'plan' | 'mode' | 'reason'>, mode: TickMode, reason: string, solveMs: number): TickResult {
    const m = this.model.controlDim;
    const prev = this.previous;
    if (prev && (prev.ageTicks + 1) * m < prev.plan.length) {
      prev.ageTicks++;
      const control = Array.from(prev.plan.subarray(prev.ageTicks * m, (prev.ageTicks + 1) * m));
      return this.emit({ ...base, solveMs, control, plan: planRows(prev.plan.subarray(prev.ageTicks * m), m), mode, reason: `${reason}; using the previous plan` });
    }
    return this.emit({ ...base, solveMs, control: this.safeCommand, plan: null, mode, reason: `${reason}; no previous plan, safe command` });
  }

  /** Last line of defence: the control leaving is finite and within limits. */
  private emit(r: TickResult): TickResult {
    let control = this.clamp(r.control);
    if (!control.every(Number.isFinite)) {
      control = this.safeCommand;
      r = { ...r, mode: 'fallback', reason: `${r.reason} non-finite control replaced by the safe command`.trim() };
    }
    this.uPrev = control;
    return { ...r, control };
  }

  private clamp(u: readonly number[]): number[] {
    const { lower, upper } = this.model.controlLimits;
    return u.map((v, j) => Math.min(upper[j], Math.max(lower[j], v)));
  }
}

function checkedPlan(result: PlanResult): PlanResult {
  const bad = [...result.controls].findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new Error(`planner returned a non-finite control at index ${bad}`);
  return result;
}

/** The promise's value if it settles within `ms`, else { done: false } (it keeps running). */
async function withinBudget<T>(promise: Promise<T>, ms: number): Promise<{ done: true; value: T } | { done: false }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<{ done: false }>((resolve) => {
    timer = setTimeout(() => resolve({ done: false }), ms);
  });
  try {
    return await Promise.race([promise.then((value) => ({ done: true as const, value })), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function planRows(flat: Float64Array, m: number): number[][] {
  return Array.from({ length: flat.length / m }, (_, t) => Array.from(flat.subarray(t * m, (t + 1) * m)));
}

/** A reason when v is not `length` finite numbers. */
export function checkVector(label: string, v: readonly unknown[], length: number): string | undefined {
  if (!Array.isArray(v) && !ArrayBuffer.isView(v)) return `${label} is not an array`;
  if (v.length !== length) return `${label} has ${v.length} values, expected ${length}`;
  const bad = Array.from(v).findIndex((x) => typeof x !== 'number' || !Number.isFinite(x));
  if (bad >= 0) return `${label}[${bad}] is not a finite number (${String(v[bad])})`;
  return undefined;
}
