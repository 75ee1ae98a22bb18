import { channel } from '../../src/telemetry/channels.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { TYPES } from '../../src/interfaces/definitions.js';
import { decodeCommand, StateCodec, toTime } from '../../src/interfaces/messages.js';
import { modelDefinition } from '../../src/models/index.js';
import { Model, resolveModel } from '../../src/models/model.js';
import { LiveParameters, ParamEntry, ParamsOf, resolveParams, schemaEntries, Schema } from '../../src/params.js';
import { SIM_NODE_PARAMS, SIM_PARAMS, SimParams, Simulator, simulatorParameterTable } from '../../sim/simulator.js';
import type { ParameterRule } from './overrides.js';
import { adoptCommandLine, Declaring, declareAll, onSetParameters, readAll } from './parameters.js';
import { channelQos, keepLast1, Node, nowS, Publisher, Rclnodejs, Timer } from './rcl.js';

export interface SimulatorNodeOptions {
  name?: string;
  namespace?: string;
  /** the command line's parameter rules (overrides.ts: commandLineRules) */
  parameterRules?: readonly ParameterRule[];
}

/** Republish the waiting state this often in lockstep, for subscribers that join late or lose it (best effort). */
const REPUBLISH_MS = 500;

/**
 * The ROS door of the bundled simulator: the plant of `tempered-mpc run`,
 * stepped on its own timer with the last command held (`stepping: realtime`),
 * or in lockstep: it publishes /clock and the state, waits for the next
 * command and steps one period, so a slow machine still runs a deterministic
 * closed loop. Publishes `state` (with the measurement noise) and
 * `true_state`; takes `command` (std_msgs/Float64MultiArray).
 */
export class SimulatorNode {
  readonly node: Node;
  readonly sim: Simulator;
  readonly model: Model;
  readonly codec: StateCodec;
  readonly periodS: number;
  private readonly live: LiveParameters;
  private readonly nodeParams: ParamsOf<typeof SIM_NODE_PARAMS>;
  private readonly pub: { state: Publisher; trueState: Publisher; clock?: Publisher };
  private command: number[];
  private steps = 0;
  private timer: Timer | undefined;
  private running = false;
  /** lockstep: resolves when the command for the waiting state arrives */
  private awaitingCommand: ((u: number[]) => void) | undefined;
  rejectedCommands = 0;
  lastRejection = '';

