import { emitBody, indexedNames, wgsl } from '../expr/emit.js';
import { buildStepGraphs, loopInvariantNodes } from '../kernels/graphs.js';
import { GpuProgram, storageDeclarations, StorageSpec, WebGpuBackend } from '../kernels/webgpu.js';
import { WORKGROUP_SIZE } from '../kernels/wgsl-source.js';
import { denseLayerStatements, featureStatements } from '../learned/wgsl.js';
import { catchWgsl } from './catch.js';
import type { ClosedLoop } from './closed-loop.js';
import type { ClosedLoopEvaluator, ClosedLoopJob } from './pool.js';

const f32 = (v: number) => wgsl.literal(v);

const BUFFERS: readonly StorageSpec[] = [
  { name: 'TH', element: 'f32', readOnly: true },
  { name: 'X0', element: 'f32', readOnly: true },
  { name: 'hdr', element: 'u32', readOnly: true },
  { name: 'C', element: 'f32', readOnly: false },
  { name: 'G', element: 'f32', readOnly: false },
  { name: 'S', element: 'f32', readOnly: false },
];

/**
 * The closed loop of `loop` as one WGSL compute shader, in f32: one
 * invocation per (policy, start) pair rolls the policy out through the
 * model (the same step graphs as the CPU's, the network as loops over its
 * weights in TH) keeping a tape of states, controls and activations, then
 * sweeps back to dJ/dtheta for that start (G, one row per invocation; the
 * host averages a policy's B rows). Shapes are baked in; the policy count
 * and batch come per call (hdr).
 */
