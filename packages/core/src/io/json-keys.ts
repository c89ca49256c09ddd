/**
 * The first key that appears twice in one object of a JSON text, with the keys of the objects around it
 * (`['model.norm.weight', 'dtype']`), or undefined. JSON.parse keeps the last of duplicate keys silently;
 * a file whose header names a tensor twice is ambiguous and must be refused, not read either way.
 * Call only on text JSON.parse accepted: this scanner tracks strings and nesting, not full syntax.
 */
export function findDuplicateKey(text: string): string[] | undefined {
  // One frame per open object or array: the keys seen (objects only) and the key being read's value.
  const stack: { keys?: Set<string>; key?: string }[] = [];
  let expectKey = false;
  let i = 0;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === 34 /* " */) {
      // the closing quote: the next one not escaped by an odd run of backslashes (indexOf keeps big files fast)
      let j = text.indexOf('"', i + 1);
      for (;;) {
        let b = 0;
        while (text.charCodeAt(j - 1 - b) === 92) b++;
        if (b % 2 === 0) break;
        j = text.indexOf('"', j + 1);
      }
      const top = stack[stack.length - 1];
      if (expectKey && top?.keys) {
        // only escaped keys need decoding (so "\u0077" and "w" are one key)
        const raw = text.slice(i + 1, j);
        const key = raw.includes('\\') ? (JSON.parse(`"${raw}"`) as string) : raw;
        if (top.keys.has(key)) return [...stack.slice(0, -1).map((f) => f.key ?? '[]'), key];
        top.keys.add(key);
        top.key = key;
        expectKey = false;
      }
      i = j + 1;
      continue;
    }
    if (c === 123 /* { */) {
      stack.push({ keys: new Set() });
      expectKey = true;
    } else if (c === 91 /* [ */) {
      stack.push({});
      expectKey = false;
    } else if (c === 125 /* } */ || c === 93 /* ] */) {
      stack.pop();
      expectKey = false;
    } else if (c === 44 /* , */) expectKey = !!stack[stack.length - 1]?.keys;
    i++;
  }
  return undefined;
}

/**
 * Why JSON.parse refused `text`, in words: a leading byte-order mark (which JSON forbids, and transformers'
 * and tokenizers' readers refuse too) is named instead of being quoted as an invisible character.
 */
export function jsonSyntaxReason(text: string, err: unknown): string {
  if (text.charCodeAt(0) === 0xfeff)
    return 'starts with a UTF-8 byte-order mark, which JSON does not allow (save it without one)';
  return (err as Error).message;
}
