import { checkVector, Controller, FallbackPolicy, TickResult } from '../controller/controller.js';
import { LearnedPrior } from '../learned/runtime.js';
import { buildPlanner, PlannerSpec } from '../controller/planner-spec.js';
import { PlannerThread } from '../controller/planner-thread.js';
import type { RecedingPlanner } from '../planners/receding.js';
import { Ekf, linearize } from '../estimation/ekf.js';
import { physicalGains } from '../controller/feedback.js';
import {
  CommandMsg, commandMessage, PlanMsg, planMessage, StateCodec, StateEstimateMsg, stateEstimateMessage, StatusMsg, statusMessage,
} from '../interfaces/messages.js';
import { sceneUpdate } from '../interfaces/scene.js';
import { modelDefinition } from '../models/index.js';
import { disturbedStates, Model, resolveModel, toPhysical } from '../models/model.js';
import { LiveParameters, ParamValue, SetResult } from '../params.js';
import { controllerConsistency, controllerParameterTable, controlPeriodS, planPeriodS, RunParams } from './setup.js';
import { InputError } from '../input-error.js';
import { raiseToRealTime, restoreNormalScheduling } from '../controller/thread-priority.js';

/** Warm-up before the first tick of a real-time session (see `warmUp`): a rehearsal this long, then this many plans from the state. */
const REAL_TIME_WARM_UP = { rehearsalS: 2, plans: 5 };

/**
 * One controller as both doors run it: the model, kernels, planner and
 * controller built from the run parameters; messages in (state, goal),
 * ticks, messages out (command, plan, status); live parameters applied at
 * tick boundaries. `tempered-mpc run` and the ROS node each drive one of
 * these and add only their transport.
 */
export class ControllerSession {
  /** things the doors should tell the user once at start (a setting that could not take effect, and why) */
  readonly notes: string[] = [];
  readonly live: LiveParameters;
  readonly codec: StateCodec;
  readonly rateHz: number;
  /** the command period */
  readonly periodS: number;
  /** how often a plan starts */
  readonly planPeriodS: number;
  /** the EKF when `estimator` is ekf */
  readonly estimator: Ekf | undefined;
  /** whether the command thread (the one that created the session) runs at commandPriority; normal again at dispose */
  private realTime = false;
  /** its latest estimate (model state units) */
  estimate: { stampS: number; state: number[]; covariance: number[][]; mahalanobis2: number } | undefined;

  private constructor(
    readonly params: RunParams,
    readonly model: Model,
    readonly planner: RecedingPlanner,
    readonly controller: Controller,
    private readonly disposePlanner: () => void,
    /** lockstep: plans run to completion, no deadlines */
    readonly lockstep: boolean,
  ) {
    this.codec = new StateCodec(model, params.controller.jointNames);
    this.estimator = estimatorFor(model, params.controller);
    this.periodS = controller.timing.periodS;
    this.planPeriodS = controller.planPeriodS;
    this.rateHz = 1 / this.periodS;
    const table = controllerParameterTable(params);
    this.live = new LiveParameters(table.entries, table.values, controllerConsistency(this.periodS, this.planPeriodS));
  }

  /**
   * Builds everything; `lockstep` plans every tick to completion (no
   * deadlines). The error of a bad parameter names the key the user set.
   */
  static async create(params: RunParams, opts: { lockstep: boolean; wrapPlanner?: (planner: RecedingPlanner) => RecedingPlanner }): Promise<ControllerSession> {
    const model = resolveModel(modelDefinition(params.system), params.model);
    if (!model.def.sensor) throw new InputError(`system '${params.system}' has no state to measure, so it cannot run as a controller`);
    const c = params.controller;
    // refused before any thread starts
    const fallback = fallbackPolicy(params, model);
    if (c.commandPriority > 0 && c.plannerThread === 'main') {
      throw new InputError(`commandPriority ${c.commandPriority} needs plannerThread: worker (a planner on the command thread would plan at real-time priority and starve the computer)`);
    }
    checkEstimator(model, c);
    const spec: PlannerSpec = {
      system: params.system, model: params.model, planner: c.planner, params: { ...params.planners[c.planner] },
      prior: { ...params.prior }, backend: c.backend, threads: c.threads, seed: c.seed, nice: c.plannerNice,
    };
    let built: RecedingPlanner;
    let disposePlanner: () => void;
    let notes: string[] = [];
    if (c.plannerThread === 'worker') {
      const thread = await PlannerThread.start(spec);
      if (thread.priorityProblem) notes = [`plannerNice ${c.plannerNice}: ${thread.priorityProblem}`];
      built = thread;
      disposePlanner = () => thread.dispose();
    } else {
      const local = await buildPlanner(spec);
      built = local.planner;
      disposePlanner = () => local.backend.dispose();
    }
    // fault injection (bench soak, tests) wraps the real planner
    const planner = opts.wrapPlanner ? opts.wrapPlanner(built) : built;
    let realTime = false;
    try {
      if (c.commandPriority > 0 && !opts.lockstep) {
        // after the planner's threads have started, so none of them inherits it
        const problem = raiseToRealTime(c.commandPriority);
        if (problem) notes.push(`commandPriority ${c.commandPriority}: ${problem}; the command thread runs at normal priority`);
        else realTime = true;
      }
      const periodS = controlPeriodS(c.rateHz, model.dtS);
      const plans = planPeriodS(c.planRateHz, periodS);
      const controller = new Controller(model, planner, {
        periodS, planPeriodS: plans, ...timing(c, plans), enforceDeadline: !opts.lockstep, fallbackPolicy: fallback,
      });
      const session = new ControllerSession(params, model, planner, controller, disposePlanner, opts.lockstep);
      session.notes.push(...notes);
      session.realTime = realTime;
      return session;
    } catch (e) {
      if (realTime) restoreNormalScheduling();
      disposePlanner();
      throw e;
    }
  }

