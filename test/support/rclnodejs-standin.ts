/**
 * STAND-IN for the subset of rclnodejs 2.2 that the nodes in ros/ use, so
 * the node code runs in tests on a machine without ROS 2. It is not ROS: no
 * DDS, no rcl. What it keeps from the real thing, read from rclnodejs 2.2's
 * sources: the order of parameter checks (declared? read-only? descriptor?
 * then the set-parameters callbacks, front first), parameter overrides
 * applied at declaration, `use_sim_time` declared by the node's time
 * source, the lifecycle state machine with synchronous transition callbacks
 * and the ChangeState service handler `_onChangeState`, topic names
 * resolved against the namespace, parameter overrides matched as its
 * JavaScript matches them (only `/**` and the bare node name: the nodes
 * resolve the other keys themselves), parameter events on the relative
 * topic `parameter_events`, the lifecycle services' answers in the shape
 * its handlers give them (GetAvailableTransitions in camelCase fields the
 * message lacks). Every published message travels as CDR
 * bytes (@foxglove/rosmsg2-serialization, with the Jazzy definitions and
 * msgs/msg), so a message the nodes could not put on the wire fails here.
 * Delivery is asynchronous (setImmediate), like an executor's.
 */
import { MessageReader, MessageWriter } from '@foxglove/rosmsg2-serialization';
import { definitionsOf, TYPES } from '../../src/interfaces/definitions.js';
import { fromTime } from '../../src/interfaces/messages.js';
import type { ParameterRule } from '../../ros/src/overrides.js';
import type { Rclnodejs } from '../../ros/src/rcl.js';

const T = { NOT_SET: 0, BOOL: 1, INTEGER: 2, DOUBLE: 3, STRING: 4, BOOL_ARRAY: 6, INTEGER_ARRAY: 7, DOUBLE_ARRAY: 8, STRING_ARRAY: 9 };

function validValue(value: unknown, type: number): boolean {
  if (value === null || value === undefined) return type === T.NOT_SET;
  switch (type) {
    case T.BOOL: return typeof value === 'boolean';
    case T.STRING: return typeof value === 'string';
    case T.DOUBLE: return typeof value === 'number';
    case T.INTEGER: return typeof value === 'bigint';
    case T.DOUBLE_ARRAY: return Array.isArray(value) && value.every((v) => typeof v === 'number');
    case T.STRING_ARRAY: return Array.isArray(value) && value.every((v) => typeof v === 'string');
    case T.INTEGER_ARRAY: return Array.isArray(value) && value.every((v) => typeof v === 'bigint');
    case T.BOOL_ARRAY: return Array.isArray(value) && value.every((v) => typeof v === 'boolean');
    default: return false;
  }
}

class Parameter {
  readonly name: string;
  readonly type: number;
  value: unknown;
  constructor(name: string, type: number, value?: unknown) {
    this.name = name;
    this.type = type;
    this.value = type === T.INTEGER ? BigInt(value as number) : value;
    this.validate();
  }

  validate(): void {
    if (!this.name) throw new TypeError('parameter name must be a non-empty string');
    if (!validValue(this.value, this.type)) throw new TypeError(`parameter ${this.name}: value ${String(this.value)} does not fit type ${this.type}`);
  }
}

/** Parameters from a YAML value, typed as ROS types them (integers are bigint: parse with intAsBigInt). */
export function parameterFromYaml(name: string, value: unknown): Parameter {
  if (typeof value === 'bigint') return new Parameter(name, T.INTEGER, value);
  if (typeof value === 'number') return new Parameter(name, T.DOUBLE, value);
  if (typeof value === 'string') return new Parameter(name, T.STRING, value);
  if (typeof value === 'boolean') return new Parameter(name, T.BOOL, value);
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return new Parameter(name, T.STRING_ARRAY, value);
  if (Array.isArray(value)) return new Parameter(name, T.DOUBLE_ARRAY, value.map(Number));
  throw new Error(`stand-in: cannot type the override ${name}=${String(value)}`);
}

class ParameterDescriptor {
  additionalConstraints = '';
  constructor(readonly name: string, readonly type: number, readonly description = 'no description', readonly readOnly = false) {}
  validate(): void {}
  validateParameter(p: Parameter): void {
    if (p.type !== this.type) throw new Error('type mismatch');
  }

  toMessage(): object {
    return { name: this.name, type: this.type, description: this.description, additional_constraints: this.additionalConstraints, read_only: this.readOnly };
  }
}

