// Hand-written SVG time-series charts: one polyline per series over a fixed
// window, scaled to the largest value shown. The viewBox is stretched to the
// figure's width; strokes keep their width through vector-effect in the CSS.

const SVG = 'http://www.w3.org/2000/svg';
const W = 300;
const H = 80;

/**
 * Draws `series` (arrays of numbers or null, oldest first) into `svg`, whose
 * x axis holds `slots` points. Returns the maximum used for the y axis.
 */
export function drawChart(svg, series, slots) {
  let max = 0;
  for (const values of series) for (const v of values) if (v !== null && v > max) max = v;
  const top = max > 0 ? niceCeil(max) : 1;
  while (svg.childNodes.length < series.length + 1) svg.appendChild(document.createElementNS(SVG, 'path'));
  // Grid line at half height, then one path per series.
  const grid = svg.childNodes[0];
  grid.setAttribute('class', 'grid');
  grid.setAttribute('d', `M0 ${H / 2} H${W}`);
  series.forEach((values, s) => {
    const path = svg.childNodes[s + 1];
    path.setAttribute('class', `line s${s}`);
    path.setAttribute('d', pathFor(values, slots, top));
  });
  svg.dataset.points = String(series[0]?.length ?? 0);
  return top;
}

function pathFor(values, slots, top) {
  const step = W / Math.max(1, slots - 1);
  const offset = slots - values.length;
  let d = '';
  let pen = false;
  values.forEach((v, i) => {
    if (v === null) {
      pen = false;
      return;
    }
    const x = ((offset + i) * step).toFixed(1);
    const y = (H - (v / top) * (H - 2) - 1).toFixed(1);
    d += `${pen ? 'L' : 'M'}${x} ${y}`;
    pen = true;
  });
  return d || `M0 ${H - 1}`;
}

/** 1, 2, 5 × 10^n at or above v, so the axis label reads well. */
function niceCeil(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}
