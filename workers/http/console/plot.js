// The timeline plot: min/max-bucket down-sampling and a plain SVG line with action markers.
// Exposed as window.DeltamemPlot = {downsample, thinMarkers, render}.
(function () {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";
  const W = 800, H = 240, M = { left: 48, right: 12, top: 12, bottom: 28 };

  // The bucket (0..buckets-1) of x among `buckets` equal-width ranges over [x0, x1].
  function bucketOf(x, x0, x1, buckets) {
    const width = (x1 - x0) / buckets || 1;
    return Math.min(buckets - 1, Math.floor((x - x0) / width));
  }

  // points: [{x, y}] sorted by x. At most 2*buckets points: in each bucket, the first point with
  // the lowest y and the first with the highest y, in x order (one point when they are the same).
  function downsample(points, buckets) {
    if (points.length <= 2 * buckets) return points.slice();
    const x0 = points[0].x, x1 = points[points.length - 1].x;
    const out = [];
    let b = -1, lo = null, hi = null;
    const flush = () => {
      if (lo === null) return;
      if (lo === hi) out.push(lo);
      else if (lo.x < hi.x) out.push(lo, hi);
      else out.push(hi, lo);
    };
    for (const p of points) {
      const k = bucketOf(p.x, x0, x1, buckets);
      if (k !== b) { flush(); b = k; lo = hi = p; continue; }
      if (p.y < lo.y) lo = p;
      if (p.y > hi.y) hi = p;
    }
    flush();
    return out;
  }

  // markers: [{x, kind, label}]. Keeps the first marker of each kind per bucket of [x0, x1].
  function thinMarkers(markers, x0, x1, buckets) {
    const seen = new Set();
    return markers.filter((m) => {
      const key = m.kind + ":" + bucketOf(m.x, x0, x1, buckets);
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
  }

  function el(name, attrs, text) {
    const e = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // Draw into `host`: series {points, yLabel, yMax?}, markers as from thinMarkers, x range.
  function render(host, series, markers, x0, x1) {
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": series.yLabel });
    const yMax = series.yMax ?? Math.max(1, ...series.points.map((p) => p.y));
    const span = x1 - x0 || 1;
    const sx = (x) => M.left + ((x - x0) / span) * (W - M.left - M.right);
    const sy = (y) => H - M.bottom - (y / yMax) * (H - M.top - M.bottom);
    svg.append(el("line", { x1: M.left, y1: H - M.bottom, x2: W - M.right, y2: H - M.bottom,
      class: "axis" }));
    svg.append(el("line", { x1: M.left, y1: M.top, x2: M.left, y2: H - M.bottom, class: "axis" }));
    for (const f of [0, 0.5, 1]) {
      const yv = f * yMax;
      svg.append(el("text", { x: M.left - 4, y: sy(yv) + 4, class: "tick y" },
        Number.isInteger(yv) && series.yMax !== 1 ? String(yv) : yv.toFixed(1)));
      const xv = Math.round(x0 + f * (x1 - x0));
      svg.append(el("text", { x: sx(xv), y: H - 8, class: "tick x x" + f * 2 }, "v" + xv));
    }
    for (const m of markers) {
      const g = el("g", { class: "marker marker-" + m.kind, "data-version": m.x });
      g.append(el("line", { x1: sx(m.x), y1: M.top, x2: sx(m.x), y2: H - M.bottom }));
      g.append(el("title", {}, m.label));
      svg.append(g);
    }
    const pts = series.points.map((p) => `${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`);
    svg.append(el("polyline", { class: "series", points: pts.join(" "), fill: "none" }));
    host.replaceChildren(svg);
  }

  window.DeltamemPlot = { downsample, thinMarkers, render };
})();
