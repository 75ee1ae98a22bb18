import { InputError } from '../../input-error.js';
import { buildStepGraphs } from '../../kernels/graphs.js';
import { GpuProgram, tickHeader, WebGpuBackend } from '../../kernels/webgpu.js';
import {
  BIG, particleLayout, PARTICLE_WORKGROUP, PW_FIELDS, SMC_FLAG, SMC_HEADER, SMC_SCALAR, SMC_TIME_BUFFERS, SMC_TIME_ENTRY_POINTS, smcOutLayout, wgslSmcTimeSource,
} from '../../kernels/wgsl-smc-time.js';
import { packPrior, priorFunctionWgsl } from '../../learned/wgsl.js';
import type { Model } from '../../models/model.js';
import { controlScaling, toControls } from '../../models/controls.js';
import { applyPlannerChanges, PlanRequest, PlanResult, PriorGuide, RecedingPlanner } from '../receding.js';
import { distilStdFloor, guideDrawCount, smcTimeReport, type SmcTimeParams, type SmcVariant } from './receding.js';

type EntryPoint = (typeof SMC_TIME_ENTRY_POINTS)[number];

interface ParticleBuffers {
  particles: number;
  atoms: number;
  PT: GPUBuffer;
  TR: GPUBuffer;
  PW: GPUBuffer;
  IX: GPUBuffer;
  R: GPUBuffer;
  staging: GPUBuffer;
  bindGroup: GPUBindGroup;
  layout: ReturnType<typeof smcOutLayout>;
}

/** What a test or a debugging session can read of the last pass (a second read-back; the planner itself never reads it). */
export interface SmcTimeHistory {
  /** per step t < depth, per particle: the action proposed (normalised, m) and its log(pi / q) */
  actions: Float64Array[];
  logCorrections: Float64Array[];
  /** per step: the ancestors drawn after it (K), or undefined where the step did not resample */
  resampled: (Int32Array | undefined)[];
  /** the final log weights and root ancestors */
  logWeights: Float64Array;
  ancestors: Int32Array;
  backedUp: Float64Array;
  backedUpBaseline: Float64Array;
  /** TRT-SMC: Q of each particle's B atoms at the last step (K x B; +Infinity where not finite) */
  atomQ: Float64Array;
}

/**
 * SPO and TRT-SMC with the whole pass on the GPU (`backend: webgpu`): the
 * same algorithm and parameters as `SmcTimePlanner` (smcOverTime), in f32,
 * the prior's networks in WGSL (weights uploaded once). Per tick the host
 * uploads the header (state, reference, settings), submits once (once per
 * step under a deadline, to judge whether another fits) and reads back one
 * block: the plan, q-hat, the first step's distribution, the ESS and beta
 * series. The last plan stays on the GPU for the warm start. Noise is Philox,
 * keyed by the seed and counted by (particle, step, tick): seeded runs repeat.
 */
export class GpuSmcTimePlanner implements RecedingPlanner {
  readonly name: string;
  private tick = 0;
  private warm = false;
  private first: { mean: number[]; sigma: number[] } | undefined;
  private buffers: ParticleBuffers | undefined;
  /** the depth the last pass was asked for (where it resampled follows from it) */
  private passDepth = 0;
  private readonly scaling;
  private readonly NET: GPUBuffer;
  private readonly P: GPUBuffer;

  private constructor(
    readonly model: Model,
    readonly params: SmcTimeParams & Record<string, unknown>,
    private readonly seed: number,
    private readonly program: GpuProgram<EntryPoint>,
    readonly guide: PriorGuide,
    private readonly variant: SmcVariant,
  ) {
    this.name = variant.name;
    this.scaling = controlScaling(model);
    const weights = packPrior(guide.prior.networks);
    this.NET = program.storage(weights.length, GPUBufferUsage.COPY_DST, 'the prior\'s networks');
    program.write(this.NET, 0, weights);
    this.P = program.storage(SMC_HEADER.context + 2 * model.stateDim + model.controlDim, GPUBufferUsage.COPY_DST);
  }

