import type { Scalar } from '../expr/expr.js';
import { InputError } from '../input-error.js';
import { checkValue, NumberParam, resolveParams } from '../params.js';

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
  /**
   * The states that are angles (names from stateNames): compared on the
   * circle, wrapped in the run loop, given to the priors as sin/cos and drawn
   * on the goal's branch. Absent: none.
   */
  angles?: readonly string[];
  /** The parameters the simulator's `massScale` multiplies (masses, and whatever else the model says scales with them). Absent: none. */
  massParams?: readonly NoInfer<K>[];
  /**
   * The model's own tuning for MPC, used unless the user sets the key:
   * `model` overrides its parameters when it is planned with in receding
   * horizon (a shorter horizon, cost terms a short plan needs); `planners`
   * replaces a registered planner's defaults (by planner name, keys bare);
   * `solve`, the offline trajectory optimisers' (`solve`, `bench to`; keys
   * any of them shares). Absent: the generic defaults.
   */
  tuning?: ModelTuning<K>;
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
    /** which physical states are angles (names from `names`); absent: none */
    angles?: readonly string[];
    /** written with the expression helpers, so it folds on numbers and differentiates on expressions (the EKF's measurement Jacobian) */
    toPhysical(x: readonly Scalar[], p: ParamValues<K>): Scalar[];
    fromPhysical(y: readonly number[], p: ParamValues<K>): number[];
  };
}

