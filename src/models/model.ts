import type { Scalar } from '../expr/expr.js';
import { NumberParam, resolveParams } from '../params.js';

export type ParamValues<K extends string> = Readonly<Record<K | 'dtS' | 'horizon', number>>;

/**
 * One self-contained plant and task: dynamics, costs and defaults, written
 * once. CPU and GPU kernels and their exact gradients are generated from it.
 *
 * Costs see the reference `ref` (the goal, settable at run time without
 * recompiling) and the previous control `uPrev` (u_{-1} is supplied by the
 * caller, so smoothness terms connect to the last applied command).
 */
export interface ModelDefinition<K extends string = string> {
  name: string;
  summary: string;
  stateNames: readonly string[];
  /** units of the physical state (physicalNames, in order), for axes and docs: '' for a pure number */
  physicalUnits: readonly string[];
  controlNames: readonly string[];
  /** units of each control ('' for a pure number or an index; '× umax' for a command scaled by the model's umax) */
  controlUnits: readonly string[];
  /** Per-step exogenous noise inputs (e.g. Gumbel noise); zero unless a caller supplies them. */
  noiseDim?: number;
  /** Physical and cost parameters; `dtS` and `horizon` are always present. */
  params: Readonly<Record<K, NumberParam>> & { dtS: NumberParam; horizon: NumberParam };
  x0: readonly number[];
  goal: readonly number[];
  /** Box limits on the control, fixed or derived from the parameters. */
  controlLimits: ControlLimits | ((p: ParamValues<K>) => ControlLimits);
  step(x: Scalar[], u: Scalar[], w: Scalar[], p: ParamValues<K>): Scalar[];
  stageCost(x: Scalar[], u: Scalar[], uPrev: Scalar[], ref: Scalar[], p: ParamValues<K>): Scalar;
  terminalCost(x: Scalar[], ref: Scalar[], p: ParamValues<K>): Scalar;
  /**
   * How a sensor reports the physical state as a standard ROS message:
   * `joints`: sensor_msgs/JointState, the physical state being the joints'
   * positions then their velocities; `pose2d`: geometry_msgs/PoseStamped,
   * the state being [x, y, yaw]. Absent: the model has no state to measure.
   */
  sensor?: SensorInterface;
  /**
   * The system drawn in the plane, from a physical state: points in metres
   * (x right, y up), joined in order; the last one's path along a plan is
   * drawn in 3-D views (Foxglove). Absent: nothing to draw.
   */
  sketch?: (physical: readonly number[], p: ParamValues<K>) => [number, number][];
  /** Where the task counts as achieved, and for how long it must be held (controller runs). */
  goalRegion?: GoalRegion<K>;
  /**
   * The state in physical units, as sensors report it and people read it, when
   * the model's own state differs (the pendulum's phi is an angle per step;
   * physically it is omega = phi / dtS). Default: the model state itself.
   */
  physical?: {
    names: readonly string[];
    /** written with the expression helpers, so it folds on numbers and differentiates on expressions (the EKF's measurement Jacobian) */
    toPhysical(x: readonly Scalar[], p: ParamValues<K>): Scalar[];
    fromPhysical(y: readonly number[], p: ParamValues<K>): number[];
  };
}

export type SensorInterface = { kind: 'joints'; joints: readonly string[] } | { kind: 'pose2d' };

export interface GoalRegion<K extends string = string> {
  doc: string;
  holdS: number;
  /**
   * The region's half-width about the goal along each physical state
   * (Infinity: not bounded), drawn as a band in plots; for a region that is
   * not a box (a disc), the box around it.
   */
  halfWidths: readonly number[];
  contains(x: readonly number[], ref: readonly number[], p: ParamValues<K>): boolean;
}

/** Angle difference wrapped to (-pi, pi]. */
export function angleError(a: number, b: number): number {
  const d = (a - b) % (2 * Math.PI);
  return d > Math.PI ? d - 2 * Math.PI : d <= -Math.PI ? d + 2 * Math.PI : d;
}

