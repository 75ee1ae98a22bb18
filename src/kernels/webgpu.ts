import type { Model } from '../models/model.js';
import { CostGrad, normalizeRequest, NormalizedRequest, RolloutBackend, RolloutRequest, Trajectories } from './backend.js';
import { buildStepGraphs, StepGraphs } from './graphs.js';
import type { KernelKind } from './js-source.js';
import { BINDING, WgslKernel, wgslKernelSource, WORKGROUP_SIZE } from './wgsl-source.js';

export interface GpuContext {
  device: GPUDevice;
  adapterName: string;
  /** Held so the Dawn instance outlives the device: collecting it tears the device down under us. */
  instance: GPU;
}

let context: Promise<GpuContext> | undefined;

const ADAPTER_HELP = 'no WebGPU adapter found. On Linux install a Vulkan driver '
  + '(software: apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1), or use --backend cpu';

/** The process-wide WebGPU device (Dawn through the `webgpu` package), created on first use. */
export function gpuContext(): Promise<GpuContext> {
  context ??= (async () => {
    let mod: typeof import('webgpu');
    try {
      mod = await import('webgpu');
    } catch (e) {
      throw new Error(`the webgpu package could not be loaded (${(e as Error).message}); use --backend cpu`);
    }
    Object.assign(globalThis, mod.globals);
    const gpu = mod.create([]);
    const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter) throw new Error(ADAPTER_HELP);
    const info = adapter.info;
    const adapterName = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ') || 'unknown adapter';
    const limits = adapter.limits;
    const device = await adapter.requestDevice({
      requiredLimits: {
        maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
        maxBufferSize: limits.maxBufferSize,
        maxStorageBuffersPerShaderStage: Math.min(limits.maxStorageBuffersPerShaderStage, 8),
      },
    });
    return { device, adapterName, instance: gpu };
  })();
  context.catch(() => { context = undefined; });
  return context;
}

/**
 * Round trips between host and GPU, counted where they happen: queue
 * submits, buffer read-backs (each mapAsync a host wait for GPU results),
 * waits for submitted work without a read-back, and bytes each way.
 */
export class GpuCounters {
  submits = 0;
  readbacks = 0;
  waits = 0;
  bytesUp = 0;
  bytesDown = 0;

  snapshot(): GpuCounters {
    return Object.assign(new GpuCounters(), this);
  }

  /** What happened since `before`, as planner info (per tick). */
  since(before: GpuCounters): Record<string, number> {
    return {
      gpuSubmits: this.submits - before.submits,
      gpuReadbacks: this.readbacks - before.readbacks,
      gpuWaits: this.waits - before.waits,
      gpuKiBUp: (this.bytesUp - before.bytesUp) / 1024,
      gpuKiBDown: (this.bytesDown - before.bytesDown) / 1024,
    };
  }
}

/**
 * Compiles generated WGSL and its compute pipelines (one per entry point,
 * sharing one bind group layout). A shader that fails to compile is a bug
 * here, never the user's: the error names the shader and the first messages.
 */
export async function compilePipelines<E extends string>(
  device: GPUDevice, code: string, label: string, layout: GPUPipelineLayout, entryPoints: readonly E[],
): Promise<Record<E, GPUComputePipeline>> {
  const module = device.createShaderModule({ code, label });
  const errors = (await module.getCompilationInfo()).messages.filter((msg) => msg.type === 'error');
  if (errors.length) {
    throw new Error(`internal: the ${label} kernels failed to compile: ${errors.slice(0, 3).map((e) => `line ${e.lineNum}: ${e.message}`).join('; ')}`);
  }
  const made = await Promise.all(entryPoints.map((entryPoint) => device.createComputePipelineAsync({ layout, compute: { module, entryPoint } })));
  return Object.fromEntries(entryPoints.map((e, i) => [e, made[i]])) as Record<E, GPUComputePipeline>;
}

/** f32 rollout kernels generated from the model definition, run as WGSL compute shaders. */
export class WebGpuBackend implements RolloutBackend {
  readonly kind = 'webgpu' as const;
  readonly counters = new GpuCounters();
  private readonly graphs = new Map<boolean, StepGraphs>();
  private readonly pipelines = new Map<string, { pipeline: GPUComputePipeline; kernel: WgslKernel }>();

  private constructor(readonly model: Model, readonly gpu: GpuContext) {}

  static async create(model: Model): Promise<WebGpuBackend> {
    return new WebGpuBackend(model, await gpuContext());
  }

  get adapterName(): string {
    return this.gpu.adapterName;
  }

