import fc from 'fast-check';
import { stringify } from 'yaml';
import { parseCommandArgs } from '../cli/command.js';
import { parseControls } from '../cli/rollout.js';
import { runCommand, runOptions } from '../cli/run.js';
import { decodeCommand, toTime } from '../interfaces/messages.js';
import { modelDefinition } from '../models/index.js';
import { resolveModel } from '../models/model.js';
import { checkValue, ParamValue } from '../params.js';
import { parseParamsText } from '../run/params-file.js';
import { ControllerSession } from '../run/session.js';
import { resolveRunParams } from '../run/setup.js';
import { InputError } from '../input-error.js';
import { SimControl } from '../run/loop.js';
import { CLIENT_FRAME_LIMIT_BYTES, CLIENT_MESSAGE_ENTRIES_LIMIT, SUBPROTOCOLS } from '../telemetry/foxglove-live.js';
import { Telemetry } from '../telemetry/server.js';
import { topicOf } from '../telemetry/channels.js';
import { TYPES } from '../interfaces/definitions.js';
import { WebSocket } from 'ws';

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
    // clipped: a counterexample near a 64 kB cap would fill the screen
    ...(details.failed ? { counterexample: clipText(fc.stringify(details.counterexample)), error: clipText(String((details.errorInstance as Error | undefined)?.message ?? details.errorInstance)) } : {}),
    wallS: (performance.now() - start) / 1000,
  };
}

const clipText = (text: string) => (text.length > 600 ? `${text.slice(0, 300)} ...(${text.length} characters)... ${text.slice(-200)}` : text);

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
        // bad input from a file is the user's: an InputError (exit 2) with its reason
        if (!(e instanceof InputError) || !e.message) fail(`not a worded refusal of input: ${String(e)}`);
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
        if (!(e instanceof InputError) || !e.message || e.message.includes('\n')) fail(`not a one-line usage error: ${String(e)}`);
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
        if (!(e instanceof InputError) || !e.message.startsWith('fuzz')) fail(`not a usage error naming the file: ${String(e)}`);
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

/**
 * The longest a telemetry request or WebSocket message may hold the command
 * thread once warm (the first of each kind pays for compiling its code):
 * 20% of the pendulum's 100 ms command period, the jitter a real-time run
 * with clients must stay within.
 */
export const COMMAND_THREAD_LAG_LIMIT_MS = 20;

/** Text of about `bytes` bytes: sizes up to (and just past) the caps are where bounds break. */
const sized = (bytes: number) => 'k'.repeat(Math.max(0, bytes));
const hugeSize = fc.constantFrom(100, 1000, 10_000, 60_000, CLIENT_FRAME_LIMIT_BYTES - 20, CLIENT_FRAME_LIMIT_BYTES + 10);

