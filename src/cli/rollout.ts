import { readFileSync } from 'node:fs';
import { keyedRecord } from '../params.js';
import { createBackend, parseBackend } from '../kernels/index.js';
import { modelDefinition } from '../models/index.js';
import { Model, readout, resolveModel } from '../models/model.js';
import { rows } from '../arrays.js';
import { Rng } from '../random.js';
import { Command, JSON_OPTION, parseInteger, parseOverrides, parseVector, printJson, requireString, stringOpt, table } from './command.js';
import { InputError } from '../input-error.js';

export const SYSTEM_OPTION = { type: 'string', description: 'a built-in system (see tempered-mpc systems), or a model of your own: a module (.js, .mjs) or a URDF (.urdf, its task YAML beside it); docs/your-robot.md', valueName: 'NAME' } as const;
export const BACKEND_OPTION = { type: 'string', description: 'cpu (f64, all cores) or webgpu (f32); default cpu', valueName: 'cpu|webgpu' } as const;
export const SET_OPTION = { type: 'string', description: 'override a documented parameter', multiple: true, valueName: 'key=value' } as const;

/** Resolves --system and --set into a model, turning lookup errors into usage errors. */
export function modelFromOptions(values: Record<string, unknown>, extraKeys: ReadonlySet<string> = new Set()): { model: Model; rest: Record<string, unknown> } {
  const overrides = parseOverrides(values.set as string[] | undefined);
  const modelOverrides: Record<string, unknown> = keyedRecord();
  const rest: Record<string, unknown> = keyedRecord();
  // model keys bare (horizon) or as `run` names them (model.horizon)
  for (const [k, v] of Object.entries(overrides)) {
    if (extraKeys.has(k)) rest[k] = v;
    else modelOverrides[k.startsWith('model.') ? k.slice('model.'.length) : k] = v;
  }
  return { model: resolveModel(modelDefinition(requireString(values, 'system')), modelOverrides), rest };
}

export function backendFromOptions(values: Record<string, unknown>) {
  return parseBackend(stringOpt(values, 'backend') ?? 'cpu');
}

/** Parses a JSON array of T rows of m finite numbers, naming the first problem found. */
export function parseControls(text: string, model: Model, source: string): Float64Array {
  let data: unknown;
  // a byte-order mark (some editors write one) is not part of the JSON
  text = text.replace(/^\uFEFF/, '');
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new InputError(`${source}: malformed JSON (${(e as Error).message})`);
  }
  const { horizon: T, controlDim: m } = model;
  if (!Array.isArray(data)) throw new InputError(`${source}: expected a JSON array of ${T} rows of ${m} numbers`);
  if (data.length !== T) throw new InputError(`${source}: has ${data.length} rows, expected ${T} (the horizon of ${model.name})`);
  const out = new Float64Array(T * m);
  data.forEach((row: unknown, t) => {
    const values = typeof row === 'number' && m === 1 ? [row] : row;
    if (!Array.isArray(values) || values.length !== m) throw new InputError(`${source}: row ${t} must hold ${m} numbers`);
    values.forEach((v: unknown, j) => {
      if (typeof v !== 'number') throw new InputError(`${source}: row ${t} entry ${j} is not a finite number (${JSON.stringify(v)})`);
      if (!Number.isFinite(v)) throw new InputError(`${source}: row ${t} entry ${j} is not a finite number (${overflowingLiteral(text) ?? v} overflows a double)`);
      out[t * m + j] = v;
    });
  });
  return out;
}

/** The first number literal in a JSON text too large for a double (1e999), as written. */
function overflowingLiteral(text: string): string | undefined {
  return text.match(/-?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?/g)?.find((t) => !Number.isFinite(Number(t)));
}

function readControls(spec: string, model: Model): Float64Array {
  const source = spec === '-' ? 'controls from stdin' : `controls file '${spec}'`;
  let text: string;
  try {
    text = readFileSync(spec === '-' ? 0 : spec, 'utf8');
  } catch (e) {
    throw new InputError(`${source}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return parseControls(text, model, source);
}

export const rolloutCommand: Command = {
  name: 'rollout',
  summary: 'Roll one control sequence through a system: states, total cost and the exact gradient of the cost with respect to every control.',
  usage: 'rollout --system NAME [--x0 a,b,...] [--controls FILE|-] [--backend cpu|webgpu] [--seed K] [--set key=value] [--json]',
  options: {
    system: SYSTEM_OPTION,
    x0: { type: 'string', description: 'initial state, comma-separated (default: the system\'s x0)', valueName: 'a,b,...' },
    controls: { type: 'string', description: 'JSON array of T rows of m numbers, or - for stdin (default: zeros)', valueName: 'FILE|-' },
    backend: BACKEND_OPTION,
    seed: { type: 'string', description: 'sample Gumbel edge noise with this seed (pusher-slider); default deterministic', valueName: 'K' },
    set: SET_OPTION,
    json: JSON_OPTION,
  },
  async run(values) {
    const { model } = modelFromOptions(values);
    const backendKind = backendFromOptions(values);
    const x0Text = stringOpt(values, 'x0');
    const x0 = x0Text === undefined ? [...model.x0] : parseVector('--x0', x0Text, model.stateDim);
    const controlsSpec = stringOpt(values, 'controls');
    const controls = controlsSpec === undefined ? new Float64Array(model.horizon * model.controlDim) : readControls(controlsSpec, model);
    const seedText = stringOpt(values, 'seed');
    let noise: Float64Array | undefined;
    if (seedText !== undefined) {
      const seed = parseInteger('--seed', seedText, 0);
      if (model.noiseDim === 0) throw new InputError(`system '${model.name}' has no stochastic inputs; --seed does not apply`);
      const rng = new Rng(seed);
      noise = new Float64Array(model.horizon * model.noiseDim).map(() => rng.gumbel());
    }
    const backend = await createBackend(model, backendKind);
    const req = { controls, x0, noise };
    const [{ cost, grad }, { states }] = [await backend.costGrad(req), await backend.trajectories(req)];
    const result = {
      system: model.name,
      backend: backendKind,
      states: rows(states, model.stateDim),
      controls: rows(controls, model.controlDim),
      cost: cost[0],
      grad: rows(grad, model.controlDim),
    };
    if (values.json) return printJson(result);
    const readouts = result.states.map((x) => readout(model, x));
    const names = Object.keys(readouts[0] ?? {});
    console.log(`${model.name} on ${backendKind}: cost J = ${cost[0]}`);
    console.log(table(result.states.map((_, t) => [
      t, +(t * model.dtS).toFixed(6), ...names.map((k) => readouts[t][k]),
      ...(t < model.horizon ? [...result.controls[t], ...result.grad[t]] : []),
    ]), ['t', 'time[s]', ...names, ...model.def.controlNames, ...model.def.controlNames.map((c) => `dJ/d${c}`)]));
  },
};
