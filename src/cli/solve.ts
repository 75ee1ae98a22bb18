import { createBackend } from '../kernels/index.js';
import { parseSolveMethod, SOLVE_METHODS, resolveSolveParams, solve, SOLVE_SCHEMAS } from '../planners/solve.js';
import { Command, JSON_OPTION, optionalInteger, parseInteger, printJson, requireString, stringOpt, table } from './command.js';
import { progressBar } from './progress.js';
import { BACKEND_OPTION, backendFromOptions, modelFromOptions, SET_OPTION, SYSTEM_OPTION } from './rollout.js';

export function plannerFromOptions(values: Record<string, unknown>) {
  return parseSolveMethod(requireString(values, 'planner'));
}

export const solveCommand: Command = {
  name: 'solve',
  summary: 'Trajectory optimisation from the system\'s x0: TSMC or one of the TSMC paper\'s baselines, all starting from the same seeded prior particles.',
  usage: `solve --system NAME --planner ${SOLVE_METHODS.join('|')} [--particles N] [--seed K] [--backend cpu|webgpu] [--set key=value] [--json]`,
  options: {
    system: SYSTEM_OPTION,
    planner: { type: 'string', description: `${SOLVE_METHODS.join(', ')}`, valueName: 'NAME' },
    particles: { type: 'string', description: 'number of particles N (default 100)', valueName: 'N' },
    seed: { type: 'string', description: 'random seed (default 0)', valueName: 'K' },
    backend: BACKEND_OPTION,
    set: { ...SET_OPTION, description: 'override a planner or system parameter (see --help-params)' },
    'help-params': { type: 'boolean', description: 'list the planner\'s parameters with defaults and ranges' },
    json: JSON_OPTION,
  },
  async run(values) {
    const planner = plannerFromOptions(values);
    const schema = SOLVE_SCHEMAS[planner];
    if (values['help-params']) {
      console.log(table(Object.entries(schema).map(([k, d]) => [k, String(d.default), d.kind === 'enum' ? d.choices.join('|') : '', d.doc]), ['key', 'default', 'choices', 'meaning']));
      return;
    }
    const { model, rest } = modelFromOptions(values, new Set(Object.keys(schema)));
    const particlesText = stringOpt(values, 'particles');
    if (particlesText !== undefined) rest.particles = parseInteger('--particles', particlesText, 2);
    const seed = optionalInteger(values, 'seed', 0, 0);
    const params = resolveSolveParams(planner, model.def, rest);
    const backend = await createBackend(model, backendFromOptions(values));
    const bar = progressBar(`${planner} on ${model.name}`, !values.json);
    const result = await solve(backend, { planner, params, seed, onProgress: (f, note) => bar.update(f, note) });
    bar.done();
    if (values.json) return printJson(result);
    const sorted = [...result.costs].sort((a, b) => a - b);
    console.log(`${planner} on ${model.name} (${result.backend}, N=${result.particles}, seed ${seed}): ${result.wallMs.toFixed(0)} ms`);
    console.log(`best cost ${result.bestCost.toFixed(4)}, median ${sorted[Math.floor(sorted.length / 2)].toFixed(4)}, goal reached: ${result.goalReached ?? 'n/a'}`);
    if (result.diagnostics.logZ !== null) {
      console.log(`log Z ${result.diagnostics.logZ.toFixed(3)} over ${result.diagnostics.levels.length} tempering levels`);
      const levels = result.diagnostics.levels;
      const shown = levels.length <= 12 ? levels : [...levels.slice(0, 6), ...levels.slice(-6)];
      console.log(table(shown.map((l) => [levels.indexOf(l) + 1, l.beta, l.ess, l.acceptance, l.energyMin, l.energyMedian, l.nonFinite]),
        ['level', 'beta', 'ESS', 'accept', 'E min', 'E median', 'NaN']));
      if (shown.length < levels.length) console.log(`(levels 7-${levels.length - 6} of ${levels.length} not shown; --json lists them all)`);
    }
  },
};
