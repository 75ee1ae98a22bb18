import { setTimeout as sleep } from 'node:timers/promises';
import type { TickResult } from '../../src/controller/controller.js';
import { TYPES } from '../../src/interfaces/definitions.js';
import { channel, CHANNELS, logTopics, TICK_CHANNELS, tickMessages, topicOf } from '../../src/telemetry/channels.js';
import { fromTime } from '../../src/interfaces/messages.js';
import type { ParamEntry } from '../../src/params.js';
import { ControllerSession } from '../../src/run/session.js';
import { loadSystem } from '../../src/models/index.js';
import { controllerParameterTable, resolveRunParams, SYSTEM_PARAM } from '../../src/run/setup.js';
import { serveTelemetry, Telemetry, telemetryBanner, TelemetrySource } from '../../src/telemetry/server.js';
import { serveLifecycleIntrospection, transitionGraph, transitionsFrom } from './lifecycle.js';
import type { ParameterRule } from './overrides.js';
import { adoptCommandLine, Declaring, declareAll, onSetParameters, readAll, toRos } from './parameters.js';
import { CALLBACK, channelQos, keepLast1, LifecycleNode, nowS, Publisher, Rclnodejs, subscriberCount, Subscription, Timer } from './rcl.js';

/** How long activation waits for a first state before it goes on without a warm-up solve. */
const FIRST_STATE_WAIT_MS = 2000;
/** How long stopping waits for a tick still planning before it publishes the safe command over it. */
const STOP_TICK_WAIT_MS = 1000;
/** How long stopping waits for the subscribers to acknowledge the safe command (reliable QoS). */
const SAFE_COMMAND_ACK_NS = 500_000_000n;
/** While configured but inactive the status still says so, this often. */
const INACTIVE_STATUS_PERIOD_NS = 1_000_000_000n;

export interface ControllerNodeOptions {
  name?: string;
  namespace?: string;
  /** the command line's parameter rules (overrides.ts: commandLineRules) */
  parameterRules?: readonly ParameterRule[];
}

/**
 * The ROS door of the controller: a managed (lifecycle) node around one
 * ControllerSession, the same one `tempered-mpc run` drives.
 *
 * - configure: reads and checks the parameters, builds model, kernels and
 *   planner, creates the subscriptions (state, goal) and publishers
 *   (command, plan, status);
 * - activate: the warm-up solve from the latest state, then ticks: on a
 *   wall timer at rateHz, or with use_sim_time on the state messages of the
 *   simulated clock (lockstep with the simulator node);
 * - deactivate: stops ticking and publishes the safe command once;
 * - cleanup / shutdown: releases everything; shutdown, error processing and
 *   `stop()` (the process's signals and exit) publish the safe command
 *   first when the node was active, so no path out of active leaves the
 *   last command standing on the actuators.
 *
 * Read-only parameters bind at configure: before it, a bad value from a
 * parameter file can be set right with `ros2 param set`.
 *
 * rclnodejs 2.2 runs transition callbacks synchronously, while building the
 * kernels and the warm-up solve are asynchronous; so the ChangeState service
 * first awaits that work (`prepare`), then lets the state machine run the
 * transition, whose callback only commits what was prepared. A failure in
 * either fails the transition with a logged reason; the process stays up.
 */
export class ControllerNode {
  readonly node: LifecycleNode;
  private readonly entries: ParamEntry[] = [];
  private readonly entryMap = new Map<string, ParamEntry>();
  /** bad parameter-file values, by key, until the parameter is set right */
  private readonly declareProblems = new Map<string, string>();
  private session: ControllerSession | undefined;
  private telemetry: Telemetry | undefined;
  private prepared: { session?: ControllerSession; telemetry?: Telemetry; error?: string } | undefined;
  /** one publisher per controller channel of the channel table (the estimate only with an estimator), by channel name */
  private publishers: Map<string, Publisher> | undefined;
  private subscriptions: Subscription[] = [];
  private timer: Timer | undefined;
  private statusTimer: Timer | undefined;
  private active = false;
  /** set by activate, cleared by the safe command: whoever ends the node while set publishes it */
  private safeCommandOwed = false;
  private inFlight: Promise<void> | undefined;
  private useSimTime = false;
  /** sim time: the latest /clock and the next tick time */
  private clockS = -Infinity;
  private nextTickS = -Infinity;
  private lastStateStampS = -Infinity;
  /** ticks whose timer fired while the previous tick was still planning */
  skippedTicks = 0;