  static async create(model: Model, backend: WebGpuBackend, params: SmcTimeParams & Record<string, unknown>, seed: number, guide: PriorGuide, variant: SmcVariant): Promise<GpuSmcTimePlanner> {
    const learned = priorFunctionWgsl(guide.prior.meta, guide.prior.networks, 'NET');
    const code = wgslSmcTimeSource(buildStepGraphs(model, false), controlScaling(model), learned);
    const program = await GpuProgram.create<EntryPoint>(backend, code, `${model.name}-${variant.name}`, SMC_TIME_BUFFERS, SMC_TIME_ENTRY_POINTS);
    return new GpuSmcTimePlanner(model, params, seed, program, guide, variant);
  }

  reset(): void {
    this.warm = false;
    this.first = undefined;
  }

  /** As `SmcTimePlanner`; a new particle or atom count reallocates at the next tick (and starts cold: the last plan lived in the old buffers). */
  updateParams(changes: Readonly<Record<string, unknown>>): void {
    applyPlannerChanges(this.params, this.guide, changes);
  }

  firstStep(): { mean: number[]; sigma: number[] } | undefined {
    return this.first;
  }

  private atoms(): number {
    return this.variant.gpu.trustRegion ? this.params.atoms as number : 1;
  }

  private buffersFor(K: number, B: number): ParticleBuffers {
    const have = this.buffers;
    if (have && have.particles === K && have.atoms === B) return have;
    if (have) for (const b of [have.PT, have.TR, have.PW, have.IX, have.R, have.staging]) b.destroy();
    this.warm = false;
    const { stateDim: n, controlDim: m, horizon: H } = this.model;
    const program = this.program;
    const { limits } = program.backend.gpu.device;
    const groups = Math.ceil((K * B) / PARTICLE_WORKGROUP);
    if (groups > limits.maxComputeWorkgroupsPerDimension) {
      throw new InputError(`${this.name}.particles x ${this.name}.atoms = ${K} x ${B} exceeds this adapter's dispatch limit (${limits.maxComputeWorkgroupsPerDimension * PARTICLE_WORKGROUP} invocations)`);
    }
    const D = H * m;
    const sized = `${this.name}.particles = ${K}`;
    const PT = program.storage(2 * K * particleLayout(n, m).stride, 0, sized);
    const TR = program.storage(2 * K * D + H * K * (m + 1), GPUBufferUsage.COPY_SRC, `${sized} (x ${H} steps of trajectories and their history)`);
    const PW = program.storage(K * (PW_FIELDS.rootAction + m) + K * B, GPUBufferUsage.COPY_SRC, `${sized} x ${this.name}.atoms = ${B}`);
    const IX = program.storage(3 * K + H * K, GPUBufferUsage.COPY_SRC, sized);
    const layout = smcOutLayout(H, m, K);
    const R = program.storage(layout.start + layout.length, GPUBufferUsage.COPY_SRC);
    const staging = program.staging(layout.length);
    const bindGroup = program.bindGroup({ P: this.P, PT, TR, PW, IX, R, NET: this.NET });
    this.buffers = { particles: K, atoms: B, PT, TR, PW, IX, R, staging, bindGroup, layout };
    return this.buffers;
  }

