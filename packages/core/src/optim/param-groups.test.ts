import { describe, expect, it } from 'vitest';
import { randomParam, tinyModel } from '../autograd/testing.js';
import type { Parameter } from '../nn/parameter.js';
import { LineageError } from '../util/errors.js';
import { AdamW } from './adamw.js';
import { namedParameters } from './optimizer.js';
import { globToRegExp, selectParameters } from './param-groups.js';
import { SGD } from './sgd.js';

const bitsOf = (p: Parameter) => [...new Uint32Array(p.value.toF32().slice().buffer)];

describe('parameter selectors', () => {
  const params = namedParameters(tinyModel({ layers: 2, biases: false }));
  const names = (sel: Parameters<typeof selectParameters>[1]) => [...selectParameters(params, sel).keys()];

  it('globs match the whole name or a tail after a dot; RegExps, lists and predicates work', () => {
    expect(names('mlp.*')).toEqual([...params.keys()].filter((n) => n.includes('.mlp.')));
    expect(names('layers.1.mlp.*')).toEqual([
      'model.layers.1.mlp.gate_proj.weight',
      'model.layers.1.mlp.up_proj.weight',
      'model.layers.1.mlp.down_proj.weight',
    ]);
    expect(names('model.norm.weight')).toEqual(['model.norm.weight']);
    expect(names('*norm*')).toHaveLength(5); // 2 × 2 block norms + the final norm
    expect(names(['layers.0.*_proj.weight', /embed/])).toHaveLength(8);
    expect(names((_, p) => p.shape.length === 1)).toHaveLength(5);
    // a tail starts after a dot: 'proj.weight' is not a tail of 'q_proj.weight'
    expect(globToRegExp('proj.weight').test('model.layers.0.self_attn.q_proj.weight')).toBe(false);
    expect(globToRegExp('q_proj.weight').test('model.layers.0.self_attn.q_proj.weight')).toBe(true);
  });

  it('a pattern matching nothing is a one-line error naming it', () => {
    expect(() => selectParameters(params, ['mlp.*', 'mpl.*'], '--train')).toThrow(LineageError);
    expect(() => selectParameters(params, ['mlp.*', 'mpl.*'], '--train')).toThrow(
      /^--train: 'mpl\.\*' matches no parameter \(names look like 'model\.layers\.0\./,
    );
    expect(() => selectParameters(params, () => false)).toThrow(/selects no parameter/);
    expect(() => selectParameters(params, [])).toThrow(/is empty/);
  });
});

describe('per-parameter learning rates and weight decay (parameter groups)', () => {
  const grad = (p: Parameter, seed: number) => randomParam(p.shape, seed).value.toF32().slice();

  it('SGD: updates scale with the group multiplier; a multiplier of 0 leaves the weights bitwise unchanged', () => {
    const a = randomParam([4, 5], 1);
    const b = randomParam([4, 5], 1); // same values as a
    const c = randomParam([3], 2);
    const before = { a: a.value.toF32().slice(), c: bitsOf(c) };
    const scale: Record<string, number> = { a: 1, b: 2.5, c: 0 };
    const opt = new SGD(
      [
        ['a', a],
        ['b', b],
        ['c', c],
      ],
      { lr: 0.1, paramOptions: (name) => ({ lrScale: scale[name]! }) },
    );
    const g = grad(a, 3);
    opt.step(
      new Map([
        [a, g],
        [b, g.slice()],
        [c, grad(c, 4)],
      ]),
    );
    const da = a.value.toF32().map((v, i) => v - before.a[i]!);
    const db = b.value.toF32().map((v, i) => v - before.a[i]!);
    for (let i = 0; i < da.length; i++) {
      expect(da[i]).toBeCloseTo(-0.1 * g[i]!, 6);
      expect(db[i]! / da[i]!).toBeCloseTo(2.5, 4);
    }
    expect(bitsOf(c)).toEqual(before.c);
  });

  it("AdamW: a group's multiplier scales its step, and its weight decay applies to all its parameters", () => {
    const make = () => [randomParam([6, 4], 5), randomParam([6], 6)] as const;
    const [w1, n1] = make();
    const [w2, n2] = make();
    const w0 = w1.value.toF32().slice();
    const n0 = n1.value.toF32().slice();
    const gw = grad(w1, 7);
    const gn = grad(n1, 8);
    new AdamW(
      [
        ['w', w1],
        ['n', n1],
      ],
      { lr: 0.01, weightDecay: 0 },
    ).step(
      new Map([
        [w1, gw],
        [n1, gn],
      ]),
    );
    new AdamW(
      [
        ['w', w2],
        ['n', n2],
      ],
      {
        lr: 0.01,
        weightDecay: 0,
        paramOptions: (name) => (name === 'w' ? { lrScale: 0.5 } : { weightDecay: 0.5 }),
      },
    ).step(
      new Map([
        [w2, gw.slice()],
        [n2, gn.slice()],
      ]),
    );
    const a = w1.value.toF32();
    const b = w2.value.toF32();
    // the first AdamW step is lr·sign-like: half the multiplier, half the step
    for (let i = 0; i < a.length; i++) expect((b[i]! - w0[i]!) / (a[i]! - w0[i]!)).toBeCloseTo(0.5, 4);
    // the 1-D "norm" decays under its group's λ (the default rule exempts 1-D parameters)
    const x = n1.value.toF32();
    const y = n2.value.toF32();
    for (let i = 0; i < x.length; i++) expect(y[i]).toBeCloseTo(x[i]! - 0.01 * 0.5 * n0[i]!, 6);
  });
});