  constructor(rcl: Rclnodejs, opts: SimulatorNodeOptions = {}) {
    const node = new rcl.Node(opts.name ?? 'tempered_mpc_simulator', opts.namespace ?? '');
    this.node = node;
    const entries = new Map<string, ParamEntry>();
    // a simulator runs from the start: its read-only parameters are bound from the start
    const bound = () => true;
    node.addOnSetParametersCallback(onSetParameters(node, entries, () => (this.live ? (c) => this.live.request(c) : undefined), bound, 'restart the simulator to change it'));
    const commandLine = adoptCommandLine(rcl, node, opts.parameterRules ?? []);
    const how: Declaring = { overrides: commandLine.overrides, bound, bindsAt: 'read-only' };
    // `system` first: the rest depends on the plant
    const systemEntries = schemaEntries({ system: SIM_NODE_PARAMS.system });
    const problems = declareAll(rcl, node, systemEntries, { system: SIM_NODE_PARAMS.system.default }, how);
    const system = String(node.getParameter('system').value);
    const def = modelDefinition(system);
    const { entries: all, values: defaults } = simulatorParameterTable(system);
    const table = all.filter((e) => e.key !== 'system');
    for (const e of all) entries.set(e.key, e);
    declareAll(rcl, node, table, defaults, how).forEach((reason, key) => problems.set(key, reason));
    commandLine.warnUnused();
    // a simulator cannot run on bad parameters: fail at start, naming them
    if (problems.size) throw new Error(`simulator parameters: ${[...problems.values()].join('; ')}`);
    const values = { system, ...readAll(node, table) };
    this.live = new LiveParameters([...entries.values()], values as never);
    const group = (prefix: string) => Object.fromEntries(Object.entries(values).filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v]));
    this.nodeParams = resolveParams('simulator', SIM_NODE_PARAMS as Schema, pick(values, Object.keys(SIM_NODE_PARAMS))) as ParamsOf<typeof SIM_NODE_PARAMS>;
    const simParams = resolveParams('sim', SIM_PARAMS, pick(values, Object.keys(SIM_PARAMS))) as SimParams;
    this.periodS = 1 / this.nodeParams.stateRateHz;
    this.sim = new Simulator(def, this.periodS, simParams, this.nodeParams.seed, group('model.'));
    this.model = this.sim.plant;
    this.codec = new StateCodec(resolveModel(def, group('model.')));
    this.command = new Array<number>(this.model.controlDim).fill(0);
    const lockstep = this.nodeParams.stepping === 'lockstep';
    this.pub = {
      state: node.createPublisher(this.codec.type as never, 'state', { qos: channelQos(rcl, channel('state').qos) }) as unknown as Publisher,
      trueState: node.createPublisher(this.codec.type as never, 'true_state', { qos: channelQos(rcl, channel('true_state').qos) }) as unknown as Publisher,
      ...(lockstep ? { clock: node.createPublisher(TYPES.clock as never, '/clock', { qos: keepLast1(rcl, true) }) as unknown as Publisher } : {}),
    };
    node.createSubscription(TYPES.command as never, 'command', { qos: channelQos(rcl, channel('command').qos) }, (msg: unknown) => this.onCommand(msg));
  }

  get lockstep(): boolean {
    return this.nodeParams.stepping === 'lockstep';
  }

  /** Starts stepping: a wall-clock timer, or the lockstep loop (which runs until stop()). */
  start(): Promise<void> {
    this.running = true;
    this.node.getLogger().info(`simulating ${this.model.name} ${this.lockstep ? 'in lockstep' : `at ${this.nodeParams.stateRateHz} Hz`} (substeps ${this.sim.params.substeps}, process noise ${this.sim.params.processNoise}, measurement noise ${this.sim.params.measurementNoise})`);
    if (this.lockstep) return this.lockstepLoop();
    this.publishState(nowS(this.node));
    this.timer = this.node.createTimer(BigInt(Math.round(this.periodS * 1e9)), () => {
      this.applyParameters();
      this.sim.advance(this.command, this.periodS);
      this.steps++;
      this.publishState(nowS(this.node));
    });
    return Promise.resolve();
  }

  stop(): void {
    this.running = false;
    if (this.timer) this.node.destroyTimer(this.timer);
    this.timer = undefined;
    this.awaitingCommand?.(this.command);
  }

  /** Simulated time of the current step: an integer count of periods, so stamps never drift. */
  get timeS(): number {
    return this.steps * this.periodS;
  }

  private async lockstepLoop(): Promise<void> {
    while (this.running) {
      this.applyParameters();
      const t = this.timeS;
      this.pub.clock!.publish({ clock: toTime(t) } as never);
      const message = this.publishState(t);
      const u = await this.waitForCommand(message, this.steps === 0 ? Infinity : this.nodeParams.lockstepTimeoutS * 1000);
      if (!this.running) break;
      this.sim.advance(u, this.periodS);
      this.steps++;
    }
  }

  private async waitForCommand(message: unknown, timeoutMs: number): Promise<number[]> {
    const started = performance.now();
    let answered = false;
    const command = new Promise<number[]>((resolve) => {
      this.awaitingCommand = (u) => {
        answered = true;
        resolve(u);
      };
    });
    while (!answered && this.running) {
      if (performance.now() - started >= timeoutMs) {
        this.node.getLogger().warn(`lockstep: no command within ${this.nodeParams.lockstepTimeoutS} s at t = ${this.timeS.toFixed(3)} s; stepping on with the last one`);
        this.awaitingCommand = undefined;
        return this.command;
      }
      await Promise.race([command, sleep(Math.min(REPUBLISH_MS, timeoutMs))]);
      if (!answered && this.running) this.pub.state.publish(message as never);
    }
    return command;
  }

  private publishState(timeS: number): unknown {
    const measured = this.codec.encode(this.sim.measure(), timeS);
    this.pub.state.publish(measured as never);
    this.pub.trueState.publish(this.codec.encode(this.sim.state, timeS) as never);
    return measured;
  }

  private onCommand(msg: unknown): void {
    const d = decodeCommand(this.model, msg);
    if (!d.ok) {
      // a plant given nonsense gets the safe command, never the nonsense
      this.rejectedCommands++;
      this.lastRejection = d.reason;
      this.node.getLogger().warn(`command refused, holding zero: ${d.reason}`);
    }
    this.command = d.ok ? d.control : new Array<number>(this.model.controlDim).fill(0);
    const waiting = this.awaitingCommand;
    this.awaitingCommand = undefined;
    waiting?.(this.command);
  }

  private applyParameters(): void {
    const changes = this.live.takePending();
    if (!changes) return;
    const simKeys = Object.entries(changes).filter(([k]) => Object.hasOwn(SIM_PARAMS, k));
    Object.assign(this.sim.params, Object.fromEntries(simKeys));
    const nodeKeys = Object.entries(changes).filter(([k]) => Object.hasOwn(SIM_NODE_PARAMS, k));
    Object.assign(this.nodeParams, Object.fromEntries(nodeKeys));
  }
}

const pick = (o: Readonly<Record<string, unknown>>, keys: readonly string[]) => Object.fromEntries(keys.filter((k) => k in o).map((k) => [k, o[k]]));
