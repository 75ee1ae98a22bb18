import { fromPhysical, Model, stateAngles } from '../models/model.js';
import { choice, flag, list, num, text } from '../params.js';
import { buildStepGraphs } from '../kernels/graphs.js';
import { compileStepFunction, StepFunction } from '../kernels/js-source.js';
import type { PlanDiagnostics, PlanResult, RecedingPlanner } from '../planners/receding.js';
import { PLANNER_NAMES } from '../planners/registry.js';
import { feedbackCommand, PlanFeedback, PlanFeedbackMaker, planStateAt } from './feedback.js';

/** Controller parameters, declared once (ROS parameters, YAML files, --set). */
export const CONTROLLER_PARAMS = {
  planner: choice(PLANNER_NAMES[0], PLANNER_NAMES, 'the receding-horizon planner (the planner registry: src/planners/registry.ts)', { readOnly: 'the planner is built at configure' }),
  plannerThread: choice('worker', ['worker', 'main'] as const,
    'where the planner runs: worker (its own thread: a slow or stalled planner cannot delay a command) or main (the command thread: a stall blocks commands; for profiling)',
    { readOnly: 'the planner is built at configure' }),
  plannerNice: num(0, 'niceness of the planner\'s thread and its kernel threads (Linux, 0-19; 0 = as the command thread): on a busy computer the command thread is scheduled first and the anytime planner plans less, instead of the commands coming late',
    { min: 0, max: 19, integer: true, readOnly: 'the planner thread starts at configure' }),
  commandPriority: num(0, 'real-time priority of the command thread (Linux SCHED_FIFO, 1-99; 0 = normal scheduling) in real time: on a busy computer its commands leave on time whatever else runs (threads it starts later, and the planner\'s, stay normal); needs CAP_SYS_NICE or an rtprio limit, else a note says why and it runs normally (docs/real-time.md)',
    { min: 0, max: 99, integer: true, readOnly: 'the command thread\'s scheduling is set at configure' }),
  rateHz: num(0, 'command rate [Hz] (0 = 1 / the model\'s dtS)', { min: 0, max: 1000, readOnly: 'the control timer and the simulator period are set at configure' }),
  planRateHz: num(0, 'how often a plan is started [Hz], at most rateHz (0 = every command tick); commands in between are read from the latest plan by time',
    { min: 0, max: 1000, readOnly: 'the planning schedule is set at configure' }),
  commandInterpolation: choice('zoh', ['zoh', 'linear', 'feedback'] as const,
    'how a command is read from the plan between its steps: zoh (the step\'s control), linear (between this step\'s and the next) or feedback (the step\'s control plus the plan\'s LQR gain times the measured state\'s deviation from the plan\'s)'),
  refinePlan: flag(false, 'polish every landed plan with one iLQG step on the model\'s exact derivatives (the gains\' backward pass, its feedforward rolled out under a line search; kept only where it lowers the plan\'s cost): near a goal the sampled plan becomes the LQR\'s command, free of sampling noise'),
  planTimeoutS: num(0, 'a plan older than this is not followed: the fallback command until a new one lands [s] (0 = the plan\'s horizon)', { min: 0, max: 3600 }),
  fallback: choice('zero', ['zero', 'policy'] as const,
    'what a tick with a fresh state but no plan to follow commands (none yet, older than its horizon or planTimeoutS, failed or non-finite): zero (the safe command) or policy (the feedback policy in fallbackPolicy, at the command rate); without a fresh state the safe command stays',
    { readOnly: 'the policy is loaded and checked at configure' }),
  fallbackPolicy: text('', 'the policy fallback: policy commands: a checkpoint from train-policy (or train-prior) --out for this system and step; empty: prior.path\'s', { maxLength: 4096, readOnly: 'the policy is loaded and checked at configure' }),
  budgetMs: num(0, 'planning budget per plan [ms] (0 = 80% of the plan period); enforced in real time, not in lockstep', { min: 0, max: 60000 }),
  staleTimeoutS: num(0.5, 'no fresh state for this long: publish the safe command and flag it; older states are rejected', { min: 0, max: 3600, exclusive: true }),
  futureStampToleranceS: num(0.05, 'a state stamped further ahead of the controller\'s clock than this is rejected (clock skew allowance) [s]', { min: 0, max: 10 }),
  backend: choice('cpu', ['cpu', 'webgpu'] as const, 'planners: cpu (f64, all cores) or webgpu (f32, the planners run on the GPU)', { readOnly: 'the kernels are built at configure' }),
  threads: num(0, 'CPU threads for the cpu backend (0 = all cores)', { min: 0, max: 256, integer: true, readOnly: 'the worker pool is built at configure' }),
  estimator: choice('none', ['none', 'ekf'] as const, 'state estimation before planning: none (plan from the measurement) or ekf (extended Kalman filter on the model, exact Jacobians from its definition)',
    { readOnly: 'the estimator is built at configure' }),
  estimatorProcessNoise: num(0.02, 'EKF process noise: std per model state per sqrt(second), in the model\'s state units (`tempered-mpc systems NAME`)', { min: 0, max: 1e3 }),
  estimatorProcessNoiseOn: choice('all', ['all', 'rates'] as const,
    'where the EKF\'s process noise enters: every model state, or only the joint velocities, as a disturbing torque or force would (systems measured as joints; then estimatorProcessNoise is per joint velocity)',
    { readOnly: 'the estimator is built at configure' }),
  estimatorMeasurementNoise: num(0.01, 'EKF measurement noise: std per physical state', { min: 0, max: 1e3, exclusive: true }),
  estimatorGate: num(30, 'EKF outlier gate: a measurement whose squared Mahalanobis distance exceeds this is refused (0 = no gate)', { min: 0, max: 1e9 }),
  seed: num(0, 'seed of the planner\'s random numbers (an embedded run seeds its simulator with seed + 1)', { min: 0, max: 2 ** 31 - 1, integer: true, readOnly: 'the random stream starts at configure' }),
  telemetryPort: num(0, 'port of the live telemetry and tuning server (HTTP: /status, /metrics, /params; Foxglove WebSocket on the same port); 0 = off',
    { min: 0, max: 65535, integer: true, readOnly: 'the server starts at configure' }),
  telemetryBind: choice('loopback', ['loopback', 'all'] as const,
    'where the telemetry server listens: loopback (127.0.0.1) or all interfaces (then a change needs the token the node logs at configure)',
    { readOnly: 'the server starts at configure' }),
  telemetryEncoding: choice('protobuf', ['protobuf', 'json'] as const, 'encoding of the live channels (Foxglove, dashboard): protobuf (schemas built from msgs/) or json',
    { readOnly: 'the server starts at configure' }),
  jointNames: list('string', 'joint names of the state and goal messages (sensor_msgs/JointState), in order (empty = the system\'s own, see `tempered-mpc systems NAME`)',
    { maxLength: 32, readOnly: 'the state interface is set at configure' }),
} as const;

