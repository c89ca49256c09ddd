import { describe, expect, it } from 'vitest';
import { findDuplicateKey, jsonSyntaxReason } from './json-keys.js';

describe('findDuplicateKey', () => {
  it('finds a key repeated in one object, at any depth, with the path to it', () => {
    expect(findDuplicateKey('{"a":1,"b":2,"a":3}')).toEqual(['a']);
    expect(findDuplicateKey('{"t":{"dtype":"F32","shape":[1],"dtype":"I8"}}')).toEqual(['t', 'dtype']);
    expect(findDuplicateKey('{"x":[{"k":1},{"k":2,"k":3}]}')).toEqual(['x', '[]', 'k']);
  });

  it('treats escaped spellings as the same key, and ignores strings that are values', () => {
    expect(findDuplicateKey('{"w":1,"\\u0077":2}')).toEqual(['w']);
    expect(findDuplicateKey('{"a":"a","b":"a","c":["a","a"]}')).toBeUndefined();
    expect(findDuplicateKey('{"a\\"b":1,"a\\\\":2,"q":"\\\\\\"","a\\"b":3}')).toEqual(['a"b']);
    expect(findDuplicateKey(' { "a" : { "a" : 1 } , "b" : { "a" : 2 } } ')).toBeUndefined();
  });

  it('scans a large tokenizer-like vocabulary quickly', () => {
    const vocab: Record<string, number> = {};
    for (let i = 0; i < 200_000; i++) vocab[i % 100 ? `tok${i}` : `tok${i}\\n`] = i;
    const text = JSON.stringify({ model: { vocab } });
    const t0 = performance.now();
    expect(findDuplicateKey(text)).toBeUndefined();
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(findDuplicateKey(`${text.slice(0, -3)},"tok700\\\\n":1}}}`)).toEqual([
      'model',
      'vocab',
      'tok700\\n',
    ]);
    expect(findDuplicateKey(`${text.slice(0, -3)},"tok7":1}}}`)).toEqual(['model', 'vocab', 'tok7']);
  });
});

describe('jsonSyntaxReason', () => {
  it('names a leading byte-order mark instead of quoting an invisible character', () => {
    const bom = '\ufeff{"a": 1}';
    let err: unknown;
    try {
      JSON.parse(bom);
    } catch (e) {
      err = e;
    }
    expect(jsonSyntaxReason(bom, err)).toMatch(/^starts with a UTF-8 byte-order mark/);
    expect(jsonSyntaxReason('{', new SyntaxError('Unexpected end'))).toBe('Unexpected end');
  });
});