  constructor(private readonly rcl: Rclnodejs, opts: ControllerNodeOptions = {}) {
    const node = new rcl.lifecycle.LifecycleNode(opts.name ?? 'tempered_mpc_controller', opts.namespace ?? '');
    this.node = node;
    serveLifecycleIntrospection(node, () => this.lifecycleState);
    const configured = () => this.session !== undefined;
    const check = onSetParameters(node, this.entryMap, () => (this.session ? (c) => this.session!.requestParameters(c) : undefined), configured, 'cleanup, set it, then configure again');
    node.addOnSetParametersCallback((parameters) => {
      const result = check(parameters);
      if (result.successful) for (const p of parameters) this.declareProblems.delete(p.name);
      return result;
    });
    const commandLine = adoptCommandLine(rcl, node, opts.parameterRules ?? []);
    this.declareParameters({ overrides: commandLine.overrides, bound: configured, bindsAt: 'read-only from configure on' });
    commandLine.warnUnused();
    node.registerOnConfigure(() => this.commitConfigure());
    node.registerOnActivate(() => this.commitActivate());
    node.registerOnDeactivate(() => this.onDeactivate());
    node.registerOnCleanup(() => this.onCleanup('cleaned up'));
    node.registerOnShutdown(() => this.onShutdown('shut down'));
    node.registerOnError(() => this.onShutdown('error processing'));
    // ChangeState requests (ros2 lifecycle set, launch) take the same way as transition(): the asynchronous part first
    const machine = node as unknown as { _onChangeState(request: unknown, response: unknown): unknown };
    machine._onChangeState = async (request: { transition: { id: number; label: string } }, response: ChangeStateResponse) => {
      const result = response.template ?? { success: false };
      // transition() refuses, in one line, any label that is not a transition possible now
      result.success = await this.transition((request.transition.label || labelOf(request.transition.id) || `transition ${request.transition.id}`) as TransitionLabel);
      response.send(result);
    };
  }

  /** Transitions one at a time: a request that comes while another is preparing is judged from the state that one leaves. */
  private transitions: Promise<unknown> = Promise.resolve();
  private serially<T>(run: () => Promise<T>): Promise<T> {
    const next = this.transitions.then(run);
    this.transitions = next.catch(() => undefined);
    return next;
  }

  /** Whether `label` can be taken from the current state; if not, says so in one line (rcl would log an ERROR for a request that is merely not possible now). */
  private possible(label: string): boolean {
    const state = this.lifecycleState;
    const available = transitionsFrom(state);
    if (available.some((t) => t.transition.label === label)) return true;
    this.log('warn', `${label}: not possible from ${state} (possible: ${available.map((t) => t.transition.label).join(', ') || 'none'})`);
    return false;
  }

  /** Declares `system`, then everything its model needs, with the MPC defaults of that system. */
  private declareParameters(how: Declaring): void {
    const systemEntry: ParamEntry = { key: 'system', def: SYSTEM_PARAM, readOnly: SYSTEM_PARAM.readOnly };
    const note = (problems: Map<string, string>) => problems.forEach((reason, key) => this.declareProblems.set(key, reason));
    note(declareAll(this.rcl, this.node, [systemEntry], { system: SYSTEM_PARAM.default }, how));
    const system = String(this.node.getParameter('system').value);
    const table = controllerParameterTable(resolveRunParams(system, {}));
    for (const e of table.entries) {
      this.entries.push(e);
      this.entryMap.set(e.key, e);
    }
    note(declareAll(this.rcl, this.node, table.entries, table.values, how));
  }

  /**
   * Runs a transition, as a ChangeState request does: refused in one line
   * when not possible from the current state, else the asynchronous part,
   * then the state machine. One at a time (serially).
   */
  transition(label: TransitionLabel): Promise<boolean> {
    return this.serially(async () => {
      if (!this.possible(label)) return false;
      await this.prepare(label);
      const result = new this.rcl.lifecycle.CallbackReturnValue();
      try {
        this.node[label](result);
      } catch (e) {
        this.discardPrepared();
        this.log('error', `${label}: ${(e as Error).message}`);
        return false;
      }
      return result.isSuccess();
    });
  }

  get lifecycleState(): string {
    // rclnodejs 2.2's State carries `id` and `label`; its declarations promise an asMessage() the runtime lacks
    const state = this.node.currentState as unknown as { label?: string; asMessage?: () => { label: string } };
    return (state.label ?? state.asMessage?.().label ?? '').toLowerCase();
  }

