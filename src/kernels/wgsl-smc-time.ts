import { emitBody, indexedNames, wgsl } from '../expr/emit.js';
import type { Scalar } from '../expr/expr.js';
import type { ControlScaling } from '../models/controls.js';
import { loopInvariantNodes, StepGraphs } from './graphs.js';
import { PHILOX_WGSL } from './philox.js';
import { StorageSpec, storageDeclarations } from './webgpu.js';

/**
 * SMC planning over time in WGSL (the GPU-resident SPO and TRT-SMC): the
 * same pass as `smcOverTime` in src/planners/spo/smc.ts, in f32, on buffers
 * that stay on the GPU between steps and ticks. One invocation per particle
 * proposes (SPO: the policy's Gaussian; TRT-SMC: the trust-region Boltzmann
 * policy over B atoms, their Q one invocation per atom), steps the model and
 * evaluates the prior ahead; one workgroup weighs (advantages, the dual's
 * eta, the backed-up statistics, ESS), draws the ancestors and gathers the
 * survivors. The last workgroup closes the pass: the terminal cost, q-hat,
 * the command, and the plan (the best particle's trajectory continued by the
 * policy's mean).
 *
 * Ancestors stay sorted: both resampling schemes draw non-decreasing
 * indices (as the CPU's do), so each root's descendants are one contiguous
 * run of particles and its statistic is a walk over that run.
 *
 * Buffers (one bind group; seven bindings, within WebGPU's portable eight):
 *   P   header words (SMC_HEADER; floats as their bits), then x0 (n), uPrev (m), reference (n)
 *   PT  particles, K records (particleLayout), then the resampling scratch copy (K more)
 *   TR  trajectories K x H x m (normalised), their scratch copy, then the history of every
 *       step's proposals (H x K x (m + 1): the action and log(pi / q)) for inspection
 *   PW  per-particle numbers (PW_FIELDS, then the root action, m), then Q of the atoms (K x B)
 *   IX  ancestors (K), their scratch copy (K), the step's ancestor draw (K), the draws' history (H x K)
 *   R   scalars (SMC_SCALAR), the last plan and the guide (H x m each), then the output read back once per tick
 *   NET the prior's weights (uploaded once)
 */
export const SMC_TIME_BUFFERS: readonly StorageSpec[] = [
  { name: 'P', element: 'u32', readOnly: true },
  { name: 'PT', element: 'f32', readOnly: false },
  { name: 'TR', element: 'f32', readOnly: false },
  { name: 'PW', element: 'f32', readOnly: false },
  { name: 'IX', element: 'u32', readOnly: false },
  { name: 'R', element: 'f32', readOnly: false },
  { name: 'NET', element: 'f32', readOnly: true },
];

export const SMC_HEADER = {
  particles: 0, tick: 1, seed: 2, flags: 3, depth: 4, resampleEvery: 5, shiftSteps: 6, atoms: 7,
  eta: 8, klBound: 9, gamma: 10, policyStdScale: 11, alpha: 12, valueWeight: 13, guideDraws: 14, guideStdScale: 15, context: 16,
} as const;

/** SMC_HEADER.flags bits: `guide` one particle follows the shifted last plan; `value` the learned value weighs (else V = 0). */
export const SMC_FLAG = {
  guide: 1, meanParticle: 2, revive: 4, trustRegion: 8, backedUp: 16, commandSample: 32, multinomial: 64, value: 128,
} as const;

/** R's scalars; `priorBad`: the prior's output at x0 is not finite (the host refuses the tick). */
export const SMC_SCALAR = {
  step: 0, guided: 1, eta: 2, stop: 3, resamples: 4, valueRoot: 5, depth: 6, priorBad: 7, plans: 16,
} as const;

/** Where the output starts, and its parts (offsets from the start): read back as one block. */
export function smcOutLayout(H: number, m: number, K: number) {
  const D = H * m;
  const start = SMC_SCALAR.plans + 2 * D;
  const plan = 8;
  const firstMean = plan + D;
  const firstSigma = firstMean + m;
  const ess = firstSigma + m;
  const beta = ess + H;
  const qHat = beta + H;
  return { start, length: qHat + K, cost: 0, depth: 1, resamples: 2, eta: 3, valueRoot: 4, finalEss: 5, priorBad: 6, plan, firstMean, firstSigma, ess, beta, qHat };
}

/** A particle's record in PT: state, reference (the last finite state), previous control, then the prior at the state: V, policy mean, std. */
export function particleLayout(n: number, m: number) {
  return { x: 0, ref: n, uPrev: 2 * n, value: 2 * n + m, mean: 2 * n + m + 1, std: 2 * n + 2 * m + 1, stride: 2 * n + 3 * m + 1 };
}

/** PW's fields per particle (the root action, m numbers, follows them). */
export const PW_FIELDS = { logW: 0, advantage: 1, logCorrection: 2, increment: 3, beta: 4, backedUp: 5, baseline: 6, cdf: 7, spacing: 8, rootAction: 9 } as const;

/** log-weights below this are -infinity (the shaders never make a real infinity: WGSL may assume there are none) */
export const NEG = -3e38;
/** a cost or inverse temperature this large is +infinity */
export const BIG = 3e38;

/** Stream keys ('smcp', 'smca', 'smcc', 'smcr', 'smcu'): proposals, atoms, the atom chosen, resampling, the command's draw. */
const STREAM = { proposal: 0x736d6370, atom: 0x736d6361, choice: 0x736d6363, resample: 0x736d6372, command: 0x736d6375 } as const;

export const PARTICLE_WORKGROUP = 64;
const REDUCE_WORKGROUP = 256;

export const SMC_TIME_ENTRY_POINTS = ['prepare', 'atoms', 'advance', 'weigh', 'close'] as const;


/**
 * The program for one model and prior: `learned` is the WGSL of `prior_eval`
 * and `prior_q` reading NET (src/learned/wgsl.ts).
 */