/** Is x in the model's documented goal region around ref? (undefined: the model has none) */
export function inGoalRegion(model: Model, x: readonly number[], ref: readonly number[] = model.goal): boolean | undefined {
  return model.def.goalRegion?.contains(x, ref, model.params as ParamValues<string>);
}

export interface ControlLimits { lower: readonly number[]; upper: readonly number[] }

/** A model definition with its parameters resolved (defaults plus overrides). */
export interface Model {
  readonly def: ModelDefinition;
  readonly name: string;
  readonly stateDim: number;
  readonly controlDim: number;
  readonly noiseDim: number;
  readonly horizon: number;
  readonly dtS: number;
  readonly params: Readonly<Record<string, number>>;
  readonly x0: readonly number[];
  readonly goal: readonly number[];
  readonly controlLimits: ControlLimits;
}

export function defineModel<K extends string>(def: ModelDefinition<K>): ModelDefinition<K> {
  const n = def.stateNames.length;
  if (def.x0.length !== n || def.goal.length !== n) throw new Error(`${def.name}: x0 and goal need ${n} entries`);
  if (def.physicalUnits.length !== (def.physical?.names ?? def.stateNames).length || def.controlUnits.length !== def.controlNames.length) throw new Error(`${def.name}: a unit for every physical state and control`);
  const s = def.sensor;
  if (s && (s.kind === 'joints' ? 2 * s.joints.length : 3) !== n) throw new Error(`${def.name}: its ${s.kind} sensor does not carry ${n} states`);
  return def;
}

/** Resolves parameter overrides, rejecting unknown keys and out-of-range values with a clear message. */
export function resolveModel(def: ModelDefinition, overrides: Readonly<Record<string, unknown>> = {}, label = def.name): Model {
  const params = resolveParams(label, def.params as Readonly<Record<string, NumberParam>>, overrides) as Record<string, number>;
  return {
    def,
    name: def.name,
    stateDim: def.stateNames.length,
    controlDim: def.controlNames.length,
    noiseDim: def.noiseDim ?? 0,
    horizon: params.horizon,
    dtS: params.dtS,
    params,
    x0: def.x0,
    goal: def.goal,
    controlLimits: limitsOf(def, params),
  };
}

function limitsOf(def: ModelDefinition, params: Record<string, number>): ControlLimits {
  const limits = typeof def.controlLimits === 'function' ? def.controlLimits(params as ParamValues<string>) : def.controlLimits;
  const m = def.controlNames.length;
  if (limits.lower.length !== m || limits.upper.length !== m) throw new Error(`${def.name}: control limits need ${m} entries`);
  return limits;
}

/** Whether a physical state is an angle (by the conventional names the models use): compared and plotted on the circle. */
export function isAngle(name: string): boolean {
  return /^(theta|q\d|th\d|alpha)$/.test(name);
}

/** a - b, on the circle for angles. */
export function stateDifference(name: string, a: number, b: number): number {
  const d = a - b;
  return isAngle(name) ? Math.atan2(Math.sin(d), Math.cos(d)) : d;
}

/** An angle shown on the goal's branch (within pi of it), so a held upright at -pi reads as the goal at +pi. */
export function onGoalBranch(name: string, v: number, goal: number): number {
  return isAngle(name) ? goal + stateDifference(name, v, goal) : v;
}

/** "theta [rad]": a physical state's or control's name with its unit, for axes. */
export const withUnit = (name: string, unit: string) => (unit ? `${name} [${unit}]` : name);

export function physicalNames(model: Model): readonly string[] {
  return model.def.physical?.names ?? model.def.stateNames;
}

export function toPhysical(model: Model, x: readonly number[]): number[] {
  return model.def.physical ? model.def.physical.toPhysical(x, model.params as ParamValues<string>) as number[] : [...x];
}

export function fromPhysical(model: Model, y: readonly number[]): number[] {
  return model.def.physical ? model.def.physical.fromPhysical(y, model.params as ParamValues<string>) : [...y];
}

/** The state as a person reads it, e.g. the pendulum's phi shown as omega = phi / dtS. */
export function readout(model: Model, x: readonly number[]): Record<string, number> {
  const y = toPhysical(model, x);
  return Object.fromEntries(physicalNames(model).map((name, i) => [name, y[i]]));
}
