import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { plrd, svd, VERSION } from './index.js';

const pkg = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'package.json'), 'utf8'));

describe('method versions', () => {
  it('are the package.json version, which provenance records', () => {
    expect(VERSION).toBe(pkg.version);
    expect(svd({ params: 0.5 }).version).toBe(pkg.version);
    expect(plrd({ schedule: [0.8, 0.5], recoverTokens: 0 }).version).toBe(pkg.version);
  });
});
