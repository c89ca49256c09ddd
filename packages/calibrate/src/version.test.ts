import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { VERSION } from './index.js';

const pkg = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'package.json'), 'utf8'));

describe('VERSION', () => {
  it('is the package.json version (statistics files record it in createdBy)', () => {
    expect(VERSION).toBe(pkg.version);
  });
});
