import { buildStepGraphs } from '../src/kernels/graphs.js';
import { compileStepFunction, StepFunction } from '../src/kernels/js-source.js';
import { disturbedStates, fromPhysical, Model, ModelDefinition, resolveModel, toPhysical } from '../src/models/model.js';
import { modelDefinition, systemParam } from '../src/models/index.js';
import { choice, list, num, ParamEntry, ParamsOf, ParamValue, resolveParams, schemaEntries, Schema } from '../src/params.js';
import { Rng } from '../src/random.js';
import { InputError } from '../src/input-error.js';

/** Simulator parameters, declared once (ROS parameters, YAML, --set sim.KEY). */
export const SIM_PARAMS = {
  substeps: num(10, 'integration steps per control period; the simulator never shares the planner\'s step', { min: 1, max: 10000, integer: true, readOnly: 'the plant\'s step is compiled at start' }),
  processNoise: num(0, 'white process noise: std added to each physical state per sqrt(second) (sim.processNoiseOn says which)', { min: 0, max: 1e3 }),
  processNoiseOn: choice('all', ['all', 'rates'] as const, 'where the process noise enters: every physical state, or only the joint velocities, as a disturbing torque or force would (systems measured as joints)', { readOnly: 'the noisy states are chosen at start' }),
  measurementNoise: num(0, 'std of the noise on each published physical state', { min: 0, max: 1e3 }),
  massScale: num(1, 'multiplies the parameters the model declares as masses (its massParams) in the plant: model mismatch, e.g. 1.1 = +10%', { min: 0.01, max: 100, readOnly: 'the plant is compiled at start' }),
  impulseAtS: num(-1, 'time of a disturbance impulse [s] (negative: none)', { max: 1e9 }),
  impulseState: num(1, 'index of the physical state the impulse kicks', { min: 0, max: 63, integer: true }),
  impulseSize: num(0, 'size of the kick, in that state\'s physical units', { min: -1e6, max: 1e6 }),
  x0: list('number', 'initial physical state of the plant (empty = the system\'s x0, see `tempered-mpc systems NAME`)', { maxLength: 64, readOnly: 'it is the initial state' }),
} as const;

/** The simulator node's own parameters (the ROS door); its plant parameters are SIM_PARAMS and model.*. */
export const SIM_NODE_PARAMS = {
  system: systemParam('the plant to simulate', 'the plant is compiled at start'),
  stateRateHz: num(100, 'real time: how often the plant is stepped and its state published [Hz]; lockstep: steps per simulated second (set it to the controller\'s rate)',
    { min: 0, exclusive: true, max: 10000, readOnly: 'the step period is set at start' }),
  stepping: choice('realtime', ['realtime', 'lockstep'] as const,
    'realtime: a wall-clock timer steps the plant, holding the last command; lockstep: publishes /clock, and after each state waits for the next command (deterministic on any machine)',
    { readOnly: 'set at start' }),
  lockstepTimeoutS: num(10, 'lockstep: how long to wait for a command before stepping on with the last one [s] (the first command is waited for without limit)', { min: 0, exclusive: true, max: 3600 }),
  seed: num(1, 'seed of the process and measurement noise (the embedded run uses --seed + 1)', { min: 0, max: 2 ** 31 - 1, integer: true, readOnly: 'the noise stream starts at start' }),
} as const;

export type SimParams = ParamsOf<typeof SIM_PARAMS>;

/**
 * The simulator node's parameters as one flat table (its own keys, the
 * plant's SIM_PARAMS bare, `model.*` read-only) with their defaults for
 * `system`: the ROS node declares exactly these, `tempered-mpc params` lists them.
 */
export function simulatorParameterTable(system: string, run?: { sim: SimParams; simModel: Record<string, unknown> }): { entries: ParamEntry[]; values: Record<string, ParamValue> } {
  const def = modelDefinition(system);
  const nominal = resolveModel(def);
  const plant = run ? resolveModel(def, run.simModel) : nominal;
  return {
    entries: [
      ...schemaEntries(SIM_NODE_PARAMS as Schema),
      ...schemaEntries(SIM_PARAMS),
      ...schemaEntries(def.params, 'model.', 'the plant is compiled at start'),
    ],
    values: {
      ...resolveParams('simulator', SIM_NODE_PARAMS as Schema), system,
      ...(run ? run.sim : resolveParams('sim', SIM_PARAMS)),
      x0: run?.sim.x0.length ? run.sim.x0 : toPhysical(nominal, [...def.x0]),
      ...Object.fromEntries(Object.entries(plant.params).map(([k, v]) => [`model.${k}`, v])),
    },
  };
}

export function resolveSimParams(overrides: Record<string, unknown> = {}): SimParams {
  return resolveParams('sim', SIM_PARAMS, overrides);
}

/**
 * The plant's step is derived (period / substeps): when it falls below the
 * model's smallest step, the reason names what the user set, not dtS.
 */
export function plantStepError(def: ModelDefinition, periodS: number, substeps: number): string | undefined {
  const dtS = periodS / substeps;
  const min = def.params.dtS.min;
  if (min === undefined || dtS >= min) return undefined;
  return `sim.substeps ${substeps} at a ${+periodS.toPrecision(6)} s period gives a plant step of ${dtS.toExponential(2)} s, below ${def.name}'s smallest step ${min} s: use fewer substeps or a lower rate`;
}

