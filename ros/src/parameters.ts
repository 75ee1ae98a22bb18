import { checkValue, ParamEntry, PARAMETERS_PER_REQUEST_LIMIT, ParamValue, rangeText, sameValue, SetResult, unknownParameter } from '../../src/params.js';
import { overridesFor, ParameterRule } from './overrides.js';
import { Node, Parameter, ParameterDescriptor, PARAMETER, Rclnodejs } from './rcl.js';

/** When a node's read-only parameters bind: the controller's from configure on, the simulator's from the start. */
export type Bound = () => boolean;

/**
 * ROS parameters from the one schema: each entry becomes a declared
 * parameter with a descriptor (description, range, read-only, constraints
 * in words), and every set goes through the core's checks.
 */

type TypeCode = (typeof PARAMETER)[keyof typeof PARAMETER];

export function rosType(entry: ParamEntry): TypeCode {
  const d = entry.def;
  if (d.kind === 'enum' || d.kind === 'text') return PARAMETER.STRING;
  if (d.kind === 'flag') return PARAMETER.BOOL;
  if (d.kind === 'list') return d.of === 'string' ? PARAMETER.STRING_ARRAY : PARAMETER.DOUBLE_ARRAY;
  return d.integer ? PARAMETER.INTEGER : PARAMETER.DOUBLE;
}

/** rcl_interfaces/msg/ParameterType names, with their article */
const TYPE_NAME: Record<number, string> = {
  [PARAMETER.NOT_SET]: 'an unset value', [PARAMETER.BOOL]: 'a bool', [PARAMETER.INTEGER]: 'an integer', [PARAMETER.DOUBLE]: 'a double',
  [PARAMETER.STRING]: 'a string', 5: 'a byte array', 6: 'a bool array', 7: 'an integer array',
  [PARAMETER.DOUBLE_ARRAY]: 'a double array', [PARAMETER.STRING_ARRAY]: 'a string array',
};

const MAX_DOUBLE = Number.MAX_VALUE;
const MAX_INT64 = 2n ** 63n - 1n;

/** The text `ros2 param describe` shows as constraints: the rule, and why a read-only parameter is. */
export function constraintsText(entry: ParamEntry, bindsAt = 'read-only'): string {
  const d = entry.def;
  const rule = d.kind === 'enum' ? `one of: ${d.choices.join(', ')}` : d.kind === 'flag' ? 'true or false' : d.kind === 'list' || d.kind === 'text' ? rangeText(d) : `range ${rangeText(d)}`;
  return entry.readOnly ? `${rule}; ${bindsAt}: ${entry.readOnly}` : rule;
}

/**
 * A descriptor for one entry. Works around two faults of rclnodejs 2.2's
 * ParameterDescriptor: its toMessage() never sends the range (it reads
 * `_rangeConstraint`, the constructor sets `_range`), and a value it finds
 * out of range is refused with a garbled reason ("does not  readonly").
 * Here the message is built from the schema, and the descriptor accepts
 * every value, so the node's set-parameters callback, which runs the
 * schema's checks, gives the refusal with its real reason. Read-only is
 * the callback's to enforce too: it binds when `bound` says (a controller
 * with a bad read-only value in its file can be set right before
 * configure), and a set to the value already held passes (a `ros2 param
 * dump` loads back).
 */
export function descriptorFor(rcl: Rclnodejs, entry: ParamEntry, bound: Bound, bindsAt: string): ParameterDescriptor {
  const type = rosType(entry);
  const descriptor = new rcl.ParameterDescriptor(entry.key, type, entry.def.doc, false);
  const constraints = constraintsText(entry, bindsAt);
  descriptor.additionalConstraints = constraints;
  const d = entry.def;
  const range = d.kind !== 'number' ? {}
    : d.integer
      ? { integer_range: [{ from_value: d.min === undefined ? -MAX_INT64 : BigInt(Math.ceil(d.min)), to_value: d.max === undefined ? MAX_INT64 : BigInt(Math.floor(d.max)), step: 1n }] }
      : { floating_point_range: [{ from_value: d.min ?? -MAX_DOUBLE, to_value: d.max ?? MAX_DOUBLE, step: 0 }] };
  const message = () => ({
    name: entry.key, type, description: entry.def.doc, additional_constraints: constraints,
    read_only: entry.readOnly !== undefined && bound(), dynamic_typing: false, ...range,
  });
  return Object.assign(descriptor, {
    toMessage: () => message() as unknown as ReturnType<ParameterDescriptor['toMessage']>,
    validateParameter: () => undefined,
  });
}

