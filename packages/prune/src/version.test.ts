import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { minitron, VERSION } from './index.js';

const pkg = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'package.json'), 'utf8'));

describe('method version', () => {
  it('is the package.json version, which provenance records', () => {
    expect(VERSION).toBe(pkg.version);
    expect(minitron({ params: 0.5 }).version).toBe(pkg.version);
  });
});