/** The physical states the process noise enters (sim.processNoiseOn), or why they cannot be chosen. */
export function noisyStates(def: ModelDefinition, on: SimParams['processNoiseOn']): number[] | string {
  const states = disturbedStates(def, on);
  return typeof states === 'string' ? `sim.processNoiseOn = ${states}` : states;
}

/** sim.x0 is empty (the system's own) or one finite number per physical state. */
export function initialStateError(def: ModelDefinition, x0: readonly number[]): string | undefined {
  const names = def.physical?.names ?? def.stateNames;
  if (x0.length === 0 || (x0.length === names.length && x0.every(Number.isFinite))) return undefined;
  return `sim.x0 must be ${names.length} finite numbers for ${def.name} (${names.join(', ')}), got [${x0.join(', ')}]`;
}

/** Why a push of physical state `index` by `size` cannot be given (undefined when it can). */
export function pushProblem(stateDim: number, index: number, size: number): string | undefined {
  if (!Number.isInteger(index) || index < 0 || index >= stateDim) return `state index must be an integer in 0..${stateDim - 1}, got ${index}`;
  if (!Number.isFinite(size) || Math.abs(size) > 1e6) return `push size must be a finite number within ±1e6, got ${size}`;
  return undefined;
}

/**
 * The plant that stands in for the robot: the model of the same name,
 * integrated at a finer step than the planner uses, with optional process and
 * measurement noise, mass mismatch and a disturbance impulse. Its state
 * interface is physical (e.g. the pendulum's omega in rad/s), like a sensor's.
 */
export class Simulator {
  readonly plant: Model;
  private readonly step: StepFunction;
  private readonly rng: Rng;
  private readonly noisyIndices: number[];
  private x: number[];
  private kicked = false;
  private readonly start: number[];
  timeS = 0;

  constructor(
    def: ModelDefinition,
    readonly controlPeriodS: number,
    readonly params: SimParams,
    seed: number,
    modelOverrides: Record<string, unknown> = {},
  ) {
    if (!(controlPeriodS > 0)) throw new InputError(`control period must be positive, got ${controlPeriodS}`);
    const nominal = resolveModel(def, modelOverrides);
    const stepError = plantStepError(def, controlPeriodS, params.substeps);
    if (stepError) throw new InputError(stepError);
    const scaled: Record<string, unknown> = { ...modelOverrides, dtS: controlPeriodS / params.substeps };
    for (const k of def.massParams ?? []) scaled[k] = nominal.params[k] * params.massScale;
    this.plant = resolveModel(def, scaled, 'sim plant');
    this.step = compileStepFunction(buildStepGraphs(this.plant, false));
    this.rng = new Rng(seed);
    const x0Error = initialStateError(def, params.x0);
    if (x0Error) throw new InputError(x0Error);
    const noisy = noisyStates(def, params.processNoiseOn);
    if (typeof noisy === 'string') throw new InputError(noisy);
    this.noisyIndices = noisy;
    const start = params.x0.length ? params.x0 : toPhysical(resolveModel(def, modelOverrides), [...def.x0]);
    this.start = fromPhysical(this.plant, start);
    this.x = [...this.start];
  }

  /** Back to the initial state (time runs on): the dashboard's reset. */
  reset(): void {
    this.x = [...this.start];
  }

  /** Adds `size` (physical units) to physical state `index` at once: a push by hand. A reason when the index is not a state. */
  push(index: number, size: number): string | undefined {
    const y = toPhysical(this.plant, this.x);
    const problem = pushProblem(y.length, index, size);
    if (problem) return problem;
    y[index] += size;
    this.x = fromPhysical(this.plant, y);
    return undefined;
  }

  /** True physical state. */
  get state(): number[] {
    return toPhysical(this.plant, this.x);
  }

  /** What a sensor reports: the physical state plus measurement noise. */
  measure(): number[] {
    const s = this.params.measurementNoise;
    return this.state.map((v) => (s > 0 ? v + s * this.rng.normal() : v));
  }

  /** Holds control u for durationS, integrating substeps of the plant. */
  advance(u: readonly number[], durationS = this.controlPeriodS): void {
    if (u.length !== this.plant.controlDim || !u.every(Number.isFinite)) {
      throw new Error(`control must be ${this.plant.controlDim} finite numbers, got [${u.join(', ')}]`);
    }
    const dt = this.plant.dtS;
    const steps = Math.max(1, Math.round(durationS / dt));
    const noise = new Array<number>(this.plant.noiseDim).fill(0);
    const { processNoise, impulseAtS, impulseState, impulseSize } = this.params;
    for (let i = 0; i < steps; i++) {
      this.x = this.step(this.x, u, noise);
      this.timeS += dt;
      if (processNoise > 0 || (!this.kicked && impulseAtS >= 0 && this.timeS >= impulseAtS)) {
        const y = toPhysical(this.plant, this.x);
        if (processNoise > 0) for (const j of this.noisyIndices) y[j] += processNoise * Math.sqrt(dt) * this.rng.normal();
        if (!this.kicked && impulseAtS >= 0 && this.timeS >= impulseAtS) {
          if (impulseState >= y.length) throw new Error(`sim.impulseState ${impulseState} is not a state index (0..${y.length - 1})`);
          y[impulseState] += impulseSize;
          this.kicked = true;
        }
        this.x = fromPhysical(this.plant, y);
      }
    }
  }
}