export function closedLoopShader(loop: ClosedLoop): { code: string; tapeStride: number } {
  const { model, shape, sizes, horizon: T, reference } = loop;
  // train-policy refuses rollout noise for the GPU with one line (rolloutNoise); this shader has none
  if (loop.noise) throw new Error('the WebGPU closed loop has no rollout noise');
  if (loop.track) throw new Error('the WebGPU closed loop scores against the goal only (no train.track)');
  const n = model.stateDim;
  const m = model.controlDim;
  const P = loop.parameters;
  const f = shape.features;
  const g = buildStepGraphs(model, false);
  const xs = indexedNames('x', n);
  const us = indexedNames('u', m);
  const ps = indexedNames('p', m);
  const adj = indexedNames('a', n);
  const hoisted = loopInvariantNodes([...g.next, g.stage, g.terminal, ...g.gradX, ...g.gradU, ...g.gradPrev, ...g.gradTerminal]);
  const prologue = emitBody(hoisted, wgsl);
  const declared = new Set(hoisted.map((h) => h.id));
  const fwd = emitBody([...g.next, g.stage], wgsl, declared);
  const term = emitBody([g.terminal, ...g.gradTerminal], wgsl, declared);
  const back = emitBody([...g.gradX, ...g.gradU, ...g.gradPrev], wgsl, declared);
  // tape per step: x (n), u (m), then every layer's values (features, hidden..., z)
  const actOffset: number[] = [];
  let stride = n + m;
  for (const w of sizes) {
    actOffset.push(stride);
    stride += w;
  }
  const weightOffset: number[] = [];
  for (let l = 0, o = 0; l + 1 < sizes.length; l++) {
    weightOffset.push(o);
    o += (sizes[l] + 1) * sizes[l + 1];
  }
  const widest = Math.max(...sizes);
  const catchAt = { ...shape, angle: f.angle, x: (i: number) => `x${i}`, r: (i: number) => `r${i}` };
  const L: string[] = [
    ...storageDeclarations(BUFFERS),
    `@compute @workgroup_size(${WORKGROUP_SIZE})`,
    'fn main(@builtin(global_invocation_id) gid: vec3<u32>) {',
    'let s = gid.x;',
    'if (s >= hdr[0]) { return; }',
    `let th = (s / hdr[1]) * ${P}u;`,
    `let gb = s * ${P}u;`,
    `let tape = s * ${T * stride}u;`,
    indexedNames('r', n).map((r, i) => `let ${r} = ${f32(reference[i])};`).join(' '),
    ...prologue.code,
    xs.map((x, i) => `var ${x}: f32 = X0[s * ${n}u + ${i}u];`).join(' '),
    ps.map((p, j) => `var ${p}: f32 = ${f32(shape.controlCenter[j])};`).join(' '),
    us.map((u) => `var ${u}: f32 = 0.0;`).join(' '),
    'var acc: f32 = 0.0;',
    `for (var t: u32 = 0u; t < ${T}u; t = t + 1u) {`,
    `let b = tape + t * ${stride}u;`,
    xs.map((x, i) => `S[b + ${i}u] = ${x};`).join(' '),
  ];
  L.push(...featureStatements(f, (j) => `x${j}`, (j) => `r${j}`, (k) => `S[b + ${actOffset[0] + k}u]`));
  for (let l = 0; l + 1 < sizes.length; l++) {
    L.push(...denseLayerStatements(sizes[l], sizes[l + 1], weightOffset[l], l + 2 < sizes.length, {
      weight: (index) => `TH[th + ${index}]`, input: (i) => `S[b + ${actOffset[l]}u + ${i}]`, output: (k) => `S[b + ${actOffset[l + 1]}u + ${k}]`,
    }));
  }
  // head, model step
  const z0 = actOffset[sizes.length - 1];
  for (let j = 0; j < m; j++) {
    if (shape.bounded[j]) L.push(`S[b + ${z0 + j}u] = tanh(clamp(S[b + ${z0 + j}u], -15.0, 15.0));`);
    L.push(`u${j} = ${f32(shape.controlCenter[j])} + ${f32(shape.controlScale[j])} * S[b + ${z0 + j}u];`);
  }
  if (shape.catch) {
    L.push('{', ...catchWgsl(shape.catch, catchAt));
    for (let j = 0; j < m; j++) L.push(`u${j} = (1.0 - cg) * u${j} + cg * clq${j};`);
    L.push('}');
  }
  for (let j = 0; j < m; j++) L.push(`S[b + ${n + j}u] = u${j};`);
  L.push(...fwd.code, `acc = acc + ${fwd.refs[n]};`);
  L.push(xs.map((_, i) => `let nx${i} = ${fwd.refs[i]};`).join(' '), xs.map((x, i) => `${x} = nx${i};`).join(' '));
  L.push(ps.map((p, j) => `${p} = u${j};`).join(' '), '}');
  L.push('{', ...term.code, `C[s] = acc + ${term.refs[0]};`, adj.map((a, i) => `var ${a}: f32 = ${term.refs[1 + i]};`).join(' '));
  // the backward sweep
  L.push(
    `for (var k: u32 = 0u; k < ${P}u; k = k + 1u) { G[gb + k] = 0.0; }`,
    indexedNames('q', m).map((q) => `var ${q}: f32 = 0.0;`).join(' '),
    `var d: array<f32, ${widest}>;`,
    `var e: array<f32, ${widest}>;`,
    `for (var tt: i32 = ${T - 1}; tt >= 0; tt = tt - 1) {`,
    'let t = u32(tt);',
    `let b = tape + t * ${stride}u;`,
    xs.map((x, i) => `${x} = S[b + ${i}u];`).join(' '),
    us.map((u, j) => `${u} = S[b + ${n + j}u];`).join(' '),
    `if (t > 0u) { ${ps.map((p, j) => `${p} = S[b - ${stride}u + ${n + j}u];`).join(' ')} } else { ${ps.map((p, j) => `${p} = ${f32(shape.controlCenter[j])};`).join(' ')} }`,
    '{',
    ...back.code,
    // dJ/du_j: the model's, and the next step's through its previous control
    indexedNames('gu', m).map((gu, j) => `var ${gu}: f32 = ${back.refs[n + j]} + q${j};`).join(' '),
    indexedNames('q', m).map((q, j) => `${q} = ${back.refs[n + m + j]};`).join(' '),
    adj.map((_, i) => `let na${i} = ${back.refs[i]};`).join(' '),
    adj.map((a, i) => `${a} = na${i};`).join(' '),
  );
  if (shape.catch) {
    // u = (1 - g) u_net + g u_lqr: the gate's and the LQR's own state dependence go straight into the adjoint, the network gets (1 - g)
    const c = shape.catch;
    L.push('{', ...catchWgsl(shape.catch, catchAt));
    for (let j = 0; j < m; j++) {
      L.push(`let cspread${j} = clq${j} - (${f32(shape.controlCenter[j])} + ${f32(shape.controlScale[j])} * S[b + ${z0 + j}u]);`);
      for (let i = 0; i < n; i++) {
        const slope = `${f32(-c.steepness * 2 / c.radii[i] ** 2)} * cg * (1.0 - cg) * ce${i}`;
        L.push(`a${i} = a${i} + gu${j} * (cspread${j} * ${slope} - select(cg * ${f32(c.gain[j][i])}, 0.0, csat${j}));`);
      }
      L.push(`gu${j} = gu${j} * (1.0 - cg);`);
    }
    L.push('}');
  }
  L.push(
    ...Array.from({ length: m }, (_, j) => {
      const z = `S[b + ${z0 + j}u]`;
      const dz = `gu${j} * ${f32(shape.controlScale[j])}`;
      return `d[${j}] = ${shape.bounded[j] ? `${dz} * (1.0 - ${z} * ${z})` : dz};`;
    }),
    '}',
  );
  for (let l = sizes.length - 2; l >= 0; l--) {
    const [inputs, outputs] = [sizes[l], sizes[l + 1]];
    const w = weightOffset[l];
    L.push(
      `for (var k: u32 = 0u; k < ${outputs}u; k = k + 1u) { G[gb + ${w + inputs * outputs}u + k] = G[gb + ${w + inputs * outputs}u + k] + d[k]; }`,
      `for (var i: u32 = 0u; i < ${inputs}u; i = i + 1u) {`,
      `let v = S[b + ${actOffset[l]}u + i];`,
      'var sum: f32 = 0.0;',
      `for (var k: u32 = 0u; k < ${outputs}u; k = k + 1u) { let wi = ${w}u + i * ${outputs}u + k; G[gb + wi] = G[gb + wi] + v * d[k]; sum = sum + TH[th + wi] * d[k]; }`,
      l > 0 ? 'if (v < 0.0) { sum = sum * (v + 1.0); }' : '',
      'e[i] = sum;',
      '}',
      `for (var i: u32 = 0u; i < ${inputs}u; i = i + 1u) { d[i] = e[i]; }`,
    );
  }
  let k = 0;
  for (let j = 0; j < n; j++) {
    const base = actOffset[0];
    if (f.angle[j]) {
      L.push(`a${j} = a${j} + d[${k}u] * S[b + ${base + k + 1}u] - d[${k + 1}u] * S[b + ${base + k}u];`);
      k += 2;
    }
    if (f.raw[j]) L.push(`a${j} = a${j} + d[${k++}u] / ${f32(f.scale[j])};`);
  }
  L.push('}', '}', '}');
  return { code: L.filter((l) => l.trim() !== '').join('\n'), tapeStride: stride };
}