/** rcl_interfaces/msg/ParameterValue of a parameter, as rclnodejs's toParameterMessage() fills it. */
function parameterValueMessage(p: Parameter): object {
  const v = p.value;
  return {
    type: p.type,
    bool_value: p.type === T.BOOL ? v : false,
    integer_value: p.type === T.INTEGER ? v : 0n,
    double_value: p.type === T.DOUBLE ? v : 0,
    string_value: p.type === T.STRING ? v : '',
    byte_array_value: [], bool_array_value: p.type === T.BOOL_ARRAY ? v : [],
    integer_array_value: p.type === T.INTEGER_ARRAY ? v : [],
    double_array_value: p.type === T.DOUBLE_ARRAY ? v : [],
    string_array_value: p.type === T.STRING_ARRAY ? v : [],
  };
}

class QoS {
  static readonly profileSensorData = 'qos_profile_sensor_data';
  static readonly profileParameterEvents = 'qos_profile_parameter_events';
  static readonly HistoryPolicy = { RMW_QOS_POLICY_HISTORY_SYSTEM_DEFAULT: 0, RMW_QOS_POLICY_HISTORY_KEEP_LAST: 1, RMW_QOS_POLICY_HISTORY_KEEP_ALL: 2 };
  static readonly ReliabilityPolicy = { RMW_QOS_POLICY_RELIABILITY_SYSTEM_DEFAULT: 0, RMW_QOS_POLICY_RELIABILITY_RELIABLE: 1, RMW_QOS_POLICY_RELIABILITY_BEST_EFFORT: 2 };
  constructor(readonly history = 1, readonly depth = 10, readonly reliabilityPolicy = 1) {}
}

interface Sub { type: string; callback: (msg: unknown) => void; alive: boolean }

/** The in-process "network": topics, subscribers, and the bytes each message became. */
export class Bus {
  readonly subscribers = new Map<string, Sub[]>();
  /** messages per topic as the wire carried them (bytes), for tests that inspect traffic */
  readonly wire = new Map<string, number>();
  clockS: number | undefined;
  private readonly writers = new Map<string, MessageWriter>();
  private readonly readers = new Map<string, MessageReader>();

  publish(topic: string, type: string, msg: unknown): void {
    let writer = this.writers.get(type);
    if (!writer) this.writers.set(type, (writer = new MessageWriter(definitionsOf(type))));
    const bytes = writer.writeMessage(msg);
    this.wire.set(topic, (this.wire.get(topic) ?? 0) + 1);
    if (topic === '/clock' && type === TYPES.clock) this.clockS = fromTime((msg as { clock: unknown }).clock);
    for (const sub of this.subscribers.get(topic) ?? []) {
      if (sub.type !== type) continue; // DDS matches topic and type
      let reader = this.readers.get(type);
      if (!reader) this.readers.set(type, (reader = new MessageReader(definitionsOf(type))));
      const decoded = reader.readMessage(bytes);
      setImmediate(() => sub.alive && sub.callback(decoded));
    }
  }

  subscribe(topic: string, type: string, callback: (msg: unknown) => void): Sub {
    const sub = { type, callback, alive: true };
    this.subscribers.set(topic, [...(this.subscribers.get(topic) ?? []), sub]);
    return sub;
  }

  count(topic: string, type: string): number {
    return (this.subscribers.get(topic) ?? []).filter((s) => s.alive && s.type === type).length;
  }
}

export interface StandInOptions {
  /** parameter overrides by bare node name, as a parameter file gives them (integers as bigint) */
  overrides?: Record<string, Record<string, unknown>>;
  /** further rules in command-line order, under any node key (`/ns/name`, `/**`, `/*\/name`) */
  rules?: { name: string; parameters: Record<string, unknown> }[];
}

export interface StandIn {
  rcl: Rclnodejs;
  bus: Bus;
  logs: { node: string; level: string; text: string }[];
  /** every rule as rcl hands them over (what overrides.ts's commandLineRules returns on the real library) */
  parameterRules(): ParameterRule[];
  /** a service request as a client sends it; resolves with the response the node's handler sends */
  callService(name: string, request?: object): Promise<Record<string, unknown>>;
}

/** What the stand-in's lifecycle nodes add: a ChangeState request as `ros2 lifecycle set` sends it. */
export interface StandInLifecycle {
  requestTransition(label: string): Promise<boolean>;
}

