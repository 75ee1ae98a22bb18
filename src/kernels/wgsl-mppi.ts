import { emitBody, indexedNames, wgsl } from '../expr/emit.js';
import type { Scalar } from '../expr/expr.js';
import type { ControlScaling } from '../models/controls.js';
import { loopInvariantNodes, StepGraphs } from './graphs.js';
import { PHILOX_WGSL, philoxNormals, philoxNormalsInto } from './philox.js';
import { StorageSpec, storageDeclarations } from './webgpu.js';

/**
 * Whole MPPI iterations in WGSL (the GPU-resident planner): sampling with a
 * Philox stream, rollout and cost, the top-K selection, the weights, and the
 * mean and sigma update, all on buffers that stay on the GPU between
 * iterations and ticks. The same algorithm as `mppi()` in src/planners, in f32.
 *
 * Buffers (one bind group for every entry point), in binding order:
 *   P  header: u32 words (floats as their bits), see HEADER; then x0 (n), uPrev (m), reference (n)
 *   Z  the iteration's samples, M x d normalised controls
 *   C  their costs, M
 *   S  mean, sigma, best, previous tick's mean, previous tick's sigma (d each)
 *   R  scalars (SCALAR) and the output read back once per tick (from OUT)
 *   E  elite indices (M) then their weights' bits (M)
 *   PR proposal sequences: a learned policy's, drawn on the GPU at the tick's start
 *   NET a learned prior's weights (uploaded once; one word when there is none)
 */
export const MPPI_BUFFERS: readonly StorageSpec[] = [
  { name: 'P', element: 'u32', readOnly: true },
  { name: 'Z', element: 'f32', readOnly: false },
  { name: 'C', element: 'f32', readOnly: false },
  { name: 'S', element: 'f32', readOnly: false },
  { name: 'R', element: 'f32', readOnly: false },
  { name: 'E', element: 'u32', readOnly: false },
  { name: 'PR', element: 'f32', readOnly: false },
  { name: 'NET', element: 'f32', readOnly: true },
];

export const HEADER = {
  samples: 0, tick: 1, seed: 2, proposals: 3, elites: 4, flags: 5, shiftSteps: 6,
  temperature: 7, sigmaMin: 8, sigmaMax: 9, noiseCorrelation: 10, valueWeight: 11, policyStdScale: 12, context: 13,
} as const;

/** HEADER.flags bits; `value`: add valueWeight x the learned value of each rollout's last state (eq. (10)) */
export const FLAG = { cold: 1, carrySigma: 2, value: 4 } as const;

/** `outValueBad` / `outPolicyBad`: the learned value / policy gave a number that is not finite this tick (the host plans again without it) */
export const SCALAR = {
  iteration: 0, jMin: 1, weightSum: 2, bestCost: 3, improved: 4, eliteCount: 5, argMin: 6, skip: 7, meanCost: 8,
  outCost: 9, outFinite: 10, outValueBad: 11, outPolicyBad: 12, outSpread: 13, outPlan: 17,
} as const;

/**
 * Stands for +Infinity on the GPU: WGSL may assume no infinities or NaNs, so
 * the shaders never make one; the host reads anything this large as Infinity.
 */
export const NO_COST = 3e38;

/** R's length and where its read-back part (cost, finite count, spread of 4, plan d, first-step sigma m and mean m) starts and ends. */
export function scalarLayout(d: number, m: number) {
  const end = SCALAR.outPlan + d + 2 * m;
  return { length: end, outStart: SCALAR.outCost, outEnd: end, sigma: SCALAR.outPlan + d, mean: SCALAR.outPlan + d + m };
}

/** Stream keys of MPPI's noise and of the learned policy's draws: the run's seed and 'mppi' / 'plcy', so other GPU streams of the same seed differ. */
const MPPI_STREAM = 0x6d707069;
const POLICY_STREAM = 0x706c6379;

/**
 * The same draws on the CPU, so the CPU planner of a seed samples what the
 * GPU planner of that seed samples (its plans then differ by f32 rounding
 * only): sample s's unit noise along the horizon at iteration `iteration` of
 * tick `tick`, from Philox blocks counted by (s, coordinate / 4, iteration,
 * tick), AR(1) per control channel as `rollout_cost` draws it.
 */