/** The value a ROS parameter carries, as the schema reads it; a reason when its type is not the declared one. */
export function fromRos(entry: ParamEntry, p: Parameter): { value: unknown } | { reason: string } {
  const expected = rosType(entry);
  if (p.type !== expected) {
    const hint = expected === PARAMETER.DOUBLE && p.type === PARAMETER.INTEGER ? ` (write ${String(p.value)}.0)` : '';
    // a double is shown as ROS writes it: 512.0, not 512
    const given = p.type === PARAMETER.DOUBLE && Number.isInteger(p.value) ? `${String(p.value)}.0` : String(p.value);
    return { reason: `${entry.key} takes ${TYPE_NAME[expected]}, got ${TYPE_NAME[p.type] ?? `type ${p.type}`} (${given})${hint}` };
  }
  const v = p.value as unknown;
  // integers arrive as bigint; the schema's range checks keep them far inside the exact doubles
  return { value: typeof v === 'bigint' ? Number(v) : ArrayBuffer.isView(v) ? Array.from(v as unknown as ArrayLike<number>) : v };
}

export function toRos(rcl: Rclnodejs, entry: ParamEntry, value: ParamValue): Parameter {
  const type = rosType(entry);
  return new rcl.Parameter(entry.key, type, type === PARAMETER.INTEGER ? BigInt(value as number) : Array.isArray(value) ? [...value] : value);
}

/** How a node declares its table: its overrides (resolved by overrides.ts), and when its read-only parameters bind. */
export interface Declaring {
  overrides: ReadonlyMap<string, Parameter>;
  bound: Bound;
  /** words for `ros2 param describe`: 'read-only from configure on' */
  bindsAt: string;
}

/**
 * Declares the entries on the node with their values (a parameter file or
 * `-p` override replaces a value, as ROS does). A bad override is not
 * fatal: the parameter is declared with its default and the reason is
 * returned by key, so the lifecycle transition that needs it can fail with
 * it until the parameter is set right.
 */
export function declareAll(rcl: Rclnodejs, node: Node, entries: readonly ParamEntry[], values: Readonly<Record<string, ParamValue>>, how: Declaring): Map<string, string> {
  const problems = new Map<string, string>();
  for (const entry of entries) {
    if (node.hasParameter(entry.key)) continue;
    const descriptor = descriptorFor(rcl, entry, how.bound, how.bindsAt);
    try {
      // the overrides were resolved here: rclnodejs's own (bare name and /** only) must not replace them
      node.declareParameter(how.overrides.get(entry.key) ?? toRos(rcl, entry, values[entry.key]), descriptor, true);
    } catch (e) {
      problems.set(entry.key, `${entry.key} from the parameter overrides: ${(e as Error).message}`);
      node.declareParameter(toRos(rcl, entry, values[entry.key]), descriptor, true);
    }
  }
  return problems;
}

/** The declared values of the entries, as the schema reads them (type checked). */
export function readAll(node: Node, entries: readonly ParamEntry[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const entry of entries) {
    const r = fromRos(entry, node.getParameter(entry.key));
    if ('reason' in r) throw new Error(r.reason);
    out[entry.key] = r.value;
  }
  return out;
}

/**
 * The set-parameters callback: parameters the table does not own (use_sim_time,
 * QoS overrides) pass through; the table's go to `apply` all together (the
 * live path of a running node) or, with no session, through the schema's
 * checks one by one. A read-only parameter, once bound, takes only the
 * value it holds. A refusal lists one reason per bad parameter.
 */
export function onSetParameters(
  node: Node,
  entries: ReadonlyMap<string, ParamEntry>,
  apply: () => ((changes: Record<string, unknown>) => SetResult) | undefined,
  bound: Bound,
  unbind: string,
): (parameters: Parameter[]) => { successful: boolean; reason: string } {
  return (parameters) => {
    const changes: Record<string, unknown> = {};
    const reasons: string[] = [];
    for (const p of parameters) {
      const entry = entries.get(p.name);
      if (!entry) continue;
      const r = fromRos(entry, p);
      if ('reason' in r) reasons.push(r.reason);
      else if (entry.readOnly && bound() && node.hasParameter(p.name)) {
        const held = fromRos(entry, node.getParameter(p.name));
        if (!('value' in held) || !sameValue(r.value, held.value)) reasons.push(`${p.name} is read-only (${entry.readOnly}): ${unbind}`);
      } else changes[p.name] = r.value;
    }
    if (reasons.length) return { successful: false, reason: reasons.join('; ') };
    if (Object.keys(changes).length === 0) return { successful: true, reason: '' };
    const live = apply();
    if (live) {
      const result = live(changes);
      return result.ok ? { successful: true, reason: '' } : { successful: false, reason: Object.values(result.reasons).join('; ') };
    }
    for (const [key, value] of Object.entries(changes)) {
      try {
        checkValue(key, entries.get(key)!.def, value);
      } catch (e) {
        reasons.push((e as Error).message);
      }
    }
    return { successful: reasons.length === 0, reason: reasons.join('; ') };
  };
}

