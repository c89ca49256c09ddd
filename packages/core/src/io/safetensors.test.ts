import { existsSync, promises as fsp, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DType } from '../tensor/dtype.js';
import { HostTensor, type Shape, sizeOf } from '../tensor/host-tensor.js';
import { LineageError } from '../util/errors.js';
import {
  INDEX_FILE_NAME,
  openSafetensors,
  PACKED_DTYPES_KEY,
  SafetensorsFile,
  ShardedSafetensors,
  writeSafetensors,
  writeShardedSafetensors,
} from './safetensors.js';
import type { TensorSource } from './tensor-source.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lineage-st-'));
});
afterEach(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

/** Asserts a one-line LineageError naming `file` and containing each of `parts`. */
async function expectLineageError(
  p: Promise<unknown>,
  file: string,
  ...parts: string[]
): Promise<LineageError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(LineageError);
  const msg = (err as LineageError).message;
  expect(msg).not.toMatch(/[\n\r]/);
  expect(msg).toContain(basename(file));
  for (const part of parts) expect(msg).toContain(part);
  return err as LineageError;
}

function rand(n: number, seed: number, lo: number, hi: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = lo + ((s >>> 8) % (hi - lo + 1));
  }
  return out;
}

function tensor(dtype: DType, shape: Shape, seed: number): HostTensor {
  const n = sizeOf(shape);
  switch (dtype) {
    case 'f32':
    case 'f16':
    case 'bf16':
      return HostTensor.fromF32(
        rand(n, seed, -1000, 1000).map((v) => v / 37),
        shape,
        dtype,
      );
    case 'i8':
      return HostTensor.fromF32(rand(n, seed, -128, 127), shape, dtype);
    case 'u8':
      return HostTensor.fromF32(rand(n, seed, 0, 255), shape, dtype);
    case 'u16':
      return HostTensor.fromF32(rand(n, seed, 0, 65535), shape, dtype);
    case 'i32':
      return HostTensor.fromF32(rand(n, seed, -100000, 100000), shape, dtype);
    case 'u4':
      return HostTensor.fromF32(rand(n, seed, 0, 15), shape, dtype);
    case 'i3':
      return HostTensor.fromF32(rand(n, seed, -4, 3), shape, dtype);
    default:
      throw new Error(dtype);
  }
}

function expectSame(a: HostTensor, b: HostTensor) {
  expect(a.dtype).toBe(b.dtype);
  expect([...a.shape]).toEqual([...b.shape]);
  expect(Buffer.from(a.bytes()).equals(Buffer.from(b.bytes()))).toBe(true);
}

/** A safetensors file with an arbitrary header (object or raw text) and data section. */
function rawFile(name: string, header: unknown, data: Uint8Array, lengthOverride?: bigint): string {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthOverride ?? BigInt(json.length));
  const p = join(dir, name);
  writeFileSync(p, Buffer.concat([len, json, data]));
  return p;
}

const ALL: [string, DType, Shape][] = [
  ['a.f32', 'f32', [3, 5]],
  ['b.f16', 'f16', [7]],
  ['c.bf16', 'bf16', [2, 3, 4]],
  ['d.i8', 'i8', [9]],
  ['e.u8', 'u8', [3, 3]],
  ['f.i32', 'i32', [4]],
  ['g.u4', 'u4', [5, 3]],
  ['h.i3', 'i3', [11]],
  ['i.scalar', 'f32', []],
  ['j.empty', 'f16', [0, 4]],
  ['k.u16', 'u16', [3, 2]],
];