  private async prepare(label: string): Promise<void> {
    this.discardPrepared();
    const state = this.lifecycleState;
    try {
      // the expensive part only where the state machine will take the transition
      if (label === 'configure' && state === 'unconfigured') {
        const session = await this.buildSession();
        this.prepared = { session };
        if (session.params.controller.telemetryPort > 0) {
          const served = await serveTelemetry(this.telemetrySource(session), session.params.controller, logTopics(session.codec.type, session.estimator !== undefined));
          this.prepared.telemetry = served.telemetry;
          this.log('info', telemetryBanner(served.telemetry, served.address));
        }
      }
      else if (label === 'activate' && state === 'inactive' && this.session) {
        // the warm-up solve needs a state: give a starting sensor (or a lockstep simulator's republish) a moment
        for (let waited = 0; !this.session.controller.hasState && waited < FIRST_STATE_WAIT_MS; waited += 10) await sleep(10);
        const warmed = await this.session.warmUp();
        if (!warmed) this.log('warn', 'activate: no state received yet, so no warm-up solve; the first tick plans cold');
        this.prepared = {};
      }
    } catch (e) {
      this.discardPrepared();
      this.prepared = { error: (e as Error).message };
    }
  }

  private discardPrepared(): void {
    void this.prepared?.telemetry?.close();
    this.prepared?.session?.dispose();
    this.prepared = undefined;
  }

  /**
   * The session as the telemetry server sees it, except that a change goes
   * through this node's parameter server: `ros2 param get` and the parameter
   * events then agree with what HTTP or Foxglove set.
   */
  private telemetrySource(session: ControllerSession): TelemetrySource {
    const node = this.node;
    return {
      planner: session.planner, model: session.model, periodS: session.periodS, live: session.live, controller: session.controller,
      get budgetMs() {
        return session.budgetMs;
      },
      parameterValues: () => session.parameterValues(),
      requestParameters: (changes) => {
        const checked = session.live.check(changes);
        if (!checked.ok) return checked;
        const result = node.setParametersAtomically(Object.entries(checked.applied).map(([key, value]) => toRos(this.rcl, this.entryMap.get(key)!, value)));
        return result.successful ? checked : { ok: false, reasons: { parameters: result.reason } };
      },
    };
  }

  private async buildSession(): Promise<ControllerSession> {
    if (this.declareProblems.size) throw new Error([...this.declareProblems.values()].join('; '));
    // the same resolution as `--set` and YAML: every value checked by its schema
    const system = String(this.node.getParameter('system').value);
    // a model file set after start (before configure) is loaded now, and refused here if it cannot be a model
    await loadSystem(system);
    const params = resolveRunParams(system, readAll(this.node, this.entries));
    this.useSimTime = Boolean(this.node.getParameter('use_sim_time').value);
    // under simulated time the simulator waits for every plan: no wall-clock deadlines
    return ControllerSession.create(params, { lockstep: this.useSimTime });
  }

  private commitConfigure() {
    const prepared = this.prepared;
    this.prepared = undefined;
    if (!prepared?.session) return this.fail('configure', prepared?.error ?? 'configure needs its preparation (send it through the ChangeState service or transition())');
    const session = prepared.session;
    try {
      const node = this.node;
      const rcl = this.rcl;
      this.publishers = new Map(TICK_CHANNELS.filter((c) => c.name !== 'state_estimate' || session.estimator)
        .map((c) => [c.name, node.createPublisher(c.type as never, c.name, { qos: channelQos(rcl, c.qos) }) as unknown as Publisher]));
      this.subscriptions = [
        node.createSubscription(session.codec.type as never, 'state', { qos: channelQos(rcl, channel('state').qos) }, (msg: unknown) => this.onState(msg)),
        node.createSubscription(session.codec.type as never, 'goal', { qos: channelQos(rcl, channel('goal').qos) }, (msg: unknown) => this.onGoal(msg)),
      ];
      if (this.useSimTime) {
        this.subscriptions.push(node.createSubscription(TYPES.clock as never, '/clock', { qos: keepLast1(rcl, false) }, (msg: unknown) => this.onClock(msg)));
      }
    } catch (e) {
      void prepared.telemetry?.close();
      session.dispose();
      this.destroyEndpoints();
      return this.fail('configure', (e as Error).message);
    }
    this.session = session;
    this.telemetry = prepared.telemetry;
    this.startInactiveStatus();
    for (const note of session.notes) this.log('warn', note);
    this.log('info', `configured: ${session.params.system} with ${session.planner.name} at ${session.rateHz} Hz (budget ${session.budgetMs.toFixed(1)} ms, ${session.params.controller.backend} backend), state as ${session.codec.type}${this.useSimTime ? ', simulated time' : ''}`);
    return CALLBACK.SUCCESS;
  }