export type TickMode =
  | 'ok' // following a plan that finished in time
  | 'late' // planning overran its budget: the latest finished plan is followed meanwhile
  | 'fallback' // the planner failed or its latest plan is too old: that plan or the safe command
  | 'stale' // no fresh state: safe command
  | 'waiting'; // no state yet: safe command

/** A finished plan, followed by time until the next one lands. */
export interface AppliedPlan {
  /** controller time at which row 0 starts [s]; row k spans [startS + k dtS, startS + (k+1) dtS) */
  startS: number;
  /** the model state it was planned from */
  fromState: number[];
  /** horizon x controlDim physical controls, row-major */
  controls: Float64Array;
  cost: number;
  /** the command before it, and the goal it was planned for: its linearisation's inputs */
  uPrev: readonly number[];
  reference: readonly number[];
  /** its predicted model states and feedback gains (src/controller/feedback.ts): built at landing where the commands need them, else when first asked for (Controller.feedbackOf) */
  feedback?: PlanFeedback;
}

export interface TickResult {
  timeS: number;
  control: number[];
  /** the plan the command was taken from (null: the safe command) */
  plan: AppliedPlan | null;
  mode: TickMode;
  reason: string;
  /** a plan finished since the previous tick: solveMs and info are its figures */
  planned: boolean;
  solveMs: number;
  /** the followed plan's cost (NaN without one) */
  cost: number;
  info: Record<string, number>;
  /** the landed plan in detail (empty when none landed) */
  diagnostics: PlanDiagnostics;
}

