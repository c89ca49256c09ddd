/**
 * @lineage/quant: scalar-grid quantizers (RTN, LDLQ/GPTQ on calibration Hessians), randomized Hadamard
 * incoherence, the `quantized` layer kind and the `rtn` / `ldlq` methods. The numerics are float64 and
 * free of backends, so other packages (CALDERA in @lineage/svd) build on them.
 */
export * from './grid.js';
export * from './hadamard.js';
export * from './ldlq.js';
export * from './quantized-linear.js';
export * from './rtn.js';