export function createStandIn(opts: StandInOptions = {}): StandIn {
  const bus = new Bus();
  const logs: { node: string; level: string; text: string }[] = [];
  const rules = [
    ...Object.entries(opts.overrides ?? {}).map(([name, parameters]) => ({ name, parameters })),
    ...(opts.rules ?? []),
  ].map((r) => ({ name: r.name, parameters: Object.entries(r.parameters).map(([k, v]) => parameterFromYaml(k, v)) }));
  const services = new Map<string, (request: object, response: { template: Record<string, unknown>; send(r: Record<string, unknown>): void }) => void>();

  class Node {
    private readonly params = new Map<string, Parameter>();
    private readonly descriptors = new Map<string, ParameterDescriptor>();
    private readonly callbacks: ((ps: Parameter[]) => { successful: boolean; reason: string })[] = [];
    private readonly overrides: Map<string, Parameter>;
    private readonly timers = new Set<NodeJS.Timeout>();

    /** as rclnodejs: on the relative topic, so a namespace moves it */
    _parameterEventPublisher: { publish(msg: unknown): void };

    constructor(readonly nodeName: string, readonly ns = '') {
      // rclnodejs's JavaScript: the /** rules, then the bare name's
      this.overrides = new Map(rules.filter((r) => r.name === '/**' || r.name === nodeName).flatMap((r) => r.parameters.map((p) => [p.name, p] as const)));
      this._parameterEventPublisher = this.createPublisher('rcl_interfaces/msg/ParameterEvent', 'parameter_events');
      // the time source declares use_sim_time; on Jazzy the type description service its read-only switch
      this.declareParameter(new Parameter('use_sim_time', T.BOOL, false));
      this.declareParameter(new Parameter('start_type_description_service', T.BOOL, true), new ParameterDescriptor('start_type_description_service', T.BOOL, '', true));
    }

    name(): string {
      return this.nodeName;
    }

    /** as rclnodejs: '/' for the root */
    namespace(): string {
      const ns = this.ns.replace(/\/$/, '');
      return ns === '' ? '/' : ns.startsWith('/') ? ns : `/${ns}`;
    }

    get fullyQualifiedName(): string {
      return `${this.namespace().replace(/\/$/, '')}/${this.nodeName}`;
    }
    resolve(topic: string): string {
      if (topic.startsWith('/')) return topic;
      const ns = this.ns.replace(/\/$/, '');
      return `${ns.startsWith('/') || ns === '' ? ns : `/${ns}`}/${topic}`;
    }

    getLogger() {
      const log = (level: string) => (text: string) => {
        logs.push({ node: this.nodeName, level, text });
        return true;
      };
      return { info: log('info'), warn: log('warn'), error: log('error'), debug: log('debug') };
    }

    now() {
      const simS = this.params.get('use_sim_time')?.value === true ? bus.clockS ?? 0 : performance.timeOrigin / 1000 + performance.now() / 1000;
      return { nanoseconds: BigInt(Math.round(simS * 1e9)) };
    }

    spin(): void {}

    destroy(): void {
      for (const t of this.timers) clearInterval(t);
    }

    addOnSetParametersCallback(cb: (ps: Parameter[]) => { successful: boolean; reason: string }): void {
      this.callbacks.unshift(cb);
    }

    hasParameter(name: string): boolean {
      return this.params.has(name);
    }

    getParameter(name: string): Parameter {
      const p = this.params.get(name);
      if (!p) throw new Error(`Parameter ${name} has not been declared`);
      return p;
    }

    /** as rclnodejs 2.2: an undeclared name gets a NOT_SET descriptor, not undefined */
    getParameterDescriptor(name: string): ParameterDescriptor {
      return this.descriptors.get(name) ?? new ParameterDescriptor(name, T.NOT_SET);
    }

    getParameters(names?: string[]): Parameter[] {
      return names ? names.map((n) => this.getParameter(n)) : [...this.params.values()];
    }

    declareParameter(parameter: Parameter, descriptor?: ParameterDescriptor, ignoreOverride = false): Parameter {
      const p = !ignoreOverride && this.overrides.has(parameter.name) ? this.overrides.get(parameter.name)! : parameter;
      if (this.params.has(p.name)) throw new Error(`Parameter(${p.name}) already declared.`);
      const d = descriptor ?? new ParameterDescriptor(p.name, p.type, 'Created from parameter.');
      this.descriptors.set(d.name, d);
      const result = this.setAtomically([p], true);
      if (!result.successful) {
        this.descriptors.delete(d.name);
        throw new Error(result.reason);
      }
      return this.params.get(p.name)!;
    }

    setParameters(ps: Parameter[]) {
      return ps.map((p) => this.setAtomically([p]));
    }

    setParametersAtomically(ps: Parameter[]) {
      return this.setAtomically(ps);
    }

    /** rclnodejs 2.2's _setParametersAtomically, including its reason texts. */
    private setAtomically(ps: Parameter[], declaring = false): { successful: boolean; reason: string } {
      for (const p of ps) {
        try {
          p.validate();
        } catch {
          return { successful: false, reason: `Invalid ${p.name}` };
        }
        const d = this.getParameterDescriptor(p.name);
        if (!declaring && d.readOnly) return { successful: false, reason: `Parameter ${p.name} is readonly` };
        try {
          d.validateParameter(p);
        } catch {
          return { successful: false, reason: `Parameter ${p.name} does not  readonly` };
        }
      }
      for (const cb of this.callbacks) {
        const r = cb(ps);
        if (!r.successful) return r;
      }
      for (const p of ps) this.params.set(p.name, p);
      const entries = ps.map((p) => ({ name: p.name, value: parameterValueMessage(p) }));
      this._parameterEventPublisher?.publish({
        stamp: { sec: 0, nanosec: 0 }, node: this.fullyQualifiedName,
        new_parameters: declaring ? entries : [], changed_parameters: declaring ? [] : entries, deleted_parameters: [],
      });
      return { successful: true, reason: '' };
    }

    createPublisher(type: string, topic: string) {
      const full = this.resolve(topic);
      let alive = true;
      return {
        topic: full,
        publish: (msg: unknown) => {
          // rclnodejs throws on a destroyed publisher ("publisher pointer is invalid")
          if (!alive) throw new Error(`publisher on ${full} is destroyed`);
          bus.publish(full, type, msg);
        },
        destroy: () => (alive = false),
        waitForAllAcked: () => true,
        // a getter, as rclnodejs 2.2's runtime has it (its declarations say a method)
        get subscriptionCount() {
          return bus.count(full, type);
        },
      };
    }

    createSubscription(type: string, topic: string, _options: unknown, callback: (msg: unknown) => void) {
      return bus.subscribe(this.resolve(topic), type, callback);
    }

    destroyPublisher(publisher: { destroy(): void }): void {
      publisher.destroy();
    }

    createService(_type: string, name: string, callback: (request: object, response: { template: Record<string, unknown>; send(r: Record<string, unknown>): void }) => void) {
      services.set(name.startsWith('~/') ? `${this.fullyQualifiedName}/${name.slice(2)}` : this.resolve(name), callback);
    }

    destroySubscription(sub: Sub): void {
      sub.alive = false;
    }

    createTimer(periodNs: bigint, callback: () => void) {
      const t = setInterval(callback, Number(periodNs) / 1e6);
      this.timers.add(t);
      return t;
    }

    destroyTimer(t: NodeJS.Timeout): void {
      clearInterval(t);
      this.timers.delete(t);
    }
  }

  const PRIMARY = { unconfigured: 1, inactive: 2, active: 3, finalized: 4 } as const;
  type Primary = keyof typeof PRIMARY;
  const TRANSITIONS: Record<string, { from: Primary[]; via: string; to: Primary }> = {
    configure: { from: ['unconfigured'], via: 'configuring', to: 'inactive' },
    cleanup: { from: ['inactive'], via: 'cleaningup', to: 'unconfigured' },
    activate: { from: ['inactive'], via: 'activating', to: 'active' },
    deactivate: { from: ['active'], via: 'deactivating', to: 'inactive' },
    shutdown: { from: ['unconfigured', 'inactive', 'active'], via: 'shuttingdown', to: 'finalized' },
  };
  const ID_LABEL: Record<number, string> = { 1: 'configure', 2: 'cleanup', 3: 'activate', 4: 'deactivate', 5: 'shutdown', 6: 'shutdown', 7: 'shutdown' };

  class CallbackReturnValue {
    value = 97;
    isSuccess(): boolean {
      return this.value === 97;
    }
  }

  class LifecycleNode extends Node {
    private state: Primary = 'unconfigured';
    private readonly cbs = new Map<string, (prev: unknown) => number>();

    constructor(nodeName: string, ns = '') {
      super(nodeName, ns);
      // as rclnodejs: the handler is looked up when a request comes
      this.createService('lifecycle_msgs/srv/GetAvailableTransitions', '~/get_available_transitions', (req, res) => this._onGetAvailableTransitions(req, res));
    }

    /** rclnodejs 2.2's handler: TransitionDescription objects with camelCase fields */
    _onGetAvailableTransitions(_request: object, response: { template: Record<string, unknown>; send(r: Record<string, unknown>): void }) {
      const result = response.template;
      result.available_transitions = Object.entries(TRANSITIONS).filter(([, t]) => t.from.includes(this.state)).map(([label, t]) => ({
        transition: { id: 0, label }, startState: { id: PRIMARY[this.state], label: this.state }, goalState: { id: PRIMARY[t.to], label: t.to },
      }));
      response.send(result);
    }

    /** as the runtime State of rclnodejs 2.2: `id` and `label` (no asMessage(), whatever its declarations say) */
    get currentState() {
      return { id: PRIMARY[this.state], label: this.state };
    }

    registerOnConfigure(cb: (prev: unknown) => number) { this.cbs.set('configuring', cb); }
    registerOnActivate(cb: (prev: unknown) => number) { this.cbs.set('activating', cb); }
    registerOnDeactivate(cb: (prev: unknown) => number) { this.cbs.set('deactivating', cb); }
    registerOnCleanup(cb: (prev: unknown) => number) { this.cbs.set('cleaningup', cb); }
    registerOnShutdown(cb: (prev: unknown) => number) { this.cbs.set('shuttingdown', cb); }
    registerOnError(cb: (prev: unknown) => number) { this.cbs.set('errorprocessing', cb); }

    configure(rv?: CallbackReturnValue) { return this.change('configure', rv); }
    activate(rv?: CallbackReturnValue) { return this.change('activate', rv); }
    deactivate(rv?: CallbackReturnValue) { return this.change('deactivate', rv); }
    cleanup(rv?: CallbackReturnValue) { return this.change('cleanup', rv); }
    shutdown(rv?: CallbackReturnValue) { return this.change('shutdown', rv); }

    private run(via: string): number {
      const cb = this.cbs.get(via);
      if (!cb) return 97;
      try {
        return cb(this.currentState);
      } catch {
        return 99;
      }
    }

    /** As rclnodejs: the callback runs synchronously; SUCCESS goes on, FAILURE back, ERROR through error processing. */
    private change(label: string, rv?: CallbackReturnValue) {
      const t = TRANSITIONS[label];
      if (!t || !t.from.includes(this.state)) throw new Error(`No transition available from state ${label}`);
      const start = this.state;
      let code = this.run(t.via);
      if (rv) rv.value = code;
      if (code === 97) this.state = t.to;
      else if (code === 98) this.state = start;
      else {
        code = this.run('errorprocessing');
        if (rv) rv.value = code;
        this.state = code === 97 ? 'unconfigured' : 'finalized';
      }
      return this.currentState;
    }

    /** The ChangeState service handler, as rclnodejs 2.2 writes it. */
    _onChangeState(request: { transition: { id: number; label: string } }, response: { send(r: { success: boolean }): void }) {
      const label = request.transition.label || ID_LABEL[request.transition.id];
      const rv = new CallbackReturnValue();
      this.change(label, rv);
      response.send({ success: rv.isSuccess() });
    }

    /** What `ros2 lifecycle set NODE LABEL` does: a ChangeState request, answered when the handler sends. */
    requestTransition(label: string): Promise<boolean> {
      return new Promise((resolve, reject) => {
        try {
          const handler = (this as unknown as { _onChangeState: LifecycleNode['_onChangeState'] })._onChangeState;
          Promise.resolve(handler.call(this, { transition: { id: 0, label } }, { send: (r) => resolve(r.success) })).catch(reject);
        } catch (e) {
          reject(e);
        }
      });
    }
  }

  const parameterRules = () => rules as unknown as ParameterRule[];
  const callService = (name: string, request: object = {}) => new Promise<Record<string, unknown>>((resolve, reject) => {
    const handler = services.get(name);
    if (!handler) return reject(new Error(`no service ${name}`));
    handler(request, { template: {}, send: resolve });
  });
  const rcl = {
    init: async () => undefined,
    shutdown: () => undefined,
    Node,
    Parameter,
    ParameterDescriptor,
    QoS,
    lifecycle: { LifecycleNode, CallbackReturnValue },
  };
  return { rcl: rcl as unknown as Rclnodejs, bus, logs, parameterRules, callService };
}