  private async pipeline(kind: KernelKind, noise: boolean) {
    const key = `${kind}:${noise}`;
    let p = this.pipelines.get(key);
    if (!p) {
      let g = this.graphs.get(noise);
      if (!g) {
        g = buildStepGraphs(this.model, noise);
        this.graphs.set(noise, g);
      }
      const kernel = wgslKernelSource(g, kind);
      const { device } = this.gpu;
      device.pushErrorScope('validation');
      const module = device.createShaderModule({ code: kernel.code, label: `${this.model.name}-${key}` });
      const pipeline = await device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' } });
      const err = await device.popErrorScope();
      if (err) throw new Error(`internal: WGSL kernel for ${this.model.name} (${key}) failed to compile: ${err.message}`);
      p = { pipeline, kernel };
      this.pipelines.set(key, p);
    }
    return p;
  }

  private async run(kind: KernelKind, r: NormalizedRequest, outLength: number): Promise<{ C: Float64Array; A: Float64Array }> {
    const { device } = this.gpu;
    const { pipeline, kernel } = await this.pipeline(kind, r.noise !== undefined);
    const groups = Math.ceil(r.samples / WORKGROUP_SIZE);
    if (groups > device.limits.maxComputeWorkgroupsPerDimension) {
      throw new Error(`batch of ${r.samples} samples exceeds this adapter's dispatch limit`);
    }
    const { stateDim: n, horizon: T } = this.model;
    const ctx = Float32Array.from([r.samples, ...r.x0, ...r.uPrev, ...r.reference]);
    const made: GPUBuffer[] = [];
    const storage = (data: Float32Array | number, writable: boolean) => {
      const bytes = Math.max(16, typeof data === 'number' ? data * 4 : data.byteLength);
      const usage = GPUBufferUsage.STORAGE | (writable ? GPUBufferUsage.COPY_SRC : GPUBufferUsage.COPY_DST);
      const b = device.createBuffer({ size: Math.ceil(bytes / 4) * 4, usage, mappedAtCreation: typeof data !== 'number' });
      if (typeof data !== 'number') {
        new Float32Array(b.getMappedRange()).set(data);
        b.unmap();
        this.counters.bytesUp += data.byteLength;
      }
      made.push(b);
      return b;
    };
    const buffers: Record<number, GPUBuffer> = {
      [BINDING.U]: storage(Float32Array.from(r.controls), false),
      [BINDING.CTX]: storage(ctx, false),
      [BINDING.C]: storage(r.samples, true),
    };
    if (kernel.bindings.includes(BINDING.W)) buffers[BINDING.W] = storage(Float32Array.from(r.noise!), false);
    if (kernel.bindings.includes(BINDING.A)) buffers[BINDING.A] = storage(outLength, true);
    if (kernel.bindings.includes(BINDING.S)) buffers[BINDING.S] = storage(r.samples * (T + 1) * n, true);

    const bindGroup = device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: kernel.bindings.map((binding) => ({ binding, resource: { buffer: buffers[binding] } })),
    });
    const readC = device.createBuffer({ size: buffers[BINDING.C].size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    made.push(readC);
    const readA = buffers[BINDING.A]
      ? device.createBuffer({ size: buffers[BINDING.A].size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST })
      : undefined;
    if (readA) made.push(readA);

    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(groups);
    pass.end();
    enc.copyBufferToBuffer(buffers[BINDING.C], 0, readC, 0, readC.size);
    if (readA) enc.copyBufferToBuffer(buffers[BINDING.A], 0, readA, 0, readA.size);
    device.queue.submit([enc.finish()]);
    this.counters.submits++;
    this.counters.readbacks += readA ? 2 : 1;
    this.counters.bytesDown += readC.size + (readA?.size ?? 0);

    try {
      await Promise.all([readC.mapAsync(GPUMapMode.READ), readA?.mapAsync(GPUMapMode.READ)]);
      const C = Float64Array.from(new Float32Array(readC.getMappedRange(), 0, r.samples));
      const A = readA ? Float64Array.from(new Float32Array(readA.getMappedRange(), 0, outLength)) : new Float64Array(outLength);
      return { C, A };
    } finally {
      for (const b of made) b.destroy();
    }
  }

  async cost(req: RolloutRequest): Promise<Float64Array> {
    return (await this.run('cost', normalizeRequest(this.model, req), 0)).C;
  }

  async costGrad(req: RolloutRequest): Promise<CostGrad> {
    const r = normalizeRequest(this.model, req);
    const { C, A } = await this.run('grad', r, r.controls.length);
    return { cost: C, grad: A };
  }

  async trajectories(req: RolloutRequest): Promise<Trajectories> {
    const r = normalizeRequest(this.model, req);
    const { C, A } = await this.run('trajectory', r, r.samples * (this.model.horizon + 1) * this.model.stateDim);
    return { cost: C, states: A };
  }

  dispose(): void {
    this.pipelines.clear();
  }
}