  private header(req: PlanRequest, K: number, B: number, depth: number): ArrayBuffer {
    const p = this.params;
    const { buffer, words, floats } = tickHeader(SMC_HEADER.context, req);
    const g = this.guide.settings;
    const v = this.variant;
    words[SMC_HEADER.particles] = K;
    words[SMC_HEADER.tick] = this.tick;
    words[SMC_HEADER.seed] = this.seed >>> 0;
    words[SMC_HEADER.flags] = (p.warmStart && this.warm ? SMC_FLAG.guide : 0) | (p.meanParticle ? SMC_FLAG.meanParticle : 0)
      | (v.revive(p) ? SMC_FLAG.revive : 0) | (v.gpu.trustRegion ? SMC_FLAG.trustRegion : 0) | (v.gpu.backedUp ? SMC_FLAG.backedUp : 0)
      | (p.command === 'sample' ? SMC_FLAG.commandSample : 0) | (p.resampling === 'multinomial' ? SMC_FLAG.multinomial : 0)
      | (g.value && g.valueWeight > 0 ? SMC_FLAG.value : 0);
    words[SMC_HEADER.depth] = depth;
    words[SMC_HEADER.resampleEvery] = p.resampleEvery;
    words[SMC_HEADER.shiftSteps] = Math.min(Math.max(0, Math.round(req.shiftSteps ?? 1)), this.model.horizon - 1);
    words[SMC_HEADER.atoms] = B;
    floats[SMC_HEADER.eta] = p.eta;
    floats[SMC_HEADER.klBound] = p.klBound;
    floats[SMC_HEADER.gamma] = p.gamma;
    floats[SMC_HEADER.policyStdScale] = p.policyStdScale;
    floats[SMC_HEADER.alpha] = v.gpu.trustRegion ? p.alpha as number : 0;
    floats[SMC_HEADER.valueWeight] = g.valueWeight;
    words[SMC_HEADER.guideDraws] = guideDrawCount(p);
    floats[SMC_HEADER.guideStdScale] = p.warmStartStdScale;
    return buffer;
  }

  async plan(req: PlanRequest): Promise<PlanResult> {
    const p = this.params;
    const H = this.model.horizon;
    const depth = p.depth > 0 ? Math.min(p.depth, H) : H;
    const K = p.particles;
    const B = this.atoms();
    const buffers = this.buffersFor(K, B);
    const program = this.program;
    program.write(this.P, 0, this.header(req, K, B, depth));
    this.tick++;
    this.passDepth = depth;
    const perParticle = Math.ceil(K / PARTICLE_WORKGROUP);
    const perAtom = Math.ceil((K * B) / PARTICLE_WORKGROUP);
    const step = (dispatch: (entry: EntryPoint, groups?: number) => void) => {
      if (this.variant.gpu.trustRegion) dispatch('atoms', perAtom);
      dispatch('advance', perParticle);
      dispatch('weigh');
    };
    const readOut = (enc: GPUCommandEncoder) => enc.copyBufferToBuffer(buffers.R, buffers.layout.start * 4, buffers.staging, 0, buffers.staging.size);
    let stepsRun = 0;
    if (req.deadline === undefined) {
      program.submit(buffers.bindGroup, (dispatch) => {
        dispatch('prepare');
        for (let t = 0; t < depth; t++) step(dispatch);
        dispatch('close');
      }, readOut);
      stepsRun = depth;
    } else {
      // anytime, as on the CPU: a plan always has its first step, a later one only if it can end by the deadline (judged by the slowest so far)
      let slowestMs = 0;
      for (let t = 0; t < depth; t++) {
        const start = performance.now();
        if (t > 0 && start + slowestMs >= req.deadline) break;
        program.submit(buffers.bindGroup, (dispatch) => {
          if (t === 0) dispatch('prepare');
          step(dispatch);
        });
        await program.idle();
        stepsRun++;
        slowestMs = Math.max(slowestMs, performance.now() - start);
      }
      program.submit(buffers.bindGroup, (dispatch) => dispatch('close'), readOut);
    }
    const out = await program.read(buffers.staging);
    this.warm = true;
    return this.result(out, buffers.layout, depth, stepsRun);
  }

