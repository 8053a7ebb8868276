// The brush of convstack.viewer.retouch, for the page's preview (same profile, same
// compositing order; the saved image is made by the server from the same strokes).

export function profile(d, radius, hardness) {
  if (hardness >= 1) return d <= radius ? 1 : 0;
  const inner = hardness * radius;
  let t = (d - inner) / (radius - inner);
  if (t <= 0) return 1;
  if (t >= 1) return 0;
  return 1 - t * t * (3 - 2 * t);
}

// Max-accumulate the weights of `stroke` (points [row, col] in image pixels) into
// `mask`, a Float32Array over the view rectangle (x0, y0, w, h); view pixel (x, y) has
// its centre at image (row, col) = (oy + (y + 0.5) / s - 0.5, ox + (x + 0.5) / s - 0.5).
export function strokeMask(mask, x0, y0, w, h, view, stroke) {
  const { s, ox, oy } = view;
  const r = stroke.radius, hard = stroke.hardness, pts = stroke.points;
  const n = pts.length;
  for (let i = 0; i < Math.max(1, n - 1); i++) {
    const a = pts[i], b = pts[Math.min(i + 1, n - 1)];
    const dr = b[0] - a[0], dc = b[1] - a[1];
    const len2 = dr * dr + dc * dc;
    const rmin = Math.min(a[0], b[0]) - r, rmax = Math.max(a[0], b[0]) + r;
    const cmin = Math.min(a[1], b[1]) - r, cmax = Math.max(a[1], b[1]) + r;
    const xa = Math.max(x0, Math.floor((cmin - ox + 0.5) * s - 0.5));
    const xb = Math.min(x0 + w - 1, Math.ceil((cmax - ox + 0.5) * s - 0.5));
    const ya = Math.max(y0, Math.floor((rmin - oy + 0.5) * s - 0.5));
    const yb = Math.min(y0 + h - 1, Math.ceil((rmax - oy + 0.5) * s - 0.5));
    for (let y = ya; y <= yb; y++) {
      const row = oy + (y + 0.5) / s - 0.5;
      const pr = row - a[0];
      let k = (y - y0) * w + (xa - x0);
      for (let x = xa; x <= xb; x++, k++) {
        const col = ox + (x + 0.5) / s - 0.5;
        const pc = col - a[1];
        let er = pr, ec = pc;
        if (len2 > 0) {
          let t = (pr * dr + pc * dc) / len2;
          t = t < 0 ? 0 : t > 1 ? 1 : t;
          er = pr - t * dr;
          ec = pc - t * dc;
        }
        const wgt = profile(Math.sqrt(er * er + ec * ec), r, hard);
        if (wgt > mask[k]) mask[k] = wgt;
      }
    }
  }
}

// out += w * (src - out) on RGBA pixel data of a region `width` pixels wide, for the mask
// over its sub-rectangle (x, y, w, h), where the mask is > 0.
export function blend(out, src, width, mask, x, y, w, h) {
  for (let j = 0, k = 0; j < h; j++) {
    let p = ((y + j) * width + x) * 4;
    for (let i = 0; i < w; i++, k++, p += 4) {
      const m = mask[k];
      if (m <= 0) continue;
      out[p] += m * (src[p] - out[p]);
      out[p + 1] += m * (src[p + 1] - out[p + 1]);
      out[p + 2] += m * (src[p + 2] - out[p + 2]);
    }
  }
}

// The image rectangle a stroke can reach: [top, left, bottom, right] (inclusive).
export function strokeBox(stroke) {
  let top = Infinity, left = Infinity, bottom = -Infinity, right = -Infinity;
  for (const [r, c] of stroke.points) {
    top = Math.min(top, r); bottom = Math.max(bottom, r);
    left = Math.min(left, c); right = Math.max(right, c);
  }
  const rad = stroke.radius;
  return [top - rad, left - rad, bottom + rad, right + rad];
}