/**
 * Closed-loop rollouts with gradients on the GPU (f32): the same job as the
 * CPU's (`runJob`), one submit and one read-back per call.
 */
export class GpuClosedLoop implements ClosedLoopEvaluator {
  private buffers: { policies: number; invocations: number; TH: GPUBuffer; X0: GPUBuffer; hdr: GPUBuffer; C: GPUBuffer; G: GPUBuffer; S: GPUBuffer; staging: GPUBuffer; group: GPUBindGroup } | undefined;
  /** The policies' weights in f32 on their way up, kept between calls: at N = 16000 a fresh one per call costs more than the conversion. */
  private upload = new Float32Array(0);

  private constructor(
    readonly loop: ClosedLoop, private readonly program: GpuProgram<'main'>, private readonly tapeStride: number, private readonly maxStorageWords: number,
  ) {}

  /** `maxStorageWords`: the most words a buffer may hold, the adapter's limit unless less is given (so a test can split a job). */
  static async create(backend: WebGpuBackend, loop: ClosedLoop, maxStorageWords?: number): Promise<GpuClosedLoop> {
    const { code, tapeStride } = closedLoopShader(loop);
    const program = await GpuProgram.create(backend, code, `${loop.model.name} closed loop`, BUFFERS, ['main'] as const);
    return new GpuClosedLoop(loop, program, tapeStride, Math.min(maxStorageWords ?? Infinity, program.maxStorageWords));
  }