export function wgslSmcTimeSource(graphs: StepGraphs, scaling: ControlScaling, learned: string): string {
  const { model } = graphs;
  const { stateDim: n, controlDim: m, horizon: H } = model;
  const D = H * m;
  const lit = (v: number) => wgsl.literal(v);
  const bounded = Array.from(scaling.scale, (_, j) => Number.isFinite(model.controlLimits.lower[j]) && Number.isFinite(model.controlLimits.upper[j]));
  const pt = particleLayout(n, m);
  const W = PW_FIELDS.rootAction + m;
  const hdr = (k: keyof typeof SMC_HEADER) => `P[${SMC_HEADER[k]}u]`;
  const hdrF = (k: keyof typeof SMC_HEADER) => `bitcast<f32>(P[${SMC_HEADER[k]}u])`;
  const sc = (k: keyof typeof SMC_SCALAR) => `R[${SMC_SCALAR[k]}u]`;
  const ctx = SMC_HEADER.context;
  const LAST = SMC_SCALAR.plans;
  const GUIDE = SMC_SCALAR.plans + D;
  const OUT = SMC_SCALAR.plans + 2 * D;
  const out = smcOutLayout(H, m, 0);

  const outputs: Scalar[] = [graphs.next, graphs.stage, graphs.terminal].flat();
  const hoisted = loopInvariantNodes(outputs);
  const prologue = emitBody(hoisted, wgsl);
  const declared = new Set(hoisted.map((h) => h.id));
  const fwd = emitBody([...graphs.next, graphs.stage], wgsl, declared);
  const term = emitBody([graphs.terminal], wgsl, declared);
  const unpack = (names: string[], from: string) => names.map((v, i) => `let ${v} = ${from}[${i}];`).join(' ');
  const normalBlocks = Math.ceil(m / 4);

  return [
    ...storageDeclarations(SMC_TIME_BUFFERS),
    PHILOX_WGSL,
    learned,
    `const NEG: f32 = ${lit(NEG)};`,
    `const BIG: f32 = ${lit(BIG)};`,
    `const NONE: u32 = 0xffffffffu;`,
    `const H: u32 = ${H}u;`,
    `const D: u32 = ${D}u;`,
    `const SP: u32 = ${pt.stride}u;`,
    `const WP: u32 = ${W}u;`,
    `const OUT: u32 = ${OUT}u;`,
    `var<private> BOUNDED: array<bool, ${m}> = array<bool, ${m}>(${bounded.join(', ')});`,
    'fn is_neg(v: f32) -> bool { return v <= -1e38; }',
    `fn physical(z: array<f32, ${m}>) -> array<f32, ${m}> { var u: array<f32, ${m}>; ${Array.from({ length: m }, (_, j) => `u[${j}] = ${lit(scaling.center[j])} + ${lit(scaling.scale[j])} * z[${j}];`).join(' ')} return u; }`,
    '',
    `struct StepOut { next: array<f32, ${n}>, cost: f32, finite: bool }`,
    '/** x\' = f(x, u) and the stage cost l(x, u, u_prev) (u physical), generated from the model\'s step graphs; `finite` judged on the bits. */',
    `fn model_step(x: array<f32, ${n}>, u: array<f32, ${m}>, p: array<f32, ${m}>, r: array<f32, ${n}>) -> StepOut {`,
    unpack(indexedNames('x', n), 'x'), unpack(indexedNames('u', m), 'u'), unpack(indexedNames('p', m), 'p'), unpack(indexedNames('r', n), 'r'),
    ...prologue.code,
    ...fwd.code,
    'var o: StepOut;',
    ...indexedNames('x', n).map((_, i) => `o.next[${i}] = ${fwd.refs[i]};`),
    `o.cost = ${fwd.refs[n]};`,
    `o.finite = prior_bits_finite(o.cost)${indexedNames('x', n).map((_, i) => ` && prior_bits_finite(o.next[${i}])`).join('')};`,
    'return o;',
    '}',
    `fn terminal_cost(x: array<f32, ${n}>, r: array<f32, ${n}>) -> f32 {`,
    unpack(indexedNames('x', n), 'x'), unpack(indexedNames('r', n), 'r'),
    ...prologue.code,
    ...term.code,
    `return ${term.refs[0]};`,
    '}',
    '',
    `fn state_of(i: u32, at: u32) -> array<f32, ${n}> { var x: array<f32, ${n}>; for (var k = 0u; k < ${n}u; k = k + 1u) { x[k] = PT[i * SP + at + k]; } return x; }`,
    `fn reference() -> array<f32, ${n}> { var r: array<f32, ${n}>; for (var k = 0u; k < ${n}u; k = k + 1u) { r[k] = bitcast<f32>(P[${ctx + n + m}u + k]); } return r; }`,
    `fn value_of(pv: Prior) -> f32 { if ((${hdr('flags')} & ${SMC_FLAG.value}u) == 0u) { return 0.0; } return ${hdrF('valueWeight')} * pv.value; }`,
    '/** Stores the prior at a particle\'s state into its record (V scaled as the planner reads it). */',
    'fn store_prior(i: u32, pv: Prior) {',
    `PT[i * SP + ${pt.value}u] = value_of(pv);`,
    `for (var j = 0u; j < ${m}u; j = j + 1u) { PT[i * SP + ${pt.mean}u + j] = pv.mean[j]; PT[i * SP + ${pt.std}u + j] = pv.deviation[j]; }`,
    '}',
    `fn pw(i: u32, field: u32) -> f32 { return PW[i * WP + field]; }`,
    `fn set_pw(i: u32, field: u32, v: f32) { PW[i * WP + field] = v; }`,
    '/** The first index in [0, count) of the sorted u32 run at `from` whose entry is at least `v`. */',
    'fn lower_bound(start: u32, count: u32, v: u32) -> u32 { var lo = 0u; var hi = count; loop { if (lo >= hi) { break; } let mid = (lo + hi) / 2u; if (IX[start + mid] < v) { lo = mid + 1u; } else { hi = mid; } } return lo; }',
    '',
    // reductions end in workgroupUniformLoad: their results are uniform, so the code that branches on them may still meet barriers
    `var<workgroup> red: array<f32, ${REDUCE_WORKGROUP}>;`,
    'var<workgroup> wgWord: u32;',
    'var<workgroup> wgFloat: f32;',
    `fn wg_max(lid: u32, v: f32) -> f32 { workgroupBarrier(); red[lid] = v; workgroupBarrier(); for (var s = ${REDUCE_WORKGROUP / 2}u; s > 0u; s = s >> 1u) { if (lid < s) { red[lid] = max(red[lid], red[lid + s]); } workgroupBarrier(); } if (lid == 0u) { wgFloat = red[0]; } return workgroupUniformLoad(&wgFloat); }`,
    `fn wg_sum(lid: u32, v: f32) -> f32 { workgroupBarrier(); red[lid] = v; workgroupBarrier(); for (var s = ${REDUCE_WORKGROUP / 2}u; s > 0u; s = s >> 1u) { if (lid < s) { red[lid] = red[lid] + red[lid + s]; } workgroupBarrier(); } if (lid == 0u) { wgFloat = red[0]; } return workgroupUniformLoad(&wgFloat); }`,
    '/** log mean exp of a PW field over all K particles (-infinity entries count as 0; all of them: NEG). */',
    'fn lme_field(lid: u32, K: u32, field: u32) -> f32 {',
    `var mx = NEG; for (var i = lid; i < K; i = i + ${REDUCE_WORKGROUP}u) { mx = max(mx, pw(i, field)); }`,
    'mx = wg_max(lid, mx);',
    `var s = 0.0; if (!is_neg(mx)) { for (var i = lid; i < K; i = i + ${REDUCE_WORKGROUP}u) { let v = pw(i, field); if (!is_neg(v)) { s = s + exp(v - mx); } } }`,
    's = wg_sum(lid, s);',
    'if (is_neg(mx)) { return NEG; }',
    'return mx + log(s / f32(K));',
    '}',
    '/** The step\'s pass for uniform loads: thread 0 reads a scalar of R, every thread gets it. */',
    'fn uniform_scalar(lid: u32, index: u32) -> f32 { if (lid == 0u) { wgFloat = R[index]; } return workgroupUniformLoad(&wgFloat); }',
    '',
    '/**',
    ' * Adds the increments (PW increment) to the weights and, per root, the log',
    ' * mean increment over its descendants to its backed-up statistic, with the',
    ' * step\'s mean over all particles to its baseline (TRT-SMC Algorithm 2, lines 8-9).',
    ' */',
    'fn add_increments(lid: u32, K: u32) {',
    'storageBarrier();',
    `let stepMean = lme_field(lid, K, ${PW_FIELDS.increment}u);`,
    `for (var j = lid; j < K; j = j + ${REDUCE_WORKGROUP}u) {`,
    '  let lo = lower_bound(0u, K, j); let hi = lower_bound(0u, K, j + 1u);',
    '  if (lo >= hi) { continue; }',
    `  var mx = NEG; for (var i = lo; i < hi; i = i + 1u) { mx = max(mx, pw(i, ${PW_FIELDS.increment}u)); }`,
    `  let bu = pw(j, ${PW_FIELDS.backedUp}u);`,
    `  if (is_neg(mx) || is_neg(bu)) { set_pw(j, ${PW_FIELDS.backedUp}u, NEG); } else {`,
    `    var s = 0.0; for (var i = lo; i < hi; i = i + 1u) { let v = pw(i, ${PW_FIELDS.increment}u); if (!is_neg(v)) { s = s + exp(v - mx); } }`,
    `    set_pw(j, ${PW_FIELDS.backedUp}u, bu + mx + log(s / f32(hi - lo))); }`,
    `  if (!is_neg(stepMean)) { set_pw(j, ${PW_FIELDS.baseline}u, pw(j, ${PW_FIELDS.baseline}u) + stepMean); }`,
    '}',
    'storageBarrier();',
    `for (var i = lid; i < K; i = i + ${REDUCE_WORKGROUP}u) {`,
    `  let inc = pw(i, ${PW_FIELDS.increment}u); let lw = pw(i, ${PW_FIELDS.logW}u);`,
    `  set_pw(i, ${PW_FIELDS.logW}u, select(lw + inc, NEG, is_neg(inc) || is_neg(lw)));`,
    '}',
    'storageBarrier();',
    '}',
    '',
    '/** A new tick: every particle at x0 with the prior there, the guide (the last plan shifted), the scalars reset. */',
    `@compute @workgroup_size(${REDUCE_WORKGROUP})`,
    'fn prepare(@builtin(local_invocation_index) lid: u32) {',
    `let K = ${hdr('particles')}; let flags = ${hdr('flags')};`,
    `if ((flags & ${SMC_FLAG.guide}u) != 0u) { for (var k = lid; k < D; k = k + ${REDUCE_WORKGROUP}u) {`,
    `  var j = k + ${hdr('shiftSteps')} * ${m}u; if (j >= D) { j = D - ${m}u + k % ${m}u; }`,
    `  R[${GUIDE}u + k] = R[${LAST}u + j]; } }`,
    `var x: array<f32, ${n}>; for (var k = 0u; k < ${n}u; k = k + 1u) { x[k] = bitcast<f32>(P[${ctx}u + k]); }`,
    'let pv = prior_eval(x, reference());',
    `for (var i = lid; i < K; i = i + ${REDUCE_WORKGROUP}u) {`,
    `  for (var k = 0u; k < ${n}u; k = k + 1u) { PT[i * SP + k] = x[k]; PT[i * SP + ${pt.ref}u + k] = x[k]; }`,
    `  for (var j = 0u; j < ${m}u; j = j + 1u) { PT[i * SP + ${pt.uPrev}u + j] = bitcast<f32>(P[${ctx + n}u + j]); }`,
    '  store_prior(i, pv);',
    `  set_pw(i, ${PW_FIELDS.logW}u, select(NEG, 0.0, pv.finite)); set_pw(i, ${PW_FIELDS.backedUp}u, 0.0); set_pw(i, ${PW_FIELDS.baseline}u, 0.0);`,
    '  IX[i] = i;',
    '}',
    'if (lid == 0u) {',
    `  ${sc('step')} = 0.0; ${sc('guided')} = select(-1.0, 0.0, (flags & ${SMC_FLAG.guide}u) != 0u); ${sc('eta')} = ${hdrF('eta')};`,
    `  ${sc('stop')} = 0.0; ${sc('resamples')} = 0.0; ${sc('valueRoot')} = value_of(pv); ${sc('depth')} = 0.0;`,
    `  ${sc('priorBad')} = select(1.0, 0.0, pv.finite);`,
    '}',
    '}',
    '',
    '/** The step, or NONE when the pass is over (depth reached, or stopped: no particle with a finite weight to resample). */',
    `fn current_step() -> u32 { let t = u32(${sc('step')}); if (t >= ${hdr('depth')} || ${sc('stop')} > 0.5) { return NONE; } return t; }`,
    '',
    '/** Particle i\'s normals at step t from a stream, counters first.. of the tick (one block of four per counter). */',
    `fn particle_normals(i: u32, first: u32, t: u32, stream: u32) -> array<f32, ${4 * normalBlocks}> {`,
    `var e: array<f32, ${4 * normalBlocks}>; let key = vec2<u32>(${hdr('seed')}, stream);`,
    `for (var blk = 0u; blk < ${normalBlocks}u; blk = blk + 1u) { let v = philox_normals(vec4<u32>(i, first + blk, t, ${hdr('tick')}), key); e[4u * blk] = v.x; e[4u * blk + 1u] = v.y; e[4u * blk + 2u] = v.z; e[4u * blk + 3u] = v.w; }`,
    'return e;',
    '}',
    '/** One atom of the trust-region proposal: its normals (the same counter regenerates them when it is chosen). */',
    `fn atom_normals(i: u32, b: u32, t: u32) -> array<f32, ${4 * normalBlocks}> { return particle_normals(i, b * ${normalBlocks}u, t, ${STREAM.atom}u); }`,
    '/** The action of a draw with normals e from the particle\'s policy (std x policyStdScale), clipped where bounded; and log pi / pi_wide at the unclipped draw. */',
    `struct Draw { z: array<f32, ${m}>, logRatio: f32 }`,
    `fn draw_action(i: u32, e: array<f32, ${4 * normalBlocks}>) -> Draw {`,
    `var d: Draw; let s = ${hdrF('policyStdScale')};`,
    `for (var j = 0u; j < ${m}u; j = j + 1u) {`,
    `  var z = PT[i * SP + ${pt.mean}u + j] + s * PT[i * SP + ${pt.std}u + j] * e[j];`,
    '  if (BOUNDED[j]) { z = clamp(z, -1.0, 1.0); }',
    '  d.z[j] = z;',
    '  if (s != 1.0) { d.logRatio = d.logRatio + 0.5 * e[j] * e[j] * (1.0 - s * s) + log(s); }',
    '}',
    'return d;',
    '}',
    '',
    '/** A particle whose action is not the twisted draw: the mean particle, the draws around the guide, the guided one (the CPU\'s `overwritten`); its atoms need no Q. */',
    'fn untwisted(i: u32, K: u32, flags: u32) -> bool {',
    `if ((flags & ${SMC_FLAG.meanParticle}u) != 0u && i == K - 1u) { return true; }`,
    `if ((flags & ${SMC_FLAG.guide}u) != 0u && i >= 1u && i <= ${hdr('guideDraws')}) { return true; }`,
    `let g = ${sc('guided')}; return g >= 0.0 && u32(g) == i;`,
    '}',
    '',
    '/** TRT-SMC: Q of every atom of every twisted particle, one invocation each (B x K). */',
    `@compute @workgroup_size(${PARTICLE_WORKGROUP})`,
    'fn atoms(@builtin(global_invocation_id) gid: vec3<u32>) {',
    `let K = ${hdr('particles')}; let B = ${hdr('atoms')};`,
    // at alpha 0 the proposal is the policy whatever Q says: no atom needs its Q
    `if ((${hdr('flags')} & ${SMC_FLAG.trustRegion}u) == 0u || gid.x >= K * B || ${hdrF('alpha')} <= 0.0) { return; }`,
    'let t = current_step(); if (t == NONE) { return; }',
    'let i = gid.x / B; let b = gid.x % B;',
    `if (untwisted(i, K, ${hdr('flags')})) { return; }`,
    `let d = draw_action(i, atom_normals(i, b, t));`,
    'let q = prior_q(state_of(i, 0u), reference(), d.z);',
    'PW[K * WP + gid.x] = select(BIG, q.value, q.finite);',
    '}',
    '',
    '/** KL(q || uniform) of the Boltzmann policy exp(-beta (Q - min)) over particle i\'s atoms, and its normaliser; greedy: the ties share the mass. */',
    'struct Boltzmann { kl: f32, total: f32 }',
    'fn boltzmann(row: u32, B: u32, beta: f32, qmin: f32, tie: f32, greedy: bool) -> Boltzmann {',
    'var total = 0.0; var acc = 0.0;',
    'for (var b = 0u; b < B; b = b + 1u) {',
    '  let q = PW[row + b]; if (q >= 1e38) { continue; }',
    '  let dq = q - qmin;',
    '  if (greedy) { if (dq <= tie) { total = total + 1.0; } continue; }',
    '  let w = exp(-beta * dq); total = total + w; acc = acc + w * (-beta * dq);',
    '}',
    'var o: Boltzmann; o.total = total;',
    'if (greedy) { o.kl = log(f32(B) / total); } else { o.kl = acc / total - log(total) + log(f32(B)); }',
    'return o;',
    '}',
    '',
    '/**',
    ' * One step of every particle: its action (the guide\'s, the policy\'s draw, or',
    ' * TRT-SMC\'s twisted draw over its atoms, beta by bisection for',
    ' * KL = alpha KL(greedy)), the model step and stage cost, the prior ahead,',
    ' * and the advantage -(l + gamma V(x\') - V(x)); a non-finite state, cost or',
    ' * prior output ends the particle (its weight -infinity).',
    ' */',
    `@compute @workgroup_size(${PARTICLE_WORKGROUP})`,
    'fn advance(@builtin(global_invocation_id) gid: vec3<u32>) {',
    `let K = ${hdr('particles')}; let i = gid.x; if (i >= K) { return; }`,
    'let t = current_step(); if (t == NONE) { return; }',
    `let flags = ${hdr('flags')}; let hist = 2u * K * D + (t * K + i) * ${m + 1}u;`,
    `if (is_neg(pw(i, ${PW_FIELDS.logW}u))) { set_pw(i, ${PW_FIELDS.advantage}u, NEG); set_pw(i, ${PW_FIELDS.beta}u, BIG); TR[hist + ${m}u] = 0.0; return; }`,
    `var z: array<f32, ${m}>; var lc = 0.0; var beta = BIG;`,
    `if ((flags & ${SMC_FLAG.trustRegion}u) != 0u && !untwisted(i, K, flags)) {`,
    `  let B = ${hdr('atoms')}; let row = K * WP + i * B; let alpha = ${hdrF('alpha')};`,
    '  var qmin = BIG; var qmax = -BIG;',
    '  if (alpha > 0.0) { for (var b = 0u; b < B; b = b + 1u) { let q = PW[row + b]; if (q < 1e38) { qmin = min(qmin, q); qmax = max(qmax, q); } } }',
    '  var greedy = false; beta = 0.0; var tie = 0.0;',
    '  if (qmin < 1e38) {',
    '    tie = 1e-6 * max(1.0, abs(qmin));',
    '    let greedyKl = boltzmann(row, B, 0.0, qmin, tie, true).kl;',
    '    let bound = alpha * greedyKl;',
    '    if (alpha >= 1.0 || bound >= greedyKl) { greedy = true; beta = BIG; }',
    '    else if (bound > 0.0) {',
    '      var lo = 0.0; var hi = 1.0 / max(qmax - qmin, 1e-30);',
    '      for (var k = 0u; k < 64u; k = k + 1u) { if (boltzmann(row, B, hi, qmin, tie, false).kl >= bound || hi >= 1e30) { break; } lo = hi; hi = hi * 4.0; }',
    '      beta = 0.5 * (lo + hi);',
    '      for (var k = 0u; k < 60u; k = k + 1u) {',
    '        beta = 0.5 * (lo + hi);',
    '        let kl = boltzmann(row, B, beta, qmin, tie, false).kl;',
    '        if (abs(kl - bound) < 1e-5 || hi - lo <= 1e-6 * hi) { break; }',
    '        if (kl < bound) { lo = beta; } else { hi = beta; }',
    '      }',
    '    }',
    '  }',
    // no finite Q (or none evaluated, at alpha 0): uniform over the atoms, the CPU's trustRegion
    '  var dist: Boltzmann; dist.total = f32(B); if (qmin < 1e38) { dist = boltzmann(row, B, beta, qmin, tie, greedy); }',
    `  var u = philox_uniform(philox(vec4<u32>(i, t, ${hdr('tick')}, 0u), vec2<u32>(${hdr('seed')}, ${STREAM.choice}u)).x) * dist.total;`,
    '  var chosen = B - 1u; var weight = 0.0;',
    '  for (var b = 0u; b < B; b = b + 1u) {',
    '    let q = PW[row + b]; var w = 0.0;',
    '    if (qmin >= 1e38) { w = 1.0; } else if (q < 1e38) { if (greedy) { w = select(0.0, 1.0, q - qmin <= tie); } else { w = exp(-beta * (q - qmin)); } }',
    '    if (w > 0.0) { chosen = b; weight = w; u = u - w; if (u <= 0.0) { break; } }',
    '  }',
    '  let d = draw_action(i, atom_normals(i, chosen, t));',
    '  z = d.z; lc = d.logRatio - log(f32(B)) - log(weight / dist.total);',
    '} else {',
    `  var e: array<f32, ${4 * normalBlocks}>;`,
    `  if (!((flags & ${SMC_FLAG.meanParticle}u) != 0u && i == K - 1u)) { e = particle_normals(i, 0u, t, ${STREAM.proposal}u); }`,
    '  let d = draw_action(i, e); z = d.z;',
    '  lc = d.logRatio;',
    '}',
    // particles 1..guideDraws draw around the guide (the policy's std x guideStdScale), weighed by log pi / q of their own draw
    `if ((flags & ${SMC_FLAG.guide}u) != 0u && i >= 1u && i <= ${hdr('guideDraws')}) {`,
    `  let e = particle_normals(i, 0u, t, ${STREAM.proposal}u); let s = ${hdrF('guideStdScale')}; lc = 0.0;`,
    `  for (var j = 0u; j < ${m}u; j = j + 1u) {`,
    `    let sd = PT[i * SP + ${pt.std}u + j]; let zu = R[${GUIDE}u + t * ${m}u + j] + s * sd * e[j]; let dz = (zu - PT[i * SP + ${pt.mean}u + j]) / sd;`,
    '    lc = lc - 0.5 * dz * dz + 0.5 * e[j] * e[j] + log(s);',
    '    z[j] = select(zu, clamp(zu, -1.0, 1.0), BOUNDED[j]);',
    '  }',
    '}',
    `if (${sc('guided')} >= 0.0 && u32(${sc('guided')}) == i) { for (var j = 0u; j < ${m}u; j = j + 1u) { z[j] = R[${GUIDE}u + t * ${m}u + j]; } lc = 0.0; }`,
    `let x = state_of(i, 0u); var p: array<f32, ${m}>; for (var j = 0u; j < ${m}u; j = j + 1u) { p[j] = PT[i * SP + ${pt.uPrev}u + j]; }`,
    'let u = physical(z);',
    'let r = reference();',
    'let o = model_step(x, u, p, r);',
    `let here = PT[i * SP + ${pt.value}u];`,
    'var adv = NEG;',
    'if (o.finite) {',
    '  let pv = prior_eval(o.next, r);',
    '  if (pv.finite) {',
    `    adv = -(o.cost + ${hdrF('gamma')} * value_of(pv) - here);`,
    '    store_prior(i, pv);',
    `    for (var k = 0u; k < ${n}u; k = k + 1u) { PT[i * SP + k] = o.next[k]; PT[i * SP + ${pt.ref}u + k] = o.next[k]; }`,
    '  }',
    '}',
    `for (var j = 0u; j < ${m}u; j = j + 1u) {`,
    `  PT[i * SP + ${pt.uPrev}u + j] = u[j]; TR[(i * H + t) * ${m}u + j] = z[j]; TR[hist + j] = z[j];`,
    `  if (t == 0u) { set_pw(i, ${PW_FIELDS.rootAction}u + j, z[j]); }`,
    '}',
    `TR[hist + ${m}u] = lc;`,
    `set_pw(i, ${PW_FIELDS.advantage}u, adv); set_pw(i, ${PW_FIELDS.logCorrection}u, lc); set_pw(i, ${PW_FIELDS.beta}u, beta);`,
    '}',
    '',
    '/** eta minimising SPO\'s dual over the finite advantages (eq. (7)): golden-section search on log eta, as dualEta on the CPU. */',
    'fn dual_eta(lid: u32, K: u32) -> f32 {',
    `var mx = NEG; var mn = BIG; var count = 0.0; for (var i = lid; i < K; i = i + ${REDUCE_WORKGROUP}u) { let a = pw(i, ${PW_FIELDS.advantage}u); if (!is_neg(a)) { mx = max(mx, a); mn = min(mn, a); count = count + 1.0; } }`,
    'mx = wg_max(lid, mx); mn = -wg_max(lid, -mn); count = wg_sum(lid, count);',
    'let spread = mx - mn;',
    'if (count < 2.0 || !(spread > 0.0)) { return 1.0; }',
    `let kl = ${hdrF('klBound')};`,
    'var lo = log(1e-4 * spread); var hi = log(1e4 * spread);',
    'let g = 0.6180339887498949;',
    'var a = hi - g * (hi - lo); var b = lo + g * (hi - lo);',
    'var ga = dual_at(lid, K, a, mx, count, kl); var gb = dual_at(lid, K, b, mx, count, kl);',
    'for (var k = 0u; k < 80u; k = k + 1u) {',
    '  if (ga < gb) { hi = b; b = a; gb = ga; a = hi - g * (hi - lo); ga = dual_at(lid, K, a, mx, count, kl); }',
    '  else { lo = a; a = b; ga = gb; b = lo + g * (hi - lo); gb = dual_at(lid, K, b, mx, count, kl); }',
    '}',
    'return exp(0.5 * (lo + hi));',
    '}',
    'fn dual_at(lid: u32, K: u32, logEta: f32, mx: f32, count: f32, kl: f32) -> f32 {',
    `let eta = exp(logEta); var s = 0.0; for (var i = lid; i < K; i = i + ${REDUCE_WORKGROUP}u) { let a = pw(i, ${PW_FIELDS.advantage}u); if (!is_neg(a)) { s = s + exp((a - mx) / eta); } }`,
    's = wg_sum(lid, s);',
    'return eta * kl + mx + eta * log(s / count);',
    '}',
    '',
    '/** Sorted uniforms for resampling into PW spacing: systematic (u + k) / K, or multinomial by normalised exponential spacings. */',
    'fn draw_uniforms(lid: u32, K: u32, t: u32) {',
    `let key = vec2<u32>(${hdr('seed')}, ${STREAM.resample}u);`,
    `if ((${hdr('flags')} & ${SMC_FLAG.multinomial}u) == 0u) {`,
    `  let u0 = philox_uniform(philox(vec4<u32>(0u, t, ${hdr('tick')}, 0u), key).x) / f32(K);`,
    `  for (var k = lid; k < K; k = k + ${REDUCE_WORKGROUP}u) { set_pw(k, ${PW_FIELDS.spacing}u, u0 + f32(k) / f32(K)); }`,
    '  storageBarrier();',
    '  return;',
    '}',
    `for (var k = lid; k < K; k = k + ${REDUCE_WORKGROUP}u) { set_pw(k, ${PW_FIELDS.spacing}u, -log(philox_uniform(philox(vec4<u32>(k, t, ${hdr('tick')}, 1u), key).x))); }`,
    `let last = -log(philox_uniform(philox(vec4<u32>(K, t, ${hdr('tick')}, 1u), key).x));`,
    `let total = prefix_sum(lid, K, ${PW_FIELDS.spacing}u) + last;`,
    `for (var k = lid; k < K; k = k + ${REDUCE_WORKGROUP}u) { set_pw(k, ${PW_FIELDS.spacing}u, pw(k, ${PW_FIELDS.spacing}u) / total); }`,
    'storageBarrier();',
    '}',
    '/** Inclusive prefix sums of a PW field over K particles in place (each thread a contiguous chunk); returns the total. */',
    'fn prefix_sum(lid: u32, K: u32, field: u32) -> f32 {',
    `let chunk = (K + ${REDUCE_WORKGROUP - 1}u) / ${REDUCE_WORKGROUP}u; let first = min(K, lid * chunk); let end = min(K, first + chunk);`,
    'var s = 0.0; for (var i = first; i < end; i = i + 1u) { s = s + pw(i, field); set_pw(i, field, s); }',
    'workgroupBarrier(); red[lid] = s; workgroupBarrier();',
    `if (lid == 0u) { var acc = 0.0; for (var k = 0u; k < ${REDUCE_WORKGROUP}u; k = k + 1u) { let v = red[k]; red[k] = acc; acc = acc + v; } wgFloat = acc; }`,
    'storageBarrier(); workgroupBarrier();',
    'let offset = red[lid]; let total = wgFloat;',
    'for (var i = first; i < end; i = i + 1u) { set_pw(i, field, pw(i, field) + offset); }',
    'storageBarrier(); workgroupBarrier();',
    'return total;',
    '}',
    '',
    '/**',
    ' * The step\'s weights, in one workgroup: increments log(pi / q) + gamma^t A / eta',
    ' * (eta from the dual at the first step when klBound > 0), the backed-up',
    ' * statistics, ESS / K and the proposal\'s mean beta into the series; then,',
    ' * every resampleEvery steps but the last, the ancestor draw (sorted) and the',
    ' * survivors gathered; last, the step counted. One workgroup does it all, so',
    ' * a step is two dispatches (three with TRT-SMC\'s atoms), not one per phase.',
    ' */',
    `@compute @workgroup_size(${REDUCE_WORKGROUP})`,
    'fn weigh(@builtin(local_invocation_index) lid: u32) {',
    'if (lid == 0u) { wgWord = current_step(); }',
    'let t = workgroupUniformLoad(&wgWord);',
    'if (t == NONE) { return; }',
    `weigh_step(lid, ${hdr('particles')}, t);`,
    'storageBarrier();',
    `if (lid == 0u) { ${sc('step')} = f32(t + 1u); }`,
    '}',
    'fn weigh_step(lid: u32, K: u32, t: u32) {',
    `if (t == 0u && ${hdrF('klBound')} > 0.0) { let eta = dual_eta(lid, K); if (lid == 0u) { ${sc('eta')} = eta; } }`,
    'storageBarrier();',
    `let eta = uniform_scalar(lid, ${SMC_SCALAR.eta}u);`,
    `let discount = pow(${hdrF('gamma')}, f32(t));`,
    `for (var i = lid; i < K; i = i + ${REDUCE_WORKGROUP}u) {`,
    `  let a = pw(i, ${PW_FIELDS.advantage}u);`,
    `  set_pw(i, ${PW_FIELDS.increment}u, select(pw(i, ${PW_FIELDS.logCorrection}u) + discount * a / eta, NEG, is_neg(a)));`,
    '}',
    'add_increments(lid, K);',
    // ESS / K of the weights, and the mean finite beta
    `var mx = NEG; for (var i = lid; i < K; i = i + ${REDUCE_WORKGROUP}u) { mx = max(mx, pw(i, ${PW_FIELDS.logW}u)); }`,
    'mx = wg_max(lid, mx);',
    `var s1 = 0.0; var s2 = 0.0; var bs = 0.0; var bc = 0.0;`,
    `for (var i = lid; i < K; i = i + ${REDUCE_WORKGROUP}u) {`,
    `  let lw = pw(i, ${PW_FIELDS.logW}u); if (!is_neg(lw)) { let w = exp(lw - mx); s1 = s1 + w; s2 = s2 + w * w; }`,
    `  let b = pw(i, ${PW_FIELDS.beta}u); if (b < 1e38) { bs = bs + b; bc = bc + 1.0; }`,
    '}',
    's1 = wg_sum(lid, s1); s2 = wg_sum(lid, s2); bs = wg_sum(lid, bs); bc = wg_sum(lid, bc);',
    'if (lid == 0u) {',
    `  R[OUT + ${out.ess}u + t] = select(s1 * s1 / s2 / f32(K), 1.0, is_neg(mx));`,
    `  R[OUT + ${out.beta}u + t] = select(BIG, bs / bc, bc > 0.0);`,
    `  ${sc('depth')} = f32(t + 1u);`,
    '}',
    `if ((t + 1u) % ${hdr('resampleEvery')} != 0u || t + 1u >= ${hdr('depth')}) { return; }`,
    `if (is_neg(mx)) { if (lid == 0u) { ${sc('stop')} = 1.0; } return; }`,
    // the normalised cumulative weights, and the sorted uniforms swept against them
    `for (var i = lid; i < K; i = i + ${REDUCE_WORKGROUP}u) { let lw = pw(i, ${PW_FIELDS.logW}u); set_pw(i, ${PW_FIELDS.cdf}u, select(exp(lw - mx), 0.0, is_neg(lw))); }`,
    'storageBarrier();',
    `let total = prefix_sum(lid, K, ${PW_FIELDS.cdf}u);`,
    'draw_uniforms(lid, K, t);',
    `for (var k = lid; k < K; k = k + ${REDUCE_WORKGROUP}u) {`,
    `  let u = pw(k, ${PW_FIELDS.spacing}u) * total;`,
    `  var lo = 0u; var hi = K - 1u; loop { if (lo >= hi) { break; } let mid = (lo + hi) / 2u; if (pw(mid, ${PW_FIELDS.cdf}u) < u) { lo = mid + 1u; } else { hi = mid; } }`,
    '  IX[2u * K + k] = lo; IX[3u * K + t * K + k] = lo;',
    '}',
    'storageBarrier();',
    'if (lid == 0u) {',
    `  let g = ${sc('guided')};`,
    `  if (g >= 0.0) { let at = lower_bound(2u * K, K, u32(g)); ${sc('guided')} = select(-1.0, f32(at), at < K && IX[2u * K + at] == u32(g)); }`,
    `  ${sc('resamples')} = ${sc('resamples')} + 1.0;`,
    '}',
    // the survivors: each particle's parent's record (from the parent's last finite state when revived), trajectory and root into the scratch copies, then back
    `let revive = (${hdr('flags')} & ${SMC_FLAG.revive}u) != 0u;`,
    `for (var i = lid; i < K; i = i + ${REDUCE_WORKGROUP}u) {`,
    '  let parent = IX[2u * K + i];',
    '  for (var k = 0u; k < SP; k = k + 1u) { PT[(K + i) * SP + k] = PT[parent * SP + k]; }',
    `  if (revive) { for (var k = 0u; k < ${n}u; k = k + 1u) { PT[(K + i) * SP + k] = PT[parent * SP + ${pt.ref}u + k]; } }`,
    `  for (var k = 0u; k < (t + 1u) * ${m}u; k = k + 1u) { TR[K * D + i * D + k] = TR[parent * D + k]; }`,
    '  IX[K + i] = IX[parent];',
    '}',
    'storageBarrier();',
    `for (var i = lid; i < K; i = i + ${REDUCE_WORKGROUP}u) {`,
    '  for (var k = 0u; k < SP; k = k + 1u) { PT[i * SP + k] = PT[(K + i) * SP + k]; }',
    // a revived particle continues from its reference state: its policy and value are that state's
    '  if (revive) { store_prior(i, prior_eval(state_of(i, 0u), reference())); }',
    `  for (var k = 0u; k < (t + 1u) * ${m}u; k = k + 1u) { TR[i * D + k] = TR[K * D + i * D + k]; }`,
    `  IX[i] = IX[K + i]; set_pw(i, ${PW_FIELDS.logW}u, 0.0);`,
    '}',
    '}',
    '',
    '/**',
    ' * The end of the pass: the terminal cost at the depth reached, q-hat (the',
    ' * surviving weights on their roots, or the backed-up statistics against',
    ' * their baselines), the command (q-hat\'s mean or a draw), the first step\'s',
    ' * distribution, V(x0) from the SMC estimate, and the plan: the best',
    ' * particle\'s trajectory, the command first, continued by the policy\'s mean.',
    ' */',
    `@compute @workgroup_size(${REDUCE_WORKGROUP})`,
    'fn close(@builtin(local_invocation_index) lid: u32) {',
    `let K = ${hdr('particles')}; let flags = ${hdr('flags')};`,
    `let depth = u32(uniform_scalar(lid, ${SMC_SCALAR.depth}u));`,
    `let eta = uniform_scalar(lid, ${SMC_SCALAR.eta}u);`,
    'let r = reference();',
    'if (depth > 0u) {',
    `  let discount = pow(${hdrF('gamma')}, f32(depth));`,
    `  for (var i = lid; i < K; i = i + ${REDUCE_WORKGROUP}u) {`,
    `    var c = NEG; if (!is_neg(pw(i, ${PW_FIELDS.logW}u))) { let v = terminal_cost(state_of(i, 0u), r); if (prior_bits_finite(v)) { c = -discount * v / eta; } }`,
    `    set_pw(i, ${PW_FIELDS.increment}u, c);`,
    '  }',
    '  add_increments(lid, K);',
    '}',
    `let useBackedUp = (flags & ${SMC_FLAG.backedUp}u) != 0u;`,
    `var mx = NEG; for (var i = lid; i < K; i = i + ${REDUCE_WORKGROUP}u) { var v = pw(i, ${PW_FIELDS.logW}u); if (useBackedUp) { let bu = pw(i, ${PW_FIELDS.backedUp}u); v = select(bu - pw(i, ${PW_FIELDS.baseline}u), NEG, is_neg(bu)); } set_pw(i, ${PW_FIELDS.cdf}u, v); mx = max(mx, v); }`,
    'mx = wg_max(lid, mx);',
    `var s = 0.0; for (var i = lid; i < K; i = i + ${REDUCE_WORKGROUP}u) { let v = pw(i, ${PW_FIELDS.cdf}u); var w = 1.0; if (!is_neg(mx)) { w = select(exp(v - mx), 0.0, is_neg(v)); } set_pw(i, ${PW_FIELDS.cdf}u, w); s = s + w; }`,
    's = wg_sum(lid, s);',
    // q-hat per root: the root's own number (backed-up), or its descendants' weights summed (surviving)
    `for (var j = lid; j < K; j = j + ${REDUCE_WORKGROUP}u) {`,
    '  var q = 0.0;',
    `  if (useBackedUp) { q = pw(j, ${PW_FIELDS.cdf}u) / s; } else { let lo = lower_bound(0u, K, j); let hi = lower_bound(0u, K, j + 1u); for (var i = lo; i < hi; i = i + 1u) { q = q + pw(i, ${PW_FIELDS.cdf}u) / s; } }`,
    `  R[OUT + ${out.qHat}u + j] = q;`,
    '}',
    'storageBarrier();',
    'if (lid != 0u) { return; }',
    `let rootQ = OUT + ${out.qHat}u;`,
    `var command: array<f32, ${m}>;`,
    `if ((flags & ${SMC_FLAG.commandSample}u) != 0u) {`,
    `  var u = philox_uniform(philox(vec4<u32>(0u, 0u, ${hdr('tick')}, 0u), vec2<u32>(${hdr('seed')}, ${STREAM.command}u)).x);`,
    '  var j = 0u; loop { if (j >= K - 1u) { break; } u = u - R[rootQ + j]; if (u <= 0.0) { break; } j = j + 1u; }',
    `  for (var k = 0u; k < ${m}u; k = k + 1u) { command[k] = pw(j, ${PW_FIELDS.rootAction}u + k); }`,
    `} else { for (var j = 0u; j < K; j = j + 1u) { for (var k = 0u; k < ${m}u; k = k + 1u) { command[k] = command[k] + R[rootQ + j] * pw(j, ${PW_FIELDS.rootAction}u + k); } } }`,
    `for (var k = 0u; k < ${m}u; k = k + 1u) {`,
    `  var mean = 0.0; for (var j = 0u; j < K; j = j + 1u) { mean = mean + R[rootQ + j] * pw(j, ${PW_FIELDS.rootAction}u + k); }`,
    `  var v = 0.0; for (var j = 0u; j < K; j = j + 1u) { let dz = pw(j, ${PW_FIELDS.rootAction}u + k) - mean; v = v + R[rootQ + j] * dz * dz; }`,
    `  R[OUT + ${out.firstMean}u + k] = mean; R[OUT + ${out.firstSigma}u + k] = sqrt(v);`,
    '}',
    // the best-weighted particle (the first of the largest), and V(x0) - eta log mean exp(Q-hat)
    `var best = 0u; var bestW = NEG; for (var i = 0u; i < K; i = i + 1u) { let lw = pw(i, ${PW_FIELDS.logW}u); if (lw > bestW) { bestW = lw; best = i; } }`,
    `var bmx = NEG; for (var j = 0u; j < K; j = j + 1u) { bmx = max(bmx, pw(j, ${PW_FIELDS.backedUp}u)); }`,
    `var bs = 0.0; for (var j = 0u; j < K; j = j + 1u) { let v = pw(j, ${PW_FIELDS.backedUp}u); if (!is_neg(v)) { bs = bs + exp(v - bmx); } }`,
    `let valueRoot = ${sc('valueRoot')};`,
    `R[OUT + ${out.cost}u] = select(valueRoot - eta * (bmx + log(bs / f32(K))), BIG, is_neg(bmx));`,
    `R[OUT + ${out.depth}u] = f32(depth); R[OUT + ${out.resamples}u] = ${sc('resamples')}; R[OUT + ${out.eta}u] = eta; R[OUT + ${out.valueRoot}u] = valueRoot;`,
    `R[OUT + ${out.priorBad}u] = ${sc('priorBad')};`,
    `R[OUT + ${out.finalEss}u] = select(1.0, R[OUT + ${out.ess}u + max(depth, 1u) - 1u], depth > 0u);`,
    'for (var k = 0u; k < depth * ' + m + 'u; k = k + 1u) { R[OUT + ' + out.plan + 'u + k] = TR[best * D + k]; }',
    `for (var k = 0u; k < ${m}u; k = k + 1u) { R[OUT + ${out.plan}u + k] = command[k]; }`,
    `var x = state_of(best, 0u); var p: array<f32, ${m}>; for (var j = 0u; j < ${m}u; j = j + 1u) { p[j] = PT[best * SP + ${pt.uPrev}u + j]; }`,
    'for (var t = depth; t < H; t = t + 1u) {',
    '  let pv = prior_eval(x, r);',
    `  for (var j = 0u; j < ${m}u; j = j + 1u) { R[OUT + ${out.plan}u + t * ${m}u + j] = pv.mean[j]; }`,
    '  let u = physical(pv.mean);',
    '  let o = model_step(x, u, p, r);',
    '  x = o.next; p = u;',
    '}',
    `for (var k = 0u; k < D; k = k + 1u) { R[${LAST}u + k] = R[OUT + ${out.plan}u + k]; }`,
    '}',
  ].filter((l) => l.trim() !== '').join('\n');
}
