import { AttrType, DATA_LOCATION_EXTERNAL, DataType, type DataTypeCode, protoType } from './proto.js';

/**
 * Builds ONNX ModelProtos in process: kernel graphs of the onnxruntime backend and whole exported models.
 * `node` returns its output names, so graphs read as expressions:
 * `const y = g.node('Mul', [g.node('Sigmoid', [x])[0], x])[0]`, or with `g.op` for single outputs.
 */

export const FLOAT = DataType.FLOAT;
export const FLOAT16 = DataType.FLOAT16;
export const UINT8 = DataType.UINT8;
export const INT32 = DataType.INT32;
export const INT64 = DataType.INT64;
export const BOOL = DataType.BOOL;
export type ElemType = DataTypeCode;

/** An attribute value: integer → INT, integer[] → INTS, string → STRING, { f } → FLOAT. */
export type AttrValue = number | readonly number[] | string | { f: number };

/** A dimension: a fixed size or a symbolic name (shared names must agree at run time). */
export type Dim = number | string;

interface ValueInfo {
  name: string;
  type: {
    tensorType: { elemType: number; shape?: { dim: ({ dimValue: number } | { dimParam: string })[] } };
  };
}

interface Initializer {
  name: string;
  dataType: number;
  dims: number[];
  rawData: Uint8Array;
}

function valueInfo(name: string, elem: ElemType, dims?: readonly Dim[]): ValueInfo {
  const tensorType: ValueInfo['type']['tensorType'] = { elemType: elem };
  if (dims) {
    tensorType.shape = {
      dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })),
    };
  }
  return { name, type: { tensorType } };
}

function attribute(name: string, v: AttrValue): Record<string, unknown> {
  if (typeof v === 'string') return { name, type: AttrType.STRING, s: new TextEncoder().encode(v) };
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new TypeError(`attribute ${name}: ${v} is not an integer; use { f }`);
    return { name, type: AttrType.INT, i: v };
  }
  if ('f' in v) return { name, type: AttrType.FLOAT, f: v.f };
  return { name, type: AttrType.INTS, ints: [...v] };
}

const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

export interface SerializeOptions {
  /** Version of the default ('' = ai.onnx) opset. */
  opset: number;
  /** Versions of other domains used (default 1 each, e.g. com.microsoft). */
  opsets?: Record<string, number>;
  /**
   * Keep initializers of at least `minBytes` (default 1024) in a side file named `location` (relative to
   * the model file), as ONNX external data: needed past protobuf's 2 GB limit.
   */
  external?: { location: string; minBytes?: number };
  /** ModelProto IR version (default 10). */
  irVersion?: number;
  /** Graph name (default 'main'). */
  name?: string;
  /** ModelProto metadata_props. */
  metadata?: Record<string, string>;
}

/** A serialised model: the ModelProto bytes and, with external data, the side file's chunks in order. */
export interface SerializedModel {
  model: Uint8Array;
  external?: { location: string; chunks: Uint8Array[]; bytes: number };
}

/** A graph under construction (see the module comment). */
export class GraphBuilder {
  private nodes: Record<string, unknown>[] = [];
  private inputs: ValueInfo[] = [];
  private outputs: ValueInfo[] = [];
  private initializers = new Map<string, Initializer>();
  private count = 0;
  private domains = new Set<string>();
  private memo = new Map<string, string>();
  /**
   * When set, nodes added from now on are named `${scope}/${opType}` + a counter (for a runtime's profiler,
   * e.g. `l3.attention/Softmax1a`); unset (the default), nodes have no names, which keeps files small.
   */
  scope?: string;

  input(name: string, elem: ElemType, dims?: readonly Dim[]): string {
    this.inputs.push(valueInfo(name, elem, dims));
    return name;
  }

  output(name: string, elem: ElemType, dims?: readonly Dim[]): void {
    this.outputs.push(valueInfo(name, elem, dims));
  }

  /** A new value name (base 36 and no node names: on a small model the graph's strings are a tenth of the file). */
  fresh(prefix = 't'): string {
    return `${prefix}${(this.count++).toString(36)}`;
  }

