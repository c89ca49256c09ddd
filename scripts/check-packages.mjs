// Package-metadata checks publint and attw cannot make (run by `pnpm publint` after them):
// 1. `sideEffects` tells the truth: every built file that registers something at import time (a top-level
//    `registerX(` call: layer kinds, backends, methods, gradients) matches an entry of its package's
//    `sideEffects`, so no bundler drops a registration.
// 2. Peer ranges on other @lineage packages survive `changeset version` on 0.x: `workspace:>=x.y.z <1.0.0`
//    (with onlyUpdatePeerDependentsWhenOutOfRange, a minor of the peer stays in range; `^0.x` would not and
//    would push the dependent to 1.0.0).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = join(import.meta.dirname, '..');
const problems = [];

function files(dir) {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.js') ? [p] : [];
  });
}
const globToRegExp = (g) =>
  new RegExp(
    `^${g
      .replace(/^\.\//, '')
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '[^/]*')}$`,
  );

for (const name of readdirSync(join(root, 'packages'))) {
  const dir = join(root, 'packages', name);
  let pkg;
  try {
    pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  } catch {
    continue;
  }
  const se = pkg.sideEffects;
  const listed = se === false ? [] : Array.isArray(se) ? se.map(globToRegExp) : undefined;
  let dist = [];
  try {
    dist = files(join(dir, 'dist'));
  } catch {
    problems.push(`${pkg.name}: no dist/ (run pnpm build first)`);
  }
  if (listed) {
    for (const f of dist) {
      const rel = relative(dir, f);
      if (!/^register[A-Z]\w*\(/m.test(readFileSync(f, 'utf8'))) continue;
      if (!listed.some((re) => re.test(rel)))
        problems.push(`${pkg.name}: ${rel} registers at import time but is not in "sideEffects"`);
    }
  }
  for (const [dep, range] of Object.entries(pkg.peerDependencies ?? {})) {
    if (!dep.startsWith('@lineage/')) continue;
    if (!/^workspace:>=\d+\.\d+\.\d+ <1\.0\.0$/.test(range))
      problems.push(
        `${pkg.name}: peer ${dep} "${range}" should be "workspace:>=0.x.y <1.0.0" (a 0.x minor of ${dep} must stay in range)`,
      );
  }
}
for (const p of problems) console.error(p);
console.log(`package checks: ${problems.length ? `${problems.length} problem(s)` : 'all good'}`);
process.exit(problems.length ? 1 : 0);