  get budgetMs(): number {
    return this.controller.timing.budgetMs;
  }

  /**
   * A state message (JointState or PoseStamped): a reason when it is
   * refused. With the EKF on, the controller plans from the estimate.
   */
  onStateMessage(msg: unknown, nowS: number): string | undefined {
    const d = this.codec.decode(msg, 'state');
    if (!d.ok) return this.controller.reject('state', d.reason);
    if (!this.estimator) return this.controller.onState(d.values, d.stampS, nowS);
    // a measurement the controller would refuse must not move the estimate either
    const problem = checkVector('state', d.values, this.model.stateDim) ?? this.controller.stampProblem(d.stampS, nowS);
    if (problem) return this.controller.reject('state', problem);
    const e = this.estimator.measure(d.values, d.stampS);
    if (!e.ok) return this.controller.reject('state', e.reason);
    this.estimate = { stampS: d.stampS, state: e.state, covariance: e.covariance, mahalanobis2: e.mahalanobis2 };
    return this.controller.onState(toPhysical(this.model, e.state), d.stampS, nowS);
  }

  /** A goal message of the state's type: a reason when it is refused. */
  onGoalMessage(msg: unknown): string | undefined {
    const d = this.codec.decode(msg, 'goal');
    if (!d.ok) return this.controller.reject('goal', d.reason);
    return this.controller.setReference(d.values);
  }

  /** Validates and queues live parameter changes (all or nothing); they apply at the next tick. */
  requestParameters(changes: Readonly<Record<string, unknown>>): SetResult {
    return this.live.request(changes);
  }

  /**
   * Plans from the latest state before the first tick (both doors: the embedded
   * loop, and the node at activation); false without a state. In real time it first rehearses the
   * motion to come (Controller.rehearse, REAL_TIME_WARM_UP.rehearsalS), then plans
   * REAL_TIME_WARM_UP.plans times from the state, so the first ticks' plans do not pay for the
   * JIT: warmed up by five plans at rest, under CPU load the acrobot's plans and their feedback ran
   * 10-20 times slower through the first second of the swing-up, and nearly every deadline miss of
   * a minute fell there. Lockstep keeps one plan, so its runs stay what they were.
   */
  async warmUp(): Promise<boolean> {
    if (!this.controller.hasState) return false;
    if (this.lockstep) {
      await this.controller.prepare();
      return true;
    }
    await this.controller.rehearse(REAL_TIME_WARM_UP.rehearsalS);
    for (let k = 0; k < REAL_TIME_WARM_UP.plans; k++) await this.controller.prepare();
    return true;
  }

  async tick(nowS: number): Promise<TickResult> {
    this.applyParameters(nowS);
    const tick = await this.controller.tick(nowS);
    this.estimator?.setCommand(tick.control);
    return tick;
  }

  /** Live parameter changes as they took effect, oldest first (the latest PARAMETER_CHANGES_KEPT of them): a run's summary says what it ran with. */
  readonly parameterChanges: { timeS: number; changes: Record<string, ParamValue> }[] = [];
  /** live parameter changes taken in all, those dropped from parameterChanges included */
  parameterChangeCount = 0;

  private applyParameters(nowS: number): void {
    const changes = this.live.takePending();
    if (!changes) return;
    this.parameterChangeCount++;
    this.parameterChanges.push({ timeS: nowS, changes });
    if (this.parameterChanges.length > PARAMETER_CHANGES_KEPT) this.parameterChanges.shift();
    const values = this.live.values();
    this.controller.setTiming(timing(values as RunParams['controller'], this.planPeriodS));
    if (this.estimator) Object.assign(this.estimator.params, ekfParams(values as RunParams['controller']));
    // the planner's own keys lose their prefix; how it uses the prior (prior.*) keeps it
    const mine = `${this.planner.name}.`;
    const plannerChanges = Object.fromEntries(Object.entries(changes).flatMap(([k, v]) => (k.startsWith(mine) ? [[k.slice(mine.length), v]] : k.startsWith('prior.') ? [[k, v]] : [])));
    if (Object.keys(plannerChanges).length) this.planner.updateParams(plannerChanges);
  }

  /** The latest state estimate (undefined without the EKF or before its first measurement). */
  estimateMessage(frameId = ''): StateEstimateMsg | undefined {
    const e = this.estimate;
    return e && stateEstimateMessage(this.model, e.stampS, e.state, e.covariance, e.mahalanobis2, frameId);
  }

