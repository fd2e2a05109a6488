/* The script of the page `python -m analysis.explore` writes: plain JavaScript, no library, no network.
   It decodes the embedded data (base64 float16 / uint8 / bits, written by analysis/explore_work.py, read
   back in Python by explore_work.read_page) and draws every view. Shapes: a map canvas has one pixel per
   patch (w x h), an overlay canvas one per image pixel (W x H). */
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("explore-data").textContent);
  const META = DATA.meta;
  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------------------- decoding
  function bytesOf(b64) {
    const s = atob(b64);
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  const HALF = new Float32Array(65536); // every float16 bit pattern -> its value
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 31;
    const m = h & 1023;
    if (e === 0) HALF[h] = sign * m * 2 ** -24;
    else if (e === 31) HALF[h] = m ? NaN : sign * Infinity;
    else HALF[h] = sign * (1 + m / 1024) * 2 ** (e - 15);
  }
  function halves(b64) { // little-endian float16 -> Float32Array
    const b = bytesOf(b64);
    const out = new Float32Array(b.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = HALF[b[2 * i] | (b[2 * i + 1] << 8)];
    return out;
  }
  function bits(b64, n) { // numpy.packbits (first element in the high bit) -> 0/1 per element
    const b = bytesOf(b64);
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = (b[i >> 3] >> (7 - (i & 7))) & 1;
    return out;
  }

  const LUT = {};
  for (const name in DATA.colormaps) LUT[name] = bytesOf(DATA.colormaps[name]); // 256 x RGB

  // Features: unit-length patch features projected on their top directions, float16 (explore_work.reduce_features):
  // their dot product approximates the cosine (explore_work.page_similarity).
  const K = META.feature_dims;
  const FEATS = halves(DATA.features);
  const N = FEATS.length / K;

  const HEADS = META.num_heads;
  let offset = 0;
  const IMAGES = DATA.images.map((rec) => {
    const n = rec.h * rec.w;
    const im = {
      name: rec.name, W: rec.width, H: rec.height, h: rec.h, w: rec.w, n: n, offset: offset, jpeg: rec.jpeg,
      attn: rec.attn ? halves(rec.attn) : null, // (L, heads, h, w)
      mask: rec.mask ? bits(rec.mask, META.layers.length * HEADS * n) : null,
      pca: bytesOf(rec.pca), pcaFg: bytesOf(rec.pca_fg), // (h, w, 3)
    };
    offset += n;
    return im;
  });

  const S = {
    view: META.no_attention ? "pca" : "attention", layer: 0, head: 0, outline: true, foreground: false,
    opacity: 0.7, query: null, sims: null, lo: 0, hi: 1, best: [], topk: [],
  };

  // ---------------------------------------------------------------------------------- drawing
  function colour(px, p, lut, t) {
    const k = Math.round(Math.min(1, Math.max(0, t)) * 255);
    px[4 * p] = lut[3 * k]; px[4 * p + 1] = lut[3 * k + 1]; px[4 * p + 2] = lut[3 * k + 2]; px[4 * p + 3] = 255;
  }

  function mapShown(im) {
    if (S.view === "attention") return im.attn !== null;
    return S.view === "pca" || (S.view === "similarity" && S.sims !== null);
  }

  function drawMap(im) {
    const ctx = im.map.getContext("2d");
    ctx.clearRect(0, 0, im.w, im.h);
    im.map.style.opacity = mapShown(im) ? S.opacity : 0;
    if (!mapShown(im)) return;
    const img = ctx.createImageData(im.w, im.h);
    const px = img.data;
    if (S.view === "attention") { // min-max per map, as analysis.attention's overlays
      const base = (S.layer * HEADS + S.head) * im.n;
      let lo = Infinity, hi = -Infinity;
      for (let p = 0; p < im.n; p++) { lo = Math.min(lo, im.attn[base + p]); hi = Math.max(hi, im.attn[base + p]); }
      for (let p = 0; p < im.n; p++) colour(px, p, LUT.viridis, hi > lo ? (im.attn[base + p] - lo) / (hi - lo) : 0);
    } else if (S.view === "pca") {
      const src = S.foreground ? im.pcaFg : im.pca;
      for (let p = 0; p < im.n; p++) {
        px[4 * p] = src[3 * p]; px[4 * p + 1] = src[3 * p + 1]; px[4 * p + 2] = src[3 * p + 2]; px[4 * p + 3] = 255;
      }
    } else { // one scale over every image: the query's lowest to its highest similarity
      const span = S.hi > S.lo ? S.hi - S.lo : 1;
      for (let p = 0; p < im.n; p++) colour(px, p, LUT.inferno, (S.sims[im.offset + p] - S.lo) / span);
    }
    ctx.putImageData(img, 0, 0);
  }

  function box(ctx, im, p, style, width) {
    const sx = im.W / im.w, sy = im.H / im.h;
    ctx.strokeStyle = style; ctx.lineWidth = width;
    ctx.strokeRect((p % im.w) * sx + width / 2, Math.floor(p / im.w) * sy + width / 2, sx - width, sy - width);
  }

  function outline(ctx, im, width) { // edges between kept and dropped patches of the 60%-mass mask
    const base = (S.layer * HEADS + S.head) * im.n;
    const sx = im.W / im.w, sy = im.H / im.h;
    const kept = (r, c) => r >= 0 && c >= 0 && r < im.h && c < im.w && im.mask[base + r * im.w + c] === 1;
    ctx.strokeStyle = "white"; ctx.lineWidth = width; ctx.beginPath();
    for (let r = 0; r < im.h; r++) {
      for (let c = 0; c < im.w; c++) {
        if (!kept(r, c)) continue;
        const x = c * sx, y = r * sy;
        if (!kept(r - 1, c)) { ctx.moveTo(x, y); ctx.lineTo(x + sx, y); }
        if (!kept(r + 1, c)) { ctx.moveTo(x, y + sy); ctx.lineTo(x + sx, y + sy); }
        if (!kept(r, c - 1)) { ctx.moveTo(x, y); ctx.lineTo(x, y + sy); }
        if (!kept(r, c + 1)) { ctx.moveTo(x + sx, y); ctx.lineTo(x + sx, y + sy); }
      }
    }
    ctx.stroke();
  }

  function drawOverlay(im, i) {
    const ctx = im.ovl.getContext("2d");
    ctx.clearRect(0, 0, im.W, im.H);
    const width = Math.max(1, Math.round(im.W / 160));
    if (S.view === "attention" && S.outline && im.mask) outline(ctx, im, width);
    if (S.view !== "similarity" || !S.query) return;
    for (const t of S.topk) if (t.image === i) box(ctx, im, t.patch, "#ffd400", Math.max(1, width / 2));
    if (i === S.query.image) box(ctx, im, S.query.patch, "cyan", width);
    else box(ctx, im, S.best[i], "white", width);
  }

  function drawNeighbours() {
    const holder = $("topk");
    holder.textContent = "";
    $("neighbours").hidden = !(S.view === "similarity" && S.query);
    S.topk.forEach((t, rank) => {
      const im = IMAGES[t.image];
      const sx = im.W / im.w, sy = im.H / im.h, r = Math.floor(t.patch / im.w), c = t.patch % im.w;
      const canvas = document.createElement("canvas");
      canvas.width = 96; canvas.height = 96;
      const ctx = canvas.getContext("2d"); // the patch with one patch of context on each side
      const x0 = Math.min(Math.max(c - 1, 0), Math.max(im.w - 3, 0)) * sx, y0 = Math.min(Math.max(r - 1, 0), Math.max(im.h - 3, 0)) * sy;
      const cw = Math.min(3, im.w) * sx, ch = Math.min(3, im.h) * sy;
      ctx.drawImage(im.img, x0, y0, cw, ch, 0, 0, 96, 96);
      ctx.strokeStyle = "#ffd400"; ctx.lineWidth = 2;
      ctx.strokeRect((c * sx - x0) * 96 / cw, (r * sy - y0) * 96 / ch, sx * 96 / cw, sy * 96 / ch);
      const div = document.createElement("div");
      div.className = "neighbour";
      div.title = im.name;
      div.append(canvas, `#${rank + 1} ${im.name} (${r}, ${c}) ${t.sim.toFixed(3)}`);
      div.addEventListener("click", () => query(t.image, t.patch));
      holder.append(div);
    });
  }

  function describe() {
    if (S.view === "attention") {
      const mass = Math.round(META.threshold * 100);
      return `[CLS] attention, block ${META.layers[S.layer]}, head ${S.head}` + (S.outline ? ` (${mass}% mass outlined)` : "");
    }
    if (S.view === "pca") return "PCA colours of the patch features" + (S.foreground ? " (foreground only)" : "");
    if (S.view === "similarity" && S.query) {
      const im = IMAGES[S.query.image];
      return `cosine similarity to ${im.name} patch (${Math.floor(S.query.patch / im.w)}, ${S.query.patch % im.w}), ` +
        `scale ${S.lo.toFixed(3)} .. ${S.hi.toFixed(3)}`;
    }
    return S.view === "similarity" ? "similarity: click a patch" : "input";
  }

  function render() {
    IMAGES.forEach((im, i) => { drawMap(im); drawOverlay(im, i); });
    drawNeighbours();
    $("status").textContent = describe();
  }

  // ------------------------------------------------------------------------------ similarity
  function query(i, p) {
    const g = IMAGES[i].offset + p;
    const sims = new Float32Array(N);
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let d = 0; d < K; d++) s += FEATS[g * K + d] * FEATS[j * K + d];
      sims[j] = s;
    }
    sims[g] = 1; // a patch with itself
    let lo = Infinity, hi = -Infinity;
    for (let j = 0; j < N; j++) { lo = Math.min(lo, sims[j]); hi = Math.max(hi, sims[j]); }
    const best = IMAGES.map((im) => { // the best match per image (analysis.correspondence's argmax)
      let arg = 0;
      for (let q = 1; q < im.n; q++) if (sims[im.offset + q] > sims[im.offset + arg]) arg = q;
      return arg;
    });
    const top = []; // the top-k of the set, the query itself left out
    for (let j = 0; j < N; j++) {
      if (j === g || (top.length === META.topk && sims[j] <= top[top.length - 1].sim)) continue;
      let at = top.length;
      while (at > 0 && top[at - 1].sim < sims[j]) at--;
      top.splice(at, 0, { index: j, sim: sims[j] });
      if (top.length > META.topk) top.pop();
    }
    Object.assign(S, { view: "similarity", query: { image: i, patch: p }, sims: sims, lo: lo, hi: hi, best: best });
    S.topk = top.map((t) => {
      const image = IMAGES.findIndex((im) => t.index < im.offset + im.n);
      return { image: image, patch: t.index - IMAGES[image].offset, sim: t.sim };
    });
    $("view").value = "similarity";
    render();
  }

  // ---------------------------------------------------------------------------------- figure
  function figure() { // the current view of every image in one canvas, titled
    const pw = 256, gap = 8, cap = 16, title = 30;
    const cols = Math.min(IMAGES.length, 4), rows = Math.ceil(IMAGES.length / cols);
    const heights = IMAGES.map((im) => Math.round(pw * im.H / im.W));
    const rowH = [];
    for (let r = 0; r < rows; r++) rowH.push(Math.max(...heights.slice(r * cols, r * cols + cols)) + cap + gap);
    const canvas = document.createElement("canvas");
    canvas.width = cols * (pw + gap) + gap;
    canvas.height = title + rowH.reduce((a, b) => a + b, 0);
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "white"; ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.fillStyle = "#222"; ctx.font = "14px sans-serif";
    ctx.fillText(`${META.arch}: ${describe()}`, gap, 20);
    let y = title;
    IMAGES.forEach((im, i) => {
      const x = gap + (i % cols) * (pw + gap);
      if (i > 0 && i % cols === 0) y += rowH[i / cols - 1];
      ctx.drawImage(im.img, x, y, pw, heights[i]);
      if (mapShown(im)) {
        ctx.globalAlpha = S.opacity; ctx.imageSmoothingEnabled = false;
        ctx.drawImage(im.map, x, y, pw, heights[i]);
        ctx.globalAlpha = 1;
      }
      ctx.drawImage(im.ovl, x, y, pw, heights[i]);
      ctx.fillStyle = "#222"; ctx.font = "11px sans-serif";
      ctx.fillText(im.name, x, y + heights[i] + 12, pw);
    });
    return canvas;
  }

  function download() {
    figure().toBlob((blob) => {
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = `explore_${S.view}.png`;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 60000);
    }, "image/png");
  }

  // ------------------------------------------------------------------------------- the page
  function row(table, key, value, code) {
    const tr = table.insertRow();
    tr.insertCell().textContent = key;
    const cell = tr.insertCell();
    const inner = document.createElement(code ? "code" : "span");
    inner.textContent = value;
    cell.append(inner);
  }

  function provenance() {
    const P = META.precision;
    const table = document.createElement("table");
    row(table, "command", META.command, true);
    row(table, "checkpoint fingerprint", `sha256 ${META.fingerprint}`, true);
    row(table, "architecture", `${META.arch}, one token per ${META.grid} px`);
    row(table, "attention", META.no_attention || `blocks ${META.layers.join(", ")}, ${HEADS} heads, ` +
      `masks keep ${Math.round(META.threshold * 100)}% of the mass (float16 maps, masks exact)`);
    row(table, "similarity features", `${P.feature_dims} of ${P.full_dims} dimensions (${(100 * P.norm_kept).toFixed(1)}% ` +
      `of the squared norm), float16; cosine error vs full float32 on ${P.queries} queries: max ${P.max_abs_error}, ` +
      `p99 ${P.p99_abs_error}, mean ${P.mean_abs_error}; best match per image agrees ${(100 * P.best_match_agreement).toFixed(1)}%, ` +
      `top-10 overlap ${(100 * P.top10_overlap).toFixed(1)}%`);
    row(table, "PCA", `explained variance ${META.pca.explained_variance_ratio.map((v) => v.toFixed(3)).join(", ")}, ` +
      `foreground ${(100 * META.pca.foreground_fraction).toFixed(1)}% of patches; colours uint8`);
    row(table, "settings", JSON.stringify(META.settings, null, 1), true);
    $("provenance").append(table);
    $("about").open = true;
  }

  function controls() {
    META.layers.forEach((b, i) => $("layer").add(new Option(`block ${b}`, String(i))));
    for (let h = 0; h < HEADS; h++) $("head").add(new Option(`head ${h}`, String(h)));
    if (META.no_attention) {
      $("note").hidden = false;
      $("note").textContent = META.no_attention;
      $("view").querySelector('option[value="attention"]').disabled = true;
      for (const id of ["layer", "head", "outline"]) $(id).disabled = true;
    }
    $("view").value = S.view;
    $("view").addEventListener("change", (e) => { S.view = e.target.value; render(); });
    const attention = () => { if (!META.no_attention) { S.view = "attention"; $("view").value = "attention"; } render(); };
    $("layer").addEventListener("change", (e) => { S.layer = Number(e.target.value); attention(); });
    $("head").addEventListener("change", (e) => { S.head = Number(e.target.value); attention(); });
    $("outline").addEventListener("change", (e) => { S.outline = e.target.checked; render(); });
    $("foreground").addEventListener("change", (e) => { S.foreground = e.target.checked; S.view = "pca"; $("view").value = "pca"; render(); });
    $("opacity").addEventListener("input", (e) => { S.opacity = Number(e.target.value); render(); });
    $("panel").addEventListener("input", (e) => document.documentElement.style.setProperty("--panel", `${e.target.value}px`));
    $("download").addEventListener("click", download);
  }

  function cards() {
    IMAGES.forEach((im, i) => {
      const card = document.createElement("div");
      card.className = "card";
      const stack = document.createElement("div");
      stack.className = "stack";
      stack.style.aspectRatio = `${im.W} / ${im.H}`;
      im.img = new Image();
      im.img.src = `data:image/jpeg;base64,${im.jpeg}`;
      im.img.alt = im.name;
      im.map = document.createElement("canvas");
      Object.assign(im.map, { width: im.w, height: im.h, className: "map", id: `map-${i}` });
      im.ovl = document.createElement("canvas");
      Object.assign(im.ovl, { width: im.W, height: im.H, className: "ovl", id: `ovl-${i}` });
      stack.append(im.img, im.map, im.ovl);
      stack.addEventListener("click", (e) => { // the clicked patch, in the image's patch grid
        const r = stack.getBoundingClientRect();
        const col = Math.min(im.w - 1, Math.max(0, Math.floor((e.clientX - r.left) / r.width * im.w)));
        const rowIdx = Math.min(im.h - 1, Math.max(0, Math.floor((e.clientY - r.top) / r.height * im.h)));
        query(i, rowIdx * im.w + col);
      });
      const caption = document.createElement("div");
      caption.className = "caption";
      caption.textContent = im.name;
      caption.title = im.name;
      card.append(stack, caption);
      $("grid").append(card);
    });
  }

  controls();
  cards();
  provenance();
  render();
  window.explore = { state: S, images: IMAGES, query: query, render: render, figure: figure };
})();