export function mppiNoise(seed: number, tick: number, m: number, rho: number) {
  const innovation = Math.sqrt(1 - rho * rho);
  const normals = new Float64Array(4);
  return (out: Float64Array, sample: number, iteration: number): void => {
    for (let k = 0; k < out.length; k++) {
      if ((k & 3) === 0) philoxNormalsInto(sample, k >>> 2, iteration, tick, seed, MPPI_STREAM, normals);
      const e = normals[k & 3];
      out[k] = k < m || rho === 0 ? e : rho * out[k - m] + innovation * e;
    }
  };
}

/** The policy's draws of `policy_samples` on the CPU: the normal for sample s, step t, control j of tick `tick`. */
export function policyNoise(seed: number, tick: number) {
  const key = [seed >>> 0, POLICY_STREAM];
  return (sample: number, t: number, j: number): number => philoxNormals([sample, t, tick, j >>> 2], key)[j & 3];
}

export const ROLLOUT_WORKGROUP = 64;
const REDUCE_WORKGROUP = 256;


/**
 * `learned`: the WGSL of `prior_eval` (src/learned/wgsl.ts) reading the NET
 * buffer, when a learned prior guides the plan: its policy's sequences are
 * drawn here (entry point policy_samples, into PR) and its value closes each
 * rollout when FLAG.value is set.
 */
