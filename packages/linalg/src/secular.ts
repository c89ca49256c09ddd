const EPS = 2 ** -52;

/**
 * The K roots of the secular equation f(σ) = 1 + Σⱼ zⱼ² / (dⱼ² − σ²) = 0, with 0 = d₀ < d₁ < … < d_{K−1}
 * and every zⱼ ≠ 0 (the singular values of [z; 0 diag(d₁…)], LAPACK dlasd4's problem). Root i lies in
 * (dᵢ, dᵢ₊₁) (the last in (d_{K−1}, √(d²_{K−1} + ‖z‖²))). Each root is kept relative to its nearer pole
 * d_o ("origin") as λ = σ² − d_o², so differences dⱼ² − σ² = (dⱼ − d_o)(dⱼ + d_o) − λ come out with full
 * relative accuracy, as the vectors' formulas need.
 */
export interface SecularRoots {
  sigma: Float64Array;
  origin: Int32Array;
  lambda: Float64Array;
}

/** dⱼ² − σᵢ² for root i of `r`, accurately. */
export function secularDiff(d: Float64Array, r: SecularRoots, i: number, j: number): number {
  const o = d[r.origin[i]!]!;
  const dj = d[j]!;
  return (dj - o) * (dj + o) - r.lambda[i]!;
}

/**
 * Solves for every root with the "middle way" rational model of Li (dlaed4: two poles matched in value
 * and slope around the current point), safeguarded by a bracket that falls back to bisection.
 */
export function solveSecular(d: Float64Array, z: Float64Array, K: number): SecularRoots {
  const sigma = new Float64Array(K);
  const origin = new Int32Array(K);
  const lambda = new Float64Array(K);
  const z2 = new Float64Array(K);
  let zz = 0;
  for (let j = 0; j < K; j++) {
    z2[j] = z[j]! * z[j]!;
    zz += z2[j]!;
  }
  const delta = new Float64Array(K);
  for (let i = 0; i < K; i++) {
    const last = i === K - 1;
    let o: number;
    let lo: number;
    let hi: number;
    if (!last) {
      // f at the midpoint of (dᵢ², dᵢ₊₁²), relative to dᵢ: f increases from −∞ to +∞ over the interval.
      const di = d[i]!;
      for (let j = 0; j < K; j++) delta[j] = (d[j]! - di) * (d[j]! + di);
      const mid = delta[i + 1]! / 2;
      let f = 1;
      for (let j = 0; j < K; j++) f += z2[j]! / (delta[j]! - mid);
      if (f >= 0) {
        o = i;
        lo = 0;
        hi = mid;
      } else {
        o = i + 1;
        const dn = d[o]!;
        for (let j = 0; j < K; j++) delta[j] = (d[j]! - dn) * (d[j]! + dn);
        lo = delta[i]! / 2;
        hi = 0;
      }
    } else {
      o = i;
      const dn = d[o]!;
      for (let j = 0; j < K; j++) delta[j] = (d[j]! - dn) * (d[j]! + dn);
      lo = 0;
      hi = zz;
    }
    let lam = (lo + hi) / 2;
    for (let iter = 0; iter < 100; iter++) {
      let psi = 0;
      let dpsi = 0;
      let phi = 0;
      let dphi = 0;
      for (let j = 0; j <= i; j++) {
        const t = 1 / (delta[j]! - lam);
        const q = z2[j]! * t;
        psi += q;
        dpsi += q * t;
      }
      for (let j = i + 1; j < K; j++) {
        const t = 1 / (delta[j]! - lam);
        const q = z2[j]! * t;
        phi += q;
        dphi += q * t;
      }
      const w = 1 + psi + phi;
      if (w === 0) break;
      if (w < 0) lo = lam;
      else hi = lam;
      const errb = 8 * EPS * (1 + phi - psi) + EPS * Math.abs(lam) * (dpsi + dphi);
      if (Math.abs(w) <= errb) break;
      let eta: number;
      if (!last) {
        const a = delta[i]! - lam;
        const b = delta[i + 1]! - lam;
        const c0 = w - a * dpsi - b * dphi;
        const qa = (a + b) * w - a * b * (dpsi + dphi);
        const qb = a * b * w;
        if (c0 === 0) eta = qb / qa;
        else {
          const disc = Math.sqrt(Math.abs(qa * qa - 4 * qb * c0));
          eta = qa <= 0 ? (qa - disc) / (2 * c0) : (2 * qb) / (qa + disc);
        }
      } else {
        // All poles lie left of the root: one pole (the nearest) matched in value and slope.
        const a = delta[i]! - lam;
        const c0 = w - a * (dpsi + dphi);
        eta = c0 > 0 ? a + (a * a * (dpsi + dphi)) / c0 : Number.NaN;
      }
      let next = lam + eta;
      if (!(next > lo && next < hi)) next = (lo + hi) / 2;
      const step = Math.abs(next - lam);
      lam = next;
      if (step <= 2 * EPS * Math.abs(lam) || hi - lo <= 4 * EPS * Math.max(Math.abs(lo), Math.abs(hi))) break;
    }
    const dn = d[o]!;
    origin[i] = o;
    lambda[i] = lam;
    // σ = d_o + τ with τ = λ / (d_o + √(d_o² + λ)).
    sigma[i] = dn + lam / (dn + Math.sqrt(dn * dn + lam));
  }
  return { sigma, origin, lambda };
}
