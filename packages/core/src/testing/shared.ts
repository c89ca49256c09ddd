// Test suites locate the shared model and data through the same resolver the CLI uses for its defaults.
export { sharedDir, sharedPath } from '../util/shared-data.js';
