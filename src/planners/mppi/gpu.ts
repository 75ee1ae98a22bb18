import { InputError } from '../../input-error.js';
import { buildStepGraphs } from '../../kernels/graphs.js';
import { GpuProgram, tickHeader, WebGpuBackend } from '../../kernels/webgpu.js';
import { FLAG, HEADER, MPPI_BUFFERS, NO_COST, ROLLOUT_WORKGROUP, SCALAR, scalarLayout, wgslMppiSource } from '../../kernels/wgsl-mppi.js';
import type { Model } from '../../models/model.js';
import type { ParamsOf } from '../../params.js';
import type { MPPI_PARAMS } from './mppi.js';
import { controlScaling, toControls } from '../../models/controls.js';
import { applyPlannerChanges, PlanRequest, PlanResult, PriorGuide, RecedingPlanner } from '../receding.js';
import { packPrior, priorFunctionWgsl } from '../../learned/wgsl.js';

const ENTRY_POINTS = ['prepare', 'rollout', 'select_elites', 'update', 'rollout_mean', 'finish'] as const;
const PRIOR_ENTRY_POINTS = [...ENTRY_POINTS, 'policy_samples'] as const;
type EntryPoint = (typeof PRIOR_ENTRY_POINTS)[number];

interface SampleBuffers {
  samples: number;
  proposals: number;
  Z: GPUBuffer;
  C: GPUBuffer;
  E: GPUBuffer;
  PR: GPUBuffer;
  bindGroup: GPUBindGroup;
}

/**
 * MPPI with whole iterations on the GPU (`backend: webgpu`): the same
 * algorithm and parameters as `MppiPlanner`, in f32. A learned prior runs
 * on the GPU too (its networks in WGSL, weights uploaded once): its policy's
 * sequences are drawn there at the tick's start and its value closes each
 * rollout (eq. (10)). Per tick the host uploads the state, the reference and
 * the settings, submits once (once per iteration under a deadline, to judge
 * whether another fits), and reads back one small buffer:
 * the plan, its cost, the cost spread and the first step's sigma. Mean,
 * sigma and the previous plan stay on the GPU, so the warm start never
 * crosses the bus. The noise is a Philox stream keyed by the seed and
 * counted by (sample, coordinate, iteration, tick): seeded runs repeat.
 */
export class GpuMppiPlanner implements RecedingPlanner {
  readonly name = 'mppi';
  private warm = false;
  private tick = 0;
  private first: { mean: number[]; sigma: number[] } | undefined;
  private sampleBuffers: SampleBuffers | undefined;
  private readonly scaling;
  private readonly dim: number;
  private readonly layout;
  private readonly P: GPUBuffer;
  private readonly S: GPUBuffer;
  private readonly R: GPUBuffer;
  private readonly staging: GPUBuffer;
  /** the prior's weights (one word without a prior) */
  private readonly NET: GPUBuffer;

  private constructor(
    readonly model: Model,
    readonly params: ParamsOf<typeof MPPI_PARAMS>,
    private readonly seed: number,
    private readonly program: GpuProgram<EntryPoint>,
    readonly guide?: PriorGuide,
  ) {
    const { stateDim: n, controlDim: m, horizon: T } = model;
    this.scaling = controlScaling(model);
    this.dim = T * m;
    this.layout = scalarLayout(this.dim, m);
    const weights = guide ? packPrior(guide.prior.networks) : new Float32Array(1);
    this.NET = program.storage(weights.length, GPUBufferUsage.COPY_DST, 'the prior\'s networks');
    program.write(this.NET, 0, weights);
    this.P = program.storage(HEADER.context + 2 * n + m, GPUBufferUsage.COPY_DST);
    this.S = program.storage(5 * this.dim);
    this.R = program.storage(this.layout.length, GPUBufferUsage.COPY_SRC);
    this.staging = program.staging(this.layout.outEnd - this.layout.outStart);
  }

