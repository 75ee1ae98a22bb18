import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * Reads the ROS interface definitions in msgs/ (the single source of truth
 * for every message) and turns them into JSON Schemas, so the MCAP logs of
 * the embedded runner carry exactly the fields the ROS node publishes.
 */

const MSGS_DIR = new URL('../../../msgs/', import.meta.url);

const PRIMITIVE: Record<string, object> = {
  bool: { type: 'boolean' },
  string: { type: 'string' },
  float32: { type: 'number' }, float64: { type: 'number' },
  int8: { type: 'integer' }, int16: { type: 'integer' }, int32: { type: 'integer' }, int64: { type: 'integer' },
  uint8: { type: 'integer', minimum: 0 }, uint16: { type: 'integer', minimum: 0 }, uint32: { type: 'integer', minimum: 0 }, uint64: { type: 'integer', minimum: 0 },
};

const TIME = { type: 'object', properties: { sec: { type: 'integer' }, nanosec: { type: 'integer', minimum: 0 } }, required: ['sec', 'nanosec'] };

export interface MsgField { type: string; name: string; array: boolean }

export function parseMsg(text: string, label = 'message'): MsgField[] {
  const fields: MsgField[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) return;
    const m = /^([A-Za-z0-9_/]+)(\[\])?\s+([a-z][a-z0-9_]*)$/.exec(line);
    if (!m) throw new Error(`${label}:${i + 1}: cannot parse '${raw.trim()}'`);
    const [, type, array, name] = m;
    if (!(type in PRIMITIVE) && type !== 'builtin_interfaces/Time') throw new Error(`${label}:${i + 1}: unsupported type '${type}'`);
    fields.push({ type, name, array: array !== undefined });
  });
  return fields;
}

export function msgJsonSchema(name: string): { fields: MsgField[]; schema: object } {
  const file = new URL(`${name}.msg`, MSGS_DIR);
  const fields = parseMsg(readFileSync(fileURLToPath(file), 'utf8'), `msgs/${name}.msg`);
  const properties: Record<string, object> = {};
  for (const f of fields) {
    const item = f.type === 'builtin_interfaces/Time' ? TIME : PRIMITIVE[f.type];
    properties[f.name] = f.array ? { type: 'array', items: item } : item;
  }
  return { fields, schema: { title: `tempered_mpc/msg/${name}`, type: 'object', properties, required: fields.map((f) => f.name) } };
}

export function stamp(timeS: number): { sec: number; nanosec: number } {
  const sec = Math.floor(timeS);
  return { sec, nanosec: Math.round((timeS - sec) * 1e9) };
}
