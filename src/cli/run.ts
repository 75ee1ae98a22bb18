import { PLANNER_NAMES } from '../planners/registry.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { physicalNames, toPhysical } from '../models/model.js';
import { RunSummary, runLoop, SimControl, TickRecord } from '../run/loop.js';
import { readParamsFile } from '../run/params-file.js';
import { runChart } from '../run/plot.js';
import { assemble, resolveRunParams } from '../run/setup.js';
import { CHANNELS, logTopics, tickMessages, topicOf } from '../telemetry/channels.js';
import { McapLog } from '../telemetry/mcap-log.js';
import { serveTelemetry, Telemetry, telemetryBanner } from '../telemetry/server.js';
import { Command, JSON_OPTION, optionalInteger, OptionSpec, parseNumber, parseOverrides, parseVector, printJson, requireString, stringOpt, outputFolder } from './command.js';
import { progressBar } from './progress.js';
import { shutdown } from '../shutdown.js';
import { SET_OPTION, SYSTEM_OPTION } from './rollout.js';
import { modelDefinition } from '../models/index.js';
import { GivenText, keyedRecord } from '../params.js';
import { InputError } from '../input-error.js';

/** The longest run `run` and `bench mpc` take: they keep every tick for the plot (an hour at 50 Hz is 180,000 ticks). */
export const MAX_DURATION_S = 3600;

/** Options read by runOptions(), shared by `run` and `bench mpc`. */
export const RUN_OPTIONS: Record<string, OptionSpec> = {
  system: SYSTEM_OPTION,
  planner: { type: 'string', description: `a planner of the registry: ${PLANNER_NAMES.join(', ')} (default: the parameter file's, else ${PLANNER_NAMES[0]}; with --prior, mppi)`, valueName: 'NAME' },
  duration: { type: 'string', description: 'simulated seconds (default 15)', valueName: 'SEC' },
  rate: { type: 'string', description: 'control rate in Hz (default 1/dt of the system)', valueName: 'HZ' },
  params: { type: 'string', description: 'ROS 2 parameter YAML (the files in launch/config)', valueName: 'FILE' },
  set: { ...SET_OPTION, description: 'override a parameter: controller keys bare, tsmc.KEY, mppi.KEY, model.KEY, sim.KEY' },
  x0: { type: 'string', description: 'initial physical state of the simulated plant (default: the system\'s x0); the same as --set sim.x0=a,b,...', valueName: 'a,b,...' },
  lockstep: { type: 'boolean', description: 'deterministic: the simulator waits for every plan; no deadlines' },
  seed: { type: 'string', description: 'random seed of planner (K) and simulator noise (K + 1); the same as --set seed=K (default 0)', valueName: 'K' },
  prior: { type: 'string', description: 'a learned prior (train-prior --out) guiding MPPI; the same as --set prior.path=DIR --planner mppi', valueName: 'DIR' },
};