const telemetryTarget: FuzzTarget = {
  name: 'telemetry',
  doc: `the telemetry server's routes (PATCH /params, POST /sim/ACTION) with bodies up to and past the 64 kB cap, huge keys, foreign origins: a worded 4xx or the change; never a 5xx; a cross-origin change is refused; no request takes ${COMMAND_THREAD_LAG_LIMIT_MS} ms or more on the command thread (the framework's parsing included)`,
  run: (numRuns, seed) => withSmallSession(async (session) => {
    const control = new SimControl();
    const telemetry = new Telemetry(session, { simulator: { control, stateNames: ['theta', 'omega'] } });
    let longestMs = 0;
    try {
      const keys = session.live.list.map((e) => e.key);
      const key = fc.oneof(fc.constantFrom(...keys), fc.constantFrom('__proto__', 'constructor', ''), fc.string(), hugeSize.map(sized));
      const body = fc.oneof(
        fc.dictionary(key, nastyValue, { maxKeys: 4 }).map((d) => JSON.stringify(d, (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v))),
        fc.tuple(hugeSize, fc.integer({ min: 1, max: 3000 })).map(([size, n]) => JSON.stringify(Object.fromEntries(Array.from({ length: n }, (_, i) => [`${sized(size / n)}${i}`, i])))),
        fc.record({ state: nastyValue, size: nastyValue }, { requiredKeys: [] }).map((d) => JSON.stringify(d, (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v))),
        fc.string(),
      );
      const request = fc.record({
        route: fc.constantFrom('PATCH /params', 'POST /sim/pause', 'POST /sim/resume', 'POST /sim/push', 'POST /sim/reset', 'POST /sim/nope'),
        payload: body,
        origin: fc.constantFrom(undefined, 'http://evil.example', 'http://localhost:80', 'null'),
      });
      // warm: the first request of each route compiles its code
      for (const url of ['/params', '/sim/pause', '/sim/push', '/sim/resume']) await telemetry.app.inject({ method: url === '/params' ? 'PATCH' : 'POST', url, payload: '{}', headers: { 'content-type': 'application/json' } });
      const report = await check('telemetry', request, numRuns, seed, async ({ route, payload, origin }) => {
        const [method, url] = route.split(' ') as ['PATCH' | 'POST', string];
        const before = JSON.stringify(session.parameterValues());
        const pausedBefore = control.paused;
        const send = async () => {
          const start = performance.now();
          const answer = await telemetry.app.inject({ method, url, payload, headers: { 'content-type': 'application/json', ...(origin ? { origin } : {}) } });
          return { answer, ms: performance.now() - start };
        };
        let { answer: r, ms } = await send();
        // a collection can land in any request: a slow one is sent twice more, and the fastest of the three counts
        for (let again = 0; again < 2 && ms >= COMMAND_THREAD_LAG_LIMIT_MS; again++) {
          session.live.takePending();
          const retry = await send();
          ms = Math.min(ms, retry.ms);
          r = retry.answer;
        }
        longestMs = Math.max(longestMs, ms);
        if (ms >= COMMAND_THREAD_LAG_LIMIT_MS) fail(`${route} with ${payload.length} bytes held the thread ${ms.toFixed(1)} ms`);
        if (r.statusCode >= 500) fail(`${r.statusCode} for ${route}: ${r.body.slice(0, 200)}`);
        if (origin === 'http://evil.example' || origin === 'null') {
          if (r.statusCode !== 403) fail(`a cross-origin ${route} from ${origin} got ${r.statusCode}`);
          if (control.paused !== pausedBefore) fail('a cross-origin request changed the simulator');
        }
        if (r.statusCode >= 400) {
          const answer = r.json() as { error?: string; message?: string };
          if (!answer.error && !answer.message) fail(`a ${r.statusCode} without a reason`);
          if (JSON.stringify(session.parameterValues()) !== before) fail('a refused request changed values');
        }
        session.live.takePending();
        control.resume();
      });
      // inject's time includes the framework's own; the route's share is bounded by it
      return { ...report, note: `longest request ${longestMs.toFixed(1)} ms (in-process, the whole framework included)` };
    } finally {
      await telemetry.close();
    }
  }),
};

/** One message a Foxglove client might send: valid operations with any count of entries, wrong shapes, garbage, sizes up to the cap. */
const wsMessage = fc.oneof(
  fc.tuple(fc.constantFrom(1, 5, CLIENT_MESSAGE_ENTRIES_LIMIT, CLIENT_MESSAGE_ENTRIES_LIMIT + 1, 3000), fc.integer({ min: 0, max: 20 }))
    .map(([n, channel]) => JSON.stringify({ op: 'subscribe', subscriptions: Array.from({ length: n }, (_, i) => ({ id: i, channelId: channel + (i % 3) })) })),
  fc.integer({ min: 1, max: 3000 }).map((n) => JSON.stringify({ op: 'unsubscribe', subscriptionIds: Array.from({ length: n }, (_, i) => i) })),
  fc.tuple(fc.array(fc.oneof(fc.constantFrom('mppi.samples', 'budgetMs', 'constructor', '__proto__'), fc.string()), { maxLength: 5 }), fc.integer({ min: 0, max: 2000 }))
    .map(([names, extra]) => JSON.stringify({ op: 'getParameters', id: 'g', parameterNames: [...names, ...Array.from({ length: extra }, (_, i) => `p${i}`)] })),
  fc.array(fc.record({ name: fc.oneof(fc.constantFrom('mppi.temperature', 'mppi.samples', 'budgetMs', 'rateHz', '__proto__'), fc.string(), hugeSize.map(sized)), value: nastyValue }), { maxLength: 4 })
    .map((parameters) => JSON.stringify({ op: 'setParameters', id: 's', parameters }, (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v))),
  hugeSize.map((n) => JSON.stringify({ op: 'subscribeParameterUpdates', parameterNames: [sized(n - 60)] })),
  fc.jsonValue().map((v) => JSON.stringify(v)),
  fc.string(),
  hugeSize.map(sized),
);

