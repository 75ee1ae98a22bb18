import { buildStepGraphs } from '../kernels/graphs.js';
import { compilePipelines, WebGpuBackend } from '../kernels/webgpu.js';
import { FLAG, HEADER, MPPI_BINDING, NO_COST, ROLLOUT_WORKGROUP, SCALAR, scalarLayout, wgslMppiSource } from '../kernels/wgsl-mppi.js';
import type { Model } from '../models/model.js';
import type { ParamsOf } from '../params.js';
import type { MPPI_PARAMS } from '../planners/mppi.js';
import { controlScaling, toControls } from '../planners/problem.js';
import { Rng } from '../random.js';
import type { PlanRequest, PlanResult, PriorGuide, RecedingPlanner } from './receding.js';

const ENTRY_POINTS = ['prepare', 'rollout', 'select_elites', 'update', 'rollout_mean', 'finish'] as const;
type EntryPoint = (typeof ENTRY_POINTS)[number];

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
 * algorithm and parameters as `MppiPlanner`, in f32. Per tick the host
 * uploads the state, the reference and the settings (and a learned policy's
 * samples, when a prior guides it), submits once (once per iteration under a
 * deadline, to judge whether another fits), and reads back one small buffer:
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
  private readonly rng: Rng;

  private constructor(
    readonly model: Model,
    readonly backend: WebGpuBackend,
    readonly params: ParamsOf<typeof MPPI_PARAMS>,
    private readonly seed: number,
    private readonly pipelines: Record<EntryPoint, GPUComputePipeline>,
    private readonly bindGroupLayout: GPUBindGroupLayout,
    readonly guide?: PriorGuide,
  ) {
    const { device } = backend.gpu;
    const { stateDim: n, controlDim: m, horizon: T } = model;
    this.scaling = controlScaling(model);
    this.dim = T * m;
    this.layout = scalarLayout(this.dim, m);
    this.rng = new Rng(seed);
    const storage = (words: number, extra = 0) => device.createBuffer({ size: Math.max(1, words) * 4, usage: GPUBufferUsage.STORAGE | extra });
    this.P = storage(HEADER.context + 2 * n + m, GPUBufferUsage.COPY_DST);
    this.S = storage(5 * this.dim);
    this.R = storage(this.layout.length, GPUBufferUsage.COPY_SRC);
    this.staging = device.createBuffer({ size: (this.layout.outEnd - this.layout.outStart) * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  }

  static async create(model: Model, backend: WebGpuBackend, params: ParamsOf<typeof MPPI_PARAMS>, seed: number, guide?: PriorGuide): Promise<GpuMppiPlanner> {
    if (guide && guide.settings.value === 'on') {
      throw new Error('prior.value is on, but the GPU-resident MPPI (backend webgpu) does not evaluate the learned value: set prior.value off, or backend cpu');
    }
    const { device } = backend.gpu;
    const code = wgslMppiSource(buildStepGraphs(model, false), controlScaling(model));
    const readOnly = new Set<number>([MPPI_BINDING.P, MPPI_BINDING.PR]);
    const bindGroupLayout = device.createBindGroupLayout({
      entries: Object.values(MPPI_BINDING).map((binding) => ({
        binding, visibility: GPUShaderStage.COMPUTE, buffer: { type: readOnly.has(binding) ? 'read-only-storage' as const : 'storage' as const },
      })),
    });
    const layout = device.createPipelineLayout({ bindGroupLayouts: [bindGroupLayout] });
    const pipelines = await compilePipelines(device, code, `${model.name}-mppi`, layout, ENTRY_POINTS);
    return new GpuMppiPlanner(model, backend, params, seed, pipelines, bindGroupLayout, guide);
  }

  reset(): void {
    this.warm = false;
    this.first = undefined;
  }

  /** MPPI's own keys bare; how the prior is used as `prior.KEY` (a new sample count reallocates at the next tick). */
  updateParams(changes: Readonly<Record<string, unknown>>): void {
    for (const [k, v] of Object.entries(changes)) {
      if (k.startsWith('prior.')) {
        if (this.guide) (this.guide.settings as Record<string, unknown>)[k.slice('prior.'.length)] = v;
      } else (this.params as Record<string, unknown>)[k] = v;
    }
  }

  /** The first step's planning distribution of the last plan (normalised), as `MppiPlanner.firstStep`. */
  firstStep(): { mean: number[]; sigma: number[] } | undefined {
    return this.first;
  }

  private buffersFor(samples: number, proposals: number): SampleBuffers {
    const have = this.sampleBuffers;
    if (have && have.samples === samples && have.proposals >= proposals) return have;
    if (have) for (const b of [have.Z, have.C, have.E, have.PR]) b.destroy();
    const { device } = this.backend.gpu;
    const storage = (words: number, extra = 0) => device.createBuffer({ size: Math.max(1, words) * 4, usage: GPUBufferUsage.STORAGE | extra });
    const Z = storage(samples * this.dim);
    const C = storage(samples);
    const E = storage(2 * samples);
    const PR = storage(Math.max(1, proposals) * this.dim, GPUBufferUsage.COPY_DST);
    const byBinding: Record<number, GPUBuffer> = {
      [MPPI_BINDING.P]: this.P, [MPPI_BINDING.Z]: Z, [MPPI_BINDING.C]: C, [MPPI_BINDING.S]: this.S,
      [MPPI_BINDING.R]: this.R, [MPPI_BINDING.E]: E, [MPPI_BINDING.PR]: PR,
    };
    const bindGroup = device.createBindGroup({
      layout: this.bindGroupLayout,
      entries: Object.values(MPPI_BINDING).map((binding) => ({ binding, resource: { buffer: byBinding[binding] } })),
    });
    this.sampleBuffers = { samples, proposals: Math.max(1, proposals), Z, C, E, PR, bindGroup };
    return this.sampleBuffers;
  }

  private header(req: PlanRequest, samples: number, proposals: number): ArrayBuffer {
    const { stateDim: n, controlDim: m, horizon: T } = this.model;
    const p = this.params;
    const buf = new ArrayBuffer((HEADER.context + 2 * n + m) * 4);
    const words = new Uint32Array(buf);
    const floats = new Float32Array(buf);
    words[HEADER.samples] = samples;
    words[HEADER.tick] = this.tick;
    words[HEADER.seed] = this.seed >>> 0;
    words[HEADER.proposals] = proposals;
    words[HEADER.elites] = p.elites;
    words[HEADER.flags] = (this.warm ? 0 : FLAG.cold) | (p.sigmaWarmStart === 'carry' ? FLAG.carrySigma : 0);
    words[HEADER.shiftSteps] = Math.min(Math.max(0, Math.round(req.shiftSteps ?? 1)), T - 1);
    floats[HEADER.temperature] = p.temperature;
    floats[HEADER.sigmaMin] = p.sigmaMin;
    floats[HEADER.sigmaMax] = p.sigmaMax;
    floats[HEADER.noiseCorrelation] = p.noiseCorrelation;
    floats.set(req.x0, HEADER.context);
    floats.set(req.uPrev, HEADER.context + n);
    floats.set(req.reference, HEADER.context + n + m);
    return buf;
  }

  async plan(req: PlanRequest): Promise<PlanResult> {
    const { device } = this.backend.gpu;
    const counters = this.backend.counters;
    const p = this.params;
    const { controlDim: m, horizon: H } = this.model;
    const d = this.dim;
    const M = p.samples;
    const notices: string[] = [];
    const g = this.guide;
    if (g && g.settings.value === 'on') notices.push('prior.value is on, but the GPU-resident MPPI does not evaluate the learned value; planned without it');
    let drawn: Float64Array | undefined;
    const wanted = g ? Math.min(g.settings.policySamples, M) : 0;
    if (g && wanted > 0) {
      drawn = g.prior.rollout(this.rng, g.step, req.x0, req.reference, wanted, H) ?? undefined;
      if (!drawn) notices.push('the learned policy went non-finite; planned without its samples');
    }
    const proposals = drawn ? wanted : 0;
    const buffers = this.buffersFor(M, proposals);

    const header = this.header(req, M, proposals);
    device.queue.writeBuffer(this.P, 0, header);
    counters.bytesUp += header.byteLength;
    if (drawn) {
      const rows = Float32Array.from(drawn.subarray(0, proposals * d));
      device.queue.writeBuffer(buffers.PR, 0, rows);
      counters.bytesUp += rows.byteLength;
    }
    this.tick++;

    const perCoordinate = Math.ceil(d / ROLLOUT_WORKGROUP);
    const perSample = Math.ceil(M / ROLLOUT_WORKGROUP);
    if (perSample > device.limits.maxComputeWorkgroupsPerDimension) throw new Error(`mppi.samples = ${M} exceeds this adapter's dispatch limit`);
    const encode = (work: (pass: GPUComputePassEncoder) => void, after?: (enc: GPUCommandEncoder) => void) => {
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setBindGroup(0, buffers.bindGroup);
      work(pass);
      pass.end();
      after?.(enc);
      device.queue.submit([enc.finish()]);
      counters.submits++;
    };
    const dispatch = (pass: GPUComputePassEncoder, entry: EntryPoint, groups: number) => {
      pass.setPipeline(this.pipelines[entry]);
      pass.dispatchWorkgroups(groups);
    };
    const iteration = (pass: GPUComputePassEncoder) => {
      dispatch(pass, 'rollout', perSample);
      dispatch(pass, 'select_elites', 1);
      dispatch(pass, 'update', perCoordinate);
    };
    const finish = (pass: GPUComputePassEncoder) => {
      dispatch(pass, 'rollout_mean', 1);
      dispatch(pass, 'finish', 1);
    };
    const readOut = (enc: GPUCommandEncoder) => enc.copyBufferToBuffer(this.R, this.layout.outStart * 4, this.staging, 0, this.staging.size);

    let iterations = 0;
    if (req.deadline === undefined) {
      // no deadline: the whole plan is one submit
      encode((pass) => {
        dispatch(pass, 'prepare', perCoordinate);
        for (let it = 0; it < p.iterations; it++) iteration(pass);
        finish(pass);
      }, readOut);
      iterations = p.iterations;
    } else {
      // under a deadline each iteration is timed (a wait, no read-back) so the next starts only if it fits
      let iterationMs = 0;
      for (let it = 0; it < p.iterations; it++) {
        if (it > 0 && performance.now() + iterationMs >= req.deadline) break;
        const t0 = performance.now();
        encode((pass) => {
          if (it === 0) dispatch(pass, 'prepare', perCoordinate);
          iteration(pass);
        });
        await device.queue.onSubmittedWorkDone();
        counters.waits++;
        iterations++;
        iterationMs = performance.now() - t0;
      }
      encode(finish, readOut);
    }

    await this.staging.mapAsync(GPUMapMode.READ);
    counters.readbacks++;
    counters.bytesDown += this.staging.size;
    const out = new Float32Array(this.staging.getMappedRange().slice(0));
    this.staging.unmap();
    const at = (index: number) => out[index - this.layout.outStart];
    const slice = (from: number, count: number) => Float64Array.from(out.subarray(from - this.layout.outStart, from - this.layout.outStart + count));
    this.warm = true;
    const z = slice(SCALAR.outPlan, d);
    const sigma = Array.from(slice(this.layout.sigma, m));
    this.first = { mean: Array.from(slice(this.layout.mean, m)), sigma };
    const cost = at(SCALAR.outCost);
    return {
      controls: toControls(z, this.scaling),
      cost: cost >= NO_COST ? Infinity : cost,
      info: { iterations, rollouts: iterations * M + 1 },
      diagnostics: {
        costSpread: at(SCALAR.outFinite) > 0 ? Array.from(slice(SCALAR.outSpread, 4)) : [],
        sigma,
        ...(notices.length ? { notice: notices.join('; ') } : {}),
      },
    };
  }
}