export const runCommand: Command = {
  name: 'run',
  summary: 'Run the controller against the bundled simulator, embedded (no ROS): progress, summary, and an MCAP log, summary.json and a plot in --out.',
  usage: 'run --system NAME [--planner NAME] [--prior DIR] [--duration SEC] [--rate HZ] [--params FILE.yaml] [--set key=value] [--x0 a,b,...] [--seed K] [--lockstep] [--serve [--host H] [--port P] [--token T]] [--log-encoding protobuf|json] [--out DIR] [--json]',
  options: {
    ...RUN_OPTIONS,
    out: { type: 'string', description: 'output folder (default runs/TIMESTAMP)', valueName: 'DIR' },
    'log-encoding': { type: 'string', description: 'protobuf (default; schemas built from msgs/) or json (readable as text)', valueName: 'E' },
    serve: { type: 'boolean', description: 'live telemetry and tuning over HTTP during the run: /healthz, /status, /metrics (Prometheus), GET/PATCH /params' },
    host: { type: 'string', description: 'with --serve: address to listen on (default 127.0.0.1; beyond loopback a change needs the token)', valueName: 'H' },
    port: { type: 'string', description: 'with --serve: port (default 8765; 0 = any free one)', valueName: 'P' },
    token: { type: 'string', description: 'with --serve: the token a change must carry (Authorization: Bearer T); generated when listening beyond loopback', valueName: 'T' },
    json: JSON_OPTION,
  },
  interruptible: true,
  async run(values) {
    // everything the user gave is checked before anything starts (a planner thread, a server, a file)
    const { system, params, durationS, lockstep } = runOptions(values);
    const seed = params.controller.seed;
    // --serve, or the telemetryPort parameter (as the ROS node reads it)
    const serve = values.serve === true || params.controller.telemetryPort > 0;
    for (const flag of ['host', 'port', 'token']) if (!serve && values[flag] !== undefined) throw new InputError(`--${flag} needs --serve`);
    const port = optionalInteger(values, 'port', params.controller.telemetryPort || 8765, 0);
    if (port > 65535) throw new InputError(`--port must be 0..65535, got ${port}`);
    const token = stringOpt(values, 'token');
    if (token !== undefined && token.trim() === '') throw new InputError('--token must not be empty: a change would then need no token (leave --token out on loopback, or give one)');
    const encoding = stringOpt(values, 'log-encoding') ?? 'protobuf';
    if (encoding !== 'protobuf' && encoding !== 'json') throw new InputError(`--log-encoding must be protobuf or json, got '${encoding}'`);
    const out = outputFolder(values, '');
    const { session, sim } = await assemble(params, { lockstep });
    for (const note of session.notes) console.error(`warning: ${note}`);
    const topics = logTopics(session.codec.type, session.estimator !== undefined);
    let telemetry: Telemetry | undefined;
    const control = new SimControl();
    if (serve) {
      const served = await serveTelemetry(session, params.controller, topics, {
        host: stringOpt(values, 'host'), port, token, simulator: { control, stateNames: physicalNames(session.model) },
      });
      telemetry = served.telemetry;
      // stderr: --json keeps stdout for the result
      console.error(telemetryBanner(served.telemetry, served.address));
    }
    const log = await McapLog.create(join(out, 'run.mcap'), topics, encoding);
    const bar = progressBar(`${params.controller.planner} ${system}`, !values.json);
    // real time: logged at the wall clock (a stall shows in the log), published at the simulated time; lockstep: simulated time alone
    const wallS = () => (performance.timeOrigin + performance.now()) / 1000;
    // every message goes to the log, and live to any Foxglove client subscribed to its topic
    const emit = (topic: string, timeS: number, message: object, logTimeS: number | undefined) => {
      void log.write(topic, timeS, message, logTimeS);
      telemetry?.publish(topic, timeS, () => message);
    };
    const onTick = async (r: TickRecord, k: number, total: number) => {
      const at = lockstep ? undefined : wallS();
      // the simulator's channels, then the controller's (the channel table's order)
      if (r.stateMessage) emit(topicOf('state'), r.timeS, r.stateMessage, at);
      emit(topicOf('true_state'), r.timeS, session.codec.encode(r.state, r.timeS), at);
      const message = tickMessages(session, r.tick);
      for (const c of CHANNELS) {
        if (!c.build) continue;
        if (!c.logged) telemetry?.publish(topicOf(c.name), r.timeS, () => message(c)!);
        else {
          const m = message(c);
          if (m) emit(topicOf(c.name), r.timeS, m, at);
        }
      }
      telemetry?.observe(r.tick);
      bar.update((k + 1) / total, `t=${r.timeS.toFixed(1)}s ${r.tick.mode} ${r.tick.solveMs.toFixed(0)}ms${r.inGoal ? ' in goal' : ''}`);
    };
    let run;
    try {
      run = await runLoop(sim, session, { durationS, lockstep, onTick, control: serve ? control : undefined, signal: shutdown.signal });
    } finally {
      // an error or a signal still leaves a whole, readable log of everything up to it
      bar.done();
      await telemetry?.close();
      await log.close();
    }
    const { records, summary } = run;
    const interrupted = shutdown.received ?? null;
    const result = {
      success: summary.success,
      timeToGoalS: summary.timeToGoalS,
      firstInGoalS: summary.firstInGoalS,
      finalError: summary.finalError,
      solveMs: summary.solveMs,
      deadlineMisses: summary.deadlineMisses,
      commandJitterMs: summary.commandJitterMs,
      ticks: summary.ticks,
      interrupted,
      out,
    };
    writeFileSync(join(out, 'summary.json'), `${JSON.stringify({
      ...result, system, planner: params.controller.planner, seed, lockstep, summary, params,
      // what the run ended with, and when each live change took effect (simulated time)
      paramsAtEnd: session.parameterValues(), parameterChanges: session.parameterChanges, parameterChangeCount: session.parameterChangeCount,
    }, null, 1)}\n`);
    const model = session.model;
    writeFileSync(join(out, 'run.svg'), runChart(model, records, summary, `${system} / ${params.controller.planner}${lockstep ? ' (lockstep)' : ''}`, session.budgetMs, session.controller.currentReference));
    session.dispose();
    if (interrupted) console.error(`interrupted (${interrupted}) at t=${summary.ticks > 0 ? ((summary.ticks - 1) / session.rateHz).toFixed(2) : 0} s of ${durationS} s: the log, summary and plot hold everything up to it`);
    if (values.json) return printJson(result);
    const names = physicalNames(model);
    const final = toPhysical(model, [...session.controller.currentReference]);
    console.log(`${system} with ${params.controller.planner} at ${session.rateHz.toFixed(1)} Hz for ${durationS} s${lockstep ? ' (lockstep)' : ''}, seed ${seed}`);
    console.log(`  goal: ${summary.goal}  (reference ${names.map((n, i) => `${n}=${+final[i].toFixed(4)}`).join(', ')})`);
    console.log(`  ${outcomeLine(summary)}; final error ${summary.finalError.toFixed(4)}`);
    console.log(`  solve ms p50 ${summary.solveMs.p50.toFixed(1)}, p99 ${summary.solveMs.p99.toFixed(1)}, max ${summary.solveMs.max.toFixed(1)} (budget ${session.budgetMs.toFixed(1)}); deadline misses ${summary.deadlineMisses}/${summary.ticks}`);
    const j = summary.commandJitterMs;
    if (j) console.log(`  command-period jitter p50 ${j.p50.toFixed(2)} ms, p99 ${j.p99.toFixed(2)} ms, max ${j.max.toFixed(1)} ms (period ${(1000 * session.periodS).toFixed(1)} ms)`);
    const info = Object.entries(summary.plannerInfo).map(([k, v]) => `${k} ${+v.p50.toPrecision(3)} [${+v.min.toPrecision(3)}, ${+v.max.toPrecision(3)}]`);
    if (info.length) console.log(`  planner per tick, median [min, max]: ${info.join('; ')}`);
    if (summary.plannerErrors || summary.staleTicks || summary.rejectedStates) {
      console.log(`  planner errors ${summary.plannerErrors}, stale ticks ${summary.staleTicks}, rejected states ${summary.rejectedStates}`);
    }
    if (session.parameterChangeCount) console.log(`  live parameter changes: ${session.parameterChangeCount} (in summary.json: parameterChanges, paramsAtEnd)`);
    console.log(`  wrote ${join(out, 'run.mcap')} (Foxglove), ${join(out, 'summary.json')}, ${join(out, 'run.svg')}`);
  },
};

