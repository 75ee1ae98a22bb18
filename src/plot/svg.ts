/**
 * Dependency-free SVG charts: line charts (small multiples) and box plots.
 * Output is a complete standalone SVG document.
 */

export const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];

export interface Series {
  name: string;
  x: ArrayLike<number>;
  y: ArrayLike<number>;
  color?: string;
  dashed?: boolean;
  /** dots at the points instead of a line (a scatter) */
  markers?: boolean;
}

export interface Panel {
  title: string;
  xLabel?: string;
  yLabel?: string;
  series: Series[];
  /** shaded horizontal band, e.g. a goal region */
  band?: { lo: number; hi: number; label?: string };
  /** shaded spans of x, e.g. the time a goal was held; the label goes at the top of the first */
  spans?: { from: number; to: number; label?: string }[];
  logY?: boolean;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const span = hi - lo;
  const step0 = span / count;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => span / s <= count) ?? 10 * mag;
  const ticks: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-9 * span; t += step) ticks.push(+t.toPrecision(12));
  return ticks;
}

const fmt = (v: number) => {
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(1);
  return String(+v.toPrecision(4));
};

function extent(values: number[], pad = 0.05): [number, number] {
  const finite = values.filter(Number.isFinite);
  if (!finite.length) return [0, 1];
  let lo = Math.min(...finite);
  let hi = Math.max(...finite);
  if (lo === hi) {
    lo -= 1;
    hi += 1;
  }
  const d = (hi - lo) * pad;
  return [lo - d, hi + d];
}

/** One panel drawn into the box (x0, y0, w, h). */
function panelSvg(p: Panel, x0: number, y0: number, w: number, h: number): string {
  const m = { l: 62, r: 130, t: 24, b: 36 };
  const pw = w - m.l - m.r;
  const ph = h - m.t - m.b;
  const tr = (v: number) => (p.logY ? Math.log10(Math.max(v, 1e-300)) : v);
  const xs = p.series.flatMap((s) => Array.from(s.x));
  const ys = p.series.flatMap((s) => Array.from(s.y).map(tr));
  if (p.band) ys.push(tr(p.band.lo), tr(p.band.hi));
  const [xl, xh] = extent(xs, 0);
  const [yl, yh] = extent(ys);
  const sx = (v: number) => x0 + m.l + ((v - xl) / (xh - xl || 1)) * pw;
  const sy = (v: number) => y0 + m.t + ph - ((tr(v) - yl) / (yh - yl || 1)) * ph;
  const out: string[] = [];
  out.push(`<text x="${x0 + m.l}" y="${y0 + 16}" font-size="13" font-weight="bold">${esc(p.title)}</text>`);
  out.push(`<rect x="${x0 + m.l}" y="${y0 + m.t}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`);
  if (p.band) {
    const top = sy(p.band.hi);
    const bottom = sy(p.band.lo);
    out.push(`<rect x="${x0 + m.l}" y="${Math.min(top, bottom)}" width="${pw}" height="${Math.abs(bottom - top)}" fill="#2ca02c" opacity="0.12"/>`);
  }
  for (const span of p.spans ?? []) {
    const left = sx(Math.max(xl, span.from));
    const right = sx(Math.min(xh, span.to));
    if (!(right > left)) continue;
    out.push(`<rect x="${left}" y="${y0 + m.t}" width="${right - left}" height="${ph}" fill="#1f77b4" opacity="0.08"/>`);
    if (span.label) out.push(`<text x="${left + 3}" y="${y0 + m.t + 11}" font-size="9" fill="#1f77b4">${esc(span.label)}</text>`);
  }
  if (p.band?.label) out.push(`<text x="${x0 + m.l + pw + 28}" y="${y0 + m.t + ph - 4}" font-size="9" fill="#2ca02c">${esc(p.band.label)}</text>`);
  for (const t of niceTicks(xl, xh)) {
    out.push(`<line x1="${sx(t)}" x2="${sx(t)}" y1="${y0 + m.t + ph}" y2="${y0 + m.t + ph + 4}" stroke="#666"/>`);
    out.push(`<text x="${sx(t)}" y="${y0 + m.t + ph + 16}" font-size="10" text-anchor="middle">${fmt(t)}</text>`);
  }
  for (const t of niceTicks(yl, yh)) {
    const yy = y0 + m.t + ph - ((t - yl) / (yh - yl || 1)) * ph;
    out.push(`<line x1="${x0 + m.l - 4}" x2="${x0 + m.l + pw}" y1="${yy}" y2="${yy}" stroke="#eee"/>`);
    out.push(`<text x="${x0 + m.l - 6}" y="${yy + 3}" font-size="10" text-anchor="end">${fmt(p.logY ? 10 ** t : t)}</text>`);
  }
  if (p.xLabel) out.push(`<text x="${x0 + m.l + pw / 2}" y="${y0 + h - 4}" font-size="11" text-anchor="middle">${esc(p.xLabel)}</text>`);
  if (p.yLabel) out.push(`<text transform="translate(${x0 + 12},${y0 + m.t + ph / 2}) rotate(-90)" font-size="11" text-anchor="middle">${esc(p.yLabel)}</text>`);
  p.series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length];
    const pts: string[] = [];
    for (let k = 0; k < s.x.length; k++) if (Number.isFinite(s.y[k])) pts.push(`${sx(s.x[k]).toFixed(1)},${sy(s.y[k]).toFixed(1)}`);
    if (s.markers) {
      for (const pt of pts) out.push(`<circle cx="${pt.split(',')[0]}" cy="${pt.split(',')[1]}" r="3" fill="${color}"/>`);
      return;
    }
    out.push(`<polyline fill="none" stroke="${color}" stroke-width="1.5"${s.dashed ? ' stroke-dasharray="4 3"' : ''} points="${pts.join(' ')}"/>`);
  });
  // legend
  p.series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length];
    const ly = y0 + m.t + 10 + i * 13;
    out.push(`<line x1="${x0 + m.l + pw + 8}" x2="${x0 + m.l + pw + 24}" y1="${ly - 3}" y2="${ly - 3}" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="4 3"' : ''}/>`);
    out.push(`<text x="${x0 + m.l + pw + 28}" y="${ly}" font-size="10">${esc(s.name)}</text>`);
  });
  return out.join('\n');
}

