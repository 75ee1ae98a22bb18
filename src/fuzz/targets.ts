import fc from 'fast-check';
import { stringify } from 'yaml';
import { parseCommandArgs, UsageError } from '../cli/command.js';
import { parseControls } from '../cli/rollout.js';
import { runCommand, runOptions } from '../cli/run.js';
import { decodeCommand, toTime } from '../interfaces/messages.js';
import { modelDefinition } from '../models/index.js';
import { resolveModel } from '../models/model.js';
import { checkValue, ParamValue } from '../params.js';
import { parseParamsText } from '../run/params-file.js';
import { ControllerSession } from '../run/session.js';
import { resolveRunParams } from '../run/setup.js';
import { Telemetry } from '../telemetry/server.js';

/**
 * Property-based fuzzing of every surface where input reaches the
 * controller: state and goal messages, live parameter sets, parameter
 * files, command-line arguments, controls files and the simulator's
 * commands. The property everywhere: no crash (only the surface's own,
 * worded refusal), never a non-finite or out-of-limit command, and a reason
 * that names the problem. `npm test` runs a few hundred seeded cases per
 * target; `tempered-mpc bench fuzz` runs 10,000+.
 */

export interface FuzzReport {
  target: string;
  runs: number;
  failed: boolean;
  /** the smallest failing input found, as JSON-ish text */
  counterexample?: string;
  error?: string;
  /** how much of the input reached the deep end (e.g. ticks that planned) */
  note?: string;
  wallS: number;
}

export interface FuzzTarget {
  name: string;
  doc: string;
  run(numRuns: number, seed: number): Promise<FuzzReport>;
}

/** Numbers a careless or hostile sender produces. */
const nastyNumber = fc.oneof(
  fc.double(),
  fc.constantFrom(NaN, Infinity, -Infinity, 0, -0, 1e308, -1e308, 5e-324, 2 ** 31, 2 ** 53 + 1),
  fc.integer(),
);
const nastyValue = fc.oneof(nastyNumber, fc.string(), fc.boolean(), fc.constant(null), fc.bigInt(), fc.array(nastyNumber, { maxLength: 4 }), fc.jsonValue());
const nastyArray = fc.oneof(
  fc.array(nastyNumber, { maxLength: 5 }),
  fc.float64Array({ maxLength: 5 }),
  fc.array(nastyValue, { maxLength: 3 }),
  nastyValue,
);
const stamp = fc.oneof(
  fc.record({ sec: fc.integer({ min: -1, max: 5 }), nanosec: fc.integer({ min: -1, max: 2e9 }) }),
  fc.record({ sec: nastyValue, nanosec: nastyValue }),
  nastyValue,
);
const jointNames = fc.oneof(fc.constant(['theta']), fc.array(fc.constantFrom('theta', 'phi', 'q1', '', 'Theta'), { maxLength: 3 }), nastyValue);
/** JointState-shaped messages, mostly almost right: the interesting failures are near the valid ones. */
const jointState = fc.oneof(
  // well-formed, with extreme values: these reach the planner
  fc.record({
    header: fc.record({ stamp, frame_id: fc.string() }),
    name: fc.constant(['theta']),
    position: fc.array(nastyNumber, { minLength: 1, maxLength: 1 }),
    velocity: fc.array(nastyNumber, { minLength: 1, maxLength: 1 }),
    effort: fc.constant([]),
  }),
  fc.record({
    header: fc.oneof(fc.record({ stamp, frame_id: fc.string() }), nastyValue),
    name: jointNames,
    position: nastyArray,
    velocity: nastyArray,
    effort: nastyArray,
  }, { requiredKeys: [] }),
  nastyValue,
);

