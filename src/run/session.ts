import { availableParallelism } from 'node:os';
import { checkVector, Controller, TickResult } from '../controller/controller.js';
import { Ekf, linearize } from '../estimation/ekf.js';
import { MPC_TSMC_PARAMS, MppiPlanner, RecedingPlanner, TsmcPlanner } from '../controller/receding.js';
import {
  CommandMsg, commandMessage, PlanMsg, planMessage, StateCodec, StateEstimateMsg, stateEstimateMessage, StatusMsg, statusMessage,
} from '../interfaces/messages.js';
import { createBackend } from '../kernels/index.js';
import type { RolloutBackend } from '../kernels/backend.js';
import { buildStepGraphs } from '../kernels/graphs.js';
import { compileStepFunction, StepFunction } from '../kernels/js-source.js';
import { modelDefinition } from '../models/index.js';
import { Model, resolveModel, toPhysical } from '../models/model.js';
import { LiveParameters, ParamsOf, ParamValue, SetResult } from '../params.js';
import { MPPI_PARAMS } from '../planners/mppi.js';
import { controllerConsistency, controllerParameterTable, controlPeriodS, RunParams } from './setup.js';

/**
 * One controller as both doors run it: the model, kernels, planner and
 * controller built from the run parameters; messages in (state, goal),
 * ticks, messages out (command, plan, status); live parameters applied at
 * tick boundaries. `tempered-mpc run` and the ROS node each drive one of
 * these and add only their transport.
 */
export class ControllerSession {
  readonly live: LiveParameters;
  readonly codec: StateCodec;
  readonly rateHz: number;
  readonly periodS: number;
  /** the EKF when `estimator` is ekf */
  readonly estimator: Ekf | undefined;
  /** its latest estimate (model state units) */
  estimate: { stampS: number; state: number[]; covariance: number[][]; mahalanobis2: number } | undefined;
  private step: StepFunction | undefined;

  private constructor(
    readonly params: RunParams,
    readonly model: Model,
    readonly backend: RolloutBackend,
    readonly planner: RecedingPlanner,
    readonly controller: Controller,
  ) {
    this.codec = new StateCodec(model, params.controller.jointNames);
    this.estimator = params.controller.estimator === 'ekf' ? new Ekf(model, linearize(model), ekfParams(params.controller)) : undefined;
    this.periodS = controller.timing.periodS;
    this.rateHz = 1 / this.periodS;
    const table = controllerParameterTable(params);
    this.live = new LiveParameters(table.entries, table.values, controllerConsistency(this.periodS));
  }

  /**
   * Builds everything; `lockstep` plans every tick to completion (no
   * deadlines). The error of a bad parameter names the key the user set.
   */
  static async create(params: RunParams, opts: { lockstep: boolean; wrapPlanner?: (planner: RecedingPlanner) => RecedingPlanner }): Promise<ControllerSession> {
    const model = resolveModel(modelDefinition(params.system), params.model);
    if (!model.def.sensor) throw new Error(`system '${params.system}' has no state to measure, so it cannot run as a controller`);
    const c = params.controller;
    const backend = await createBackend(model, c.backend, { threads: c.threads > 0 ? c.threads : availableParallelism() });
    // each session owns its parameter objects: live changes must not leak into the caller's RunParams
    const built: RecedingPlanner = c.planner === 'tsmc'
      ? new TsmcPlanner(model, backend, { ...params.planners.tsmc } as ParamsOf<typeof MPC_TSMC_PARAMS>)
      : new MppiPlanner(model, backend, { ...params.planners.mppi } as ParamsOf<typeof MPPI_PARAMS>);
    // fault injection (bench soak, tests) wraps the real planner
    const planner = opts.wrapPlanner ? opts.wrapPlanner(built) : built;
    const periodS = controlPeriodS(c.rateHz, model.dtS);
    const controller = new Controller(model, planner, {
      periodS, ...timing(c, periodS), enforceDeadline: !opts.lockstep, seed: c.seed,
    });
    try {
      return new ControllerSession(params, model, backend, planner, controller);
    } catch (e) {
      backend.dispose();
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

  /** Plans once from the latest state without a deadline (a node does this before it reports active); false without a state. */
  async warmUp(): Promise<boolean> {
    if (!this.controller.hasState) return false;
    await this.controller.prepare();
    return true;
  }

  async tick(nowS: number): Promise<TickResult> {
    this.applyParameters();
    const tick = await this.controller.tick(nowS);
    this.estimator?.setCommand(tick.control);
    return tick;
  }

  private applyParameters(): void {
    const changes = this.live.takePending();
    if (!changes) return;
    const values = this.live.values();
    this.controller.setTiming(timing(values as RunParams['controller'], this.periodS));
    if (this.estimator) Object.assign(this.estimator.params, ekfParams(values as RunParams['controller']));
    const mine = `${this.planner.name}.`;
    const plannerChanges = Object.fromEntries(Object.entries(changes).filter(([k]) => k.startsWith(mine)).map(([k, v]) => [k.slice(mine.length), v]));
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
      lastRejection: this.controller.lastRejection, info: tick.info,
    });
  }

  /** The applied plan with its predicted states (a rollout of the model): build it only for someone who reads it. */
  planMessage(tick: TickResult, frameId = ''): PlanMsg {
    return planMessage(this.model, this.planner.name, tick.timeS, frameId, tick.plan ?? [], this.predict(tick), tick.cost);
  }

  /** Physical states along the plan from the state it was planned from (empty without a plan). */
  predict(tick: TickResult): number[][] {
    if (!tick.plan || !tick.fromState) return [];
    this.step ??= compileStepFunction(buildStepGraphs(this.model, false));
    const noise = new Array<number>(this.model.noiseDim).fill(0);
    let x = tick.fromState;
    const states = [toPhysical(this.model, x)];
    for (const u of tick.plan) {
      x = this.step(x, u, noise);
      states.push(toPhysical(this.model, x));
    }
    return states;
  }

  /** Current parameter values, pending changes included. */
  parameterValues(): Record<string, ParamValue> {
    return this.live.values();
  }

  dispose(): void {
    this.backend.dispose();
  }
}

function ekfParams(c: { estimatorProcessNoise: number; estimatorMeasurementNoise: number; estimatorGate: number }) {
  return { processNoise: c.estimatorProcessNoise, measurementNoise: c.estimatorMeasurementNoise, gate: c.estimatorGate };
}

/** The controller's timing from its parameters: budget 0 means 80% of the period. */
function timing(c: { budgetMs: number; staleTimeoutS: number; futureStampToleranceS: number }, periodS: number) {
  return { budgetMs: c.budgetMs > 0 ? c.budgetMs : 0.8 * periodS * 1000, staleTimeoutS: c.staleTimeoutS, futureStampToleranceS: c.futureStampToleranceS };
}