  /** Adds a node; returns its output names (`outputs` of them, or the names given). */
  node(
    opType: string,
    inputs: readonly string[],
    attrs: Record<string, AttrValue> = {},
    outputs: number | readonly string[] = 1,
    domain = '',
  ): string[] {
    const outs =
      typeof outputs === 'number' ? Array.from({ length: outputs }, () => this.fresh()) : [...outputs];
    if (domain) this.domains.add(domain);
    this.nodes.push({
      ...(this.scope === undefined
        ? {}
        : { name: `${this.scope}/${opType}${this.nodes.length.toString(36)}` }),
      opType,
      input: [...inputs],
      output: outs,
      ...(domain ? { domain } : {}),
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return outs;
  }

  /** Single-output node. */
  op(opType: string, inputs: readonly string[], attrs: Record<string, AttrValue> = {}, domain = ''): string {
    return this.node(opType, inputs, attrs, 1, domain)[0]!;
  }

  /** The value `make` builds, built once per `key` (a constant or subgraph several layers use). */
  shared(key: string, make: () => string): string {
    let v = this.memo.get(key);
    if (v === undefined) {
      v = make();
      this.memo.set(key, v);
    }
    return v;
  }

  /** Whether an initializer of this name exists. */
  has(name: string): boolean {
    return this.initializers.has(name);
  }

  /**
   * A named initializer of `dataType` and `dims` from its little-endian bytes (a typed array's contents).
   * Names are unique: a second one of the same name is an error (look it up with `has` to share).
   */
  initializer(name: string, dataType: ElemType, dims: readonly number[], data: ArrayBufferView): string {
    if (this.initializers.has(name)) throw new Error(`initializer '${name}' is defined twice`);
    this.initializers.set(name, { name, dataType, dims: [...dims], rawData: bytesOf(data) });
    return name;
  }

  /** Total bytes of the initializers' data. */
  initializerBytes(): number {
    let n = 0;
    for (const t of this.initializers.values()) n += t.rawData.byteLength;
    return n;
  }

  /** A constant int64 tensor (1-D, or a scalar when `scalar`). */
  int64(values: readonly number[], scalar = false): string {
    return this.shared(`int64 ${scalar} ${values}`, () => {
      const data = BigInt64Array.from(values.map((v) => BigInt(v)));
      return this.initializer(this.fresh('c'), INT64, scalar ? [] : [values.length], data);
    });
  }

  /** A constant float32 scalar. */
  float(value: number): string {
    return this.shared(`float ${Object.is(value, -0) ? '-0' : value}`, () =>
      this.initializer(this.fresh('c'), FLOAT, [], Float32Array.of(value)),
    );
  }

  /** Serialises the model (opset `opset` of the default domain, version 1 of any other domain used). */
  build(opset: number): Uint8Array {
    return this.serialize({ opset, name: 'kernel' }).model;
  }

  /** Serialises the model, optionally with its large initializers as external data. */
  serialize(o: SerializeOptions): SerializedModel {
    const T = protoType('ModelProto');
    const chunks: Uint8Array[] = [];
    let offset = 0;
    const minBytes = o.external?.minBytes ?? 1024;
    const initializer = [...this.initializers.values()].map((t) => {
      if (!o.external || t.rawData.byteLength < minBytes) return t;
      // 64-byte alignment of each tensor in the side file lets runtimes map it directly.
      const pad = (64 - (offset % 64)) % 64;
      if (pad) chunks.push(new Uint8Array(pad));
      offset += pad;
      chunks.push(t.rawData);
      const entry = {
        name: t.name,
        dataType: t.dataType,
        dims: t.dims,
        dataLocation: DATA_LOCATION_EXTERNAL,
        externalData: [
          { key: 'location', value: o.external.location },
          { key: 'offset', value: String(offset) },
          { key: 'length', value: String(t.rawData.byteLength) },
        ],
      };
      offset += t.rawData.byteLength;
      return entry;
    });
    const model = {
      irVersion: o.irVersion ?? 10,
      producerName: 'lineage',
      opsetImport: [
        { domain: '', version: o.opset },
        ...[...this.domains].map((domain) => ({ domain, version: o.opsets?.[domain] ?? 1 })),
      ],
      graph: {
        name: o.name ?? 'main',
        node: this.nodes,
        input: this.inputs,
        output: this.outputs,
        initializer,
      },
      ...(o.metadata
        ? { metadataProps: Object.entries(o.metadata).map(([key, value]) => ({ key, value })) }
        : {}),
    };
    const bytes = T.encode(T.fromObject(model)).finish();
    return {
      model: bytes,
      ...(o.external ? { external: { location: o.external.location, chunks, bytes: offset } } : {}),
    };
  }
}