export interface ModelTuning<K extends string = string> {
  model?: Readonly<Partial<Record<NoInfer<K> | 'dtS' | 'horizon', number>>>;
  planners?: Readonly<Record<string, Readonly<Record<string, unknown>>>>;
  solve?: Readonly<Record<string, unknown>>;
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

/**
 * A model definition that cannot work, found by defineModel (a model
 * module's author sees it when the module is loaded): `why` names the field.
 */
export class ModelDefinitionError extends InputError {
  override readonly name = 'ModelDefinitionError';
  constructor(readonly model: string, readonly why: string) {
    super(`${model}: ${why}`);
  }
}

/** What every model definition must hold, field by field, with the type each must have (the refusal names the first that is wrong). */
const REQUIRED_FIELDS: readonly [string, 'string' | 'strings' | 'numbers' | 'object' | 'function' | 'limits'][] = [
  ['name', 'string'],
  ['summary', 'string'],
  ['stateNames', 'strings'],
  ['physicalUnits', 'strings'],
  ['controlNames', 'strings'],
  ['controlUnits', 'strings'],
  ['params', 'object'],
  ['x0', 'numbers'],
  ['goal', 'numbers'],
  ['controlLimits', 'limits'],
  ['step', 'function'],
  ['stageCost', 'function'],
  ['terminalCost', 'function'],
];

function typeProblem(value: unknown, want: (typeof REQUIRED_FIELDS)[number][1]): string | undefined {
  const isList = (of: string) => Array.isArray(value) && value.every((v) => typeof v === of);
  switch (want) {
    case 'string': return typeof value === 'string' && value.length > 0 ? undefined : 'must be non-empty text';
    case 'strings': return isList('string') ? undefined : 'must be a list of names';
    case 'numbers': return isList('number') && (value as number[]).every(Number.isFinite) ? undefined : 'must be a list of finite numbers';
    case 'object': return value !== null && typeof value === 'object' && !Array.isArray(value) ? undefined : 'must be an object';
    case 'function': return typeof value === 'function' ? undefined : 'must be a function';
    case 'limits': return typeof value === 'function' || (value !== null && typeof value === 'object') ? undefined : 'must be { lower, upper } or a function of the parameters returning one';
  }
}

/** The fields' presence and types, for a definition written in plain JavaScript (TypeScript checks them at compile time). */
function checkFields(def: Record<string, unknown>): void {
  const name = typeof def.name === 'string' && def.name ? def.name : '(unnamed model)';
  for (const [field, want] of REQUIRED_FIELDS) {
    if (def[field] === undefined) throw new ModelDefinitionError(name, `field '${field}' is missing`);
    const problem = typeProblem(def[field], want);
    if (problem) throw new ModelDefinitionError(name, `field '${field}' ${problem}`);
  }
  for (const field of ['angles', 'massParams']) {
    if (def[field] !== undefined && typeProblem(def[field], 'strings')) throw new ModelDefinitionError(name, `field '${field}' must be a list of names`);
  }
  const params = def.params as Record<string, unknown>;
  for (const key of ['dtS', 'horizon']) if (params[key] === undefined) throw new ModelDefinitionError(name, `field 'params.${key}' is missing (num(...) from 'tempered-mpc')`);
  for (const [key, p] of Object.entries(params)) {
    if ((p as { kind?: unknown })?.kind !== 'number') throw new ModelDefinitionError(name, `field 'params.${key}' must be a number parameter (num(default, doc, range) from 'tempered-mpc')`);
    // a default outside its own range (a horizon of 1e9) would never pass a user's override, and is not checked anywhere else
    try {
      checkValue(`params.${key}`, p as NumberParam, (p as NumberParam).default);
    } catch (e) {
      throw new ModelDefinitionError(name, `field ${(e as Error).message.replace(/, got .*$/, `, its default is ${String((p as NumberParam).default)}`)}`);
    }
  }
}

export function defineModel<K extends string>(def: ModelDefinition<K>): ModelDefinition<K> {
  if (def === null || typeof def !== 'object') throw new ModelDefinitionError('(unnamed model)', `defineModel takes the model's definition (an object), got ${def === null ? 'null' : typeof def}`);
  checkFields(def as unknown as Record<string, unknown>);
  const fail = (why: string) => new ModelDefinitionError(def.name, why);
  const n = def.stateNames.length;
  if (def.x0.length !== n || def.goal.length !== n) throw fail(`x0 and goal need ${n} entries`);
  if (def.physicalUnits.length !== (def.physical?.names ?? def.stateNames).length || def.controlUnits.length !== def.controlNames.length) throw fail('a unit for every physical state and control (physicalUnits, controlUnits)');
  const s = def.sensor;
  if (s && (s.kind === 'joints' ? 2 * s.joints.length : 3) !== n) throw fail(`its ${s.kind} sensor does not carry ${n} states`);
  const unknownName = (field: string, given: readonly string[] | undefined, known: readonly string[]) => {
    const bad = (given ?? []).find((g) => !known.includes(g));
    if (bad !== undefined) throw fail(`${field} names '${bad}', which is not one of ${known.length ? known.join(', ') : '(none)'}`);
  };
  unknownName('angles', def.angles, def.stateNames);
  unknownName('physical.angles', def.physical?.angles, def.physical?.names ?? []);
  unknownName('massParams', def.massParams, Object.keys(def.params));
  unknownName('tuning.model', Object.keys(def.tuning?.model ?? {}), Object.keys(def.params));
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

/** Which model states are angles, in state order (declared by the model). */
export function stateAngles(def: ModelDefinition): boolean[] {
  return def.stateNames.map((n) => def.angles?.includes(n) ?? false);
}

/** Which physical states are angles, in the order of physicalNames (declared by the model). */
export function physicalAngles(model: Model): boolean[] {
  const { def } = model;
  return def.physical ? def.physical.names.map((n) => def.physical!.angles?.includes(n) ?? false) : stateAngles(def);
}

/**
 * The physical states a disturbance enters: every one (`all`), or only the
 * joint velocities (`rates`), as a disturbing torque or force would; the
 * simulator's process noise and the EKF's process model choose alike. A
 * reason (after the setting's value) when `rates` does not apply.
 */
export function disturbedStates(def: ModelDefinition, on: 'all' | 'rates'): number[] | string {
  const n = (def.physical?.names ?? def.stateNames).length;
  if (on === 'all') return Array.from({ length: n }, (_, i) => i);
  if (def.sensor?.kind !== 'joints') return `rates needs a system measured as joints (positions, then velocities); ${def.name}'s state is not (use all)`;
  const positions = def.sensor.joints.length;
  return Array.from({ length: n - positions }, (_, i) => positions + i);
}

/** a - b, on the circle for an angle. */
export function stateDifference(angle: boolean, a: number, b: number): number {
  const d = a - b;
  return angle ? Math.atan2(Math.sin(d), Math.cos(d)) : d;
}

/** An angle shown on the goal's branch (within pi of it), so a held upright at -pi reads as the goal at +pi. */
export function onGoalBranch(angle: boolean, v: number, goal: number): number {
  return angle ? goal + stateDifference(true, v, goal) : v;
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
