// The dense kind's exporter registers on import (core defines the kind but cannot depend on this package).
import './linear-exporter.js';

export * from './export-dir.js';
export * from './exporters.js';
export * from './graph-builder.js';
export * from './llama-graph.js';
export { DataType } from './proto.js';