  private reserve(policies: number, invocations: number) {
    if (this.buffers && this.buffers.invocations >= invocations && this.buffers.policies >= policies) return this.buffers;
    this.dispose();
    const p = this.program;
    const P = this.loop.parameters;
    const n = this.loop.model.stateDim;
    const copy = GPUBufferUsage.COPY_DST;
    // the job is split into shares of whole policies: only a policy's own B starts (--batch) can outgrow a buffer
    const rollouts = `${invocations} rollouts (--batch ${invocations / policies} per policy)`;
    const TH = p.storage(policies * P, copy, `${policies} policies x ${P} parameters`);
    const X0 = p.storage(invocations * n, copy, `${rollouts}' starts`);
    const hdr = p.storage(2, copy);
    const C = p.storage(invocations, GPUBufferUsage.COPY_SRC);
    const G = p.storage(invocations * P, GPUBufferUsage.COPY_SRC, `${rollouts} x ${P} parameters of gradient`);
    const S = p.storage(invocations * this.loop.horizon * this.tapeStride, 0, `${rollouts} x ${this.loop.horizon} steps x ${this.tapeStride} values of tape`);
    const staging = p.staging(invocations * (1 + P));
    this.buffers = { policies, invocations, TH, X0, hdr, C, G, S, staging, group: p.bindGroup({ TH, X0, hdr, C, G, S }) };
    return this.buffers;
  }

  async evaluate(job: ClosedLoopJob): Promise<{ energy: Float64Array; grad: Float64Array }> {
    const P = this.loop.parameters;
    const { count, batch } = job;
    // the tape is the largest buffer (T x about 75 words per rollout): where the adapter's buffers cannot hold every
    // rollout at once (16000 acrobot policies need 490 MB; llvmpipe's buffers hold 128 MiB), one dispatch per share
    const perRollout = Math.max(this.loop.horizon * this.tapeStride, P);
    const share = Math.max(1, Math.floor(this.maxStorageWords / (perRollout * batch)));
    const energy = new Float64Array(count);
    // the shares add each rollout's row into it
    const grad = job.gradInto?.subarray(0, count * P).fill(0) ?? new Float64Array(count * P);
    for (let first = 0; first < count; first += share) await this.evaluateShare(job, first, Math.min(count, first + share), energy, grad);
    return { energy, grad };
  }

  /** Policies [first, end) of the job in one dispatch, their mean costs and gradients into energy and grad. */
  private async evaluateShare(job: ClosedLoopJob, first: number, end: number, energy: Float64Array, grad: Float64Array): Promise<void> {
    const P = this.loop.parameters;
    const n = this.loop.model.stateDim;
    const { batch } = job;
    const count = end - first;
    const invocations = count * batch;
    const b = this.reserve(count, invocations);
    const starts = new Float32Array(invocations * n);
    for (let i = 0; i < count; i++) starts.set(job.perPolicyStarts ? job.starts.subarray((first + i) * batch * n, (first + i + 1) * batch * n) : job.starts.subarray(0, batch * n), i * batch * n);
    if (this.upload.length < count * P) this.upload = new Float32Array(b.policies * P);
    const thetas = this.upload.subarray(0, count * P);
    thetas.set(job.thetas.subarray(first * P, end * P));
    this.program.write(b.TH, 0, thetas);
    this.program.write(b.X0, 0, starts);
    this.program.write(b.hdr, 0, Uint32Array.from([invocations, batch]));
    this.program.submit(b.group, (dispatch) => dispatch('main', Math.ceil(invocations / WORKGROUP_SIZE)), (enc) => {
      enc.copyBufferToBuffer(b.C, 0, b.staging, 0, invocations * 4);
      enc.copyBufferToBuffer(b.G, 0, b.staging, invocations * 4, invocations * P * 4);
    });
    await this.program.readMapped(b.staging, (out) => {
      for (let i = 0; i < count; i++) {
        const policy = first + i;
        for (let r = i * batch; r < (i + 1) * batch; r++) {
          energy[policy] += out[r] / batch;
          const row = invocations + r * P;
          for (let k = 0; k < P; k++) grad[policy * P + k] += out[row + k] / batch;
        }
      }
    });
  }

  dispose(): void {
    if (!this.buffers) return;
    this.upload = new Float32Array(0);
    for (const buf of [this.buffers.TH, this.buffers.X0, this.buffers.hdr, this.buffers.C, this.buffers.G, this.buffers.S, this.buffers.staging]) buf.destroy();
    this.buffers = undefined;
  }
}