  static async create(model: Model, backend: WebGpuBackend, params: ParamsOf<typeof MPPI_PARAMS>, seed: number, guide?: PriorGuide): Promise<GpuMppiPlanner> {
    const learned = guide ? priorFunctionWgsl(guide.prior.meta, guide.prior.networks, 'NET') : undefined;
    const code = wgslMppiSource(buildStepGraphs(model, false), controlScaling(model), learned);
    const program = await GpuProgram.create<EntryPoint>(backend, code, `${model.name}-mppi`, MPPI_BUFFERS, guide ? PRIOR_ENTRY_POINTS : ENTRY_POINTS);
    return new GpuMppiPlanner(model, params, seed, program, guide);
  }

  reset(): void {
    this.warm = false;
    this.first = undefined;
  }

  /** As `MppiPlanner`; a new sample count reallocates at the next tick. */
  updateParams(changes: Readonly<Record<string, unknown>>): void {
    applyPlannerChanges(this.params, this.guide, changes);
  }

  /** The first step's planning distribution of the last plan (normalised), as `MppiPlanner.firstStep`. */
  firstStep(): { mean: number[]; sigma: number[] } | undefined {
    return this.first;
  }

  private buffersFor(samples: number, proposals: number): SampleBuffers {
    const have = this.sampleBuffers;
    if (have && have.samples === samples && have.proposals >= proposals) return have;
    if (have) for (const b of [have.Z, have.C, have.E, have.PR]) b.destroy();
    const program = this.program;
    const Z = program.storage(samples * this.dim, 0, `mppi.samples = ${samples} (x ${this.dim} controls per sample)`);
    const C = program.storage(samples);
    const E = program.storage(2 * samples);
    const PR = program.storage(Math.max(1, proposals) * this.dim, 0, `prior.policySamples = ${proposals} (x ${this.dim} controls per sample)`);
    const bindGroup = program.bindGroup({ P: this.P, Z, C, S: this.S, R: this.R, E, PR, NET: this.NET });
    this.sampleBuffers = { samples, proposals: Math.max(1, proposals), Z, C, E, PR, bindGroup };
    return this.sampleBuffers;
  }

  private header(req: PlanRequest, samples: number, proposals: number, value: boolean): ArrayBuffer {
    const { horizon: T } = this.model;
    const p = this.params;
    const { buffer, words, floats } = tickHeader(HEADER.context, req);
    words[HEADER.samples] = samples;
    words[HEADER.tick] = this.tick;
    words[HEADER.seed] = this.seed >>> 0;
    words[HEADER.proposals] = proposals;
    words[HEADER.elites] = p.elites;
    words[HEADER.flags] = (this.warm ? 0 : FLAG.cold) | (p.sigmaWarmStart === 'carry' ? FLAG.carrySigma : 0) | (value ? FLAG.value : 0);
    words[HEADER.shiftSteps] = Math.min(Math.max(0, Math.round(req.shiftSteps ?? 1)), T - 1);
    floats[HEADER.temperature] = p.temperature;
    floats[HEADER.sigmaMin] = p.sigmaMin;
    floats[HEADER.sigmaMax] = p.sigmaMax;
    floats[HEADER.noiseCorrelation] = p.noiseCorrelation;
    floats[HEADER.valueWeight] = this.guide?.settings.valueWeight ?? 0;
    floats[HEADER.policyStdScale] = this.guide?.settings.policyStdScale ?? 1;
    return buffer;
  }

  async plan(req: PlanRequest): Promise<PlanResult> {
    const g = this.guide;
    const notices: string[] = [];
    let value = g !== undefined && g.settings.value && g.settings.valueWeight > 0;
    let proposals = g ? Math.min(g.settings.policySamples, this.params.samples) : 0;
    let out = await this.run(req, proposals, value);
    // a network whose output is not finite: this tick is planned again without it (as the CPU planner plans without it), from the first attempt's plan, unshifted
    const bad = (flag: number) => out.data[flag - this.layout.outStart] > 0.5;
    if ((value && bad(SCALAR.outValueBad)) || (proposals > 0 && bad(SCALAR.outPolicyBad))) {
      if (value && bad(SCALAR.outValueBad)) {
        notices.push('the learned value went non-finite; planned without it');
        value = false;
      }
      if (proposals > 0 && bad(SCALAR.outPolicyBad)) {
        notices.push('the learned policy went non-finite; planned without its samples');
        proposals = 0;
      }
      out = await this.run({ ...req, shiftSteps: 0 }, proposals, value);
    }
    return this.result(out, notices);
  }