  private commitActivate() {
    const prepared = this.prepared;
    this.prepared = undefined;
    if (!this.session) return this.fail('activate', 'not configured');
    if (!prepared || prepared.error) return this.fail('activate', prepared?.error ?? 'activate needs its preparation (send it through the ChangeState service or transition())');
    this.stopInactiveStatus();
    this.active = true;
    this.safeCommandOwed = true;
    if (this.useSimTime) {
      this.nextTickS = -Infinity;
      queueMicrotask(() => this.maybeTickSimTime());
    } else {
      const periodNs = BigInt(Math.round(this.session.periodS * 1e9));
      this.timer = this.node.createTimer(periodNs, () => this.onTimer());
    }
    this.log('info', 'active');
    return CALLBACK.SUCCESS;
  }

  private onDeactivate() {
    this.stopTicking();
    this.publishSafe('deactivated');
    this.startInactiveStatus();
    this.log('info', 'inactive: published the safe command once');
    return CALLBACK.SUCCESS;
  }

  private onCleanup(what: string) {
    this.stopTicking();
    this.stopInactiveStatus();
    this.destroyEndpoints();
    void this.telemetry?.close();
    this.telemetry = undefined;
    const had = this.session !== undefined;
    this.session?.dispose();
    this.session = undefined;
    if (had) this.log('info', `${what}: released the planner, the model and the topics`);
    return CALLBACK.SUCCESS;
  }

  /** Shutdown and error processing: from active, the safe command goes out before the publishers do. */
  private onShutdown(what: string) {
    this.stopTicking();
    if (this.safeCommandOwed) this.publishSafe(what);
    return this.onCleanup(what);
  }

  /**
   * The way out for the process (SIGINT, SIGTERM, launch's Ctrl-C): stops
   * ticking, lets a tick that is planning finish (bounded) without
   * publishing, publishes the safe command if the node was active and waits
   * (bounded) for its subscribers to acknowledge it, then shuts the node
   * down through its state machine, so `transition_event` says finalized.
   */
  async stop(why: string): Promise<void> {
    this.stopTicking();
    if (this.inFlight) await Promise.race([this.inFlight, sleep(STOP_TICK_WAIT_MS)]);
    if (this.safeCommandOwed) this.publishSafe(why, true);
    if (this.lifecycleState !== 'finalized') await this.transition('shutdown');
  }

  /**
   * Publishes the safe command (and a status saying why) if the node has
   * its publishers; `flush` waits for reliable subscribers to acknowledge.
   * Synchronous, so the process's exit handler can call it too.
   */
  publishSafe(why: string, flush = false): void {
    const session = this.session;
    const publishers = this.publishers;
    if (!session || !publishers) return;
    const tick = this.safeTick(why);
    const command = publishers.get('command')!;
    command.publish(session.commandMessage(tick) as never);
    // owed until it is out: a publish that throws leaves it to error processing or the exit handler
    this.safeCommandOwed = false;
    publishers.get('status')!.publish(session.statusMessage(tick) as never);
    if (flush) (command as unknown as { waitForAllAcked?(timeoutNs: bigint): boolean }).waitForAllAcked?.(SAFE_COMMAND_ACK_NS);
  }

  /** Whether the node was activated and the safe command has not followed: a process exiting then publishes it. */
  get owesSafeCommand(): boolean {
    return this.safeCommandOwed;
  }

  private stopTicking(): void {
    this.active = false;
    if (this.timer) this.node.destroyTimer(this.timer);
    this.timer = undefined;
  }

  /** Configured and inactive: a status once a second, so a monitor sees the node is there and why it does not control. */
  private startInactiveStatus(): void {
    this.stopInactiveStatus();
    this.statusTimer = this.node.createTimer(INACTIVE_STATUS_PERIOD_NS, () => {
      if (!this.session || !this.publishers || this.active) return;
      this.publishers.get('status')!.publish(this.session.statusMessage(this.safeTick('inactive: activate to control')) as never);
    });
  }

  private stopInactiveStatus(): void {
    if (this.statusTimer) this.node.destroyTimer(this.statusTimer);
    this.statusTimer = undefined;
  }

  private destroyEndpoints(): void {
    for (const s of this.subscriptions) this.node.destroySubscription(s);
    this.subscriptions = [];
    if (this.publishers) for (const p of this.publishers.values()) this.node.destroyPublisher(p as never);
    this.publishers = undefined;
  }

