import { InputError } from '../input-error.js';
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

/** One storage buffer of a GPU program: its WGSL name and element type; the binding is its place in the list. */
export interface StorageSpec {
  name: string;
  element: 'f32' | 'u32';
  readOnly: boolean;
}

/** The WGSL declarations of a program's storage buffers (group 0, bindings in list order). */
export function storageDeclarations(buffers: readonly StorageSpec[]): string[] {
  return buffers.map((b, binding) => `@group(0) @binding(${binding}) var<storage, ${b.readOnly ? 'read' : 'read_write'}> ${b.name}: array<${b.element}>;`);
}

/**
 * A planner's per-tick header: `contextAt` words of settings (u32, or f32
 * through `floats`), then the context x0, uPrev and the reference as f32.
 */
export function tickHeader(contextAt: number, context: { x0: readonly number[]; uPrev: readonly number[]; reference: readonly number[] }) {
  const n = context.x0.length;
  const m = context.uPrev.length;
  const buffer = new ArrayBuffer((contextAt + 2 * n + m) * 4);
  const floats = new Float32Array(buffer);
  floats.set(context.x0, contextAt);
  floats.set(context.uPrev, contextAt + n);
  floats.set(context.reference, contextAt + n + m);
  return { buffer, words: new Uint32Array(buffer), floats };
}

/**
 * A generated WGSL program whose entry points share one bind group layout,
 * with the few operations the GPU-resident planners need, each counted:
 * submitting a chain of dispatches, and reading a buffer back.
 */
export class GpuProgram<E extends string> {
  private constructor(
    readonly backend: WebGpuBackend,
    private readonly buffers: readonly StorageSpec[],
    private readonly layout: GPUBindGroupLayout,
    private readonly pipelines: Record<E, GPUComputePipeline>,
  ) {}

  /** Compiles the program; a shader that fails to compile is a bug here, never the user's: the error names it and its first messages. */
  static async create<E extends string>(backend: WebGpuBackend, code: string, label: string, buffers: readonly StorageSpec[], entryPoints: readonly E[]): Promise<GpuProgram<E>> {
    const { device } = backend.gpu;
    const layout = device.createBindGroupLayout({
      entries: buffers.map((b, binding) => ({
        binding, visibility: GPUShaderStage.COMPUTE, buffer: { type: b.readOnly ? 'read-only-storage' as const : 'storage' as const },
      })),
    });
    const module = device.createShaderModule({ code, label });
    const errors = (await module.getCompilationInfo()).messages.filter((msg) => msg.type === 'error');
    if (errors.length) {
      throw new Error(`internal: the ${label} kernels failed to compile: ${errors.slice(0, 3).map((e) => `line ${e.lineNum}: ${e.message}`).join('; ')}`);
    }
    const pipelineLayout = device.createPipelineLayout({ bindGroupLayouts: [layout] });
    const made = await Promise.all(entryPoints.map((entryPoint) => device.createComputePipelineAsync({ layout: pipelineLayout, compute: { module, entryPoint } })));
    return new GpuProgram(backend, buffers, layout, Object.fromEntries(entryPoints.map((e, i) => [e, made[i]])) as Record<E, GPUComputePipeline>);
  }

  /** The most 32-bit words one storage buffer of this adapter holds (128 MiB of them on Mesa's llvmpipe). */
  get maxStorageWords(): number {
    const { limits } = this.backend.gpu.device;
    return Math.floor(Math.min(limits.maxBufferSize, limits.maxStorageBufferBindingSize) / 4);
  }

  /**
   * A storage buffer of `words` 32-bit words (at least one). `sizedBy` names the setting its size comes
   * from, for the refusal when the adapter cannot hold it.
   */
  storage(words: number, extraUsage = 0, sizedBy?: string): GPUBuffer {
    const bytes = Math.max(1, words) * 4;
    const most = 4 * this.maxStorageWords;
    if (bytes > most) {
      const mb = (b: number) => `${(b / 2 ** 20).toFixed(0)} MB`;
      throw new InputError(`${sizedBy ?? 'a GPU buffer'} needs ${mb(bytes)} in one GPU buffer, more than this adapter's ${mb(most)}: lower it, or use backend cpu`);
    }
    return this.backend.gpu.device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | extraUsage });
  }

  /** A buffer to read `words` words back into. */
  staging(words: number): GPUBuffer {
    return this.backend.gpu.device.createBuffer({ size: Math.max(1, words) * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  }

  bindGroup(byName: Readonly<Record<string, GPUBuffer>>): GPUBindGroup {
    return this.backend.gpu.device.createBindGroup({
      layout: this.layout,
      entries: this.buffers.map((b, binding) => ({ binding, resource: { buffer: byName[b.name] } })),
    });
  }

  /** Uploads bytes into a buffer (counted). */
  write(buffer: GPUBuffer, offsetBytes: number, data: ArrayBuffer | ArrayBufferView): void {
    this.backend.gpu.device.queue.writeBuffer(buffer, offsetBytes, data as ArrayBuffer);
    this.backend.counters.bytesUp += data.byteLength;
  }

  /** One submit: the dispatches `work` asks for, in order, in one compute pass; then `after` (copies). */
  submit(bindGroup: GPUBindGroup, work: (dispatch: (entry: E, groups?: number) => void) => void, after?: (enc: GPUCommandEncoder) => void): void {
    const { device } = this.backend.gpu;
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setBindGroup(0, bindGroup);
    work((entry, groups = 1) => {
      pass.setPipeline(this.pipelines[entry]);
      pass.dispatchWorkgroups(groups);
    });
    pass.end();
    after?.(enc);
    device.queue.submit([enc.finish()]);
    this.backend.counters.submits++;
  }

  /** Waits for the submitted work without reading anything back (counted as a wait). */
  async idle(): Promise<void> {
    await this.backend.gpu.device.queue.onSubmittedWorkDone();
    this.backend.counters.waits++;
  }

  /** The staging buffer's contents, once the work before it is done (counted as a read-back). */
  async read(staging: GPUBuffer): Promise<Float32Array> {
    return this.readMapped(staging, (mapped) => mapped.slice());
  }

  /**
   * `use` applied to the staging buffer's contents in place, once the work
   * before it is done (counted as a read-back): no copy of the whole buffer,
   * which at tens of megabytes per read costs more than what `use` does with
   * it. The view is valid only during `use`.
   */
  async readMapped<T>(staging: GPUBuffer, use: (mapped: Float32Array) => T): Promise<T> {
    await staging.mapAsync(GPUMapMode.READ);
    this.backend.counters.readbacks++;
    this.backend.counters.bytesDown += staging.size;
    try {
      return use(new Float32Array(staging.getMappedRange()));
    } finally {
      staging.unmap();
    }
  }
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