  private result(out: Float32Array, at: ReturnType<typeof smcOutLayout>, depth: number, stepsRun: number): PlanResult {
    const { controlDim: m, horizon: H } = this.model;
    const K = this.params.particles;
    const slice = (from: number, count: number) => Float64Array.from(out.subarray(from, from + count));
    const d = out[at.depth];
    if (out[at.priorBad] > 0.5) throw new Error(`${this.name}: the learned prior's output is not finite at the current state`);
    const q = slice(at.qHat, K);
    if (!q.every(Number.isFinite)) throw new Error(`${this.name}: q-hat is not finite (the learned prior's output or the model went non-finite at every particle)`);
    const z = slice(at.plan, H * m);
    const floor = distilStdFloor(this.params.distilStdMin);
    const sigma = Array.from(slice(at.firstSigma, m), (v) => Math.max(floor, v));
    this.first = { mean: Array.from(slice(at.firstMean, m)), sigma };
    const cost = out[at.cost] >= BIG ? Infinity : out[at.cost];
    return {
      controls: toControls(z, this.scaling),
      cost,
      ...smcTimeReport(this.variant, {
        particles: K, horizon: H, depthAsked: depth, depthReached: d, stopped: stepsRun < depth, essRatios: Array.from(slice(at.ess, d)), finalEss: out[at.finalEss],
        resamples: out[at.resamples], eta: out[at.eta], valueRoot: out[at.valueRoot], valueSmc: cost, qHat: q,
        figures: Array.from(slice(at.beta, d), (b) => (b >= BIG ? Infinity : b)),
      }),
    };
  }

  /** The last pass's particles and proposals (a second read-back, for tests and debugging). */
  async history(): Promise<SmcTimeHistory> {
    const b = this.buffers;
    if (!b) throw new Error(`${this.name}: no pass has run yet`);
    const { controlDim: m, horizon: H } = this.model;
    const K = b.particles;
    const D = H * m;
    const read = async (buffer: GPUBuffer, fromWords: number, words: number) => {
      const staging = this.program.staging(words);
      this.program.submit(b.bindGroup, () => undefined, (enc) => enc.copyBufferToBuffer(buffer, fromWords * 4, staging, 0, words * 4));
      const data = await this.program.read(staging);
      staging.destroy();
      return data;
    };
    const scalars = await read(b.R, 0, SMC_SCALAR.plans);
    const depth = scalars[SMC_SCALAR.depth];
    const hist = await read(b.TR, 2 * K * D, H * K * (m + 1));
    const pw = await read(b.PW, 0, K * (PW_FIELDS.rootAction + m) + K * b.atoms);
    const ix = new Uint32Array((await read(b.IX, 0, 3 * K + H * K)).buffer);
    const field = (f: number) => Float64Array.from({ length: K }, (_, i) => {
      const v = pw[i * (PW_FIELDS.rootAction + m) + f];
      return v <= -1e38 ? -Infinity : v;
    });
    const every = this.params.resampleEvery;
    const actions: Float64Array[] = [];
    const logCorrections: Float64Array[] = [];
    const resampled: (Int32Array | undefined)[] = [];
    for (let t = 0; t < depth; t++) {
      actions.push(Float64Array.from({ length: K * m }, (_, k) => hist[(t * K + Math.floor(k / m)) * (m + 1) + (k % m)]));
      logCorrections.push(Float64Array.from({ length: K }, (_, i) => hist[(t * K + i) * (m + 1) + m]));
      // as scheduled, except the step where a pass with no finite weight left stopped instead
      const stoppedHere = scalars[SMC_SCALAR.stop] > 0.5 && t === depth - 1;
      resampled.push((t + 1) % every === 0 && t + 1 < this.passDepth && !stoppedHere ? Int32Array.from(ix.subarray(3 * K + t * K, 3 * K + (t + 1) * K)) : undefined);
    }
    return {
      actions, logCorrections, resampled,
      logWeights: field(PW_FIELDS.logW), ancestors: Int32Array.from(ix.subarray(0, K)),
      backedUp: field(PW_FIELDS.backedUp), backedUpBaseline: field(PW_FIELDS.baseline),
      atomQ: Float64Array.from(pw.subarray(K * (PW_FIELDS.rootAction + m)), (v) => (v >= BIG ? Infinity : v)),
    };
  }
}