  private fail(transition: string, reason: string) {
    this.log('error', `${transition} failed: ${reason}`);
    return CALLBACK.FAILURE;
  }

  private onState(msg: unknown): void {
    const session = this.session;
    if (!session) return;
    const stamp = fromTime((msg as { header?: { stamp?: unknown } } | null)?.header?.stamp);
    // under simulated time the clock and the state travel on two topics: the state's stamp is the time
    const now = this.useSimTime ? Math.max(this.clockS, stamp ?? -Infinity) : nowS(this.node);
    const reason = session.onStateMessage(msg, now);
    this.telemetry?.publish(topicOf('state'), stamp ?? now, () => msg as object);
    if (reason) return this.log('warn', `state refused: ${reason}`, 'state');
    this.lastStateStampS = stamp!;
    if (this.useSimTime) this.maybeTickSimTime();
  }

  private onGoal(msg: unknown): void {
    const reason = this.session?.onGoalMessage(msg);
    if (reason) this.log('warn', `goal refused: ${reason}`);
  }

  private onClock(msg: unknown): void {
    const t = fromTime((msg as { clock?: unknown } | null)?.clock);
    if (t === undefined) return;
    this.clockS = t;
    this.maybeTickSimTime();
  }

  /**
   * Simulated time: tick when the state for the next tick time is in, or,
   * if it never comes, once the clock has passed the stale timeout.
   */
  private maybeTickSimTime(): void {
    const session = this.session;
    if (!this.active || !session || this.inFlight) return;
    const eps = 1e-6;
    let at: number | undefined;
    if (this.lastStateStampS >= this.nextTickS - eps) at = this.lastStateStampS;
    else if (this.clockS >= this.nextTickS + session.controller.timing.staleTimeoutS) at = this.clockS;
    if (at === undefined) return;
    this.nextTickS = at + session.periodS;
    this.startTick(at);
  }

  private onTimer(): void {
    if (this.inFlight) {
      this.skippedTicks++;
      return;
    }
    this.startTick(nowS(this.node));
  }

  private startTick(atS: number): void {
    this.inFlight = this.tick(atS)
      .catch((e) => this.log('error', `tick: ${(e as Error).message}`))
      .finally(() => {
        this.inFlight = undefined;
        if (this.useSimTime) this.maybeTickSimTime();
      });
  }

  private async tick(atS: number): Promise<void> {
    const session = this.session!;
    const tick = await session.tick(atS);
    // deactivated or cleaned up while planning: publish nothing
    if (!this.active || !this.publishers || this.session !== session) return;
    // each controller channel of the table, built once for ROS and the live telemetry; an on-demand one (the plan's predicted states cost a rollout) only for someone who listens
    const t = this.telemetry;
    t?.observe(tick);
    const message = tickMessages(session, tick);
    for (const c of CHANNELS) {
      if (!c.build) continue;
      const publisher = this.publishers.get(c.name);
      if (publisher && (!c.onDemand || subscriberCount(publisher) > 0)) {
        const m = message(c);
        if (m) publisher.publish(m as never);
      }
      // the live server builds only what a client subscribed to, and has a channel only for what this run has
      t?.publish(topicOf(c.name), tick.timeS, () => message(c)!);
    }
  }

  private safeTick(reason: string): TickResult {
    const c = this.session!.controller;
    return { timeS: nowS(this.node), control: c.safeCommand, plan: null, mode: 'waiting', reason, planned: false, solveMs: 0, cost: NaN, info: {}, diagnostics: {} };
  }

  private readonly lastLogged = new Map<string, number>();

  /** Logs through the node's logger; messages with a throttle key at most once a second per key. */
  private log(level: 'info' | 'warn' | 'error', text: string, throttleKey?: string): void {
    if (throttleKey) {
      const now = performance.now();
      if (now - (this.lastLogged.get(throttleKey) ?? -Infinity) < 1000) return;
      this.lastLogged.set(throttleKey, now);
    }
    this.node.getLogger()[level](text);
  }

  /** The session, for status queries and tests. */
  get current(): ControllerSession | undefined {
    return this.session;
  }
}

type TransitionLabel = 'configure' | 'activate' | 'deactivate' | 'cleanup' | 'shutdown';

interface ChangeStateResponse {
  template?: { success: boolean };
  send(result: { success: boolean }): void;
}

/** A ChangeState request's label when it carries only the id (lifecycle_msgs/msg/Transition). */
function labelOf(id: number): string {
  return transitionGraph().find((t) => t.transition.id === id)?.transition.label ?? '';
}
