import { ParamEntry, ParamValue, rangeText } from '../params.js';
import { CONTROLLER_NODE, nodeParameterYaml, SIMULATOR_NODE } from '../run/params-file.js';
import { controllerParameterTable, resolveRunParams, RunParams } from '../run/setup.js';
import { simulatorParameterTable } from '../../sim/simulator.js';
import { Command, JSON_OPTION, printJson, requireString, stringOpt, table } from './command.js';
import { SYSTEM_OPTION } from './rollout.js';
import { InputError } from '../input-error.js';

interface Table { entries: ParamEntry[]; values: Record<string, ParamValue> }

export const paramsCommand: Command = {
  name: 'params',
  summary: 'Every parameter of the controller and simulator nodes for a system, with its value, rule and meaning; --yaml writes them as a complete ROS 2 parameter file (what the launch files and `run --params` read).',
  usage: 'params --system NAME [--planner NAME] [--yaml] [--json]',
  options: {
    system: SYSTEM_OPTION,
    planner: { type: 'string', description: 'the planner the file selects (default: the registry\'s first, tsmc)', valueName: 'NAME' },
    yaml: { type: 'boolean', description: 'print a ROS 2 parameter file' },
    json: JSON_OPTION,
  },
  async run(values) {
    const system = requireString(values, 'system');
    const planner = stringOpt(values, 'planner');
    const run = resolveRunParams(system, planner === undefined ? {} : { planner });
    const controller: Table = controllerParameterTable(run);
    const simulator: Table = simulatorParameterTable(system);
    if (values.yaml && values.json) throw new InputError('--yaml and --json each choose the output: give one');
    if (values.yaml) {
      console.log(parameterFileYaml(run, [`Every parameter of the tempered-mpc nodes for ${system}, at its value (tempered-mpc params --system ${system} --yaml).`,
        'Delete what you do not change; the values are the MPC defaults of this system.']));
      return;
    }
    const rows = (t: Table) => t.entries.map((e) => ({ key: e.key, value: t.values[e.key], rule: rangeText(e.def), readOnly: e.readOnly ?? null, doc: e.def.doc }));
    if (values.json) return printJson({ system, [CONTROLLER_NODE]: rows(controller), [SIMULATOR_NODE]: rows(simulator) });
    for (const [node, t] of [[CONTROLLER_NODE, controller], [SIMULATOR_NODE, simulator]] as const) {
      console.log(`${node}\n`);
      console.log(table(rows(t).map((r) => [`  ${r.key}`, Array.isArray(r.value) ? `[${r.value.join(', ')}]` : String(r.value), r.rule, r.readOnly ? 'read-only' : 'live', r.doc]), ['  key', 'value', 'rule', 'change', 'meaning']));
      console.log('');
    }
  },
};

/** A complete ROS 2 parameter file of both nodes at a run's values (what the launch files and `run --params` read), under a comment header. */
export function parameterFileYaml(run: RunParams, header: string[]): string {
  return [...header.map((l) => `# ${l}`), ...nodeParameterYaml(CONTROLLER_NODE, controllerParameterTable(run)), ...nodeParameterYaml(SIMULATOR_NODE, simulatorParameterTable(run.system, run))].join('\n');
}