export interface ControllerCounters {
  ticks: number;
  /** ticks whose plan was not ready within the budget */
  deadlineMisses: number;
  plannerErrors: number;
  rejectedStates: number;
  rejectedGoals: number;
  staleTicks: number;
}

export type Interpolation = 'zoh' | 'linear' | 'feedback';

/** The timing rules, changeable between ticks (live parameters). */
export interface ControllerTiming {
  budgetMs: number;
  staleTimeoutS: number;
  /** states stamped further ahead of the clock than this are rejected (default: not checked) */
  futureStampToleranceS?: number;
  /** a plan older than this is not followed (default: its horizon) */
  planTimeoutS?: number;
  /** how a command is read from a plan between its steps (default zoh) */
  interpolation?: Interpolation;
  /** polish each landed plan with one iLQG step (default off) */
  refinePlan?: boolean;
}

export interface ControllerOptions extends ControllerTiming {
  /** the command period: one tick */
  periodS: number;
  /** how often a plan is started (default: every tick); at least the command period */
  planPeriodS?: number;
  /** enforce the budget (real time); lockstep runs plan to completion */
  enforceDeadline: boolean;
  /** published when the controller cannot plan (default zeros, clamped to the limits) */
  safeCommand?: readonly number[];
  /** commands a tick with a fresh state and no plan to follow (fallback: policy); absent: the safe command */
  fallbackPolicy?: FallbackPolicy;
}

/** A feedback policy (a trained policy's mean): the physical command at model state x, or null when it cannot give a finite one. */
export interface FallbackPolicy {
  command(x: readonly number[], reference: readonly number[]): number[] | null;
}

type TickBase = Pick<TickResult, 'timeS' | 'planned' | 'solveMs' | 'info' | 'diagnostics'>;

/**
 * The receding-horizon controller, free of any transport: timestamped state
 * in, a command every tick. Planning and commanding are two sides (mjpc's
 * planner thread and ActionFromPolicy): every tick reads its command from
 * the plan in effect at the tick's time (zero-order hold or linear between
 * plan steps) and never waits for the planner; plans start on their own
 * schedule, each from the state predicted (with the model and the commands
 * in effect meanwhile) for the moment it takes over, one plan period ahead,
 * so the time it takes to plan is not a delay in the loop. With the planner
 * in its own thread (PlannerThread) not even a stalled planner holds a
 * command back. Only the very first plan, with nothing to follow yet, is
 * waited for (up to the budget). Lockstep runs wait for every plan:
 * deterministic. ROS and the embedded loop are two thin doors into this
 * one class.
 *
 * Guarantees: every published control is finite and within the limits; a
 * state with the wrong size or a NaN/Inf is rejected with a reason; with no
 * fresh state within the timeout the safe command is published and flagged;
 * a plan older than its horizon is not followed; a planner exception never
 * escapes a tick.
 */
export class Controller {
  readonly counters: ControllerCounters = { ticks: 0, deadlineMisses: 0, plannerErrors: 0, rejectedStates: 0, rejectedGoals: 0, staleTicks: 0 };
  lastRejection = '';
  /** states refused since the last one accepted, and the latest reason: a stale or waiting status says why */
  private refusedStates = { count: 0, reason: '' };
  private state: { x: number[]; stampS: number } | undefined;
  private reference: number[];
  /** the plan in effect */
  private policy: AppliedPlan | undefined;
  /** a finished plan that takes effect at its start */
  private upcoming: AppliedPlan | undefined;
  /** the plan being computed (at most one) */
  private inFlight: { startS: number; sinceMs: number } | undefined;
  /** a plan that finished since the last tick: its figures go out with the next tick */
  private landed: { solveMs: number; info: Record<string, number>; diagnostics: PlanDiagnostics } | undefined;
  /** a planner failure since the last tick, reported by the next */
  private failure: string | undefined;
  /** when the latest plan asked for starts (the warm start is shifted from there) */
  private lastPlanStartS: number | undefined;
  private nextPlanS = -Infinity;
  /** a real-time plan asked for by the latest tick, handed to the planner once the tick's command is out */
  private deferredPlan: { start: () => void; handle: ReturnType<typeof setImmediate> } | undefined;
  private uPrev: number[];
  private step: StepFunction | undefined;
  /** compiled at the first plan; an Error when the model's linearisation cannot be built (not tried again) */
  private readonly feedbackMaker: PlanFeedbackMaker;
  private readonly angles: boolean[];
  private zeroNoise: number[] | undefined;
  readonly safeCommand: number[];
  readonly planPeriodS: number;