const websocketTarget: FuzzTarget = {
  name: 'websocket',
  doc: `Foxglove WebSocket messages over a real socket (subscriptions and parameter lists of any length, frames up to and past the 64 kB cap, garbage): a status or an answer, never a crash; the server keeps serving; no message holds the command thread ${COMMAND_THREAD_LAG_LIMIT_MS} ms or more`,
  run: (numRuns, seed) => withSmallSession(async (session) => {
    const telemetry = new Telemetry(session, { port: 0, topics: { [topicOf('command')]: TYPES.command } });
    const address = (await telemetry.listen()).replace(/^http/, 'ws');
    let ws: WebSocket | undefined;
    const connect = () => new Promise<WebSocket>((resolve, reject) => {
      const socket = new WebSocket(address, [SUBPROTOCOLS[0]]);
      socket.once('open', () => resolve(socket));
      socket.once('error', reject);
    });
    // a getParameters round trip: the server has handled everything sent before it
    const sync = (socket: WebSocket) => new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the server stopped answering')), 5000);
      // a frame past the cap closes the connection: no answer will come on it
      const onClose = () => {
        clearTimeout(timer);
        socket.off('message', onMessage);
        reject(new Error('closed'));
      };
      const onMessage = (data: unknown) => {
        const text = String(data);
        if (text.includes('"parameterValues"') && text.includes('"id":"sync"')) {
          clearTimeout(timer);
          socket.off('message', onMessage);
          socket.off('close', onClose);
          resolve();
        }
      };
      socket.once('close', onClose);
      socket.on('message', onMessage);
      socket.send(JSON.stringify({ op: 'getParameters', id: 'sync', parameterNames: ['budgetMs'] }));
    });
    try {
      // warm: each operation once, then the longest time counts from here
      ws = await connect();
      for (const op of ['subscribe', 'unsubscribe', 'setParameters', 'bogus']) ws.send(JSON.stringify({ op, subscriptions: [{ id: 99, channelId: 0 }], subscriptionIds: [99], parameters: [], id: 'w' }));
      await sync(ws);
      telemetry.foxglove.longestMessageMs = 0;
      let longestMs = 0;
      const report = await check('websocket', fc.array(wsMessage, { minLength: 1, maxLength: 3 }), numRuns, seed, async (messages) => {
        const sendAll = async () => {
          telemetry.foxglove.longestMessageMs = 0;
          for (const text of messages) {
            if (!ws || ws.readyState !== WebSocket.OPEN) ws = await connect();
            ws.send(text);
          }
          // a frame past the cap closes that connection (1009): the server goes on with the next
          if (ws!.readyState !== WebSocket.OPEN) ws = await connect();
          try {
            await sync(ws!);
          } catch (e) {
            if ((e as Error).message !== 'closed') throw e;
            ws = await connect();
            await sync(ws);
          }
          session.live.takePending();
          return telemetry.foxglove.longestMessageMs;
        };
        let ms = await sendAll();
        // a collection can land in any message: slow messages are sent twice more, and the fastest of the three counts
        for (let again = 0; again < 2 && ms >= COMMAND_THREAD_LAG_LIMIT_MS; again++) ms = Math.min(ms, await sendAll());
        longestMs = Math.max(longestMs, ms);
        if (ms >= COMMAND_THREAD_LAG_LIMIT_MS) fail(`a message held the command thread ${ms.toFixed(1)} ms`);
      });
      return { ...report, note: `longest message ${longestMs.toFixed(2)} ms on the command thread` };
    } finally {
      ws?.terminate();
      await telemetry.close();
    }
  }),
};

export const FUZZ_TARGETS: readonly FuzzTarget[] = [
  messageTarget('state'), messageTarget('goal'), parameterTarget, httpPatchTarget, telemetryTarget, websocketTarget, yamlTarget, cliTarget, controlsTarget, commandTarget,
];
