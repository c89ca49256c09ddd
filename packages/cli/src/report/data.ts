import { existsSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { type FamilyRecord, type Json, LineageError, loadModel, readFamily } from '@lineage/core';

/** One model of a report: a family member, a family's parent, or a model directory given directly. */
export interface ReportPoint {
  /** Its name in the table and the chart (member directory, 'parent', or the path given). */
  label: string;
  /** The method that made it ('parent' for a family's parent, '—' when not recorded). */
  method: string;
  params: number;
  bytes: number;
  bitsPerParam: number;
  /** Held-out perplexity when recorded; null otherwise (never estimated). */
  perplexity: number | null;
  tokens: number | null;
  wallSeconds: number | null;
  provenance: Json | null;
  /** Where it is on disk (for the table), when known. */
  path?: string;
}

/** One family (or the set of model directories given directly): one colour and series in the chart. */
export interface ReportSeries {
  name: string;
  /** What the perplexities were measured on, when recorded. */
  heldOut: string | null;
  parent: ReportPoint | null;
  members: ReportPoint[];
  /** Wall time of the whole run, when recorded. */
  wallSeconds: number | null;
}

function bits(params: number, bytes: number): number {
  return params ? (8 * bytes) / params : 0;
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

const isCount = (v: unknown): v is number => isNum(v) && v >= 0;
const isPpl = (v: unknown) => v === null || v === undefined || (isNum(v) && v > 0);

/** Checks the fields a report reads, so that a malformed family.json fails in one line naming the file. */
function checkRecord(r: FamilyRecord, file: string): void {
  const bad = (what: string) => {
    throw new LineageError(`malformed family record: ${what}`, file);
  };
  if (!r.parent || typeof r.parent !== 'object' || Array.isArray(r.parent)) bad('no parent');
  if (!isCount(r.parent.params) || !isCount(r.parent.bytes))
    bad('parent.params/bytes are not non-negative numbers');
  if (!isPpl(r.parent.perplexity)) bad('parent.perplexity is not a positive number or null');
  if (r.heldOut !== null && r.heldOut !== undefined && typeof r.heldOut !== 'string')
    bad('heldOut is not text or null');
  if (
    r.method !== null &&
    r.method !== undefined &&
    (typeof r.method !== 'object' || Array.isArray(r.method))
  )
    bad('method is not an object');
  if (!Array.isArray(r.members)) bad('members is not a list');
  r.members.forEach((m, i) => {
    if (!m || typeof m !== 'object' || Array.isArray(m)) bad(`members[${i}] is not an object`);
    if (!isCount(m.params) || !isCount(m.bytes))
      bad(`members[${i}].params/bytes are not non-negative numbers`);
    if (typeof m.dir !== 'string' || !m.dir.trim()) bad(`members[${i}].dir is not a directory name`);
    // a name beside family.json, as lineage family writes it: never a path out of the family's directory
    if (/[/\\]/.test(m.dir) || m.dir === '.' || m.dir === '..')
      bad(`members[${i}].dir ${JSON.stringify(m.dir)} is a path, not a directory name beside family.json`);
    if (r.members.findIndex((x) => x?.dir === m.dir) !== i)
      bad(`members[${i}].dir ${JSON.stringify(m.dir)} is listed twice`);
    const at = join(dirname(file), m.dir);
    if (!existsSync(at) || !statSync(at).isDirectory())
      bad(`members[${i}].dir ${JSON.stringify(m.dir)}: no such directory beside family.json`);
    if (!isPpl(m.perplexity)) bad(`members[${i}].perplexity is not a positive number or null`);
  });
}

/** The method's name a record gives, when it gives one as text. */
function methodName(r: FamilyRecord): string | undefined {
  const name = (r.method as { name?: unknown } | null | undefined)?.name;
  return typeof name === 'string' ? name : undefined;
}

/** A family as a report series, from its family.json (the file or its directory). */
export async function familySeries(path: string): Promise<ReportSeries> {
  const file = path.endsWith('.json') ? path : join(path, 'family.json');
  const r = await readFamily(file);
  checkRecord(r, file);
  return recordSeries(r, `${methodName(r) ?? 'family'} (${basename(dirname(resolve(file)))})`, dirname(file));
}

/** A family record as a report series named `name`; member paths relative to `dir` when given. */
export function recordSeries(r: FamilyRecord, name: string, dir: string | null): ReportSeries {
  const p = r.parent;
  return {
    name,
    heldOut: r.heldOut ?? null,
    parent: {
      label: 'parent',
      method: 'parent',
      params: p.params,
      bytes: p.bytes,
      bitsPerParam: isNum(p.bitsPerParam) ? p.bitsPerParam : bits(p.params, p.bytes),
      perplexity: isNum(p.perplexity) ? p.perplexity : null,
      tokens: 0,
      wallSeconds: null,
      provenance: null,
      path: p.path,
    },
    members: r.members.map((m) => {
      const prov = m.provenance as Record<string, Json> | null;
      return {
        label: m.dir,
        method: typeof prov?.method === 'string' ? prov.method : (methodName(r) ?? '—'),
        params: m.params,
        bytes: m.bytes,
        bitsPerParam: isNum(m.bitsPerParam) ? m.bitsPerParam : bits(m.params, m.bytes),
        perplexity: isNum(m.perplexity) ? m.perplexity : null,
        tokens: isNum(m.tokens) ? m.tokens : null,
        wallSeconds: isNum(m.wallSeconds) ? m.wallSeconds : null,
        provenance: m.provenance ?? null,
        ...(dir ? { path: join(dir, m.dir) } : {}),
      };
    }),
    wallSeconds: isNum(r.wallSeconds) ? r.wallSeconds : null,
  };
}

/**
 * A model directory (or file) given directly, read as `lineage inspect` reads it (loadModel, then its stats
 * and provenance). Its perplexity is the one its provenance records, if any; none is measured here.
 */
export async function modelPoint(path: string): Promise<ReportPoint> {
  const { model } = await loadModel(path, { tokenizerOptional: true });
  const s = model.stats();
  const prov = (model.provenance ?? null) as Record<string, Json> | null;
  const ppl = prov?.perplexity;
  return {
    label: path,
    method: typeof prov?.method === 'string' ? prov.method : '—',
    params: s.params,
    bytes: s.bytes,
    bitsPerParam: bits(s.params, s.bytes),
    perplexity: isNum(ppl) ? ppl : null,
    tokens: isNum(prov?.tokens) ? prov.tokens : null,
    wallSeconds: isNum(prov?.wallSeconds) ? prov.wallSeconds : null,
    provenance: prov,
    path,
  };
}

/** Whether a report input is a family (family.json, or a directory holding one) rather than a model. */
export function isFamilyInput(path: string): boolean {
  if (path.endsWith('family.json')) return true;
  return existsSync(path) && statSync(path).isDirectory() && existsSync(join(path, 'family.json'));
}

/** The series of a report's inputs: one per family, and one for all model directories given directly. */
export async function reportSeries(inputs: readonly string[]): Promise<ReportSeries[]> {
  const series: ReportSeries[] = [];
  const models: ReportPoint[] = [];
  for (const input of inputs) {
    if (!existsSync(input)) throw new LineageError('no such file or directory', input);
    if (isFamilyInput(input)) series.push(await familySeries(input));
    else models.push(await modelPoint(input));
  }
  if (models.length)
    series.push({ name: 'models', heldOut: null, parent: null, members: models, wallSeconds: null });
  return series;
}