  private readonly options: ControllerOptions;

  constructor(readonly model: Model, readonly planner: RecedingPlanner, options: ControllerOptions) {
    this.options = { ...options };
    this.planPeriodS = options.planPeriodS ?? options.periodS;
    if (!(this.planPeriodS >= options.periodS * (1 - 1e-9))) {
      throw new Error(`the plan period (${this.planPeriodS} s) must not be shorter than the command period (${options.periodS} s)`);
    }
    this.reference = [...model.goal];
    const safe = options.safeCommand ?? new Array<number>(model.controlDim).fill(0);
    if (safe.length !== model.controlDim) throw new Error(`safe command needs ${model.controlDim} values`);
    this.safeCommand = this.clamp(safe.map((v) => (Number.isFinite(v) ? v : 0)));
    this.uPrev = [...this.safeCommand];
    this.feedbackMaker = new PlanFeedbackMaker(model);
    this.angles = stateAngles(model.def);
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
    this.refusedStates = { count: 0, reason: '' };
    return undefined;
  }

  /** A missing-state reason, with why the states that did come were refused. */
  private withRefusals(reason: string): string {
    const r = this.refusedStates;
    return r.count === 0 ? reason : `${reason}; ${r.count} state${r.count === 1 ? '' : 's'} refused since the last good one, the latest: ${r.reason}`;
  }