/**
 * The node's set methods (which its parameter services call), mended in
 * two ways. rclnodejs 2.2 answers a set of an undeclared parameter with a
 * garbled reason ("does not  readonly"): it finds a NOT_SET descriptor for
 * any name and fails the type check; such names are answered first, with
 * the schema's words. And a set of a read-only parameter rclnodejs owns
 * (`start_type_description_service`) to the value it holds is a no-op that
 * passes, so a `ros2 param dump` loads back with `ros2 param load`. A
 * request naming more than PARAMETERS_PER_REQUEST_LIMIT parameters is
 * refused whole, unread.
 */
function guardSets(node: Node): void {
  const known = () => node.getParameters().map((p) => p.name);
  const atomically = node.setParametersAtomically.bind(node);
  const heldAlready = (p: Parameter) => {
    if (!node.getParameterDescriptor(p.name)?.readOnly) return false;
    const held = node.getParameter(p.name);
    return held.type === p.type && sameValue(held.value, p.value);
  };
  const tooMany = (n: number) => ({ successful: false, reason: `${n} parameters in one request; at most ${PARAMETERS_PER_REQUEST_LIMIT}` });
  node.setParametersAtomically = (parameters = []) => {
    if (parameters.length > PARAMETERS_PER_REQUEST_LIMIT) return tooMany(parameters.length);
    const unknown = parameters.find((p) => !node.hasParameter(p.name));
    if (unknown) return { successful: false, reason: unknownParameter(unknown.name, known()) };
    const changes = parameters.filter((p) => !heldAlready(p));
    return changes.length === 0 ? { successful: true, reason: '' } : atomically(changes);
  };
  node.setParameters = (parameters = []) =>
    parameters.length > PARAMETERS_PER_REQUEST_LIMIT ? parameters.map(() => tooMany(parameters.length)) : parameters.map((p) => node.setParametersAtomically([p]));
}

/**
 * rclnodejs 2.2 publishes parameter events on the relative topic
 * `parameter_events`, which a namespace moves (`/tempered_mpc/parameter_events`);
 * ROS 2 tools watch the global `/parameter_events`. The node's event
 * publisher is replaced by one there, with the events' own QoS.
 */
function globalParameterEvents(rcl: Rclnodejs, node: Node): void {
  const owner = node as unknown as { _parameterEventPublisher: unknown };
  node.destroyPublisher(owner._parameterEventPublisher as never);
  owner._parameterEventPublisher = node.createPublisher('rcl_interfaces/msg/ParameterEvent' as never, '/parameter_events', { qos: rcl.QoS.profileParameterEvents as never });
}

/**
 * What both nodes do with the command line before declaring their tables:
 * parameter events moved to the global topic, the set methods guarded, and
 * the overrides resolved for this node under its remapped name and
 * namespace (overrides.ts), `use_sim_time` applied at once (the time source
 * declared it already). `warnUnused`, called after the declarations,
 * reports each parameter a rule naming this node sets and the node does not
 * have (not a wildcard's, which may be another node's), with the nearest
 * name it does have: a misspelt key is reported, not lost.
 */
export function adoptCommandLine(rcl: Rclnodejs, node: Node, rules: readonly ParameterRule[]): { overrides: Map<string, Parameter>; warnUnused(): void } {
  globalParameterEvents(rcl, node);
  guardSets(node);
  const { byName, named } = overridesFor(rules, node.namespace(), node.name());
  const simTime = byName.get('use_sim_time');
  if (simTime) node.setParameters([simTime]);
  return {
    overrides: byName,
    warnUnused: () => {
      const known = node.getParameters().map((p) => p.name);
      for (const name of named.filter((n) => !node.hasParameter(n))) node.getLogger().warn(`parameter overrides: ${unknownParameter(name, known)}; ignored`);
    },
  };
}
