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
    const c = text[i]!;
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const top = stack[stack.length - 1];
      if (expectKey && top?.keys) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        if (top.keys.has(key)) return [...stack.slice(0, -1).map((f) => f.key ?? '[]'), key];
        top.keys.add(key);
        top.key = key;
        expectKey = false;
      }
      i = j + 1;
      continue;
    }
    if (c === '{') {
      stack.push({ keys: new Set() });
      expectKey = true;
    } else if (c === '[') {
      stack.push({});
      expectKey = false;
    } else if (c === '}' || c === ']') {
      stack.pop();
      expectKey = false;
    } else if (c === ',') expectKey = !!stack[stack.length - 1]?.keys;
    i++;
  }
  return undefined;
}
