import { readFileSync } from 'node:fs';
import { parseDocument, visit } from 'yaml';
import { GivenText, ParamEntry, ParamValue, rangeText, keyedRecord } from '../params.js';
import { InputError } from '../input-error.js';

/** Node names in ROS 2 parameter files (launch/ uses the same files). */
export const CONTROLLER_NODE = 'tempered_mpc_controller';
export const SIMULATOR_NODE = 'tempered_mpc_simulator';

/**
 * Parameters every ROS 2 node has, which a `ros2 param dump` lists with the
 * node's own: the embedded run has no use for them, so a dump still loads.
 */
const ROS_NODE_PARAMETERS = new Set(['use_sim_time', 'start_type_description_service']);
const ROS_NODE_PARAMETER_GROUPS = ['qos_overrides.'];

/**
 * Reads a ROS 2 parameter YAML (`<node>: ros__parameters: {...}`) into flat
 * keys: the controller's as they are (nested maps joined with '.'), the
 * simulator's under `sim.`. A node key names a node by its bare name, its
 * fully qualified name (`/tempered_mpc/tempered_mpc_controller`, as
 * `ros2 param dump` writes it) or a wildcard path ending in it
 * (`/**\/tempered_mpc_controller`); the embedded run has no namespace, so
 * only the key's last name counts, and `/**` or `/*` applies to both nodes.
 */
export function readParamsFile(path: string): Record<string, unknown> {
  return parseParamsText(readUserFile(`parameter file '${path}'`, path), path);
}

/** A file the user named, as text; one that cannot be read is refused in one line (`what`: cannot read (ENOENT)). */
export function readUserFile(what: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new InputError(`${what}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

/** The same, from the file's text; `path` names it in errors. */
export function parseParamsText(text: string, path: string): Record<string, unknown> {
  let doc: unknown;
  // problems are errors below; the parser's own warnings would only reach stderr
  const parsed = parseDocument(text.replace(/^\uFEFF/, ''), { logLevel: 'error' });
  if (parsed.errors.length) throw new InputError(`parameter file '${path}': malformed YAML (${parsed.errors[0].message.split('\n')[0]})`);
  // .nan, .inf and 1e999 keep their text, so a refusal names what the file says
  visit(parsed, {
    Scalar(_key, node) {
      if (typeof node.value === 'number' && !Number.isFinite(node.value)) node.value = new GivenText(node.source ?? String(node.value));
    },
  });
  try {
    doc = parsed.toJS({ maxAliasCount: 100 });
  } catch (e) {
    throw new InputError(`parameter file '${path}': malformed YAML (${(e as Error).message.split('\n')[0]})`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new InputError(`parameter file '${path}': expected a map of node names`);
  const out: Record<string, unknown> = keyedRecord();
  for (const [node, body] of Object.entries(doc as Record<string, unknown>)) {
    const name = node.split('/').at(-1)!;
    const params = (body as Record<string, unknown> | null)?.ros__parameters;
    if (params === undefined || typeof params !== 'object' || params === null || Array.isArray(params)) {
      throw new InputError(`parameter file '${path}': node '${node}' needs a 'ros__parameters' map`);
    }
    const prefix = name === SIMULATOR_NODE ? 'sim.' : name === CONTROLLER_NODE || name === '**' || name === '*' ? '' : undefined;
    if (prefix === undefined) throw new InputError(`parameter file '${path}': unknown node '${node}' (expected ${CONTROLLER_NODE} or ${SIMULATOR_NODE})`);
    flatten(params as Record<string, unknown>, prefix, out, path);
  }
  return out;
}

function flatten(obj: Record<string, unknown>, prefix: string, out: Record<string, unknown>, path: string, group = ''): void {
  for (const [k, v] of Object.entries(obj)) {
    const name = `${group}${k}`;
    if (ROS_NODE_PARAMETERS.has(name) || ROS_NODE_PARAMETER_GROUPS.some((g) => name.startsWith(g))) continue;
    if (v instanceof GivenText) out[`${prefix}${k}`] = v;
    else if (v !== null && typeof v === 'object' && !Array.isArray(v)) flatten(v as Record<string, unknown>, `${prefix}${k}.`, out, path, `${name}.`);
    else if (Array.isArray(v)) out[`${prefix}${k}`] = v;
    else if (typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean') out[`${prefix}${k}`] = v;
    else throw new InputError(`parameter file '${path}': '${prefix}${k}' has an unsupported value`);
  }
}

/** A value as ROS 2 types it in YAML: doubles keep a decimal point, so `10.0` stays a double. */
function yamlValue(entry: ParamEntry, v: ParamValue): string {
  if (Array.isArray(v)) return `[${v.map((x) => (typeof x === 'number' ? yamlNumber(x, false) : JSON.stringify(x))).join(', ')}]`;
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'boolean') return String(v);
  const d = entry.def;
  return yamlNumber(v as number, d.kind === 'number' && d.integer === true);
}

function yamlNumber(v: number, integer: boolean): string {
  if (integer) return String(v);
  const text = String(v);
  return /[.eE]/.test(text) ? (/e/.test(text) && !text.includes('.') ? text.replace('e', '.0e') : text) : `${text}.0`;
}

/**
 * A ROS 2 parameter file of one node with every parameter at its value,
 * grouped as the launch files write them (`tsmc: {...}`), each line
 * commented with its meaning and rule.
 */
export function nodeParameterYaml(node: string, t: { entries: readonly ParamEntry[]; values: Readonly<Record<string, ParamValue>> }): string[] {
  const lines = [`${node}:`, '  ros__parameters:'];
  let group = '';
  for (const e of t.entries) {
    const dot = e.key.indexOf('.');
    const g = dot < 0 ? '' : e.key.slice(0, dot);
    const name = dot < 0 ? e.key : e.key.slice(dot + 1);
    if (g !== group) {
      if (g) lines.push(`    ${g}:`);
      group = g;
    }
    const indent = g ? '      ' : '    ';
    lines.push(`${indent}${name}: ${yamlValue(e, t.values[e.key])}  # ${e.def.doc} | ${rangeText(e.def)}${e.readOnly ? ', read-only' : ''}`);
  }
  return lines;
}
