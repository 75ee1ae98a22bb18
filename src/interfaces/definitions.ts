import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { MessageDefinition, MessageDefinitionField } from '@foxglove/message-definition';
import { parse } from '@foxglove/rosmsg';
import { ros2jazzy } from '@foxglove/rosmsg-msgs-common';

/**
 * Message definitions, one source of truth: this project's own messages are
 * read from msgs/msg/*.msg (the ROS 2 interface package tempered_mpc_msgs)
 * with a ROS 2 message parser; the standard ones (sensor_msgs, std_msgs,
 * geometry_msgs, rosgraph_msgs) come from the Jazzy definitions. The MCAP
 * log's schemas, the CDR wire format in tests and the ROS door all use them.
 */

export const MSG_PACKAGE = 'tempered_mpc_msgs';
const MSG_DIR = fileURLToPath(new URL('../../../msgs/msg/', import.meta.url));

/** Type names as ROS 2 writes them: `pkg/msg/Name`. */
export const TYPES = {
  plan: `${MSG_PACKAGE}/msg/Plan`,
  status: `${MSG_PACKAGE}/msg/PlannerStatus`,
  estimate: `${MSG_PACKAGE}/msg/StateEstimate`,
  jointState: 'sensor_msgs/msg/JointState',
  poseStamped: 'geometry_msgs/msg/PoseStamped',
  command: 'std_msgs/msg/Float64MultiArray',
  clock: 'rosgraph_msgs/msg/Clock',
} as const;

let own: Map<string, MessageDefinition> | undefined;

/** The package's own definitions, parsed from msgs/msg (cached). */
export function ownDefinitions(): ReadonlyMap<string, MessageDefinition> {
  if (own) return own;
  own = new Map();
  for (const file of readdirSync(MSG_DIR).filter((f) => f.endsWith('.msg')).sort()) {
    const name = `${MSG_PACKAGE}/msg/${file.slice(0, -4)}`;
    own.set(name, parseMsgFile(readFileSync(`${MSG_DIR}${file}`, 'utf8'), `msgs/msg/${file}`, name));
  }
  return own;
}

/** Parses one .msg text as a ROS 2 message definition; the error names the file. */
export function parseMsgFile(text: string, label: string, name: string): MessageDefinition {
  let parsed: MessageDefinition[];
  try {
    parsed = parse(text, { ros2: true, skipTypeFixup: true });
  } catch (e) {
    throw new Error(`${label}: not a ROS 2 message definition (${(e as Error).message})`);
  }
  if (parsed.length !== 1) throw new Error(`${label}: expected one message definition, found ${parsed.length}`);
  // a bare type name is one of this package's own (rosidl's rule), e.g. `NamedSeries[] series`
  const pkg = name.split('/')[0];
  const definitions = parsed[0].definitions.map((f) => (f.isComplex && !f.type.includes('/') ? { ...f, type: `${pkg}/${f.type}` } : f));
  return { name, definitions };
}

/** `pkg/msg/Name` and `pkg/Name` name the same type. */
const short = (type: string) => type.replace('/msg/', '/');

function lookup(type: string): MessageDefinition {
  const mine = ownDefinitions().get(type) ?? ownDefinitions().get(type.replace(/^([^/]+)\/([^/]+)$/, '$1/msg/$2'));
  if (mine) return mine;
  const std = (ros2jazzy as Record<string, MessageDefinition>)[short(type)];
  if (!std) throw new Error(`unknown message type '${type}'`);
  return std;
}

/** The type and every complex type it uses, root first: what a CDR reader or writer takes. */
export function definitionsOf(type: string): MessageDefinition[] {
  const out: MessageDefinition[] = [];
  const seen = new Set<string>();
  const visit = (name: string, root: boolean) => {
    const key = short(name);
    if (seen.has(key)) return;
    seen.add(key);
    const def = lookup(name);
    out.push(root ? { ...def, name: undefined } : { ...def, name: key });
    for (const f of def.definitions) if (f.isComplex && !f.isConstant) visit(f.type, false);
  };
  visit(type, true);
  return out;
}

const PRIMITIVE_SCHEMA: Record<string, object> = {
  bool: { type: 'boolean' },
  string: { type: 'string' }, wstring: { type: 'string' },
  // NaN and infinities have no JSON form: the log writes them as null
  float32: { type: ['number', 'null'] }, float64: { type: ['number', 'null'] },
  int8: { type: 'integer' }, int16: { type: 'integer' }, int32: { type: 'integer' }, int64: { type: 'integer' },
  uint8: { type: 'integer', minimum: 0 }, uint16: { type: 'integer', minimum: 0 }, uint32: { type: 'integer', minimum: 0 }, uint64: { type: 'integer', minimum: 0 },
  byte: { type: 'integer', minimum: 0 }, char: { type: 'integer', minimum: 0 },
  time: { type: 'object', properties: { sec: { type: 'integer' }, nanosec: { type: 'integer', minimum: 0 } }, required: ['sec', 'nanosec'] },
  duration: { type: 'object', properties: { sec: { type: 'integer' }, nanosec: { type: 'integer', minimum: 0 } }, required: ['sec', 'nanosec'] },
};

/** A JSON Schema of a message type (constants left out), for JSON-encoded MCAP channels. */
export function msgJsonSchema(type: string): object {
  const schemaOf = (fields: readonly MessageDefinitionField[], title?: string): object => {
    const properties: Record<string, object> = {};
    const required: string[] = [];
    for (const f of fields) {
      if (f.isConstant) continue;
      const item = f.isComplex ? schemaOf(lookup(f.type).definitions) : PRIMITIVE_SCHEMA[f.type];
      if (!item) throw new Error(`${type}: no JSON schema for field type '${f.type}'`);
      properties[f.name] = f.isArray ? { type: 'array', items: item } : item;
      required.push(f.name);
    }
    return { ...(title ? { title } : {}), type: 'object', properties, required };
  };
  return schemaOf(lookup(type).definitions, type);
}
