import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../input-error.js';
import { physicalNames } from '../models/model.js';
import { lineChart, PALETTE } from '../plot/svg.js';
import { resolveRunParams } from '../run/setup.js';
import type { IdentifyResult } from '../sysid/identify.js';
import { Command, JSON_OPTION, optionalInteger, outputFolder, printJson, requireString, stringOpt, table } from './command.js';
import { parameterFileYaml } from './params.js';
import { modelFromOptions, SET_OPTION, SYSTEM_OPTION } from './rollout.js';

export const identifyCommand: Command = {
  name: 'identify',
  summary: 'Identify model parameters (masses, damping, ...) from a log of the robot: the states and the parameters estimated together (errors in variables, the noise read from the log) with exact gradients; each estimate with a 95% interval, or "not identifiable".',
  usage: 'identify --system NAME --log FILE.mcap [--params k1,k2,...] [--substeps N] [--state-topic T] [--command-topic T] [--set key=value] [--out DIR] [--json]',
  options: {
    system: SYSTEM_OPTION,
    log: { type: 'string', description: 'an MCAP log: `run`\'s run.mcap or a `ros2 bag record` (MCAP) of the state and command topics', valueName: 'FILE' },
    params: { type: 'string', description: 'model parameters to fit, comma-separated (default: the model\'s mass parameters)', valueName: 'k1,k2' },
    substeps: { type: 'string', description: 'model steps per logged interval: the simulator\'s sim.substeps, or enough to be continuous for a real plant (default 10)', valueName: 'N' },
    'state-topic': { type: 'string', description: 'the state topic (default: the one ending in /state)', valueName: 'TOPIC' },
    'command-topic': { type: 'string', description: 'the command topic (default: the one ending in /command)', valueName: 'TOPIC' },
    set: SET_OPTION,
    out: { type: 'string', description: 'output folder: params.yaml (a parameter file of both nodes with the estimates), states.svg (the estimated states against the log), identify.json (default runs/identify-SYSTEM-TIME)', valueName: 'DIR' },
    json: JSON_OPTION,
  },
  async run(values) {
    const system = requireString(values, 'system');
    const { model } = modelFromOptions(values);
    const keysText = stringOpt(values, 'params');
    const keys = keysText === undefined ? [...(model.def.massParams ?? [])] : keysText.split(',').map((k) => k.trim().replace(/^model\./, '')).filter(Boolean);
    if (!keys.length) throw new InputError(`${model.name} declares no mass parameters: name the parameters to fit with --params k1,k2`);
    for (const k of keys) {
      if (!Object.hasOwn(model.def.params, k)) throw new InputError(`--params: ${model.name} has no parameter '${k}' (its parameters: ${Object.keys(model.def.params).join(', ')})`);
      if (k === 'dtS' || k === 'horizon') throw new InputError(`--params: ${k} is how the model is stepped, not a property of the plant`);
    }
    if (new Set(keys).size !== keys.length) throw new InputError(`--params names a parameter twice: ${keysText}`);
    const substeps = optionalInteger(values, 'substeps', 10, 1, 10000);
    const logPath = requireString(values, 'log');
    const out = outputFolder(values, `identify-${model.name}`);
    // the MCAP and message decoders load only for this command
    const [{ readControlLog }, { identify }] = await Promise.all([import('../sysid/log.js'), import('../sysid/identify.js')]);
    const log = readControlLog(logPath, model, { state: stringOpt(values, 'state-topic'), command: stringOpt(values, 'command-topic') });
    const result = identify(model, log, { keys, substeps });

    const fitted = result.estimates.filter((e) => e.estimate !== null);
    const run = resolveRunParams(system, Object.fromEntries([
      ...Object.entries(model.params).filter(([k]) => k !== 'dtS' && k !== 'horizon' && model.params[k] !== model.def.params[k].default).map(([k, v]) => [`model.${k}`, v]),
      ...fitted.map((e) => [`model.${e.key}`, e.estimate!]),
    ]));
    writeFileSync(join(out, 'params.yaml'), `${parameterFileYaml(run, [
      `identified by tempered-mpc identify from ${logPath}`,
      ...result.estimates.map((e) => (e.estimate === null ? `${e.key}: ${e.reason} (kept at ${e.nominal})` : `${e.key} = ${e.estimate} (95%: ${e.interval95![0]} .. ${e.interval95![1]})`)),
    ])}\n`);
    writeFileSync(join(out, 'states.svg'), statesChart(model, result));
    const report = { system: model.name, log: logPath, stateTopic: log.stateTopic, commandTopic: log.commandTopic, periodS: result.periodS, intervals: result.intervals, segments: result.segments, substeps, noise: result.noise, iterations: result.iterations, rmsBefore: result.rmsBefore, rmsAfter: result.rmsAfter, estimates: result.estimates, out };
    writeFileSync(join(out, 'identify.json'), `${JSON.stringify(report, null, 1)}\n`);
    if (values.json) return printJson(report);
    const names = physicalNames(model);
    console.log(`${model.name}: ${result.intervals} intervals of ${+result.periodS.toFixed(6)} s (${substeps} model steps each, ${result.segments} unbroken stretch${result.segments === 1 ? '' : 'es'}) from ${log.stateTopic} and ${log.commandTopic}`);
    console.log(table(result.estimates.map((e) => (e.estimate === null
      ? [e.key, e.nominal, '-', e.reason!]
      : [e.key, e.nominal, e.estimate, `[${+e.interval95![0].toPrecision(4)}, ${+e.interval95![1].toPrecision(4)}]`])), ['parameter', 'nominal', 'estimate', '95% interval']));
    console.log(`noise read from the log: measurement std ${names.map((name, i) => `${name} ${result.noise.measurementStd[i].toPrecision(2)}`).join(', ')}; process std per sqrt(s) ${names.map((name, i) => `${name} ${result.noise.processStdPerSqrtS[i].toPrecision(2)}`).join(', ')}`);
    console.log(`one-step prediction error from measured states (normalised rms): ${result.rmsBefore.toFixed(3)} with the nominal model, ${result.rmsAfter.toFixed(3)} fitted`);
    console.log(`wrote ${join(out, 'params.yaml')} (run --params, the launch files), ${join(out, 'states.svg')}, ${join(out, 'identify.json')}`);
  },
};

/** Each physical state: the log, and the states estimated with the fitted parameters. */
function statesChart(model: Parameters<typeof physicalNames>[0], result: IdentifyResult): string {
  const names = physicalNames(model);
  const units = model.def.physicalUnits;
  const { timesS, measured, estimated } = result.trajectory;
  return lineChart(`identify ${model.name}: the states estimated with the fitted parameters vs the log`, names.map((name, i) => ({
    title: name,
    xLabel: 't [s]',
    yLabel: units[i] ? `${name} [${units[i]}]` : name,
    series: [
      { name: 'log', x: timesS, y: measured.map((y) => y[i]), color: '#bbbbbb' },
      { name: 'estimated (fitted)', x: timesS, y: estimated.map((y) => y[i]), color: PALETTE[0] },
    ],
  })));
}
