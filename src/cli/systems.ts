import { isModelFile, loadSystem, MODELS } from '../models/index.js';
import { ModelDefinition, resolveModel } from '../models/model.js';
import { rangeText } from '../params.js';
import { Command, JSON_OPTION, printJson, table } from './command.js';
import { InputError } from '../input-error.js';

/** Limits as JSON: unbounded sides are null. */
const finiteOrNull = (v: number) => (Number.isFinite(v) ? v : null);

export function describeSystems(defs: Iterable<ModelDefinition> = MODELS.values()) {
  return [...defs].map((def) => {
    const model = resolveModel(def);
    return {
      name: def.name,
      summary: def.summary,
      stateDim: model.stateDim,
      controlDim: model.controlDim,
      stateNames: def.stateNames,
      controlNames: def.controlNames,
      // declared meaning: states compared and featured on the circle; parameters sim.massScale multiplies
      angles: def.angles ?? [],
      massParams: def.massParams ?? [],
      dt: model.dtS,
      horizon: model.horizon,
      x0: model.x0,
      goal: model.goal,
      controlLimits: { lower: model.controlLimits.lower.map(finiteOrNull), upper: model.controlLimits.upper.map(finiteOrNull) },
      // what `run` and `bench mpc` call success (null: none; a trajectory-optimisation test function)
      goalRegion: def.goalRegion ? { doc: def.goalRegion.doc, holdS: def.goalRegion.holdS } : null,
      runsAsController: def.sensor !== undefined,
      params: Object.fromEntries(Object.entries(def.params).map(([k, spec]) => [k, { ...spec }])),
    };
  });
}

export const systemsCommand: Command = {
  name: 'systems',
  summary: 'List the built-in systems with their dimensions, defaults and documented parameters (null limit = unbounded).',
  usage: 'systems [NAME|MODULE.mjs] [--json]',
  options: { json: JSON_OPTION },
  maxPositionals: 1,
  async run(values, positionals) {
    // a model module is described as the built-ins are: how its author checks what the project read from it
    let systems = positionals[0] && isModelFile(positionals[0]) ? describeSystems([await loadSystem(positionals[0])]) : describeSystems();
    if (positionals[0] && !isModelFile(positionals[0])) {
      systems = systems.filter((s) => s.name === positionals[0]);
      if (!systems.length) throw new InputError(`unknown system '${positionals[0]}' (known: ${[...MODELS.keys()].join(', ')})`);
    }
    if (values.json) return printJson({ systems });
    const detailed = positionals.length === 1;
    if (!detailed) {
      console.log(table(systems.map((s) => [s.name, s.stateDim, s.controlDim, s.dt, s.horizon, s.summary]),
        ['system', 'n', 'm', 'dt[s]', 'T', 'summary']));
      console.log('\nDetails and parameters: tempered-mpc systems NAME');
      return;
    }
    for (const s of systems) {
      console.log(`${s.name}: ${s.summary}`);
      console.log(`  state   [${s.stateNames.join(', ')}]  x0 = [${s.x0.join(', ')}]  goal = [${s.goal.map((g) => +g.toFixed(6)).join(', ')}]`);
      console.log(`  angles  [${s.angles.join(', ')}]  sim.massScale scales [${s.massParams.join(', ')}]`);
      console.log(`  control [${s.controlNames.join(', ')}]  limits ${s.controlLimits.lower.map((lo, i) => `[${lo ?? '-inf'}, ${s.controlLimits.upper[i] ?? 'inf'}]`).join(' ')}`);
      console.log(s.goalRegion
        ? `  success: the goal region ${s.goalRegion.doc.replace(/, held [\d.]+ s$/, '')}, entered and held ${s.goalRegion.holdS} s before the run ends (run --duration must leave time to hold it)`
        : '  success: no goal region (a test function for trajectory optimisation: solve, bench to)');
      if (!s.runsAsController) console.log('  not a controller plant: it has no state to measure (run, bench mpc and train-* refuse it)');
      console.log(`  parameters (override with --set key=value):`);
      console.log(table(Object.entries(s.params).map(([k, p]) => [`    ${k}`, p.default, rangeText(p), p.doc]), ['    key', 'default', 'range', 'meaning']));
    }
  },
};
