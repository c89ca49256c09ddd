import { describe, expect, it } from 'vitest';
import {
  asMethodOption,
  decreasingSizes,
  describeOptions,
  isOptionError,
  OptionError,
  optionErrorMessage,
  parseOptions,
  z,
} from './options.js';
import { defineMethod } from './registry.js';

const schema = z.object({
  schedule: z
    .array(z.number().gt(0, 'must be in (0, 1)').lt(1, 'must be in (0, 1)'))
    .min(1, 'is empty')
    .meta({ description: 'decreasing fractions' }),
  recoverTokens: z.number().int().min(0).default(0).meta({ description: 'tokens per step' }),
  teacher: z.enum(['parent', 'previous']).default('parent').meta({ description: 'the teacher' }),
  dataAware: z.boolean().default(false).meta({ description: 'whiten', flag: 'whiten' }),
  label: z.string().optional().meta({ description: 'a label', placeholder: 'text' }),
  gram: z.custom<{ hessian(): void }>().optional().meta({ cli: false }),
});

describe('method options from one schema', () => {
  it('derive flags, types, defaults, choices and requiredness in declaration order', () => {
    expect(describeOptions(schema)).toEqual([
      {
        key: 'schedule',
        name: 'schedule',
        type: 'numbers',
        description: 'decreasing fractions',
        placeholder: 'list',
        required: true,
      },
      {
        key: 'recoverTokens',
        name: 'recover-tokens',
        type: 'integer',
        description: 'tokens per step',
        placeholder: 'value',
        default: 0,
      },
      {
        key: 'teacher',
        name: 'teacher',
        type: 'string',
        description: 'the teacher',
        placeholder: 'value',
        default: 'parent',
        choices: ['parent', 'previous'],
      },
      {
        key: 'dataAware',
        name: 'whiten',
        type: 'boolean',
        description: 'whiten',
        placeholder: 'value',
        default: false,
      },
      { key: 'label', name: 'label', type: 'string', description: 'a label', placeholder: 'text' },
    ]);
  });

  it('validate with defaults filled in, and one-line errors naming the field by key or flag', () => {
    const o = parseOptions(schema, { schedule: [0.5] }, { where: 'm' });
    expect(o).toEqual({ schedule: [0.5], recoverTokens: 0, teacher: 'parent', dataAware: false });
    expect(() => parseOptions(schema, { schedule: [1.5] }, { where: 'm' })).toThrow(
      'm: schedule.0 must be in (0, 1), got 1.5',
    );
    expect(() => parseOptions(schema, { schedule: [] }, { where: 'm', flags: true })).toThrow(
      'm: --schedule is empty, got []',
    );
    expect(() => parseOptions(schema, {}, { where: 'm', flags: true })).toThrow('m: --schedule is required');
    // a list's entry by its place as the user counts it
    expect(() => parseOptions(schema, { schedule: [0.5, 1.5] }, { where: 'm', flags: true })).toThrow(
      'm: --schedule entry 2 must be in (0, 1), got 1.5',
    );
    expect(() =>
      parseOptions(schema, { schedule: [0.5], dataAware: 'yes' }, { where: 'm', flags: true }),
    ).toThrow(/^m: --whiten .*expected boolean.*, got "yes"$/);
  });

  it('decreasingSizes: a non-empty, decreasing list of valid entries (a family’s sizes)', () => {
    const sizes = z.object({ sizes: decreasingSizes(z.number().gt(0, 'must be positive')) });
    expect(parseOptions(sizes, { sizes: [3, 2.5] }, { where: 'c' })).toEqual({ sizes: [3, 2.5] });
    expect(() => parseOptions(sizes, { sizes: [2, 3] }, { where: 'c' })).toThrow(
      'c: sizes must be decreasing, got [2,3]',
    );
    expect(() => parseOptions(sizes, { sizes: [] }, { where: 'c' })).toThrow('c: sizes is empty, got []');
    expect(() => parseOptions(sizes, { sizes: [3, 0] }, { where: 'c', flags: true })).toThrow(
      'c: --sizes entry 2 must be positive, got 0',
    );
  });

  it('a schema the CLI cannot offer says which option to hide', () => {
    expect(() => describeOptions(z.object({ f: z.custom<() => void>() }))).toThrow(/'f'.*cli: false/);
  });

  it('defineMethod types create by the schema', () => {
    const def = defineMethod({
      name: 'x',
      description: 'x',
      package: 'test',
      options: schema,
      create: (o) => {
        const tokens: number = o.recoverTokens;
        return { name: 'x', version: String(tokens), apply: async (m) => m };
      },
    });
    expect(def.create(parseOptions(schema, { schedule: [0.5] }, { where: 'x' })).version).toBe('0');
  });
});

describe('OptionError: an option judged against the model, in one form', () => {
  it("names options by key for library callers and by flag (the schema's) for a CLI", async () => {
    const e = new OptionError('plrd', 'recoverTokens', 5, 'needs {dataAware} or more than {schedule}');
    expect(e.message).toBe('plrd: recoverTokens 5: needs dataAware or more than schedule');
    expect(isOptionError(e)).toBe(true);
    expect(optionErrorMessage(e, schema, { flags: true })).toBe(
      'plrd: --recover-tokens 5: needs --whiten or more than --schedule',
    );
    expect(optionErrorMessage(e, schema, { flags: false, aliases: { schedule: 'sizes' } })).toBe(
      'plrd: recoverTokens 5: needs dataAware or more than sizes',
    );
  });

  it("a library function's error becomes the method's, its option renamed", async () => {
    const lib = async () => {
      throw new OptionError('', 'params', 0.001, 'leaves a layer rank 0 (raise {params})');
    };
    const e = await asMethodOption('plrd', lib, { params: 'schedule' }).catch((x: unknown) => x);
    expect(isOptionError(e)).toBe(true);
    expect(optionErrorMessage(e as OptionError, schema, { flags: true })).toBe(
      'plrd: --schedule 0.001: leaves a layer rank 0 (raise --schedule)',
    );
    // a method's own errors pass through unchanged
    const own = new OptionError('svd', 'rank', 9, 'x');
    await expect(asMethodOption('plrd', async () => Promise.reject(own))).rejects.toBe(own);
  });
});
