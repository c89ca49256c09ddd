import { describeBackendConformance } from '@lineage/core/testing';
import { createTfjsBackend } from './base.js';

describeBackendConformance('tfjs wasm', () => createTfjsBackend({ engine: 'wasm' }));
describeBackendConformance('tfjs cpu', () => createTfjsBackend({ engine: 'cpu' }));
