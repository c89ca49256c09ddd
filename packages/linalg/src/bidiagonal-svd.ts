import { gemm } from './gemm.js';
import { norm2 } from './matrix.js';
import { type SecularRoots, secularDiff, solveSecular } from './secular.js';

const EPS = 2 ** -52;
/** Subproblems up to this many rows are solved directly (one-sided Jacobi). */
const LEAF = 12;

/**
 * SVD of an n×(n+sq) upper bidiagonal matrix (sq ∈ {0, 1}): B[i, i] = d[i], B[i, i+1] = e[i].
 * `sigma` in no particular order; U n×n and V (n+sq)×(n+sq) row-major, column i ↔ sigma[i]; when
 * sq = 1 the last column of V spans the null space. U is omitted when not wanted.
 */
interface BdSvd {
  sigma: Float64Array;
  U: Float64Array | undefined;
  V: Float64Array;
}

/**
 * SVD of an n×n upper bidiagonal matrix (diagonal d, superdiagonal e) by divide and conquer (Gu and
 * Eisenstat's algorithm, as LAPACK dbdsdc/dlasd*): split off a middle row, solve both halves, and merge
 * through the secular equation with deflation; the merged vectors come from Löwner's theorem (so they
 * are orthogonal to working precision) and reach the parent through two level-3 products per side.
 * Returns sigma descending with U, V (n×n, row-major, column i ↔ sigma[i]); U only when `wantU`.
 */
export function bidiagonalSvd(
  d: Float64Array,
  e: Float64Array,
  wantU = true,
  onMerge?: (rows: number) => void,
): { sigma: Float64Array; U: Float64Array | undefined; V: Float64Array } {
  const n = d.length;
  if (n === 0)
    return { sigma: new Float64Array(0), U: wantU ? new Float64Array(0) : undefined, V: new Float64Array(0) };
  const r = solve(d, e, n, 0, wantU, onMerge);
  // Descending, with the permutation applied to the vector columns.
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => r.sigma[b]! - r.sigma[a]!);
  const perm = Int32Array.from(order);
  const sigma = Float64Array.from(order, (i) => r.sigma[i]!);
  return { sigma, U: r.U ? permuteColumns(r.U, n, n, perm) : undefined, V: permuteColumns(r.V, n, n, perm) };
}

function permuteColumns(a: Float64Array, rows: number, cols: number, perm: Int32Array): Float64Array {
  const out = new Float64Array(rows * perm.length);
  const k = perm.length;
  for (let r = 0; r < rows; r++) {
    const s = r * cols;
    const o = r * k;
    for (let c = 0; c < k; c++) out[o + c] = a[s + perm[c]!]!;
  }
  return out;
}

function solve(
  d: Float64Array,
  e: Float64Array,
  n: number,
  sq: number,
  wantU: boolean,
  onMerge?: (rows: number) => void,
): BdSvd {
  if (n <= LEAF) return jacobiLeaf(d, e, n, sq, wantU);
  const k = n >> 1;
  const n2 = n - k - 1;
  const top = solve(d.subarray(0, k), e.subarray(0, k), k, 1, wantU, onMerge);
  const bot = solve(d.subarray(k + 1, n), e.subarray(k + 1, n - 1 + sq), n2, sq, wantU, onMerge);
  const r = merge(top, bot, d[k]!, e[k]!, k, n2, sq, wantU);
  onMerge?.(n);
  return r;
}

/**
 * One-sided (Hestenes) Jacobi on the columns of the small bidiagonal B: B·J = W with orthogonal columns,
 * σ = column norms, U = normalised columns (completed to an orthonormal basis where σ vanishes), V = J.
 */
