import protobuf from 'protobufjs/light.js';

/**
 * Builds ONNX ModelProtos in process. The schema is the subset of onnx.proto (onnx/onnx, IR version 10)
 * that kernel graphs need, with the same field numbers, encoded by protobufjs (reflection, no codegen).
 */

// ONNX TensorProto.DataType values.
export const FLOAT = 1;
export const INT32 = 6;
export const INT64 = 7;
export const BOOL = 9;
export type ElemType = typeof FLOAT | typeof INT32 | typeof INT64 | typeof BOOL;

// AttributeProto.AttributeType values.
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_STRING = 3;
const ATTR_INTS = 7;

const schema = {
  nested: {
    onnx: {
      nested: {
        AttributeProto: {
          fields: {
            name: { type: 'string', id: 1 },
            f: { type: 'float', id: 2 },
            i: { type: 'int64', id: 3 },
            s: { type: 'bytes', id: 4 },
            t: { type: 'TensorProto', id: 5 },
            floats: { rule: 'repeated', type: 'float', id: 7 },
            ints: { rule: 'repeated', type: 'int64', id: 8 },
            type: { type: 'int32', id: 20 },
          },
        },
        ValueInfoProto: {
          fields: { name: { type: 'string', id: 1 }, type: { type: 'TypeProto', id: 2 } },
        },
        NodeProto: {
          fields: {
            input: { rule: 'repeated', type: 'string', id: 1 },
            output: { rule: 'repeated', type: 'string', id: 2 },
            name: { type: 'string', id: 3 },
            opType: { type: 'string', id: 4 },
            attribute: { rule: 'repeated', type: 'AttributeProto', id: 5 },
            domain: { type: 'string', id: 7 },
          },
        },
        ModelProto: {
          fields: {
            irVersion: { type: 'int64', id: 1 },
            producerName: { type: 'string', id: 2 },
            producerVersion: { type: 'string', id: 3 },
            graph: { type: 'GraphProto', id: 7 },
            opsetImport: { rule: 'repeated', type: 'OperatorSetIdProto', id: 8 },
          },
        },
        GraphProto: {
          fields: {
            node: { rule: 'repeated', type: 'NodeProto', id: 1 },
            name: { type: 'string', id: 2 },
            initializer: { rule: 'repeated', type: 'TensorProto', id: 5 },
            input: { rule: 'repeated', type: 'ValueInfoProto', id: 11 },
            output: { rule: 'repeated', type: 'ValueInfoProto', id: 12 },
          },
        },
        TensorProto: {
          fields: {
            dims: { rule: 'repeated', type: 'int64', id: 1 },
            dataType: { type: 'int32', id: 2 },
            name: { type: 'string', id: 8 },
            rawData: { type: 'bytes', id: 9 },
          },
        },
        TensorShapeProto: {
          fields: { dim: { rule: 'repeated', type: 'Dimension', id: 1 } },
          nested: {
            Dimension: {
              oneofs: { value: { oneof: ['dimValue', 'dimParam'] } },
              fields: { dimValue: { type: 'int64', id: 1 }, dimParam: { type: 'string', id: 2 } },
            },
          },
        },
        TypeProto: {
          fields: { tensorType: { type: 'Tensor', id: 1 } },
          nested: {
            Tensor: {
              fields: {
                elemType: { type: 'int32', id: 1 },
                shape: { type: 'TensorShapeProto', id: 2 },
              },
            },
          },
        },
        OperatorSetIdProto: {
          fields: { domain: { type: 'string', id: 1 }, version: { type: 'int64', id: 2 } },
        },
      },
    },
  },
};

let modelType: protobuf.Type | undefined;
function ModelProto(): protobuf.Type {
  modelType ??= protobuf.Root.fromJSON(schema).lookupType('onnx.ModelProto');
  return modelType;
}

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
  if (typeof v === 'string') return { name, type: ATTR_STRING, s: new TextEncoder().encode(v) };
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new TypeError(`attribute ${name}: ${v} is not an integer; use { f }`);
    return { name, type: ATTR_INT, i: v };
  }
  if ('f' in v) return { name, type: ATTR_FLOAT, f: v.f };
  return { name, type: ATTR_INTS, ints: [...v] };
}

/**
 * A small graph under construction. `node` returns its output names, so graphs read as expressions:
 * `const y = g.node('Mul', [g.node('Sigmoid', [x])[0], x])[0]`, or with `g.op` for single outputs.
 */
export class GraphBuilder {
  private nodes: Record<string, unknown>[] = [];
  private inputs: ValueInfo[] = [];
  private outputs: ValueInfo[] = [];
  private initializers: Record<string, unknown>[] = [];
  private count = 0;
  private domains = new Set<string>();

  input(name: string, elem: ElemType, dims?: readonly Dim[]): string {
    this.inputs.push(valueInfo(name, elem, dims));
    return name;
  }

  output(name: string, elem: ElemType, dims?: readonly Dim[]): void {
    this.outputs.push(valueInfo(name, elem, dims));
  }

  fresh(prefix = 't'): string {
    return `${prefix}${this.count++}`;
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
      opType,
      input: [...inputs],
      output: outs,
      name: this.fresh(opType),
      domain,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return outs;
  }

  /** Single-output node. */
  op(opType: string, inputs: readonly string[], attrs: Record<string, AttrValue> = {}, domain = ''): string {
    return this.node(opType, inputs, attrs, 1, domain)[0]!;
  }

  /** A constant int64 tensor (1-D, or a scalar when `scalar`). */
  int64(values: readonly number[], scalar = false): string {
    const name = this.fresh('c');
    const data = BigInt64Array.from(values.map((v) => BigInt(v)));
    this.initializers.push({
      name,
      dataType: INT64,
      dims: scalar ? [] : [values.length],
      rawData: new Uint8Array(data.buffer),
    });
    return name;
  }

  /** A constant float32 scalar. */
  float(value: number): string {
    const name = this.fresh('c');
    this.initializers.push({
      name,
      dataType: FLOAT,
      dims: [],
      rawData: new Uint8Array(Float32Array.of(value).buffer),
    });
    return name;
  }

  /** Serialises the model (opset `opset` of the default domain, version 1 of any other domain used). */
  build(opset: number): Uint8Array {
    const T = ModelProto();
    const model = {
      irVersion: 10,
      producerName: 'lineage',
      opsetImport: [
        { domain: '', version: opset },
        ...[...this.domains].map((domain) => ({ domain, version: 1 })),
      ],
      graph: {
        name: 'kernel',
        node: this.nodes,
        input: this.inputs,
        output: this.outputs,
        initializer: this.initializers,
      },
    };
    return T.encode(T.fromObject(model)).finish();
  }
}