/** What happened with the goal, in words: reached and held, reached but not held long enough (and why), or never reached. */
export function outcomeLine(summary: RunSummary): string {
  if (summary.success) {
    return `SUCCESS: goal reached at ${summary.timeToGoalS!.toFixed(2)} s and held ${summary.holdS} s (in the goal ${(100 * summary.heldFraction!).toFixed(0)}% of the time after)`;
  }
  if (summary.firstInGoalS === null) return 'FAILED: goal never reached';
  return `FAILED: goal first reached at ${summary.firstInGoalS.toFixed(2)} s, but success needs it held ${summary.holdS} s`
    + ` (longest stay ${summary.longestStayS.toFixed(2)} s${summary.endedInGoal ? '; in the goal when the run ended: a longer --duration may succeed' : ''})`;
}

/**
 * The options `run` and `bench mpc` share: system, parameter file, --set,
 * --planner, --rate, --duration, --x0 and --lockstep, resolved into run parameters
 * (file < --set < dedicated flags).
 */
export function runOptions(values: Record<string, unknown>, maxDurationS = MAX_DURATION_S) {
  const system = requireString(values, 'system');
  const def = modelDefinition(system);
  // before anything starts (train-prior would otherwise report its networks' sizes); ControllerSession refuses it too, for the ROS node
  if (!def.sensor) throw new InputError(`system '${system}' has no state to measure, so it cannot run as a controller (it is for trajectory optimisation: solve, bench to)`);
  const flat: Record<string, unknown> = keyedRecord();
  const paramsPath = stringOpt(values, 'params');
  if (paramsPath) Object.assign(flat, readParamsFile(paramsPath));
  Object.assign(flat, parseOverrides(values.set as string[] | undefined));
  const seed = stringOpt(values, 'seed');
  if (seed !== undefined) flat.seed = new GivenText(seed);
  const planner = stringOpt(values, 'planner');
  if (planner !== undefined) flat.planner = planner;
  const prior = stringOpt(values, 'prior');
  if (prior !== undefined) {
    flat['prior.path'] = prior;
    // a prior given without a planner guides MPPI (PO-MPC); the planner's descriptor refuses settings it cannot use
    if (planner === undefined) flat.planner = 'mppi';
  }
  const rate = stringOpt(values, 'rate');
  if (rate !== undefined) flat.rateHz = parseNumber('--rate', rate);
  const durationText = stringOpt(values, 'duration');
  const durationS = durationText === undefined ? 15 : parseNumber('--duration', durationText);
  if (!(durationS > 0) || durationS > maxDurationS) throw new InputError(`--duration must be in (0, ${maxDurationS}] s, got ${durationText}${durationS > maxDurationS && maxDurationS === MAX_DURATION_S ? ' (longer runs: bench soak, or the ROS node)' : ''}`);
  const x0Text = stringOpt(values, 'x0');
  if (x0Text !== undefined) flat['sim.x0'] = parseVector('--x0', x0Text, def.stateNames.length);
  return { system, params: resolveRunParams(system, flat), durationS, lockstep: Boolean(values.lockstep) };
}