async function check<T>(name: string, arbitrary: fc.Arbitrary<T>, numRuns: number, seed: number, property: (x: T) => Promise<void> | void): Promise<FuzzReport> {
  const start = performance.now();
  const details = await fc.check(fc.asyncProperty(arbitrary, async (x) => {
    await property(x);
  }), { numRuns, seed });
  return {
    target: name,
    runs: details.numRuns,
    failed: details.failed,
    ...(details.failed ? { counterexample: fc.stringify(details.counterexample), error: String((details.errorInstance as Error | undefined)?.message ?? details.errorInstance) } : {}),
    wallS: (performance.now() - start) / 1000,
  };
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function fail(why: string): never {
  throw new Error(why);
}

/** Runs `use` on a small, fast controller to throw input at (what matters is the path, not the plan), then releases it. */
async function withSmallSession<T>(use: (session: ControllerSession) => Promise<T>): Promise<T> {
  const session = await ControllerSession.create(resolveRunParams('pendulum', { planner: 'mppi', threads: 1, 'mppi.samples': 16, 'mppi.iterations': 1, 'model.horizon': 5 }), { lockstep: true });
  try {
    return await use(session);
  } finally {
    session.dispose();
  }
}

function commandIsSafe(session: ControllerSession, control: readonly number[]): void {
  const { lower, upper } = session.model.controlLimits;
  if (control.length !== session.model.controlDim) fail(`command has ${control.length} values`);
  control.forEach((u, j) => {
    if (!Number.isFinite(u) || u < lower[j] || u > upper[j]) fail(`command[${j}] = ${u} is not finite and within [${lower[j]}, ${upper[j]}]`);
  });
}

const messageTarget = (kind: 'state' | 'goal'): FuzzTarget => ({
  name: kind,
  doc: `${kind} messages (sensor_msgs/JointState shapes): refused with a reason or taken; the next command is finite and within limits`,
  run: (numRuns, seed) => withSmallSession(async (session) => {
    let t = 0;
    let planned = 0;
    // half the messages carry a fresh stamp, so the nasty contents get past the stamp check
    const report = await check(kind, fc.tuple(jointState, fc.boolean()), numRuns, seed, async ([generated, fresh]) => {
      t += session.periodS;
      const msg = fresh && isObject(generated) && isObject(generated.header) ? { ...generated, header: { ...generated.header, stamp: toTime(t) } } : generated;
      // goals are fuzzed against a controller that has a good state, so it plans towards them
      if (kind === 'goal') session.onStateMessage(session.codec.encode([0.1, 0], t), t);
      const reason = kind === 'state' ? session.onStateMessage(msg, t) : session.onGoalMessage(msg);
      if (reason !== undefined && (typeof reason !== 'string' || !reason.startsWith(kind))) fail(`refusal ${JSON.stringify(reason)} does not name the ${kind}`);
      const tick = await session.tick(t);
      if (tick.mode === 'ok' || tick.mode === 'fallback') planned++;
      commandIsSafe(session, tick.control);
    });
    return { ...report, note: `${planned} ticks planned` };
  }),
});

const parameterTarget: FuzzTarget = {
  name: 'parameters',
  doc: 'live parameter sets (ROS parameter callback, HTTP PATCH): all or nothing, one reason per bad key, accepted values inside their schema',
  run: (numRuns, seed) => withSmallSession(async (session) => {
    const keys = session.live.list.map((e) => e.key);
    const key = fc.oneof(fc.constantFrom(...keys), fc.constantFrom('mppi.sample', 'TSMC.particles', '', 'model.', '__proto__', 'constructor'), fc.string());
    const changes = fc.dictionary(key, nastyValue, { maxKeys: 4 });
    return check('parameters', changes, numRuns, seed, async (set) => {
      const before = JSON.stringify(session.parameterValues());
      const r = session.requestParameters(set);
      if (r.ok) {
        for (const [k, v] of Object.entries(r.applied)) checkValue(k, session.live.entry(k)!.def, v);
        // what a tick boundary takes is exactly what was accepted (planning with huge valid budgets is not the point here)
        const taken = session.live.takePending() ?? {};
        if (JSON.stringify(taken) !== JSON.stringify(Object.keys(r.applied).length ? r.applied : {})) fail('the tick boundary took other values than were accepted');
      } else {
        if (JSON.stringify(session.parameterValues()) !== before) fail('a refused set changed values');
        for (const [k, why] of Object.entries(r.reasons)) if (!why) fail(`empty reason for ${k}`);
      }
    });
  }),
};

const httpPatchTarget: FuzzTarget = {
  name: 'http-patch',
  doc: 'PATCH /params bodies through the telemetry server\'s routes (JSON of any shape, garbled text): 200 with the applied set or 400 with a worded reason; a 400 changes nothing; never a 5xx',
  run: (numRuns, seed) => withSmallSession(async (session) => {
    const telemetry = new Telemetry(session);
    try {
      const keys = session.live.list.map((e) => e.key);
      const key = fc.oneof(fc.constantFrom(...keys), fc.constantFrom('__proto__', 'constructor', ''), fc.string());
      const body = fc.oneof(
        // JSON has no BigInt: a big integer reaches the server as a number literal
        fc.dictionary(key, nastyValue, { maxKeys: 4 }).map((d) => JSON.stringify(d, (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v))),
        fc.jsonValue().map((v) => JSON.stringify(v)),
        fc.string(),
        fc.constantFrom('{"budgetMs": ', 'null', '[]', '{"mppi.temperature": NaN}', '{"a":1e999}'),
      );
      return await check('http-patch', body, numRuns, seed, async (payload) => {
        const before = JSON.stringify(session.parameterValues());
        const r = await telemetry.app.inject({ method: 'PATCH', url: '/params', payload, headers: { 'content-type': 'application/json' } });
        if (r.statusCode >= 500) fail(`${r.statusCode} for ${payload}: ${r.body}`);
        if (r.statusCode === 200) {
          const applied = (r.json() as { applied: Record<string, ParamValue> }).applied;
          for (const [k, v] of Object.entries(applied)) checkValue(k, session.live.entry(k)!.def, v);
          session.live.takePending();
          return;
        }
        if (r.statusCode !== 400) fail(`unexpected ${r.statusCode} for ${payload}`);
        const answer = r.json() as { error?: string; message?: string };
        if (!answer.error && !answer.message) fail(`a 400 without a reason for ${payload}`);
        if (JSON.stringify(session.parameterValues()) !== before) fail('a refused PATCH changed values');
      });
    } finally {
      await telemetry.close();
    }
  }),
};

const yamlTarget: FuzzTarget = {
  name: 'params-file',
  doc: 'ROS 2 parameter files (random YAML text and random documents): resolved, or refused with a worded error',
  async run(numRuns, seed) {
    const section = fc.dictionary(fc.oneof(fc.constantFrom('rateHz', 'planner', 'tsmc', 'mppi', 'model', 'threads', 'substeps', 'x0', 'jointNames'), fc.string()),
      fc.oneof(nastyValue, fc.dictionary(fc.string(), nastyValue, { maxKeys: 3 })), { maxKeys: 4 });
    const doc = fc.oneof(
      fc.record({ tempered_mpc_controller: fc.record({ ros__parameters: section }), tempered_mpc_simulator: fc.oneof(fc.record({ ros__parameters: section }), nastyValue) }, { requiredKeys: [] }),
      fc.dictionary(fc.string(), nastyValue, { maxKeys: 3 }),
    ).map((d) => stringify(d));
    const text = fc.oneof(doc, fc.string(), fc.constantFrom('a: [1, 2', ': :', '---\n- 1\n', '\t\u0000', 'tempered_mpc_controller:\n  ros__parameters: 3\n'));
    return check('params-file', text, numRuns, seed, (yamlText) => {
      try {
        resolveRunParams('pendulum', parseParamsText(yamlText, 'fuzz.yaml'));
      } catch (e) {
        if (!(e instanceof Error) || e.constructor !== Error || !e.message) fail(`not a worded refusal: ${String(e)}`);
      }
    });
  },
};

const cliTarget: FuzzTarget = {
  name: 'cli',
  doc: '`run` arguments: parsed into run parameters, or a usage error (exit 2) with one line',
  async run(numRuns, seed) {
    const word = fc.oneof(
      fc.constantFrom('--system', 'pendulum', 'acrobot', 'shekel', '--set', '--x0', '--rate', '--duration', '--planner', 'tsmc', 'mppi', '--seed', '--lockstep', '--params', '-h'),
      fc.tuple(fc.constantFrom('rateHz', 'tsmc.particles', 'sim.x0', 'model.horizon', 'threads', 'mppi.samples', 'sim.substeps', 'foo.bar', 'seed'), fc.oneof(fc.string(), nastyNumber.map(String)))
        .map(([k, v]) => `${k}=${v}`),
      nastyNumber.map(String),
      fc.string(),
    );
    return check('cli', fc.array(word, { maxLength: 8 }), numRuns, seed, (argv) => {
      try {
        const { values } = parseCommandArgs(runCommand, ['--system', 'pendulum', ...argv.filter((a) => a !== '--params' && a !== '-h')]);
        if (values.help) return;
        runOptions(values);
      } catch (e) {
        if (!(e instanceof UsageError) || !e.message || e.message.includes('\n')) fail(`not a one-line usage error: ${String(e)}`);
      }
    });
  },
};

const controlsTarget: FuzzTarget = {
  name: 'controls-file',
  doc: '`rollout --controls` files: a T x m array of finite numbers, or a usage error naming the row and entry',
  async run(numRuns, seed) {
    const model = resolveModel(modelDefinition('acrobot'), { horizon: 3 });
    // what JSON can carry: numbers (NaN and infinities become null), text, nesting
    const entry = fc.oneof(fc.double(), fc.integer(), fc.constantFrom(1e308, -0), fc.string(), fc.constant(null), fc.boolean());
    const row = fc.oneof(fc.array(entry, { maxLength: 3 }), entry);
    const text = fc.oneof(fc.array(row, { maxLength: 4 }).map((v) => JSON.stringify(v)), fc.jsonValue().map((v) => JSON.stringify(v)), fc.string());
    return check('controls-file', text, numRuns, seed, (json) => {
      try {
        const u = parseControls(json, model, 'fuzz');
        if (u.length !== 3 || !u.every(Number.isFinite)) fail('accepted a wrong controls array');
      } catch (e) {
        if (!(e instanceof UsageError) || !e.message.startsWith('fuzz')) fail(`not a usage error naming the file: ${String(e)}`);
      }
    });
  },
};

const commandTarget: FuzzTarget = {
  name: 'sim-command',
  doc: 'the simulator\'s command input (std_msgs/Float64MultiArray shapes): taken only as finite numbers of the right size',
  async run(numRuns, seed) {
    const model = resolveModel(modelDefinition('pendulum'));
    const msg = fc.oneof(fc.record({ layout: nastyValue, data: nastyArray }, { requiredKeys: [] }), nastyValue);
    return check('sim-command', msg, numRuns, seed, (m) => {
      const d = decodeCommand(model, m);
      if (d.ok && (d.control.length !== 1 || !d.control.every(Number.isFinite))) fail('accepted a bad command');
      if (!d.ok && !d.reason.startsWith('command')) fail(`reason ${d.reason} does not name the command`);
    });
  },
};

export const FUZZ_TARGETS: readonly FuzzTarget[] = [messageTarget('state'), messageTarget('goal'), parameterTarget, httpPatchTarget, yamlTarget, cliTarget, controlsTarget, commandTarget];
