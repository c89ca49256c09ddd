/**
 * @lineage/linalg: the float64 engine (row-major `Matrix64`): exact and randomized SVD, eigh, QR, Cholesky,
 * block LDLᵀ, symmetric square roots, triangular solves and the WebAssembly SIMD GEMM. No dependencies, no side effects on import.
 */
export { cholesky } from './cholesky.js';
export { eigh } from './eigh.js';
export { type GemmKernelKind, gemmKernelKind, matmul64 } from './gemm.js';
export { type LdlOptions, type LdlResult, ldl } from './ldl.js';
export {
  clone64,
  frobeniusNorm,
  fromF32,
  identity64,
  type Matrix64,
  matrix64,
  subMatrix64,
  toF32,
  transpose64,
} from './matrix.js';
export { qr } from './qr.js';
export { gaussian64 } from './random.js';
export { type DeviceMatmul, type RandomizedSvdOptions, randomizedSvd } from './randomized-svd.js';
export {
  invSqrtSymmetric,
  type SymmetricRootOptions,
  type SymmetricRoots,
  sqrtSymmetric,
  symmetricRoots,
} from './sqrtm.js';
export { type SvdOptions, type SvdResult, svd, truncationError } from './svd.js';
export { syrkUpper64 } from './syrk.js';
export { invertTriangular, solveTriangular, type TriangularSolveOptions } from './triangular.js';