export function wgslMppiSource(graphs: StepGraphs, scaling: ControlScaling, learned?: string): string {
  const { model } = graphs;
  const { stateDim: n, controlDim: m, horizon: T } = model;
  const d = T * m;
  const xs = indexedNames('x', n);
  const us = indexedNames('u', m);
  const ps = indexedNames('p', m);
  const es = indexedNames('e', m);
  const ctx = HEADER.context;
  const bounded = Array.from(scaling.scale, (_, j) => Number.isFinite(model.controlLimits.lower[j]) && Number.isFinite(model.controlLimits.upper[j]));
  const lit = (v: number) => wgsl.literal(v);

  const outputs: Scalar[] = [graphs.next, graphs.stage, graphs.terminal].flat();
  const hoisted = loopInvariantNodes(outputs);
  const prologue = emitBody(hoisted, wgsl);
  const declared = new Set(hoisted.map((h) => h.id));
  const fwd = emitBody([...graphs.next, graphs.stage], wgsl, declared);
  const term = emitBody([graphs.terminal], wgsl, declared);
  const f = (word: string) => `bitcast<f32>(P[${word}])`;

  // One sample's rollout: its controls are generated (noise, proposal or mean), stored in Z unless it is the mean's evaluation.
  const controlLines = us.map((u, j) => [
    `{ let k = t * ${m}u + ${j}u; var z: f32;`,
    `if (fromMean || s == nProp) { z = S[k]; } else if (s < nProp) { z = PR[s * ${d}u + k]; } else {`,
    '  let b = k >> 2u; if (b != block) { normals = philox_normals(vec4<u32>(s, b, iter, tick), key); block = b; }',
    `  let nrm = normals[k & 3u]; ${es[j]} = select(rho * ${es[j]} + innovation * nrm, nrm, t == 0u || rho == 0.0);`,
    `  z = S[k] + S[${d}u + k] * ${es[j]}; }`,
    bounded[j] ? 'z = clamp(z, -1.0, 1.0);' : '',
    `if (!fromMean) { Z[s * ${d}u + k] = z; }`,
    `${u} = ${lit(scaling.center[j])} + ${lit(scaling.scale[j])} * z; }`,
  ].join(' '));

  /**
   * The learned policy rolled through the model from x0, one invocation per
   * proposal s: z = mean + policyStdScale * std * normal (sample 0 the mean,
   * as the CPU's LearnedPrior.rollout), clipped where bounded, into PR.
   */
  function policySamplesSource(): string[] {
    const step = emitBody([...graphs.next], wgsl, declared);
    return [
      `@compute @workgroup_size(${ROLLOUT_WORKGROUP})`,
      'fn policy_samples(@builtin(global_invocation_id) gid: vec3<u32>) {',
      `let s = gid.x; if (s >= P[${HEADER.proposals}u]) { return; }`,
      `let tick = P[${HEADER.tick}u]; let key = vec2<u32>(P[${HEADER.seed}u], ${POLICY_STREAM}u); let widen = ${f(`${HEADER.policyStdScale}u`)};`,
      indexedNames('r', n).map((r, i) => `let ${r} = ${f(`${ctx + n + m + i}u`)};`).join(' '),
      ...prologue.code,
      xs.map((x, i) => `var ${x}: f32 = ${f(`${ctx + i}u`)};`).join(' '),
      ps.map((p, i) => `var ${p}: f32 = ${f(`${ctx + n + i}u`)};`).join(' '),
      us.map((u) => `var ${u}: f32 = 0.0;`).join(' '),
      `for (var t: u32 = 0u; t < ${T}u; t = t + 1u) {`,
      `let pv = prior_eval(array<f32, ${n}>(${xs.join(', ')}), array<f32, ${n}>(${indexedNames('r', n).join(', ')}));`,
      `if (!pv.finite) { R[${SCALAR.outPolicyBad}u] = 1.0; return; }`,
      ...Array.from({ length: Math.ceil(m / 4) }, (_, b) => `let normals${b} = philox_normals(vec4<u32>(s, t, tick, ${b}u), key);`),
      ...us.map((u, j) => [
        `{ var z: f32 = pv.mean[${j}]; if (s > 0u) { z = z + widen * pv.deviation[${j}] * normals${Math.floor(j / 4)}[${j % 4}u]; }`,
        bounded[j] ? 'z = clamp(z, -1.0, 1.0);' : '',
        `PR[s * ${d}u + t * ${m}u + ${j}u] = z; ${u} = ${lit(scaling.center[j])} + ${lit(scaling.scale[j])} * z; }`,
      ].join(' ')),
      ...step.code,
      n ? xs.map((_, i) => `let nx${i} = ${step.refs[i]};`).join(' ') + ' ' + xs.map((x, i) => `${x} = nx${i};`).join(' ') : '',
      ps.map((p, i) => `${p} = ${us[i]};`).join(' '),
      '}',
      '}',
      '',
    ];
  }

  const L: string[] = [
    ...storageDeclarations(MPPI_BUFFERS),
    PHILOX_WGSL,
    ...(learned ? [learned] : []),
    `const NO_COST: f32 = ${lit(NO_COST)};`,
    `const D: u32 = ${d}u;`,
    '',
    '/** The cost of sample s (or of the mean), generating its controls as it rolls out. */',
    'fn rollout_cost(s: u32, fromMean: bool) -> f32 {',
    `let nProp = P[${HEADER.proposals}u]; let tick = P[${HEADER.tick}u]; let iter = u32(R[${SCALAR.iteration}u]);`,
    `let key = vec2<u32>(P[${HEADER.seed}u], ${MPPI_STREAM}u);`,
    `let rho = ${f(`${HEADER.noiseCorrelation}u`)}; let innovation = sqrt(1.0 - rho * rho);`,
    'var block: u32 = 0xffffffffu; var normals = vec4<f32>(0.0);',
    indexedNames('r', n).map((r, i) => `let ${r} = ${f(`${ctx + n + m + i}u`)};`).join(' '),
    ...prologue.code,
    xs.map((x, i) => `var ${x}: f32 = ${f(`${ctx + i}u`)};`).join(' '),
    ps.map((p, i) => `var ${p}: f32 = ${f(`${ctx + n + i}u`)};`).join(' '),
    us.map((u) => `var ${u}: f32 = 0.0;`).join(' '),
    es.map((e) => `var ${e}: f32 = 0.0;`).join(' '),
    'var acc: f32 = 0.0;',
    `for (var t: u32 = 0u; t < ${T}u; t = t + 1u) {`,
    ...controlLines,
    ...fwd.code,
    `acc = acc + ${fwd.refs[n]};`,
    n ? xs.map((_, i) => `let nx${i} = ${fwd.refs[i]};`).join(' ') + ' ' + xs.map((x, i) => `${x} = nx${i};`).join(' ') : '',
    ps.map((p, i) => `${p} = ${us[i]};`).join(' '),
    '}',
    ...term.code,
    `acc = acc + ${term.refs[0]};`,
    ...(learned ? [
      `if ((P[${HEADER.flags}u] & ${FLAG.value}u) != 0u) {`,
      `  let pv = prior_eval(array<f32, ${n}>(${xs.join(', ')}), array<f32, ${n}>(${indexedNames('r', n).join(', ')}));`,
      `  if (pv.finite) { acc = acc + ${f(`${HEADER.valueWeight}u`)} * pv.value; } else { R[${SCALAR.outValueBad}u] = 1.0; }`,
      '}',
    ] : []),
    'return acc;',
    '}',
    '',
    ...(learned ? policySamplesSource() : []),
    `@compute @workgroup_size(${ROLLOUT_WORKGROUP})`,
    'fn rollout(@builtin(global_invocation_id) gid: vec3<u32>) {',
    `if (gid.x >= P[${HEADER.samples}u]) { return; }`,
    'C[gid.x] = rollout_cost(gid.x, false);',
    '}',
    '',
    '@compute @workgroup_size(1)',
    `fn rollout_mean() { R[${SCALAR.meanCost}u] = rollout_cost(0u, true); }`,
    '',
    '/** A new tick: the mean and sigma are the previous tick\'s, shifted (or the cold start\'s), and nothing is best yet. */',
    `@compute @workgroup_size(${ROLLOUT_WORKGROUP})`,
    'fn prepare(@builtin(global_invocation_id) gid: vec3<u32>) {',
    'let k = gid.x; if (k >= D) { return; }',
    `let flags = P[${HEADER.flags}u]; let sigmaMin = ${f(`${HEADER.sigmaMin}u`)}; let sigmaMax = ${f(`${HEADER.sigmaMax}u`)};`,
    `if ((flags & ${FLAG.cold}u) != 0u) { S[k] = 0.0; S[D + k] = sigmaMax; } else {`,
    `  var j = k + P[${HEADER.shiftSteps}u] * ${m}u; if (j >= D) { j = D - ${m}u + k % ${m}u; }`,
    '  S[k] = S[3u * D + j];',
    `  S[D + k] = select(sigmaMax, clamp(1.5 * S[4u * D + j], sigmaMin, sigmaMax), (flags & ${FLAG.carrySigma}u) != 0u); }`,
    'S[2u * D + k] = S[k];',
    `if (k == 0u) { R[${SCALAR.iteration}u] = 0.0; R[${SCALAR.bestCost}u] = NO_COST; R[${SCALAR.outValueBad}u] = 0.0; R[${SCALAR.outPolicyBad}u] = 0.0; }`,
    '}',
    '',
    `var<workgroup> wgCount: atomic<u32>;`,
    `var<workgroup> wgIndex: atomic<u32>;`,
    `var<workgroup> partCount: array<u32, ${REDUCE_WORKGROUP}>;`,
    `var<workgroup> partSum: array<f32, ${REDUCE_WORKGROUP}>;`,
    '',
    '/** Costs as order-preserving unsigned keys; anything non-finite is the largest key, as the CPU planner ranks it. */',
    'fn cost_key(c: f32) -> u32 {',
    '  let b = bitcast<u32>(c);',
    '  if ((b & 0x7f800000u) == 0x7f800000u) { return 0xffffffffu; }',
    '  if ((b & 0x80000000u) != 0u) { return ~b; }',
    '  return b | 0x80000000u;',
    '}',
    'fn key_cost(k: u32) -> f32 {',
    '  if ((k & 0x80000000u) != 0u) { return bitcast<f32>(k & 0x7fffffffu); }',
    '  return bitcast<f32>(~k);',
    '}',
    '/** How many of the first `count` costs have a key at most `limit` (the whole workgroup counts; all get the total). */',
    'fn count_at_most(lid: u32, count: u32, limit: u32) -> u32 {',
    '  workgroupBarrier();',
    '  if (lid == 0u) { atomicStore(&wgCount, 0u); }',
    '  workgroupBarrier();',
    '  var c = 0u;',
    `  for (var i = lid; i < count; i = i + ${REDUCE_WORKGROUP}u) { if (cost_key(C[i]) <= limit) { c = c + 1u; } }`,
    '  atomicAdd(&wgCount, c);',
    '  workgroupBarrier();',
    '  return atomicLoad(&wgCount);',
    '}',
    '/** The k-th smallest key (1-based) of the first `count` costs, by bisection on the key: 32 counting passes, no sort. */',
    'fn kth_key(lid: u32, count: u32, k: u32) -> u32 {',
    '  var lo = 0u; var hi = 0xffffffffu;',
    '  for (var it = 0u; it < 32u; it = it + 1u) {',
    '    let mid = lo + ((hi - lo) >> 1u);',
    '    if (count_at_most(lid, count, mid) >= k) { hi = mid; } else { lo = mid + 1u; }',
    '  }',
    '  return lo;',
    '}',
    '',
    '/**',
    ' * Top-K selection and weights exp(-(J - J_min)/temperature), in one workgroup.',
    ' * Each thread owns a contiguous slice of the samples, so the elite list and',
    ' * the weight sum come out in sample order: the update is deterministic.',
    ' */',
    `@compute @workgroup_size(${REDUCE_WORKGROUP})`,
    'fn select_elites(@builtin(local_invocation_index) lid: u32) {',
    `let M = P[${HEADER.samples}u]; let temperature = ${f(`${HEADER.temperature}u`)};`,
    `var K = P[${HEADER.elites}u]; if (K == 0u || K > M) { K = M; }`,
    'let minKey = kth_key(lid, M, 1u);',
    'let thrKey = kth_key(lid, M, K);',
    'let finiteMin = minKey != 0xffffffffu;',
    'let jMin = select(NO_COST, key_cost(minKey), finiteMin);',
    'if (lid == 0u) { atomicStore(&wgIndex, 0xffffffffu); }',
    'workgroupBarrier();',
    `for (var i = lid; i < M; i = i + ${REDUCE_WORKGROUP}u) { if (finiteMin && cost_key(C[i]) == minKey) { atomicMin(&wgIndex, i); } }`,
    'workgroupBarrier();',
    'let argMin = atomicLoad(&wgIndex);',
    `let chunk = (M + ${REDUCE_WORKGROUP - 1}u) / ${REDUCE_WORKGROUP}u; let first = min(M, lid * chunk); let last = min(M, first + chunk);`,
    'var c = 0u; var w = 0.0;',
    'for (var i = first; i < last; i = i + 1u) {',
    '  let kk = cost_key(C[i]);',
    '  if (finiteMin && kk <= thrKey && kk != 0xffffffffu) { c = c + 1u; w = w + exp(-(C[i] - jMin) / temperature); }',
    '}',
    'partCount[lid] = c; partSum[lid] = w;',
    'workgroupBarrier();',
    'if (lid == 0u) {',
    `  var offset = 0u; var sum = 0.0;`,
    `  for (var j = 0u; j < ${REDUCE_WORKGROUP}u; j = j + 1u) { let cj = partCount[j]; partCount[j] = offset; offset = offset + cj; sum = sum + partSum[j]; }`,
    `  R[${SCALAR.jMin}u] = jMin; R[${SCALAR.weightSum}u] = sum; R[${SCALAR.eliteCount}u] = f32(offset);`,
    `  R[${SCALAR.argMin}u] = f32(argMin); R[${SCALAR.skip}u] = select(1.0, 0.0, finiteMin && offset > 0u);`,
    `  let improved = finiteMin && jMin < R[${SCALAR.bestCost}u];`,
    `  if (improved) { R[${SCALAR.bestCost}u] = jMin; }`,
    `  R[${SCALAR.improved}u] = select(0.0, 1.0, improved);`,
    `  R[${SCALAR.iteration}u] = R[${SCALAR.iteration}u] + 1.0;`,
    '}',
    'workgroupBarrier();',
    'var at = partCount[lid];',
    'for (var i = first; i < last; i = i + 1u) {',
    '  let kk = cost_key(C[i]);',
    '  if (finiteMin && kk <= thrKey && kk != 0xffffffffu) { E[at] = i; E[M + at] = bitcast<u32>(exp(-(C[i] - jMin) / temperature)); at = at + 1u; }',
    '}',
    '}',
    '',
    '/** The weighted mean shift and spread of the elites, one invocation per coordinate; and the best sample so far. */',
    `@compute @workgroup_size(${ROLLOUT_WORKGROUP})`,
    'fn update(@builtin(global_invocation_id) gid: vec3<u32>) {',
    'let k = gid.x; if (k >= D) { return; }',
    `let M = P[${HEADER.samples}u];`,
    `if (R[${SCALAR.improved}u] > 0.5) { S[2u * D + k] = Z[u32(R[${SCALAR.argMin}u]) * D + k]; }`,
    `if (R[${SCALAR.skip}u] > 0.5) { return; }`,
    `let count = u32(R[${SCALAR.eliteCount}u]); let wSum = R[${SCALAR.weightSum}u];`,
    'let mk = S[k]; var shift = 0.0; var spread = 0.0;',
    'for (var e = 0u; e < count; e = e + 1u) {',
    '  let w = bitcast<f32>(E[M + e]); let dz = Z[E[e] * D + k] - mk;',
    '  shift = shift + w * dz; spread = spread + w * dz * dz;',
    '}',
    `var bounded = array<bool, ${m}>(${bounded.join(', ')});`,
    `var next = mk + shift / wSum; if (bounded[k % ${m}u]) { next = clamp(next, -1.0, 1.0); }`,
    'S[k] = next;',
    `S[D + k] = clamp(sqrt(spread / wSum), ${f(`${HEADER.sigmaMin}u`)}, ${f(`${HEADER.sigmaMax}u`)});`,
    '}',
    '',
    '/** The tick\'s result: the mean or the best sample, whichever costs less; the last iteration\'s cost spread; the warm start kept for the next tick. */',
    `@compute @workgroup_size(${REDUCE_WORKGROUP})`,
    'fn finish(@builtin(local_invocation_index) lid: u32) {',
    `let M = P[${HEADER.samples}u];`,
    'let finite = count_at_most(lid, M, 0xfffffffeu);',
    'var spread = vec4<f32>(0.0);',
    'var fractions = vec4<f32>(0.0, 0.1, 0.5, 0.9);',
    'for (var q = 0u; q < 4u; q = q + 1u) {',
    '  let rank = u32(floor(fractions[q] * f32(max(finite, 1u) - 1u))) + 1u;',
    '  let key = kth_key(lid, M, rank);',
    '  if (finite > 0u) { spread[q] = key_cost(key); }',
    '}',
    `var meanCost = R[${SCALAR.meanCost}u]; if (cost_key(meanCost) == 0xffffffffu) { meanCost = NO_COST; }`,
    `let bestCost = R[${SCALAR.bestCost}u];`,
    'let useMean = meanCost <= bestCost;',
    `let layoutSigma = ${SCALAR.outPlan}u + D; let layoutMean = layoutSigma + ${m}u;`,
    `for (var k = lid; k < D; k = k + ${REDUCE_WORKGROUP}u) {`,
    `  R[${SCALAR.outPlan}u + k] = select(S[2u * D + k], S[k], useMean);`,
    '  S[3u * D + k] = S[k]; S[4u * D + k] = S[D + k];',
    `  if (k < ${m}u) { R[layoutSigma + k] = S[D + k]; R[layoutMean + k] = S[k]; }`,
    '}',
    'if (lid == 0u) {',
    `  R[${SCALAR.outCost}u] = min(meanCost, bestCost); R[${SCALAR.outFinite}u] = f32(finite);`,
    `  for (var q = 0u; q < 4u; q = q + 1u) { R[${SCALAR.outSpread}u + q] = spread[q]; }`,
    '}',
    '}',
  ];
  return L.filter((l) => l.trim() !== '').join('\n');
}
