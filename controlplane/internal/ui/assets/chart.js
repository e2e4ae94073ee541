// chart: line charts drawn as SVG by this code (no library). Colours and
// strokes come from style.css classes: the CSP allows no inline style.

import { s } from './dom.js';

const W = 560, H = 200, L = 56, R = 12, T = 28, B = 26;

// niceMax rounds a maximum up to 1, 2 or 5 times a power of ten.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function fmt(v, unit) {
  const n = Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2);
  return unit ? `${n} ${unit}` : n;
}

// lineChart draws series [{name, cls, points: [[timeMs, value]]}] over the
// time span [t0, t1].
export function lineChart({ id, title, unit, series, t0, t1, fixedMax }) {
  let max = 0;
  for (const se of series) for (const [, v] of se.points) max = Math.max(max, v);
  max = fixedMax || niceMax(max);
  const span = Math.max(t1 - t0, 1);
  const x = (t) => L + ((t - t0) / span) * (W - L - R);
  const y = (v) => T + (1 - v / max) * (H - T - B);

  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': title, id });
  svg.append(s('text', { x: L, y: 16, class: 'chart-title' }, title));
  for (const f of [0, 0.5, 1]) {
    const yy = y(max * f);
    svg.append(s('line', { x1: L, x2: W - R, y1: yy, y2: yy, class: 'grid' }));
    svg.append(s('text', { x: L - 6, y: yy + 4, class: 'tick', 'text-anchor': 'end' }, fmt(max * f, unit)));
  }
  const secs = Math.round(span / 1000);
  svg.append(s('text', { x: L, y: H - 6, class: 'tick' }, secs >= 120 ? `${Math.round(secs / 60)} min ago` : `${secs} s ago`));
  svg.append(s('text', { x: W - R, y: H - 6, class: 'tick', 'text-anchor': 'end' }, 'now'));
  let lx = W - R;
  for (const se of [...series].reverse()) {
    const label = s('text', { x: lx, y: 16, class: `legend ${se.cls}`, 'text-anchor': 'end' }, `— ${se.name}`);
    svg.append(label);
    lx -= 12 + 7 * (se.name.length + 2);
  }
  for (const se of series) {
    if (!se.points.length) continue;
    const pts = se.points.map(([t, v]) => `${x(t).toFixed(1)},${y(Math.min(v, max)).toFixed(1)}`).join(' ');
    const top = Math.max(...se.points.map(([, v]) => v));
    svg.append(s('polyline', { points: pts, class: `line ${se.cls}`, dataset: { series: se.name, max: String(top) } }));
    const [lt, lv] = se.points[se.points.length - 1];
    svg.append(s('circle', { cx: x(lt).toFixed(1), cy: y(Math.min(lv, max)).toFixed(1), r: 2.5, class: `dot ${se.cls}` }));
  }
  if (series.every((se) => !se.points.length)) {
    svg.append(s('text', { x: W / 2, y: H / 2, class: 'tick', 'text-anchor': 'middle' }, 'no data yet'));
  }
  return svg;
}
