import { describe, expect, it } from 'vitest';
import { splitDocuments } from './documents.js';

describe('splitDocuments', () => {
  it('splits on separator lines, trims, drops empties', () => {
    const text = 'one\ntwo\n<|endoftext|>\n  three \n<|endoftext|>\n\n<|endoftext|>\n';
    expect(splitDocuments(text, '<|endoftext|>')).toEqual(['one\ntwo', 'three']);
  });
  it('falls back to inline separators', () => {
    expect(splitDocuments('a<s>b<s> c ', '<s>')).toEqual(['a', 'b', 'c']);
  });
  it('handles CRLF', () => {
    expect(splitDocuments('a\r\n---\r\nb', '---')).toEqual(['a', 'b']);
  });
});