  /** Counts and remembers a refused input (state, goal) from either door. */
  reject(kind: 'state' | 'goal', reason: string): string {
    if (kind === 'state') {
      this.counters.rejectedStates++;
      this.refusedStates = { count: this.refusedStates.count + 1, reason };
    }
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
   * tick starts warm (a node does this before it reports ready); the plan
   * takes effect from the state's stamp.
   */
  async prepare(): Promise<void> {
    if (!this.state) throw new Error('prepare() needs a state first');
    await this.warmUpPlan(this.state.x, this.state.stampS, this.uPrev);
    this.landed = undefined;
    this.nextPlanS = -Infinity;
  }

  /** One plan before the first tick, waited for and followed from `startS`; a failure ends the warm-up with its reason. */
  private async warmUpPlan(x0: number[], startS: number, uPrev: readonly number[]): Promise<void> {
    await this.startPlan(x0, startS, uPrev);
    this.promote(startS);
    if (this.failure !== undefined) {
      const reason = this.failure;
      this.failure = undefined;
      throw new Error(`warm-up plan failed: ${reason}`);
    }
  }

  /**
   * Plans for `seconds` along the motion the plans themselves predict: from
   * the latest state, then from the state the model reaches one plan period
   * later under that plan's commands, and so on; then forgets it all (the
   * planner's warm start too). Why: the first real plans run the paths the
   * motion takes (a swing-up's large commands, clamps, wrapped angles), and a
   * JIT that has seen only the resting state deoptimises and recompiles them
   * there; under CPU load its compiler threads wait for a core, and the first
   * second's plans ran 10-20 times slower and missed (docs/real-time.md).
   * Returns how many plans it made.
   */
  async rehearse(seconds: number): Promise<number> {
    if (!this.state) throw new Error('rehearse() needs a state first');
    const untilMs = performance.now() + 1000 * seconds;
    const dtS = this.model.dtS;
    const steps = Math.max(1, Math.round(this.planPeriodS / dtS));
    let x = this.state.x;
    let startS = this.state.stampS;
    let u = this.uPrev;
    let plans = 0;
    while (performance.now() < untilMs) {
      await this.warmUpPlan(x, startS, u);
      plans++;
      for (let k = 0; k < steps; k++) {
        u = this.commandAt(startS + k * dtS, x);
        x = this.stepModel(x, u);
      }
      startS += steps * dtS;
      // a motion the model cannot continue: start again from the latest state
      if (!x.every(Number.isFinite)) [x, u] = [this.state.x, this.uPrev];
    }
    this.policy = undefined;
    this.upcoming = undefined;
    this.landed = undefined;
    this.lastPlanStartS = undefined;
    this.nextPlanS = -Infinity;
    this.planner.reset();
    return plans;
  }

  async tick(nowS: number): Promise<TickResult> {
    this.counters.ticks++;
    this.flushDeferredPlan();
    if (!this.state) return this.emit(this.base(nowS), this.safeCommand, null, 'waiting', this.withRefusals('no state received yet'));
    const age = nowS - this.state.stampS;
    if (age > this.options.staleTimeoutS) {
      this.counters.staleTicks++;
      if (this.policy || this.upcoming || this.lastPlanStartS !== undefined) {
        // a warm start from before the outage is no help: plan afresh when states return
        this.policy = undefined;
        this.upcoming = undefined;
        this.lastPlanStartS = undefined;
        this.planner.reset();
      }
      return this.emit(this.base(nowS), this.safeCommand, null, 'stale', this.withRefusals(`no fresh state for ${age.toFixed(3)} s (timeout ${this.options.staleTimeoutS} s)`));
    }
    this.promote(nowS);
    const eps = 1e-6 * this.options.periodS;
    let planAfterCommand = false;
    if (!this.inFlight && nowS >= this.nextPlanS - eps) {
      this.nextPlanS = nowS + this.planPeriodS;
      const first = !this.policy && !this.upcoming;
      if (first || !this.options.enforceDeadline) {
        const planning = first ? this.startPlan(this.state.x, this.state.stampS, this.uPrev) : this.startPredictedPlan(nowS);
        // lockstep waits for every plan; in real time only a first plan, with nothing to follow yet, is waited for
        if (!this.options.enforceDeadline) await planning;
        else await settlesWithin(planning, this.options.budgetMs);
        this.promote(nowS);
      } else planAfterCommand = true;
    }
    let mode: TickMode = 'ok';
    let reason = '';
    if (this.inFlight && this.options.enforceDeadline) {
      const waitedMs = performance.now() - this.inFlight.sinceMs;
      if (nowS >= this.inFlight.startS - eps || waitedMs > this.options.budgetMs) {
        // the plan meant to take over by now has not come back
        this.counters.deadlineMisses++;
        mode = 'late';
        reason = `the planner is still working on the plan asked for ${waitedMs.toFixed(0)} ms ago (budget ${this.options.budgetMs.toFixed(1)} ms)`;
      }
    }
    if (this.failure !== undefined) {
      mode = 'fallback';
      reason = `planner error: ${this.failure}`;
      this.failure = undefined;
    }
    const result = this.follow(nowS, mode, reason);
    if (planAfterCommand) {
      // In real time the plan asked for now takes effect a plan period later, so this tick's command
      // does not need it: it is handed to the planner after the command has gone out (handing it over
      // first made the command wait whenever waking the planner's thread took the core: p99 3.5 ms
      // under CPU load, 14% of the acrobot's 25 ms period; docs/results.md). It is planned from the
      // state this tick saw and timed from this tick, so the door's work after the command (logging,
      // telemetry) comes out of the planner's budget instead of pushing the plan past the next tick.
      const state = this.state;
      const askedMs = performance.now();
      const start = () => {
        this.deferredPlan = undefined;
        void this.startPredictedPlan(nowS, state, askedMs);
      };
      this.deferredPlan = { start, handle: setImmediate(start) };
    }
    return result;
  }

  /** A deferred plan not yet handed over (a caller ticking again without yielding to the event loop) is handed over now, before anything else. */
  private flushDeferredPlan(): void {
    const d = this.deferredPlan;
    if (!d) return;
    clearImmediate(d.handle);
    d.start();
  }

  /** The predicted-state plan of a warm tick: from the state rolled forward to about one plan period ahead, under the commands in effect until then. */
  private startPredictedPlan(nowS: number, state = this.state!, askedMs?: number): Promise<void> {
    const { x, stampS } = state;
    const dtS = this.model.dtS;
    const steps = Math.max(1, Math.round((nowS + this.planPeriodS - stampS) / dtS));
    let predicted = x;
    let u = this.uPrev;
    for (let k = 0; k < steps; k++) {
      u = this.commandAt(stampS + k * dtS, predicted);
      predicted = this.stepModel(predicted, u);
    }
    if (!predicted.every(Number.isFinite)) predicted = x;
    return this.startPlan(predicted, stampS + steps * dtS, u, askedMs);
  }

  /** One noise-free step of the model (the kernels' step, compiled for single states): prediction and the plan's predicted states. */
  stepModel(x: readonly number[], u: readonly number[]): number[] {
    this.step ??= compileStepFunction(buildStepGraphs(this.model, false));
    this.zeroNoise ??= new Array<number>(this.model.noiseDim).fill(0);
    return this.step(x, u, this.zeroNoise);
  }

  /**
   * Starts a plan from model state `x0`, taking effect at `startS`; it is
   * followed once it has landed and its start has come. Never rejects.
   */
  private startPlan(x0: number[], startS: number, uPrev: readonly number[], askedMs = performance.now()): Promise<void> {
    const sinceMs = askedMs;
    this.inFlight = { startS, sinceMs };
    const shiftSteps = this.lastPlanStartS === undefined ? 1 : Math.max(0, Math.round((startS - this.lastPlanStartS) / this.model.dtS));
    this.lastPlanStartS = startS;
    // The planner aims 10% inside the budget: its last step and the hand-over must fit too.
    const deadline = this.options.enforceDeadline ? sinceMs + 0.9 * this.options.budgetMs : undefined;
    const needsFeedback = this.options.interpolation === 'feedback' || (this.options.refinePlan ?? false);
    let planning: Promise<PlanResult>;
    try {
      // a planner in its own thread builds the feedback there (off the command thread); one on this thread builds none
      planning = this.planner.plan({ x0, uPrev, reference: this.reference, deadline, shiftSteps, feedback: needsFeedback ? { refine: this.options.refinePlan ?? false } : undefined });
    } catch (e) {
      planning = Promise.reject(e);
    }
    return planning.then(checkedPlan).then(
      (r) => {
        const plan: AppliedPlan = { startS, fromState: x0, controls: r.controls, cost: r.cost, uPrev: [...uPrev], reference: [...this.reference] };
        const info = { ...r.info };
        if (needsFeedback) {
          if (r.feedback) {
            plan.feedback = r.feedback;
          } else {
            const startMs = performance.now();
            plan.feedback = this.planFeedback(plan, this.options.refinePlan ?? false);
            // the command side's share, beside the planner's own figures
            info.feedbackMs = performance.now() - startMs;
          }
          plan.controls = plan.feedback.controls;
          const refined = plan.feedback.refinement;
          if (refined) Object.assign(info, { refineStep: refined.alpha, refineCostRatio: refined.costAfter / refined.costBefore });
        }
        this.upcoming = plan;
        this.landed = { solveMs: performance.now() - sinceMs, info, diagnostics: r.diagnostics ?? {} };
      },
      (e: Error) => {
        this.counters.plannerErrors++;
        this.failure = e.message;
        this.lastPlanStartS = undefined;
        this.planner.reset();
      },
    ).finally(() => {
      this.inFlight = undefined;
    });
  }

  /** A plan's predicted states and feedback gains, built when first asked for (the plan message's subscribers) unless the commands needed them at landing. */
  feedbackOf(plan: AppliedPlan): PlanFeedback {
    plan.feedback ??= this.planFeedback(plan, false);
    return plan.feedback;
  }

  /**
   * A plan's predicted states and feedback gains (refined by one iLQG step
   * with `refine`), here when the planner did not build them (a planner on
   * this thread, or the plan message's subscribers under zero-order hold):
   * about a millisecond for the built-in systems, 30 ms for a 7-joint arm
   * (docs/results.md).
   */
  private planFeedback(plan: AppliedPlan, refine: boolean): PlanFeedback {
    return this.feedbackMaker.make(plan.fromState, plan.controls, plan.uPrev, plan.reference, refine);
  }

  /**
   * Row `s` (in plan steps) of plan `p` as a command: with feedback and gains,
   * plus the gain times the deviation of model state `x` from the plan's state
   * at `sState` (the time `x` was measured).
   */
  private planCommand(p: AppliedPlan, s: number, x: readonly number[] | undefined, sState: number): number[] {
    const interpolation = this.options.interpolation ?? 'zoh';
    const u = sampleAt(p.controls, this.model.controlDim, s, interpolation === 'linear' ? 'linear' : 'zoh');
    if (interpolation !== 'feedback' || !x) return u;
    const { gains, states } = this.feedbackOf(p);
    if (!gains) return u;
    return feedbackCommand(this.model, this.angles, u, gains, Math.floor(s + 1e-9), x, planStateAt(this.model, this.angles, states, Math.max(0, sState)));
  }

  /** A landed plan whose start has come takes over. */
  private promote(nowS: number): void {
    if (this.upcoming && this.upcoming.startS <= nowS + 1e-6 * this.options.periodS) {
      this.policy = this.upcoming;
      this.upcoming = undefined;
    }
  }

  /** The command the plans in effect give at time `tS` to model state `x` (zoh, or with feedback), or the safe command: the prediction's commands. */
  private commandAt(tS: number, x: readonly number[]): number[] {
    const p = this.upcoming && tS >= this.upcoming.startS ? this.upcoming : this.policy;
    const s = p ? (tS - p.startS) / this.model.dtS : Infinity;
    if (!p || s >= this.model.horizon) return this.fallbackCommand(x)?.control ?? this.safeCommand;
    const u = this.options.interpolation === 'feedback' ? this.planCommand(p, Math.max(0, s), x, s) : sampleAt(p.controls, this.model.controlDim, Math.max(0, s), 'zoh');
    return this.clamp(u);
  }

  /** The command at `nowS` from the plan in effect, or the safe command when there is none or it is too old. */
  private follow(nowS: number, mode: TickMode, reason: string): TickResult {
    const base = this.base(nowS);
    const note = (r: string, extra: string) => (r ? `${r}; ${extra}` : extra);
    const p = this.policy;
    if (!p) {
      const why = mode === 'ok' ? 'no plan has finished yet' : 'no previous plan';
      return this.withoutPlan(base, mode === 'ok' ? 'fallback' : mode, note(reason, why));
    }
    const horizonS = this.model.horizon * this.model.dtS;
    const timeoutS = this.options.planTimeoutS && this.options.planTimeoutS > 0 ? Math.min(this.options.planTimeoutS, horizonS) : horizonS;
    const ageS = nowS - p.startS;
    if (ageS >= timeoutS - 1e-9) {
      return this.withoutPlan(base, mode === 'ok' ? 'fallback' : mode,
        note(reason, `the latest plan is ${ageS.toFixed(3)} s old, past its ${timeoutS === horizonS ? 'horizon' : 'planTimeoutS'} ${+timeoutS.toFixed(6)} s`));
    }
    const { x, stampS } = this.state!;
    const control = this.planCommand(p, Math.max(0, ageS) / this.model.dtS, x, (stampS - p.startS) / this.model.dtS);
    // a plan that landed with part of the planner switched off says so, though the tick is ok; so does one whose gains were dropped
    const dropped = this.options.interpolation === 'feedback' && p.feedback?.problem ? `feedback gains dropped for this plan (${p.feedback.problem}): zero-order hold` : '';
    const notice = [base.diagnostics.notice ?? '', dropped].filter(Boolean).join('; ');
    return this.emit(base, control, p, mode, mode === 'ok' ? notice : note(reason, note(dropped, 'following the previous plan')));
  }

  /** A tick with a fresh state and no plan to follow: the fallback policy's command, or the safe command (with why). */
  private withoutPlan(base: TickBase, mode: TickMode, reason: string): TickResult {
    const fallback = this.fallbackCommand(this.state!.x);
    if (fallback?.control) return this.emit(base, fallback.control, null, mode, `${reason}: fallback policy`);
    return this.emit(base, this.safeCommand, null, mode, `${reason}${fallback ? `; ${fallback.problem}` : ''}: safe command`);
  }

  /** The fallback policy's command at model state x (clamped), or why it has none; undefined without a fallback policy. */
  private fallbackCommand(x: readonly number[]): { control: number[]; problem?: undefined } | { control?: undefined; problem: string } | undefined {
    const policy = this.options.fallbackPolicy;
    if (!policy) return undefined;
    let u: number[] | null;
    try {
      u = policy.command(x, this.reference);
    } catch (e) {
      return { problem: `the fallback policy failed (${(e as Error).message})` };
    }
    if (!u || u.length !== this.model.controlDim || !u.every(Number.isFinite)) return { problem: 'the fallback policy\'s output is not finite' };
    return { control: this.clamp(u) };
  }

  private base(nowS: number): TickBase {
    const landed = this.landed;
    this.landed = undefined;
    return { timeS: nowS, planned: landed !== undefined, solveMs: landed?.solveMs ?? 0, info: landed?.info ?? {}, diagnostics: landed?.diagnostics ?? {} };
  }

  /** Last line of defence: the control leaving is finite and within limits. */
  private emit(base: TickBase, u: readonly number[], plan: AppliedPlan | null, mode: TickMode, reason: string): TickResult {
    let control = this.clamp(u);
    if (!control.every(Number.isFinite)) {
      const fallback = this.state && plan ? this.fallbackCommand(this.state.x) : undefined;
      control = fallback?.control ?? this.safeCommand;
      mode = 'fallback';
      reason = `${reason} non-finite control replaced by the ${fallback?.control ? 'fallback policy\'s command' : 'safe command'}`.trim();
    }
    this.uPrev = control;
    return { ...base, control, plan, mode, reason, cost: plan?.cost ?? NaN };
  }

  private clamp(u: readonly number[]): number[] {
    const { lower, upper } = this.model.controlLimits;
    return u.map((v, j) => Math.min(upper[j], Math.max(lower[j], v)));
  }
}

/**
 * Row `s` of a plan (`s` in plan steps from its start): the row it falls in
 * (zoh) or a blend of that row and the next (linear); the last row is held.
 */
export function sampleAt(controls: Float64Array, m: number, s: number, interpolation: Interpolation): number[] {
  const rows = controls.length / m;
  const k = Math.min(rows - 1, Math.floor(s + 1e-9));
  const row = Array.from(controls.subarray(k * m, (k + 1) * m));
  if (interpolation === 'zoh' || k + 1 >= rows) return row;
  const f = Math.min(1, Math.max(0, s - k));
  return row.map((v, j) => v + f * (controls[(k + 1) * m + j] - v));
}

function checkedPlan(result: PlanResult): PlanResult {
  const bad = [...result.controls].findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new Error(`planner returned a non-finite control at index ${bad}`);
  return result;
}

/** What `make` returns, or the error it throws. */
/** Whether the promise settles within `ms` (it keeps running otherwise). */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A reason when v is not `length` finite numbers. */
export function checkVector(label: string, v: readonly unknown[], length: number): string | undefined {
  if (!Array.isArray(v) && !ArrayBuffer.isView(v)) return `${label} is not an array`;
  if (v.length !== length) return `${label} has ${v.length} values, expected ${length}`;
  const bad = Array.from(v).findIndex((x) => typeof x !== 'number' || !Number.isFinite(x));
  if (bad >= 0) return `${label}[${bad}] is not a finite number (${String(v[bad])})`;
  return undefined;
}
