import { CONTROLLER_PARAMS } from '../controller/controller.js';
import { PLANNERS } from '../planners/registry.js';
import { PRIOR_PARAMS } from '../learned/params.js';
import { modelDefinition, systemParam } from '../models/index.js';
import { resolveModel } from '../models/model.js';
import { describe, GivenText, ParamEntry, ParamsOf, ParamValue, resolveParams, schemaEntries, Schema, keyedRecord } from '../params.js';
import { initialStateError, noisyStates, plantStepError, resolveSimParams, SIM_NODE_PARAMS, SimParams, Simulator } from '../../sim/simulator.js';
import { ControllerSession } from './session.js';
import { InputError } from '../input-error.js';

/** All parameters of a run, grouped by who owns them; keys in YAML and --set are `group.key` (or bare for the controller). */
export interface RunParams {
  system: string;
  controller: ParamsOf<typeof CONTROLLER_PARAMS>;
  /** the selected planner's parameters (the same object as planners[controller.planner]) */
  planner: Record<string, ParamValue>;
  /** every registered planner's, resolved with its defaults for the system: the inactive ones can be tuned too */
  planners: Record<string, Record<string, ParamValue>>;
  /** the model overrides (MPC defaults and the user's), as given */
  model: Record<string, unknown>;
  /** a learned prior and how the planner uses it */
  prior: ParamsOf<typeof PRIOR_PARAMS>;
  sim: SimParams;
  /** the simulated plant's own model overrides (`model.*` in the simulator's section), on top of `model` */
  simModel: Record<string, unknown>;
}

/**
 * The simulator's section: its plant parameters (SIM_PARAMS), the plant's
 * own `model.*`, and the ROS simulator node's keys (SIM_NODE_PARAMS, checked
 * here so one parameter file serves both doors; the embedded loop steps the
 * plant itself and seeds it with the controller's seed + 1).
 */
function splitSimulatorGroup(system: string, group: Record<string, unknown>): { sim: SimParams; simModel: Record<string, unknown> } {
  const plant: Record<string, unknown> = keyedRecord();
  const node: Record<string, unknown> = keyedRecord();
  const simModel: Record<string, unknown> = keyedRecord();
  for (const [k, v] of Object.entries(group)) {
    if (k.startsWith('model.')) simModel[k.slice('model.'.length)] = v;
    else if (Object.hasOwn(SIM_NODE_PARAMS, k)) node[k] = v;
    else plant[k] = v;
  }
  const nodeParams = resolveParams('sim', SIM_NODE_PARAMS as Schema, node);
  if (node.system !== undefined && String(nodeParams.system) !== system) throw new InputError(`the simulator's parameters are for system '${String(nodeParams.system)}', not '${system}'`);
  const plantModel = resolveModel(modelDefinition(system), simModel, 'sim.model');
  return { sim: resolveSimParams(plant), simModel: resolvedOverrides(plantModel.params, simModel) };
}

const GROUPS = ['controller', ...PLANNERS.map((p) => p.name), 'prior', 'model', 'sim'] as const;

/**
 * Splits flat parameters into their owners. Accepted keys: controller keys
 * bare (rateHz), `PLANNER.KEY` for each registered planner, `prior.KEY`, `model.KEY` and `sim.KEY`.
 */
export function resolveRunParams(system: string, flat: Record<string, unknown>): RunParams {
  const givenSystem = flat.system instanceof GivenText ? flat.system.text : flat.system;
  if (givenSystem !== undefined && givenSystem !== system) {
    throw new InputError(`the parameters are for system ${describe(givenSystem)}, not '${system}'`);
  }
  const groups: Record<string, Record<string, unknown>> = keyedRecord();
  for (const g of GROUPS) groups[g] = keyedRecord();
  for (const [key, value] of Object.entries(flat)) {
    if (key === 'system') continue;
    const dot = key.indexOf('.');
    const group = dot < 0 ? 'controller' : key.slice(0, dot);
    if (!GROUPS.includes(group)) throw new InputError(`unknown parameter group in '${key}' (use controller keys bare, or ${GROUPS.slice(1).map((g) => `${g}.`).join(', ')})`);
    // `tsmc: 5` in a file: a group given a value
    if (dot < 0 && (GROUPS as readonly string[]).includes(key)) throw new InputError(`'${key}' is a group of parameters (${key}.KEY, a map in a file), got ${describe(value)}`);
    groups[group][dot < 0 ? key : key.slice(dot + 1)] = value;
  }
  const controller = resolveParams('controller', CONTROLLER_PARAMS, groups.controller);
  // every planner is checked, so a typo in an inactive one never passes silently
  const planners = keyedRecord<Record<string, ParamValue>>();
  const def = modelDefinition(system);
  const tuned = def.tuning?.planners ?? {};
  const unknownPlanner = Object.keys(tuned).find((name) => !PLANNERS.some((p) => p.name === name));
  if (unknownPlanner !== undefined) throw new InputError(`model ${system}: tuning.planners names planner '${unknownPlanner}' (known: ${PLANNERS.map((p) => p.name).join(', ')})`);
  for (const p of PLANNERS) {
    // the model's own tuning is checked under its own name, so a bad key in a model module is not blamed on the user's file
    resolveParams(`model ${system} tuning.planners.${p.name}:`, p.schema, tuned[p.name] ?? {});
    planners[p.name] = resolveParams(p.name, p.schema, groups[p.name], tuned[p.name] ?? {});
  }
  const prior = resolveParams('prior', PRIOR_PARAMS, groups.prior);
  // unknown or out-of-range model.* keys, and a plant step the simulator cannot take, are refused now, not at assembly
  const givenModel = { ...def.tuning?.model, ...groups.model };
  const nominal = resolveModel(def, givenModel, 'model');
  // kept as the values they resolved to (numbers, not --set's text): they cross into the planner's thread
  const model = resolvedOverrides(nominal.params, givenModel);
  const { sim, simModel } = splitSimulatorGroup(system, groups.sim);
  const periodS = controlPeriodS(controller.rateHz, nominal.dtS);
  const stepError = plantStepError(nominal.def, periodS, sim.substeps);
  if (stepError) throw new InputError(stepError);
  if (controller.planRateHz > 1 / periodS * (1 + 1e-9)) {
    throw new InputError(`planRateHz ${controller.planRateHz} is above the command rate ${+(1 / periodS).toFixed(6)} Hz${controller.rateHz > 0 ? '' : ' (rateHz 0: 1 / the model\'s dtS)'}: plans cannot start more often than commands leave`);
  }
  const x0Error = initialStateError(nominal.def, sim.x0);
  if (x0Error) throw new InputError(x0Error);
  const noisy = noisyStates(nominal.def, sim.processNoiseOn);
  if (typeof noisy === 'string') throw new InputError(noisy);
  return { system, controller, planner: planners[controller.planner], planners, model, prior, sim, simModel };
}

