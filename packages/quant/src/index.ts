/**
 * @lineage/quant: scalar-grid quantizers (RTN, LDLQ/GPTQ on calibration Hessians), QuIP#'s E8P12 lattice
 * codebook, randomized Hadamard incoherence, the `quantized` layer kind (scalar grid or E8P12) and the
 * `rtn` / `ldlq` methods. Importing it registers the layer
 * kind and the methods. The numerics (grid, rtn, ldlq, hadamard) are float64 and backend-free, for reuse
 * (CALDERA in @lineage/svd builds on them).
 */
import './register.js';

export * from './e8p.js';
export * from './e8p-linear.js';
export * from './grid.js';
export * from './hadamard.js';
export * from './ldlq.js';
export * from './methods.js';
export * from './quantize-model.js';
export * from './quantized-linear.js';
export { matMulNBits, type NBitsGrid, nbitsRefusal } from './quantized-onnx.js';
export * from './rtn.js';
