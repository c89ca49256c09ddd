import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../checkpoint/load-model.js';
import { sharedPath } from '../testing/shared.js';
import { tempDir } from '../testing/temp-dir.js';
import { FAMILY_SCHEMA, familyRecord, readFamily, writeFamily } from './family-record.js';

describe('family.json', () => {
  it('records every member in the one schema, written atomically with the members, and reads back', async () => {
    const path = sharedPath('models', 'stories260K', 'stories260K.bin');
    const { model: parent } = await loadModel(path);
    const a = parent.clone();
    a.provenance = { method: 'test', fraction: 0.5, tokens: 1000, wallSeconds: 2.5 };
    const b = parent.clone();
    const record = familyRecord({
      method: { name: 'test', version: '1.0.0' },
      parent: { path, model: parent, score: { ppl: 4.5, nll: Math.log(4.5) } },
      heldOut: 'dev (last 20 documents)',
      sizes: [0.5, 0.3],
      members: [
        { dir: 'test-0.50', model: a, score: { ppl: 5, nll: Math.log(5) } },
        { dir: 'test-0.30', model: b, size: 0.3 },
      ],
      wallSeconds: 3,
    });
    const s = parent.stats();
    expect(record).toMatchObject({
      schema: FAMILY_SCHEMA,
      parent: { params: s.params, bytes: s.bytes, bitsPerParam: 32, perplexity: 4.5 },
      sizes: [0.5, 0.3],
    });
    expect(record.members[0]).toEqual({
      dir: 'test-0.50',
      size: 0.5,
      params: s.params,
      bytes: s.bytes,
      bitsPerParam: 32,
      perplexity: 5,
      nll: Math.log(5),
      tokens: 1000,
      wallSeconds: 2.5,
      provenance: a.provenance,
    });
    expect(record.members[1]).toMatchObject({ size: 0.3, perplexity: null, tokens: 0, wallSeconds: null });
    const out = join(tempDir('lineage-family-record-'), 'family');
    await writeFamily(out, [a, b], record);
    expect(readdirSync(out).sort()).toEqual(['family.json', 'test-0.30', 'test-0.50']);
    expect(await readFamily(out)).toEqual(record);
    expect((await loadModel(join(out, 'test-0.50'))).model.provenance).toMatchObject({ tokens: 1000 });
    await expect(writeFamily(out, [a, b], record)).rejects.toThrow(/exists/);
    writeFileSync(join(out, 'family.json'), '{"method":"plrd"}');
    await expect(readFamily(out)).rejects.toThrow(/not a family record of schema lineage.family\/1/);
  });
});

describe('readFamily', () => {
  it('refuses a record naming a key twice (JSON.parse would keep the last)', async () => {
    const file = join(tempDir('lineage-family-dup-'), 'family.json');
    writeFileSync(file, `{"schema":"${FAMILY_SCHEMA}","members":[{"dir":"a"}],"members":[]}`);
    await expect(readFamily(file)).rejects.toThrow(`${file}: the key 'members' appears twice`);
  });
});