  /** One tick's plan on the GPU: one submit (one per iteration under a deadline) and one read-back. */
  private async run(req: PlanRequest, proposals: number, value: boolean): Promise<{ data: Float32Array; iterations: number }> {
    const program = this.program;
    const p = this.params;
    const M = p.samples;
    const d = this.dim;
    const perSample = Math.ceil(M / ROLLOUT_WORKGROUP);
    if (perSample > program.backend.gpu.device.limits.maxComputeWorkgroupsPerDimension) throw new InputError(`mppi.samples = ${M} exceeds this adapter's dispatch limit`);
    const buffers = this.buffersFor(M, proposals);
    program.write(this.P, 0, this.header(req, M, proposals, value));
    this.tick++;

    const perCoordinate = Math.ceil(d / ROLLOUT_WORKGROUP);
    const start = (dispatch: (entry: EntryPoint, groups?: number) => void) => {
      dispatch('prepare', perCoordinate);
      if (proposals > 0) dispatch('policy_samples', Math.ceil(proposals / ROLLOUT_WORKGROUP));
    };
    const iteration = (dispatch: (entry: EntryPoint, groups?: number) => void) => {
      dispatch('rollout', perSample);
      dispatch('select_elites');
      dispatch('update', perCoordinate);
    };
    const finish = (dispatch: (entry: EntryPoint, groups?: number) => void) => {
      dispatch('rollout_mean');
      dispatch('finish');
    };
    const readOut = (enc: GPUCommandEncoder) => enc.copyBufferToBuffer(this.R, this.layout.outStart * 4, this.staging, 0, this.staging.size);

    let iterations = 0;
    if (req.deadline === undefined) {
      // no deadline: the whole plan is one submit
      program.submit(buffers.bindGroup, (dispatch) => {
        start(dispatch);
        for (let it = 0; it < p.iterations; it++) iteration(dispatch);
        finish(dispatch);
      }, readOut);
      iterations = p.iterations;
    } else {
      // under a deadline each iteration is timed (a wait, no read-back) so the next starts only if it fits
      let iterationMs = 0;
      for (let it = 0; it < p.iterations; it++) {
        if (it > 0 && performance.now() + iterationMs >= req.deadline) break;
        const t0 = performance.now();
        program.submit(buffers.bindGroup, (dispatch) => {
          if (it === 0) start(dispatch);
          iteration(dispatch);
        });
        await program.idle();
        iterations++;
        iterationMs = performance.now() - t0;
      }
      program.submit(buffers.bindGroup, finish, readOut);
    }
    this.warm = true;
    return { data: await program.read(this.staging), iterations };
  }

  private result({ data: out, iterations }: { data: Float32Array; iterations: number }, notices: string[]): PlanResult {
    const { controlDim: m } = this.model;
    const d = this.dim;
    const M = this.params.samples;
    const at = (index: number) => out[index - this.layout.outStart];
    const slice = (from: number, count: number) => Float64Array.from(out.subarray(from - this.layout.outStart, from - this.layout.outStart + count));
    const z = slice(SCALAR.outPlan, d);
    const sigma = Array.from(slice(this.layout.sigma, m));
    this.first = { mean: Array.from(slice(this.layout.mean, m)), sigma };
    const cost = at(SCALAR.outCost);
    return {
      controls: toControls(z, this.scaling),
      cost: cost >= NO_COST ? Infinity : cost,
      info: { iterations, rollouts: iterations * M + 1 },
      diagnostics: {
        series: { cost_spread: at(SCALAR.outFinite) > 0 ? Array.from(slice(SCALAR.outSpread, 4)) : [], sigma },
        ...(notices.length ? { notice: notices.join('; ') } : {}),
      },
    };
  }
}
