import { defineMethod, registerMethod } from '@lineage/core';
import { ldlqMethod, ldlqOptions, rtnMethod, rtnOptions } from './methods.js';
// Importing the layer kind registers it, so saved quantized models load again.
import './quantized-linear.js';

// Each method's options are its schema (methods.ts): flags, help and validation all come from there.

registerMethod(
  defineMethod({
    name: 'rtn',
    description:
      'round-to-nearest quantization of every block linear on a scalar grid (the data-free baseline)',
    package: '@lineage/quant',
    options: rtnOptions,
    create: (o) => rtnMethod(o),
  }),
);

registerMethod(
  defineMethod({
    name: 'ldlq',
    description:
      'LDLQ/GPTQ quantization on calibration Hessians (error fed forward through LDLᵀ), optional Hadamard incoherence',
    package: '@lineage/quant',
    options: ldlqOptions,
    create: (o) => ldlqMethod(o),
  }),
);
