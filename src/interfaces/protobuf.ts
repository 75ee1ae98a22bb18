import protobuf from 'protobufjs';
import descriptor from 'protobufjs/ext/descriptor/index.js';
import type { MessageDefinitionField } from '@foxglove/message-definition';
import { definitionsOf } from './definitions.js';

/**
 * Protobuf types built at run time from the message definitions (msgs/msg
 * and the standard ROS 2 ones): no hand-kept .proto file that could drift.
 * A ROS type `pkg/msg/Name` becomes the protobuf message `pkg.msg.Name`;
 * fields keep their names and order (field number = position among the
 * non-constant fields), arrays are repeated (numbers packed), constants are
 * left out.
 */
export interface ProtobufSchema {
  /** the fully qualified protobuf name, e.g. tempered_mpc_msgs.msg.Plan */
  name: string;
  /** a FileDescriptorSet of the type and all it uses (what MCAP and Foxglove take as the schema) */
  fileDescriptorSet: Uint8Array;
  /** the same types as protobufjs JSON (Root.fromJSON): what the dashboard decodes with */
  json: object;
  encode(message: object): Uint8Array;
  decode(bytes: Uint8Array): Record<string, unknown>;
}

const SCALAR: Readonly<Record<string, string>> = {
  float64: 'double', float32: 'float',
  int8: 'int32', int16: 'int32', int32: 'int32', int64: 'int64',
  uint8: 'uint32', uint16: 'uint32', uint32: 'uint32', uint64: 'uint64', byte: 'uint32', char: 'uint32',
  bool: 'bool', string: 'string', wstring: 'string',
};

const BUILTIN: Readonly<Record<string, string>> = { time: 'Time', duration: 'Duration' };

const protoName = (rosType: string) => rosType.replace(/\//g, '.').replace(/^([^.]+)\.([^.]+)$/, '$1.msg.$2');

const cache = new Map<string, ProtobufSchema>();

export function protobufSchema(rosType: string): ProtobufSchema {
  const cached = cache.get(rosType);
  if (cached) return cached;
  const root = new protobuf.Root();
  const defs = definitionsOf(rosType);
  for (const def of defs) {
    const full = protoName(def.name ?? rosType);
    const dot = full.lastIndexOf('.');
    const type = new protobuf.Type(full.slice(dot + 1));
    let id = 1;
    for (const f of def.definitions) {
      if (f.isConstant) continue;
      type.add(field(f, id++, rosType));
    }
    root.define(full.slice(0, dot)).add(type);
  }
  // the parser gives builtin_interfaces' Time and Duration as the primitives `time` and `duration`
  for (const [prim, builtin] of Object.entries(BUILTIN)) {
    if (!defs.some((d) => d.definitions.some((f) => f.type === prim))) continue;
    const t = new protobuf.Type(builtin);
    t.add(new protobuf.Field('sec', 1, 'int32'));
    t.add(new protobuf.Field('nanosec', 2, 'uint32'));
    root.define('builtin_interfaces.msg').add(t);
  }
  root.resolveAll();
  const name = protoName(rosType);
  const t = root.lookupType(name);
  const set = (root as unknown as { toDescriptor(syntax: string): protobuf.Message }).toDescriptor('proto3');
  const schema: ProtobufSchema = {
    name,
    fileDescriptorSet: descriptor.FileDescriptorSet.encode(set).finish(),
    json: root.toJSON(),
    encode: (message) => t.encode(t.fromObject(message as Record<string, unknown>)).finish(),
    decode: (bytes) => t.toObject(t.decode(bytes), { defaults: true, arrays: true, longs: Number }),
  };
  cache.set(rosType, schema);
  return schema;
}

function field(f: MessageDefinitionField, id: number, rosType: string): protobuf.Field {
  const scalar = SCALAR[f.type];
  const type = f.isComplex ? `.${protoName(f.type)}` : BUILTIN[f.type] ? `.builtin_interfaces.msg.${BUILTIN[f.type]}` : scalar;
  if (!type) throw new Error(`${rosType}: no protobuf type for field ${f.name} of type '${f.type}'`);
  const numeric = scalar !== undefined && scalar !== 'string';
  return new protobuf.Field(f.name, id, type, f.isArray ? 'repeated' : undefined, undefined, f.isArray && numeric ? { packed: true } : undefined);
}