function jacobiLeaf(d: Float64Array, e: Float64Array, n: number, sq: number, wantU: boolean): BdSvd {
  const nc = n + sq;
  // Scale by a power of two so the squared column norms neither underflow nor overflow.
  let amax = 0;
  for (let i = 0; i < n; i++) amax = Math.max(amax, Math.abs(d[i]!));
  for (let i = 0; i < n - 1 + sq; i++) amax = Math.max(amax, Math.abs(e[i]!));
  const scale = amax > 0 ? 2 ** -Math.round(Math.log2(amax)) : 1;
  // g[c·n + r] = B[r, c]
  const g = new Float64Array(nc * n);
  for (let c = 0; c < nc; c++) {
    if (c < n) g[c * n + c] = d[c]! * scale;
    if (c >= 1) g[c * n + c - 1] = e[c - 1]! * scale;
  }
  // j[c·nc + r] = J[r, c]
  const jt = new Float64Array(nc * nc);
  for (let c = 0; c < nc; c++) jt[c * nc + c] = 1;
  for (let sweep = 0; sweep < 80; sweep++) {
    let rotated = false;
    for (let p = 0; p < nc - 1; p++) {
      const gp = p * n;
      for (let q = p + 1; q < nc; q++) {
        const gq = q * n;
        let alpha = 0;
        let beta = 0;
        let gamma = 0;
        for (let r = 0; r < n; r++) {
          const x = g[gp + r]!;
          const y = g[gq + r]!;
          alpha += x * x;
          beta += y * y;
          gamma += x * y;
        }
        if (gamma === 0 || Math.abs(gamma) <= EPS * Math.sqrt(alpha) * Math.sqrt(beta)) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const az = Math.abs(zeta);
        const t = (zeta >= 0 ? 1 : -1) / (az > 1e150 ? 2 * az : az + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        for (let r = 0; r < n; r++) {
          const x = g[gp + r]!;
          const y = g[gq + r]!;
          g[gp + r] = c * x - s * y;
          g[gq + r] = s * x + c * y;
        }
        const jp = p * nc;
        const jq = q * nc;
        for (let r = 0; r < nc; r++) {
          const x = jt[jp + r]!;
          const y = jt[jq + r]!;
          jt[jp + r] = c * x - s * y;
          jt[jq + r] = s * x + c * y;
        }
      }
    }
    if (!rotated) break;
  }
  const norms = new Float64Array(nc);
  for (let c = 0; c < nc; c++) norms[c] = norm2(g, c * n, n, 1);
  // Columns by σ descending: the first n are the singular values, the rest (sq) the null space.
  const order = Array.from({ length: nc }, (_, i) => i).sort((a, b) => norms[b]! - norms[a]!);
  const sigma = new Float64Array(n);
  const V = new Float64Array(nc * nc);
  const U = wantU ? new Float64Array(n * n) : undefined;
  const smax = norms[order[0]!] ?? 0;
  const tiny = Math.max(smax * n * EPS, Number.MIN_VALUE);
  // Output column t (ascending σ) ← Jacobi column order[n−1−t]; the null column goes last.
  const outCol = (t: number) => (t < n ? order[n - 1 - t]! : order[t]!);
  for (let t = 0; t < nc; t++) {
    const c = outCol(t);
    if (t < n) sigma[t] = norms[c]! / scale;
    for (let r = 0; r < nc; r++) V[r * nc + t] = jt[c * nc + r]!;
  }
  if (U) {
    const weak: number[] = [];
    for (let t = 0; t < n; t++) {
      const c = outCol(t);
      const s = norms[c]!;
      if (s <= tiny) {
        weak.push(t);
        continue;
      }
      for (let r = 0; r < n; r++) U[r * n + t] = g[c * n + r]! / s;
    }
    if (weak.length > 0) completeBasis(U, n, weak);
  }
  return { sigma, U, V };
}

/** Fills the columns `missing` of the n×n U with unit vectors orthogonal to all other columns. */
function completeBasis(U: Float64Array, n: number, missing: number[]): void {
  const isMissing = new Uint8Array(n);
  for (const t of missing) isMissing[t] = 1;
  const v = new Float64Array(n);
  let cand = 0;
  for (const t of missing) {
    for (; cand < n; cand++) {
      v.fill(0);
      v[cand] = 1;
      for (let pass = 0; pass < 2; pass++) {
        for (let c = 0; c < n; c++) {
          if (isMissing[c]) continue;
          let s = 0;
          for (let r = 0; r < n; r++) s += U[r * n + c]! * v[r]!;
          for (let r = 0; r < n; r++) v[r]! -= s * U[r * n + c]!;
        }
      }
      let nv = 0;
      for (let r = 0; r < n; r++) nv += v[r]! * v[r]!;
      nv = Math.sqrt(nv);
      if (nv > 0.5) {
        for (let r = 0; r < n; r++) U[r * n + t] = v[r]! / nv;
        isMissing[t] = 0;
        cand++;
        break;
      }
    }
  }
}

/**
 * Merges the SVDs of the top (k×(k+1)) and bottom (n2×(n2+sq)) blocks around the middle row
 * [… α β …] (LAPACK dlasd1–dlasd3).
 */
function merge(
  top: BdSvd,
  bot: BdSvd,
  alpha: number,
  beta: number,
  k: number,
  n2: number,
  sq: number,
  wantU: boolean,
): BdSvd {
  const n = k + 1 + n2;
  const nv = n + sq;
  const k1 = k + 1; // V1 is k1×k1
  const m2 = n2 + sq; // V2 is m2×m2
  const V1 = top.V;
  const V2 = bot.V;
  // The merged matrix M = [z; 0 diag(dM[1:])] in "M order": column 0 (z₀ from the top block's null
  // vector), 1…k (top σ), k+1…n−1 (bottom σ).
  const dM = new Float64Array(n);
  const zM = new Float64Array(n);
  let z0 = alpha * V1[k * k1 + k]!;
  for (let t = 0; t < k; t++) {
    dM[1 + t] = top.sigma[t]!;
    zM[1 + t] = alpha * V1[k * k1 + t]!;
  }
  for (let t = 0; t < n2; t++) {
    dM[k1 + t] = bot.sigma[t]!;
    zM[k1 + t] = beta * V2[t]!;
  }
  // sq = 1: rotate the bottom block's null column into column 0, which zeroes the extra column of M.
  let c = 1;
  let s = 0;
  if (sq) {
    const zn = beta * V2[n2]!;
    const r = Math.hypot(z0, zn);
    if (r !== 0) {
      c = z0 / r;
      s = zn / r;
    }
    z0 = r;
  }
  zM[0] = z0;

  // Ubig (n×n) and Vbig (nv×nv) in M order: B = Ubig·[M 0]·Vbigᵀ.
  let Ub: Float64Array | undefined;
  if (wantU) {
    const U1 = top.U!;
    const U2 = bot.U!;
    Ub = new Float64Array(n * n);
    Ub[k * n] = 1;
    for (let r = 0; r < k; r++) Ub.set(U1.subarray(r * k, r * k + k), r * n + 1);
    for (let r = 0; r < n2; r++) Ub.set(U2.subarray(r * n2, r * n2 + n2), (k1 + r) * n + k1);
  }
  const Vb = new Float64Array(nv * nv);
  for (let r = 0; r < k1; r++) {
    const row = r * nv;
    const v1k = V1[r * k1 + k]!;
    Vb[row] = c * v1k;
    if (sq) Vb[row + n] = -s * v1k;
    Vb.set(V1.subarray(r * k1, r * k1 + k), row + 1);
  }
  for (let r = 0; r < m2; r++) {
    const row = (k1 + r) * nv;
    Vb.set(V2.subarray(r * m2, r * m2 + n2), row + k1);
    if (sq) {
      const v2n = V2[r * m2 + n2]!;
      Vb[row] = s * v2n;
      Vb[row + n] = c * v2n;
    }
  }

  // Scale to unit size.
  let orgnrm = Math.max(Math.abs(alpha), Math.abs(beta));
  for (let j = 1; j < n; j++) orgnrm = Math.max(orgnrm, dM[j]!);
  const sigma = new Float64Array(n);
  // All zero: every value deflates to 0, and Ubig, Vbig are already orthogonal.
  if (orgnrm === 0) return { sigma, U: Ub, V: Vb };
  for (let j = 0; j < n; j++) {
    dM[j]! /= orgnrm;
    zM[j]! /= orgnrm;
  }
  // Column type: 1 top rows only, 2 bottom rows only, 3 both (after a deflating rotation mixed them).
  const type = new Uint8Array(n);
  for (let j = 1; j < n; j++) type[j] = j <= k ? 1 : 2;

  const idx = Array.from({ length: n - 1 }, (_, i) => i + 1).sort((a, b) => dM[a]! - dM[b]!);
  let zmax = 0;
  for (let j = 0; j < n; j++) zmax = Math.max(zmax, Math.abs(zM[j]!));
  const tol = 8 * EPS * Math.max(dM[idx[idx.length - 1]!] ?? 0, zmax);
  if (Math.abs(zM[0]!) <= tol) zM[0] = tol;

  const nd: number[] = [0]; // non-deflated, ascending d
  const defl: number[] = [];
  let prev = -1;
  for (const j of idx) {
    if (Math.abs(zM[j]!) <= tol) {
      defl.push(j);
      continue;
    }
    if (prev >= 0 && dM[j]! - dM[prev]! <= tol) {
      // Nearly equal d: rotate columns prev, j (of U and V alike) so that z[prev] = 0; prev deflates.
      const zp = zM[prev]!;
      const zj = zM[j]!;
      const r = Math.hypot(zp, zj);
      const cr = zj / r;
      const sr = zp / r;
      if (Ub) rotateColumns(Ub, n, n, j, prev, cr, sr);
      rotateColumns(Vb, nv, nv, j, prev, cr, sr);
      zM[j] = r;
      zM[prev] = 0;
      if (type[j] !== type[prev]) type[j] = 3;
      defl.push(prev);
      nd[nd.length - 1] = j;
      prev = j;
      continue;
    }
    nd.push(j);
    prev = j;
  }
  const K = nd.length;
  // Keep the smallest non-zero pole away from the pole at 0 (dlasd2).
  if (K > 1 && dM[nd[1]!]! <= tol / 2) dM[nd[1]!] = tol / 2;

  // Non-deflated columns grouped by type: [0 | type 1 | type 3 | type 2], so the top and bottom row
  // blocks each multiply one contiguous column range.
  const t1 = nd.filter((j) => j !== 0 && type[j] === 1);
  const t3 = nd.filter((j) => j !== 0 && type[j] === 3);
  const t2 = nd.filter((j) => j !== 0 && type[j] === 2);
  const grouped = [0, ...t1, ...t3, ...t2];
  const n1 = t1.length;
  const n3 = t3.length;
  // Position of each nd entry (ascending d, the secular order) in the grouped order.
  const pos = new Int32Array(n);
  grouped.forEach((j, p) => {
    pos[j] = p;
  });

  const dK = new Float64Array(K);
  const zK = new Float64Array(K);
  for (let i = 0; i < K; i++) {
    dK[i] = dM[nd[i]!]!;
    zK[i] = zM[nd[i]!]!;
  }
  dK[0] = 0;
  const roots = solveSecular(dK, zK, K);
  const zHat = reconstructZ(dK, zK, roots, K);

  // Secular vectors, transposed: row i of vT/uT is the vector of root i, entries in grouped order.
  const vT = new Float64Array(K * K);
  const uT = wantU ? new Float64Array(K * K) : undefined;
  const posK = new Int32Array(K);
  for (let j = 0; j < K; j++) posK[j] = pos[nd[j]!]!;
  for (let i = 0; i < K; i++) {
    const o = dK[roots.origin[i]!]!;
    const lam = roots.lambda[i]!;
    const row = i * K;
    let vn = 0;
    for (let j = 0; j < K; j++) {
      const dj = dK[j]!;
      const v = zHat[j]! / ((dj - o) * (dj + o) - lam);
      vT[row + posK[j]!] = v;
      vn += v * v;
    }
    const vi = 1 / Math.sqrt(vn);
    if (uT) {
      let un = 1;
      for (let j = 1; j < K; j++) {
        const u = dK[j]! * vT[row + posK[j]!]!;
        uT[row + posK[j]!] = u;
        un += u * u;
      }
      uT[row] = -1; // grouped position 0 is M's column 0
      const ui = 1 / Math.sqrt(un);
      for (let j = 0; j < K; j++) uT[row + j]! *= ui;
    }
    for (let j = 0; j < K; j++) vT[row + j]! *= vi;
  }

  // Gather Ubig/Vbig columns in grouped order.
  const Ug = Ub ? gatherColumns(Ub, n, n, grouped) : undefined;
  const Vg = gatherColumns(Vb, nv, nv, grouped);
  // Output columns: the K secular roots first (U = Ubig·Ũ with Ũ = uTᵀ, written in place by the
  // products), then the deflated columns of Ubig/Vbig; unsorted (the parent merge sorts its poles, and
  // bidiagonalSvd sorts once at the end). V's last column (sq = 1) is the null vector.
  const nd2 = defl.length;
  const topCols = n1 + n3;
  const botCols = n3 + t2.length;
  let U: Float64Array | undefined;
  if (Ub && Ug && uT) {
    U = new Float64Array(n * n);
    // Top rows 0…k−1: columns 1 … n1+n3.
    gemm(false, true, k, K, topCols, 1, Ug, 1, K, uT, 1, K, 0, U, 0, n);
    // Middle row k: Ubig column 0 is e_k.
    for (let i = 0; i < K; i++) U[k * n + i] = uT[i * K]!;
    // Bottom rows: columns 1+n1 … K−1.
    gemm(false, true, n2, K, botCols, 1, Ug, k1 * K + 1 + n1, K, uT, 1 + n1, K, 0, U, k1 * n, n);
    for (let r = 0; r < n; r++) {
      const o = r * n;
      for (let t = 0; t < nd2; t++) U[o + K + t] = Ub[o + defl[t]!]!;
    }
  }
  const V = new Float64Array(nv * nv);
  // V top rows 0…k: columns 0 … n1+n3; bottom rows: column 0 (rank one) and 1+n1 … K−1.
  gemm(false, true, k1, K, 1 + topCols, 1, Vg, 0, K, vT, 0, K, 0, V, 0, nv);
  gemm(false, true, m2, K, botCols, 1, Vg, k1 * K + 1 + n1, K, vT, 1 + n1, K, 0, V, k1 * nv, nv);
  if (sq) {
    for (let r = k1; r < nv; r++) {
      const g0 = Vg[r * K]!;
      if (g0 === 0) continue;
      const row = r * nv;
      for (let i = 0; i < K; i++) V[row + i]! += g0 * vT[i * K]!;
    }
  }
  for (let r = 0; r < nv; r++) {
    const o = r * nv;
    for (let t = 0; t < nd2; t++) V[o + K + t] = Vb[o + defl[t]!]!;
    if (sq) V[o + n] = Vb[o + n]!;
  }
  for (let i = 0; i < K; i++) sigma[i] = roots.sigma[i]! * orgnrm;
  for (let t = 0; t < nd2; t++) sigma[K + t] = dM[defl[t]!]! * orgnrm;
  return { sigma, U, V };
}

function rotateColumns(
  a: Float64Array,
  rows: number,
  ld: number,
  j: number,
  p: number,
  c: number,
  s: number,
): void {
  // new col j = c·col j + s·col p; new col p = −s·col j + c·col p
  for (let r = 0, o = 0; r < rows; r++, o += ld) {
    const x = a[o + j]!;
    const y = a[o + p]!;
    a[o + j] = c * x + s * y;
    a[o + p] = -s * x + c * y;
  }
}

function gatherColumns(a: Float64Array, rows: number, ld: number, cols: number[]): Float64Array {
  const K = cols.length;
  const out = new Float64Array(rows * K);
  for (let r = 0; r < rows; r++) {
    const s = r * ld;
    const o = r * K;
    for (let i = 0; i < K; i++) out[o + i] = a[s + cols[i]!]!;
  }
  return out;
}

/**
 * Gu–Eisenstat: the z for which the computed roots are the exact singular values (Löwner), so the
 * vectors built from it are orthogonal to working precision.
 */
function reconstructZ(d: Float64Array, z: Float64Array, roots: SecularRoots, K: number): Float64Array {
  const out = new Float64Array(K);
  for (let j = 0; j < K; j++) {
    const dj = d[j]!;
    let prod = secularDiff(d, roots, K - 1, j);
    for (let i = 0; i < j; i++) {
      const di = d[i]!;
      prod *= secularDiff(d, roots, i, j) / ((dj - di) * (dj + di));
    }
    for (let i = j; i < K - 1; i++) {
      const di = d[i + 1]!;
      prod *= secularDiff(d, roots, i, j) / ((dj - di) * (dj + di));
    }
    const mag = Math.sqrt(Math.abs(prod));
    out[j] = z[j]! >= 0 ? mag : -mag;
  }
  return out;
}