describe('writeSafetensors / SafetensorsFile', () => {
  it('round-trips every dense dtype, packed u4/i3, scalars, empty tensors and metadata', async () => {
    const tensors = new Map(ALL.map(([n, d, s], i) => [n, tensor(d, s, i + 1)] as const));
    const p = join(dir, 'all.safetensors');
    await writeSafetensors(p, tensors, { note: 'hello', format: 'pt' });
    const f = await SafetensorsFile.open(p);
    try {
      expect(new Set(f.names())).toEqual(new Set(tensors.keys()));
      expect(f.metadata).toEqual({ note: 'hello', format: 'pt' });
      for (const [name, t] of tensors) {
        const info = f.info(name);
        expect(info.dtype).toBe(t.dtype);
        expect([...info.shape]).toEqual([...t.shape]);
        expect(info.byteLength).toBe(t.byteLength);
        expectSame(await f.read(name), t);
      }
    } finally {
      await f.close();
    }
  });

  it('writes the layout the format specifies: u64 length, space-padded JSON, aligned contiguous payloads', async () => {
    const tensors = new Map(ALL.map(([n, d, s], i) => [n, tensor(d, s, i + 1)] as const));
    const p = join(dir, 'layout.safetensors');
    await writeSafetensors(p, tensors);
    const buf = readFileSync(p);
    const n = Number(buf.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const text = buf.subarray(8, 8 + n).toString('utf8');
    expect(text.startsWith('{')).toBe(true);
    expect(text.trimEnd().endsWith('}')).toBe(true);
    expect(/^ *$/.test(text.slice(text.trimEnd().length))).toBe(true);
    const header = JSON.parse(text) as Record<
      string,
      { dtype: string; shape: number[]; data_offsets: [number, number] }
    >;
    expect(Object.keys(header)[0]).toBe('__metadata__');
    const meta = header['__metadata__'] as unknown as Record<string, string>;
    expect(meta['format']).toBe('pt');
    expect(JSON.parse(meta[PACKED_DTYPES_KEY]!)).toEqual({
      'g.u4': { dtype: 'u4', shape: [5, 3] },
      'h.i3': { dtype: 'i3', shape: [11] },
    });
    expect(header['g.u4']).toEqual({ dtype: 'U8', shape: [8], data_offsets: expect.any(Array) });
    const entries = Object.entries(header).filter(([k]) => k !== '__metadata__');
    const size = { F32: 4, I32: 4, F16: 2, BF16: 2, I8: 1, U8: 1, U16: 2 } as Record<string, number>;
    let end = 0;
    for (const [, e] of entries) {
      expect(e.data_offsets[0]).toBe(end); // no holes, in header order
      expect(e.data_offsets[0] % size[e.dtype]!).toBe(0); // each payload aligned to its element size
      end = e.data_offsets[1];
    }
    expect(buf.length).toBe(8 + n + end);
    // Larger element sizes first, then by name (like the reference implementation).
    expect(entries.map(([k]) => k)).toEqual([
      'a.f32',
      'f.i32',
      'i.scalar',
      'b.f16',
      'c.bf16',
      'j.empty',
      'k.u16',
      'd.i8',
      'e.u8',
      'g.u4',
      'h.i3',
    ]);
  });

  it('reads a file laid out by another writer (integer-like names, extra whitespace, no metadata)', async () => {
    const a = Float32Array.of(1.5, -2);
    const b = Int8Array.of(-1, 2, 3);
    const p = rawFile(
      'foreign.safetensors',
      '{ "10": {"dtype":"I8","shape":[3],"data_offsets":[8,11]},\n "x": {"dtype":"F32","shape":[2],"data_offsets":[0,8]} }  ',
      Buffer.concat([Buffer.from(a.buffer), Buffer.from(b.buffer)]),
    );
    const f = await SafetensorsFile.open(p);
    expect(f.names()).toEqual(['x', '10']);
    expect(f.metadata).toEqual({});
    expect([...(await f.read('x')).toF32()]).toEqual([1.5, -2]);
    expect([...(await f.read('10')).toInts()]).toEqual([-1, 2, 3]);
    await expectLineageError(f.read('nope'), p, "no tensor named 'nope'");
    await f.close();
    await expectLineageError(f.read('x'), p, 'closed');
  });

  it('streams from a TensorSource and preserves tensors bit for bit', async () => {
    const src = join(dir, 'src.safetensors');
    const tensors = new Map(ALL.map(([n, d, s], i) => [n, tensor(d, s, i + 7)] as const));
    await writeSafetensors(src, tensors, { k: 'v' });
    const f = await SafetensorsFile.open(src);
    const copy = join(dir, 'copy.safetensors');
    await writeSafetensors(copy, f, { ...f.metadata });
    await f.close();
    expect(readFileSync(copy).equals(readFileSync(src))).toBe(true);
  });

  it('refuses duplicate names and the reserved metadata key', async () => {
    const t = tensor('f32', [2], 1);
    await expect(
      writeSafetensors(join(dir, 'x'), [
        ['a', t],
        ['a', t],
      ]),
    ).rejects.toBeInstanceOf(LineageError);
    await expect(
      writeSafetensors(join(dir, 'x'), [['a', t]], { [PACKED_DTYPES_KEY]: '{}' }),
    ).rejects.toBeInstanceOf(LineageError);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('leaves no file and no temp file when a tensor read fails mid-write', async () => {
    const t = tensor('f32', [1000], 1);
    const failing: TensorSource = {
      path: 'failing-source',
      names: () => ['a', 'b', 'c'],
      info: () => ({ dtype: 'f32', shape: [1000] }),
      read: async (name) => {
        if (name === 'c') throw new Error('disk on fire');
        return t;
      },
      close: async () => {},
    };
    const p = join(dir, 'out.safetensors');
    await expect(writeSafetensors(p, failing)).rejects.toThrow('disk on fire');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('leaves no file when the entries iterator throws', async () => {
    function* entries(): Generator<[string, HostTensor]> {
      yield ['a', tensor('f32', [4], 1)];
      throw new Error('iterator broke');
    }
    await expect(writeSafetensors(join(dir, 'out.safetensors'), entries())).rejects.toThrow('iterator broke');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('refuses a source whose tensor does not match its info', async () => {
    const lying: TensorSource = {
      path: 'lying-source',
      names: () => ['a'],
      info: () => ({ dtype: 'f32', shape: [4] }),
      read: async () => tensor('f32', [5], 1),
      close: async () => {},
    };
    await expectLineageError(
      writeSafetensors(join(dir, 'o.safetensors'), lying),
      'lying-source',
      "'a'",
      'f32[5]',
    );
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe('SafetensorsFile.open validation', () => {
  const f32x2 = new Uint8Array(8);

  it('a header that lies about offsets (past the data section)', async () => {
    const p = rawFile(
      'offsets.safetensors',
      { w: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } },
      f32x2,
    );
    await expectLineageError(
      SafetensorsFile.open(p),
      p,
      "tensor 'w'",
      'data_offsets [4, 12]',
      'data section (8 bytes)',
    );
  });

  it('a header that lies about the dtype (size mismatch)', async () => {
    const p = rawFile(
      'dtype.safetensors',
      { 'model.norm.weight': { dtype: 'F32', shape: [64], data_offsets: [0, 128] } },
      new Uint8Array(128),
    );
    await expectLineageError(
      SafetensorsFile.open(p),
      p,
      "tensor 'model.norm.weight': header says F32[64] = 256 bytes but offsets span 128",
    );
  });

  it('a header that lies about the shape', async () => {
    const p = rawFile('shape.safetensors', { w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, f32x2);
    await expectLineageError(
      SafetensorsFile.open(p),
      p,
      "tensor 'w'",
      'F32[3] = 12 bytes but offsets span 8',
    );
    const q = rawFile(
      'shape2.safetensors',
      { w: { dtype: 'F32', shape: [2, -1], data_offsets: [0, 8] } },
      f32x2,
    );
    await expectLineageError(SafetensorsFile.open(q), q, "tensor 'w'", 'non-negative integers');
    const r = rawFile(
      'shape3.safetensors',
      { w: { dtype: 'F32', shape: [2.5], data_offsets: [0, 8] } },
      f32x2,
    );
    await expectLineageError(SafetensorsFile.open(r), r, "tensor 'w'", 'non-negative integers');
  });

  it('overlapping tensors', async () => {
    const p = rawFile(
      'overlap.safetensors',
      {
        a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
        b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] },
      },
      f32x2,
    );
    await expectLineageError(SafetensorsFile.open(p), p, "'a'", "'b'", 'overlap');
  });

  it('gaps between tensors, bytes after the last one, and a gap before the first (as the reference refuses)', async () => {
    const f32x3 = new Uint8Array(12);
    const gap = rawFile(
      'gap.safetensors',
      {
        a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
        b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] },
      },
      f32x3,
    );
    await expectLineageError(SafetensorsFile.open(gap), gap, "tensor 'b'", 'gap of 4 bytes', "tensor 'a'");
    const tail = rawFile(
      'tail.safetensors',
      { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } },
      f32x3,
    );
    await expectLineageError(SafetensorsFile.open(tail), tail, '4 bytes after the last tensor', "'a'");
    const lead = rawFile(
      'lead.safetensors',
      { a: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } },
      f32x3,
    );
    await expectLineageError(
      SafetensorsFile.open(lead),
      lead,
      "tensor 'a'",
      'gap of 4 bytes after the header',
    );
    const none = rawFile('none.safetensors', {}, new Uint8Array(3));
    await expectLineageError(SafetensorsFile.open(none), none, '3 bytes after the last tensor');
  });

  it('a header listing the same tensor twice, or a field twice (JSON.parse would keep the last)', async () => {
    const entry = (o: number) => `{"dtype":"F32","shape":[1],"data_offsets":[${o},${o + 4}]}`;
    const p = rawFile('dup.safetensors', `{"w":${entry(0)},"w":${entry(4)}}`, f32x2);
    await expectLineageError(SafetensorsFile.open(p), p, "header lists tensor 'w' twice");
    const q = rawFile(
      'dupfield.safetensors',
      '{"w":{"dtype":"F32","dtype":"I32","shape":[2],"data_offsets":[0,8]}}',
      f32x2,
    );
    await expectLineageError(SafetensorsFile.open(q), q, "header entry 'w' has the key 'dtype' twice");
    // Escaped spellings of one name are the same name.
    const r = rawFile('dupesc.safetensors', `{"w":${entry(0)},"\\u0077":${entry(4)}}`, f32x2);
    await expectLineageError(SafetensorsFile.open(r), r, "tensor 'w' twice");
  });

  it('a header length larger than the file', async () => {
    const p = rawFile(
      'len.safetensors',
      { w: { dtype: 'U8', shape: [0], data_offsets: [0, 0] } },
      new Uint8Array(0),
      5000n,
    );
    await expectLineageError(SafetensorsFile.open(p), p, 'header length 5000 exceeds the file size');
  });

  it('an absurd header length, and a file too small for one', async () => {
    const p = rawFile('huge.safetensors', '{}', new Uint8Array(0), 2n ** 60n);
    await expectLineageError(SafetensorsFile.open(p), p, 'absurd');
    const q = join(dir, 'tiny.safetensors');
    writeFileSync(q, Uint8Array.of(1, 2, 3));
    await expectLineageError(SafetensorsFile.open(q), q, 'too small');
  });

  it('invalid JSON, invalid UTF-8 and non-object headers', async () => {
    const p = rawFile('json.safetensors', '{"w": {"dtype": "F32",', new Uint8Array(0));
    await expectLineageError(SafetensorsFile.open(p), p, 'header is not valid JSON');
    const bytes = Buffer.from([0x7b, 0xff, 0xfe, 0x7d]); // "{", invalid bytes, "}"
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(4n);
    const q = join(dir, 'utf8.safetensors');
    writeFileSync(q, Buffer.concat([len, bytes]));
    await expectLineageError(SafetensorsFile.open(q), q, 'UTF-8');
    const r = rawFile('array.safetensors', '[1,2]', new Uint8Array(0));
    await expectLineageError(SafetensorsFile.open(r), r, 'not a JSON object');
  });

  it('unsupported dtypes, bad offsets and bad metadata', async () => {
    const p = rawFile('i64.safetensors', { w: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, f32x2);
    await expectLineageError(SafetensorsFile.open(p), p, "tensor 'w'", "dtype 'I64' is not supported");
    const q = rawFile('offs.safetensors', { w: { dtype: 'U8', shape: [1], data_offsets: [5, 4] } }, f32x2);
    await expectLineageError(SafetensorsFile.open(q), q, "tensor 'w'", 'data_offsets must be [begin, end]');
    const r = rawFile('meta.safetensors', { __metadata__: { n: 3 } }, new Uint8Array(0));
    await expectLineageError(SafetensorsFile.open(r), r, "__metadata__ 'n' must be a string");
    const s = rawFile(
      'packed.safetensors',
      {
        __metadata__: { [PACKED_DTYPES_KEY]: JSON.stringify({ w: { dtype: 'u4', shape: [100] } }) },
        w: { dtype: 'U8', shape: [8], data_offsets: [0, 8] },
      },
      f32x2,
    );
    await expectLineageError(SafetensorsFile.open(s), s, "tensor 'w'", 'u4[100] needs a U8[50] payload');
  });

  it('escapes control characters in names so messages stay one line', async () => {
    const p = rawFile(
      'ctrl.safetensors',
      { 'a\nb': { dtype: 'I64', shape: [1], data_offsets: [0, 8] } },
      f32x2,
    );
    await expectLineageError(SafetensorsFile.open(p), p, "'a\\x0ab'");
  });

  it('a missing file or a directory', async () => {
    const p = join(dir, 'missing.safetensors');
    await expectLineageError(SafetensorsFile.open(p), p, 'no such file or directory');
    await expectLineageError(SafetensorsFile.open(dir), dir, 'not a regular file');
  });
});

describe('sharded safetensors', () => {
  const model = () =>
    new Map<string, HostTensor>([
      ['model.embed_tokens.weight', tensor('f32', [16, 8], 1)],
      ['model.layers.0.w', tensor('bf16', [8, 8], 2)],
      ['model.layers.0.q', tensor('u4', [8, 8], 3)],
      ['model.layers.1.w', tensor('f16', [8, 8], 4)],
      ['model.norm.weight', tensor('f32', [8], 5)],
      ['lm_head.weight', tensor('i8', [16, 8], 6)],
    ]);

  it('writes shards plus an index and reads everything back', async () => {
    const tensors = model();
    const res = await writeShardedSafetensors(dir, tensors, {
      maxShardBytes: 300,
      metadata: { format: 'pt', who: 'me' },
    });
    expect(res.index).toBe(INDEX_FILE_NAME);
    const shardFiles = res.files.filter((f) => f !== INDEX_FILE_NAME);
    expect(shardFiles.length).toBeGreaterThan(1);
    for (const [i, f] of shardFiles.entries()) {
      expect(f).toBe(`model-0000${i + 1}-of-0000${shardFiles.length}.safetensors`);
    }
    expect(readdirSync(dir).sort()).toEqual([...res.files].sort());
    const index = JSON.parse(readFileSync(join(dir, INDEX_FILE_NAME), 'utf8'));
    let total = 0;
    for (const t of tensors.values()) total += t.byteLength;
    expect(index.metadata.total_size).toBe(total);
    expect(Object.keys(index.weight_map).sort()).toEqual([...tensors.keys()].sort());

    const s = await ShardedSafetensors.open(join(dir, INDEX_FILE_NAME));
    expect(s.names().sort()).toEqual([...tensors.keys()].sort());
    expect(s.totalSize).toBe(total);
    expect(s.metadata).toEqual({ format: 'pt', who: 'me' });
    for (const [name, t] of tensors) {
      expect(s.info(name).dtype).toBe(t.dtype);
      expectSame(await s.read(name), t);
    }
    await expectLineageError(s.read('nope'), INDEX_FILE_NAME, "no tensor named 'nope'");
    await s.close();

    const auto = await openSafetensors(dir);
    expect(auto).toBeInstanceOf(ShardedSafetensors);
    await auto.close();
  });

  it('puts a tensor larger than the shard size in a shard of its own', async () => {
    const res = await writeShardedSafetensors(dir, model(), { maxShardBytes: 10 });
    expect(res.files.length).toBe(7);
  });

  it('writes model.safetensors alone when everything fits, and removes stale weight files', async () => {
    await writeShardedSafetensors(dir, model(), { maxShardBytes: 300 });
    writeFileSync(join(dir, 'config.json'), '{}');
    const res = await writeShardedSafetensors(dir, model());
    expect(res).toEqual({ files: ['model.safetensors'] });
    expect(readdirSync(dir).sort()).toEqual(['config.json', 'model.safetensors']);
    const f = await openSafetensors(dir);
    expect(f).toBeInstanceOf(SafetensorsFile);
    await f.close();
  });

  it('removes the shards it wrote when a later shard fails', async () => {
    const tensors = model();
    const src: TensorSource = {
      path: 'src',
      names: () => [...tensors.keys()],
      info: (n) => tensors.get(n)!,
      read: async (n) => {
        if (n === 'lm_head.weight') throw new Error('late failure');
        return tensors.get(n)!;
      },
      close: async () => {},
    };
    await expect(writeShardedSafetensors(dir, src, { maxShardBytes: 300 })).rejects.toThrow('late failure');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('an index naming a missing shard', async () => {
    await writeShardedSafetensors(dir, model(), { maxShardBytes: 300 });
    const index = join(dir, INDEX_FILE_NAME);
    const json = JSON.parse(readFileSync(index, 'utf8'));
    json.weight_map['model.norm.weight'] = 'model-00009-of-00009.safetensors';
    writeFileSync(index, JSON.stringify(json));
    await expectLineageError(
      ShardedSafetensors.open(index),
      index,
      "shard 'model-00009-of-00009.safetensors'",
      'does not exist',
    );
  });

  it('an index naming a tensor its shard lacks', async () => {
    const { files } = await writeShardedSafetensors(dir, model(), { maxShardBytes: 300 });
    expect(files).toEqual([
      'model-00001-of-00003.safetensors',
      'model-00002-of-00003.safetensors',
      'model-00003-of-00003.safetensors',
      INDEX_FILE_NAME,
    ]);
    const index = join(dir, INDEX_FILE_NAME);
    const json = JSON.parse(readFileSync(index, 'utf8'));
    json.weight_map['ghost.weight'] = 'model-00001-of-00003.safetensors';
    writeFileSync(index, JSON.stringify(json));
    expect(existsSync(join(dir, 'model-00001-of-00003.safetensors'))).toBe(true);
    await expectLineageError(
      ShardedSafetensors.open(index),
      index,
      "tensor 'ghost.weight'",
      'does not contain it',
    );
  });

  it('bad index files', async () => {
    const index = join(dir, INDEX_FILE_NAME);
    writeFileSync(index, '{"weight_map": ');
    await expectLineageError(ShardedSafetensors.open(index), index, 'not valid JSON');
    writeFileSync(index, '{"metadata": {}}');
    await expectLineageError(ShardedSafetensors.open(index), index, 'weight_map');
    writeFileSync(index, JSON.stringify({ weight_map: { a: '../etc/passwd' } }));
    await expectLineageError(ShardedSafetensors.open(index), index, 'not a file beside the index');
  });

  it('a shard with a corrupt header names the shard', async () => {
    await writeShardedSafetensors(dir, model(), { maxShardBytes: 300 });
    const shard = join(dir, 'model-00002-of-00003.safetensors');
    writeFileSync(shard, Buffer.from(readFileSync(shard).subarray(0, 20)));
    await expectLineageError(
      ShardedSafetensors.open(join(dir, INDEX_FILE_NAME)),
      shard,
      'exceeds the file size',
    );
  });
});