function document(width: number, height: number, body: string, title: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">
<title>${esc(title)}</title>
<rect width="100%" height="100%" fill="white"/>
${body}
</svg>
`;
}

/** Panels stacked in a grid, `columns` wide. */
export function lineChart(title: string, panels: Panel[], columns = 1, panelW = 640, panelH = 200): string {
  const rows = Math.ceil(panels.length / columns);
  const body = panels.map((p, i) => panelSvg(p, (i % columns) * panelW, 28 + Math.floor(i / columns) * panelH, panelW, panelH)).join('\n');
  const head = `<text x="10" y="20" font-size="15" font-weight="bold">${esc(title)}</text>`;
  return document(columns * panelW, 28 + rows * panelH, `${head}\n${body}`, title);
}

export interface BoxGroup {
  name: string;
  values: number[];
  note?: string;
}

/** Box plots (quartiles, whiskers to 1.5 IQR, outliers as dots), optionally on a log axis. */
export function boxPlot(title: string, yLabel: string, groups: BoxGroup[], logY = false, reference?: { value: number; label: string }): string {
  const width = Math.max(420, 110 * groups.length + 90);
  const height = 380;
  const m = { l: 70, r: 20, t: 40, b: 60 };
  const ph = height - m.t - m.b;
  const tr = (v: number) => (logY ? Math.log10(Math.max(v, 1e-300)) : v);
  const all = groups.flatMap((g) => g.values.filter(Number.isFinite).map(tr));
  if (reference) all.push(tr(reference.value));
  const [yl, yh] = extent(all);
  const sy = (v: number) => m.t + ph - ((tr(v) - yl) / (yh - yl || 1)) * ph;
  const out: string[] = [`<text x="10" y="22" font-size="15" font-weight="bold">${esc(title)}</text>`];
  out.push(`<rect x="${m.l}" y="${m.t}" width="${width - m.l - m.r}" height="${ph}" fill="none" stroke="#999"/>`);
  for (const t of niceTicks(yl, yh, 6)) {
    const yy = m.t + ph - ((t - yl) / (yh - yl || 1)) * ph;
    out.push(`<line x1="${m.l - 4}" x2="${width - m.r}" y1="${yy}" y2="${yy}" stroke="#eee"/>`);
    out.push(`<text x="${m.l - 6}" y="${yy + 3}" font-size="10" text-anchor="end">${fmt(logY ? 10 ** t : t)}</text>`);
  }
  out.push(`<text transform="translate(14,${m.t + ph / 2}) rotate(-90)" font-size="11" text-anchor="middle">${esc(yLabel)}${logY ? ' (log)' : ''}</text>`);
  if (reference) {
    const yy = sy(reference.value);
    out.push(`<line x1="${m.l}" x2="${width - m.r}" y1="${yy}" y2="${yy}" stroke="#2ca02c" stroke-dasharray="5 4"/>`);
    out.push(`<text x="${width - m.r - 4}" y="${yy - 4}" font-size="10" text-anchor="end" fill="#2ca02c">${esc(reference.label)}</text>`);
  }
  const slot = (width - m.l - m.r) / groups.length;
  groups.forEach((g, i) => {
    const cx = m.l + slot * (i + 0.5);
    const v = g.values.filter(Number.isFinite).sort((a, b) => a - b);
    const color = PALETTE[i % PALETTE.length];
    out.push(`<text x="${cx}" y="${height - m.b + 16}" font-size="11" text-anchor="middle">${esc(g.name)}</text>`);
    if (g.note) out.push(`<text x="${cx}" y="${height - m.b + 30}" font-size="9" text-anchor="middle" fill="#555">${esc(g.note)}</text>`);
    if (!v.length) return;
    const q = (f: number) => {
      const pos = (v.length - 1) * f;
      const lo = Math.floor(pos);
      return v[lo] + (v[Math.ceil(pos)] - v[lo]) * (pos - lo);
    };
    const [q1, med, q3] = [q(0.25), q(0.5), q(0.75)];
    const iqr = q3 - q1;
    const lo = v.find((x) => x >= q1 - 1.5 * iqr) ?? v[0];
    const hi = [...v].reverse().find((x) => x <= q3 + 1.5 * iqr) ?? v[v.length - 1];
    const bw = Math.min(50, slot * 0.5);
    out.push(`<line x1="${cx}" x2="${cx}" y1="${sy(lo)}" y2="${sy(hi)}" stroke="${color}"/>`);
    out.push(`<rect x="${cx - bw / 2}" y="${sy(q3)}" width="${bw}" height="${Math.max(1, sy(q1) - sy(q3))}" fill="${color}" fill-opacity="0.25" stroke="${color}"/>`);
    out.push(`<line x1="${cx - bw / 2}" x2="${cx + bw / 2}" y1="${sy(med)}" y2="${sy(med)}" stroke="${color}" stroke-width="2"/>`);
    for (const x of v) if (x < lo || x > hi) out.push(`<circle cx="${cx}" cy="${sy(x)}" r="2" fill="${color}"/>`);
  });
  return document(width, height, out.join('\n'), title);
}