  commandMessage(tick: TickResult): CommandMsg {
    return commandMessage(this.model, tick.control);
  }

  statusMessage(tick: TickResult, frameId = ''): StatusMsg {
    return statusMessage({
      planner: this.planner.name, stampS: tick.timeS, frameId, mode: tick.mode, reason: tick.reason, solveMs: tick.solveMs,
      budgetMs: this.budgetMs, periodMs: 1000 * this.periodS, cost: tick.cost, counters: this.controller.counters,
      lastRejection: this.controller.lastRejection, info: tick.info, diagnostics: tick.diagnostics,
    });
  }

  /** The followed plan with its predicted states and feedback gains: build it only for someone who reads it. */
  planMessage(tick: TickResult, frameId = ''): PlanMsg {
    const p = tick.plan;
    const m = this.model.controlDim;
    const rows = p ? Array.from({ length: p.controls.length / m }, (_, k) => Array.from(p.controls.subarray(k * m, (k + 1) * m))) : [];
    const feedback = p && this.controller.feedbackOf(p);
    const gains = feedback ? { values: physicalGains(this.model, feedback) ?? [], status: feedback.problem } : { values: [], status: 'no plan' };
    return planMessage(this.model, this.planner.name, p?.startS ?? tick.timeS, frameId, rows, this.predict(tick), tick.cost, gains);
  }

  /** The followed plan drawn for Foxglove's 3-D panel (foxglove.SceneUpdate); empty without a sketch or a plan. */
  sceneMessage(tick: TickResult, frameId = ''): object {
    return sceneUpdate(this.model, tick.plan?.startS ?? tick.timeS, frameId, this.predict(tick));
  }

  /** Physical states along the followed plan from the state it was planned from (empty without a plan): the states predicted when it landed. */
  predict(tick: TickResult): number[][] {
    const p = tick.plan;
    if (!p) return [];
    const n = this.model.stateDim;
    const { states } = this.controller.feedbackOf(p);
    return Array.from({ length: states.length / n }, (_, k) => toPhysical(this.model, Array.from(states.subarray(k * n, (k + 1) * n))));
  }

  /** Current parameter values, pending changes included. */
  parameterValues(): Record<string, ParamValue> {
    return this.live.values();
  }

  dispose(): void {
    if (this.realTime) {
      this.realTime = false;
      restoreNormalScheduling();
    }
    this.disposePlanner();
  }
}

/** How many live parameter changes a session keeps for its summary (a tuning session rarely makes more; memory stays bounded if it does). */
const PARAMETER_CHANGES_KEPT = 1000;

type EstimatorSettings = Pick<RunParams['controller'], 'estimator' | 'estimatorProcessNoise' | 'estimatorProcessNoiseOn' | 'estimatorMeasurementNoise' | 'estimatorGate'>;

/** Refuses estimator settings the model cannot take (the process noise on joint rates of a system without joints). */
function checkEstimator(model: Model, c: EstimatorSettings): void {
  if (c.estimator !== 'ekf') return;
  const disturbed = disturbedStates(model.def, c.estimatorProcessNoiseOn);
  if (typeof disturbed === 'string') throw new InputError(`estimatorProcessNoiseOn = ${disturbed}`);
}

/** The state estimator the controller parameters ask for (the session's, and the LQR yardstick's when it is measured as the controller is). */
export function estimatorFor(model: Model, c: EstimatorSettings): Ekf | undefined {
  checkEstimator(model, c);
  return c.estimator === 'ekf' ? new Ekf(model, linearize(model), ekfParams(c)) : undefined;
}

function ekfParams(c: EstimatorSettings) {
  return { processNoise: c.estimatorProcessNoise, processNoiseOn: c.estimatorProcessNoiseOn, measurementNoise: c.estimatorMeasurementNoise, gate: c.estimatorGate };
}

/** The controller's timing from its parameters: budget 0 means 80% of the plan period. */
function timing(c: RunParams['controller'], planPeriodS: number) {
  return {
    // to the microsecond: 0.8 x 100 ms is 80.00000000000001 in doubles
    budgetMs: c.budgetMs > 0 ? c.budgetMs : Math.round(0.8 * planPeriodS * 1e6) / 1e3, staleTimeoutS: c.staleTimeoutS, futureStampToleranceS: c.futureStampToleranceS,
    planTimeoutS: c.planTimeoutS, interpolation: c.commandInterpolation, refinePlan: c.refinePlan,
  };
}

/** The policy `fallback: policy` commands with (fallbackPolicy, else prior.path), checked against the model; undefined for fallback: zero. */
function fallbackPolicy(params: RunParams, model: Model): FallbackPolicy | undefined {
  if (params.controller.fallback !== 'policy') return undefined;
  const path = params.controller.fallbackPolicy || params.prior.path;
  if (!path) throw new InputError('fallback is policy, but no policy is given: set fallbackPolicy (a directory from train-policy --out) or prior.path');
  const policy = LearnedPrior.load(path, model, 'policy');
  return { command: (x, reference) => policy.command(x, reference) };
}
