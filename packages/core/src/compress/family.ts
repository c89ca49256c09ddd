import type { LlamaModel } from '../nn/llama.js';
import { allowNonfiniteDefault } from '../tensor/finite.js';
import { assertModelFinite, type CompressionMethod, checkNeeds, type MethodContext } from './method.js';

/**
 * A method that yields a family member by member at given sizes: `plrd` (progressive: each member made
 * from the previous one), `svd` (independent: each from the parent), later Minitron and CALDERA. Its
 * `apply` builds the whole family; a host (the `lineage family` command) calls `buildFamily` itself to save
 * each member as it comes and to skip members finished before an interruption.
 */
export interface FamilyMethod extends CompressionMethod<LlamaModel[]> {
  /** One member per size, largest first, in the method's unit (e.g. fractions of the parameters). */
  readonly sizes: readonly number[];
  /** 'progressive': member i is made from member i−1 (the parent for i = 0); 'independent': from the parent. */
  readonly derivation: 'progressive' | 'independent';
  /** Makes member `index` from `source` (see `derivation`); `parent` is the family's root. */
  member(source: LlamaModel, index: number, ctx: MethodContext, parent: LlamaModel): Promise<LlamaModel>;
}

export interface BuildFamilyHooks {
  /** A member finished earlier (e.g. read back from a run directory): used as it is, never recomputed. */
  finished?(index: number): Promise<LlamaModel | undefined>;
  /** The context of one member's work (e.g. with its own recovery checkpoints); default: the family's. */
  context?(index: number): MethodContext;
  /** Sees each new member as soon as it is made (e.g. to save it before the next one starts). */
  onMember?(index: number, member: LlamaModel): Promise<void>;
}

/** Builds a family member by member after checking the method's needs; returns it largest first. */
export async function buildFamily(
  method: FamilyMethod,
  parent: LlamaModel,
  ctx: MethodContext,
  hooks: BuildFamilyHooks = {},
): Promise<LlamaModel[]> {
  checkNeeds(method, ctx);
  const family: LlamaModel[] = [];
  for (let i = 0; i < method.sizes.length; i++) {
    const done = await hooks.finished?.(i);
    if (done) {
      family.push(done);
      continue;
    }
    const source = method.derivation === 'progressive' && i > 0 ? family[i - 1]! : parent;
    const member = await method.member(source, i, hooks.context?.(i) ?? ctx, parent);
    // checked before the host sees (and saves) it
    if (!(ctx.allowNonfinite ?? allowNonfiniteDefault()))
      assertModelFinite(member, `method '${method.name}' (member ${i + 1})`);
    await hooks.onMember?.(i, member);
    family.push(member);
  }
  return family;
}

/** A FamilyMethod from its parts; its `apply` is `buildFamily` without hooks. */
export function familyMethod(spec: Omit<FamilyMethod, 'apply'>): FamilyMethod {
  const method: FamilyMethod = {
    ...spec,
    apply: (parent, ctx) => buildFamily(method, parent, ctx),
  };
  return method;
}

/** Whether a method yields members one by one (a FamilyMethod). */
export function isFamilyMethod(m: CompressionMethod): m is FamilyMethod {
  const f = m as Partial<FamilyMethod>;
  return Array.isArray(f.sizes) && typeof f.member === 'function';
}