/** The keys the user gave, with the values they resolved to. */
const resolvedOverrides = (resolved: Readonly<Record<string, number>>, given: object): Record<string, unknown> =>
  Object.fromEntries(Object.keys(given).map((k) => [k, resolved[k]]));

/** The control period: 1 / rateHz, or the model's step when rateHz is 0. */
export function controlPeriodS(rateHz: number, modelDtS: number): number {
  return rateHz > 0 ? 1 / rateHz : modelDtS;
}

/** The plan period: 1 / planRateHz, or the command period when planRateHz is 0. */
export function planPeriodS(planRateHz: number, commandPeriodS: number): number {
  return planRateHz > 0 ? 1 / planRateHz : commandPeriodS;
}

/**
 * The controller's parameters as one flat table (`system`, controller keys
 * bare, `PLANNER.*` for each registered planner, `prior.*`, `model.*`) with their values: the ROS node
 * declares exactly these, and the live-parameter path checks against them.
 */
export function controllerParameterTable(params: RunParams): { entries: ParamEntry[]; values: Record<string, ParamValue> } {
  const def = modelDefinition(params.system);
  const entries = [
    ...schemaEntries({ system: SYSTEM_PARAM }),
    ...schemaEntries(CONTROLLER_PARAMS),
    ...PLANNERS.flatMap((p) => schemaEntries(p.schema, `${p.name}.`)),
    ...schemaEntries(PRIOR_PARAMS, 'prior.'),
    ...schemaEntries(def.params, 'model.', 'model parameters are compiled into the rollout kernels at configure'),
  ];
  const model = resolveModel(def, params.model).params;
  const values: Record<string, ParamValue> = {
    system: params.system,
    ...params.controller,
    // the names in effect: the system's own unless set
    jointNames: params.controller.jointNames.length || def.sensor?.kind !== 'joints' ? params.controller.jointNames : [...def.sensor.joints],
    ...Object.assign({}, ...PLANNERS.map((p) => prefixed(`${p.name}.`, params.planners[p.name]))),
    ...prefixed('prior.', params.prior),
    ...prefixed('model.', model),
  };
  return { entries, values };
}

export const SYSTEM_PARAM = systemParam('the plant model the controller plans with', 'the model is compiled at configure');

/** Rules across controller parameters, checked on every live change. */
export function controllerConsistency(periodS: number, plansEveryS = periodS) {
  return (v: Readonly<Record<string, ParamValue>>): Record<string, string> => {
    const reasons: Record<string, string> = {};
    for (const p of PLANNERS) {
      if (!p.consistency) continue;
      const prefix = `${p.name}.`;
      const own = Object.fromEntries(Object.entries(v).flatMap(([k, x]) => (k.startsWith(prefix) ? [[k.slice(prefix.length), x]] : [])));
      for (const [k, why] of Object.entries(p.consistency(own))) reasons[`${prefix}${k}`] = why;
    }
    if ((v.budgetMs as number) > 1000 * plansEveryS) {
      reasons.budgetMs = plansEveryS === periodS
        ? `budgetMs ${v.budgetMs} is longer than the control period (${(1000 * periodS).toFixed(1)} ms at rateHz ${(1 / periodS).toFixed(3)})`
        : `budgetMs ${v.budgetMs} is longer than the plan period (${(1000 * plansEveryS).toFixed(1)} ms at planRateHz ${(1 / plansEveryS).toFixed(3)})`;
    }
    return reasons;
  };
}

const prefixed = (prefix: string, o: Readonly<Record<string, ParamValue>>) => Object.fromEntries(Object.entries(o).map(([k, v]) => [`${prefix}${k}`, v]));

export interface Assembly {
  session: ControllerSession;
  sim: Simulator;
}

/** The controller session and the simulated plant of an embedded run (the plant's noise seeded with the controller's seed + 1). */
export async function assemble(params: RunParams, opts: Parameters<typeof ControllerSession.create>[1]): Promise<Assembly> {
  const session = await ControllerSession.create(params, opts);
  const sim = new Simulator(modelDefinition(params.system), session.periodS, params.sim, params.controller.seed + 1, { ...params.model, ...params.simModel });
  return { session, sim };
}
