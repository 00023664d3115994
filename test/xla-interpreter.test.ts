/**
 * The StableHLO reference interpreter (src/stablehlo/) on hand-written modules with hand-computed
 * results, independent of peftc's lowering: the spec's own examples (gather, reduce, reduce_window,
 * convolution, dot_general, broadcast_in_dim), element-type semantics (bf16/f16 rounding, i4
 * wrap-around, float-to-int truncation, bf16 products accumulated in f32), literal forms, and the
 * well-formedness checker's refusals (use before definition, double definition, result types the
 * spec's rules do not give, ill-formed attributes).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { WellFormednessError } from '../src/stablehlo/check.js';
import { Program } from '../src/stablehlo/evaluate.js';
import { parseModule, ParseError } from '../src/stablehlo/parser.js';
import { allocate, roundBf16, roundF16, type ElementType, type HloTensor } from '../src/stablehlo/types.js';

const ROOT = resolve(import.meta.dirname, '..');

function tensor(shape: number[], element: ElementType, values: number[]): HloTensor {
  const data = allocate({ shape, element });
  values.forEach((v, i) => (data[i] = v));
  return { type: { shape, element }, data };
}

function run(text: string, args: HloTensor[] = []): number[][] {
  return Program.fromModule(parseModule(text)).run('main', args).map((t) => Array.from(t.data));
}

function problems(text: string): string[] {
  try {
    Program.fromModule(parseModule(text));
  } catch (err) {
    if (err instanceof WellFormednessError) return err.problems;
    throw err;
  }
  return [];
}

describe('stablehlo interpreter: the spec examples', () => {
  it('broadcast_in_dim [[1, 2, 3]] with dims [2, 1] to 2x3x2', () => {
    const [r] = run(`func.func @main() -> tensor<2x3x2xi32> {
      %operand = "stablehlo.constant"() {value = dense<[[1, 2, 3]]> : tensor<1x3xi32>} : () -> tensor<1x3xi32>
      %result = "stablehlo.broadcast_in_dim"(%operand) {broadcast_dimensions = array<i64: 2, 1>} : (tensor<1x3xi32>) -> tensor<2x3x2xi32>
      func.return %result : tensor<2x3x2xi32>
    }`);
    expect(r).toEqual([1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3]);
  });

  it('dot_general with a batch dimension (identity right-hand side)', () => {
    const [r] = run(
      `func.func @main(%lhs: tensor<2x2x2xi64>, %rhs: tensor<2x2x2xi64>) -> tensor<2x2x2xi64> {
        %result = "stablehlo.dot_general"(%lhs, %rhs) {
          dot_dimension_numbers = #stablehlo.dot<lhs_batching_dimensions = [0], rhs_batching_dimensions = [0], lhs_contracting_dimensions = [2], rhs_contracting_dimensions = [1]>,
          precision_config = [#stablehlo<precision DEFAULT>, #stablehlo<precision DEFAULT>]
        } : (tensor<2x2x2xi64>, tensor<2x2x2xi64>) -> tensor<2x2x2xi64>
        return %result : tensor<2x2x2xi64>
      }`,
      [tensor([2, 2, 2], 'i64', [1, 2, 3, 4, 5, 6, 7, 8]), tensor([2, 2, 2], 'i64', [1, 0, 0, 1, 1, 0, 0, 1])],
    );
    expect(r).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('dot_general: matmul, free dims ordered lhs then rhs; contracting lhs dim 0 (a transpose)', () => {
    // A = [[1, 2, 3], [4, 5, 6]] (2x3), B = [[1, 0], [0, 1], [1, 1]] (3x2): A B = [[4, 5], [10, 11]].
    const A = tensor([2, 3], 'f32', [1, 2, 3, 4, 5, 6]);
    const B = tensor([3, 2], 'f32', [1, 0, 0, 1, 1, 1]);
    const [ab] = run(
      `func.func @main(%a: tensor<2x3xf32>, %b: tensor<3x2xf32>) -> tensor<2x2xf32> {
        %0 = "stablehlo.dot_general"(%a, %b) {dot_dimension_numbers = #stablehlo.dot<lhs_contracting_dimensions = [1], rhs_contracting_dimensions = [0]>} : (tensor<2x3xf32>, tensor<3x2xf32>) -> tensor<2x2xf32>
        return %0 : tensor<2x2xf32>
      }`,
      [A, B],
    );
    expect(ab).toEqual([4, 5, 10, 11]);
    // A^T contracted with itself on dim 0: A^T A = [[17, 22, 27], [22, 29, 36], [27, 36, 45]].
    const [ata] = run(
      `func.func @main(%a: tensor<2x3xf32>) -> tensor<3x3xf32> {
        %0 = "stablehlo.dot_general"(%a, %a) {dot_dimension_numbers = #stablehlo.dot<lhs_contracting_dimensions = [0], rhs_contracting_dimensions = [0]>} : (tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<3x3xf32>
        return %0 : tensor<3x3xf32>
      }`,
      [A],
    );
    expect(ata).toEqual([17, 22, 27, 22, 29, 36, 27, 36, 45]);
  });

  it('reduce add over dimension 1: [[0, 1, 2, 3, 4, 5]] -> [15]', () => {
    const [r] = run(`func.func @main() -> tensor<1xi64> {
      %input = "stablehlo.constant"() {value = dense<[[0, 1, 2, 3, 4, 5]]> : tensor<1x6xi64>} : () -> tensor<1x6xi64>
      %init_value = "stablehlo.constant"() {value = dense<0> : tensor<i64>} : () -> tensor<i64>
      %result = "stablehlo.reduce"(%input, %init_value) ({
        ^bb0(%arg0: tensor<i64>, %arg1: tensor<i64>):
          %0 = "stablehlo.add"(%arg0, %arg1) : (tensor<i64>, tensor<i64>) -> tensor<i64>
          "stablehlo.return"(%0) : (tensor<i64>) -> ()
      }) {dimensions = array<i64: 1>} : (tensor<1x6xi64>, tensor<i64>) -> tensor<1xi64>
      func.return %result : tensor<1xi64>
    }`);
    expect(r).toEqual([15]);
  });

  it('reduce with a body of two ops (evaluated op by op): sum of squares plus the accumulator', () => {
    const [r] = run(
      `func.func @main(%x: tensor<2x3xf32>) -> tensor<2xf32> {
        %init = "stablehlo.constant"() {value = dense<0.0> : tensor<f32>} : () -> tensor<f32>
        %0 = "stablehlo.reduce"(%x, %init) ({
          ^bb0(%acc: tensor<f32>, %v: tensor<f32>):
            %sq = "stablehlo.multiply"(%v, %v) : (tensor<f32>, tensor<f32>) -> tensor<f32>
            %s = "stablehlo.add"(%acc, %sq) : (tensor<f32>, tensor<f32>) -> tensor<f32>
            "stablehlo.return"(%s) : (tensor<f32>) -> ()
        }) {dimensions = array<i64: 1>} : (tensor<2x3xf32>, tensor<f32>) -> tensor<2xf32>
        return %0 : tensor<2xf32>
      }`,
      [tensor([2, 3], 'f32', [1, 2, 3, -1, 0, 4])],
    );
    expect(r).toEqual([14, 17]);
  });

  it('reduce_window with strides, base and window dilations and padding: [[0, 0], [3, 4]]', () => {
    const [r] = run(`func.func @main() -> tensor<2x2xi64> {
      %input = "stablehlo.constant"() {value = dense<[[1, 2], [3, 4], [5, 6]]> : tensor<3x2xi64>} : () -> tensor<3x2xi64>
      %init_value = "stablehlo.constant"() {value = dense<0> : tensor<i64>} : () -> tensor<i64>
      %result = "stablehlo.reduce_window"(%input, %init_value) ({
        ^bb0(%arg0: tensor<i64>, %arg1: tensor<i64>):
          %0 = "stablehlo.add"(%arg0, %arg1) : (tensor<i64>, tensor<i64>) -> tensor<i64>
          "stablehlo.return"(%0) : (tensor<i64>) -> ()
      }) {
        window_dimensions = array<i64: 2, 1>,
        window_strides = array<i64: 4, 1>,
        base_dilations = array<i64: 2, 1>,
        window_dilations = array<i64: 3, 1>,
        padding = dense<[[2, 1], [0, 0]]> : tensor<2x2xi64>
      } : (tensor<3x2xi64>, tensor<i64>) -> tensor<2x2xi64>
      func.return %result : tensor<2x2xi64>
    }`);
    expect(r).toEqual([0, 0, 3, 4]);
  });

  it('reduce_window max pooling 2x2 stride 2 with -inf init (hex float literal)', () => {
    const [r] = run(
      `func.func @main(%x: tensor<1x1x2x4xf32>) -> tensor<1x1x1x2xf32> {
        %init = "stablehlo.constant"() {value = dense<0xFF800000> : tensor<f32>} : () -> tensor<f32>
        %0 = "stablehlo.reduce_window"(%x, %init) ({
          ^bb0(%a: tensor<f32>, %b: tensor<f32>):
            %m = "stablehlo.maximum"(%a, %b) : (tensor<f32>, tensor<f32>) -> tensor<f32>
            "stablehlo.return"(%m) : (tensor<f32>) -> ()
        }) {window_dimensions = array<i64: 1, 1, 2, 2>, window_strides = array<i64: 1, 1, 2, 2>} : (tensor<1x1x2x4xf32>, tensor<f32>) -> tensor<1x1x1x2xf32>
        return %0 : tensor<1x1x1x2xf32>
      }`,
      [tensor([1, 1, 2, 4], 'f32', [1, -5, 2, 8, 3, 0, -1, -2])],
    );
    expect(r).toEqual([3, 8]);
  });

  it('gather with batching dims: the spec example', () => {
    const operand = tensor([2, 3, 4, 2], 'i32', Array.from({ length: 48 }, (_, i) => i + 1));
    const indices = tensor([2, 2, 3, 2], 'i64', [0, 0, 1, 0, 2, 1, 0, 1, 1, 1, 0, 9, 0, 0, 2, 1, 2, 2, 1, 2, 0, 1, 1, 0]);
    const [r] = run(
      `func.func @main(%operand: tensor<2x3x4x2xi32>, %start_indices: tensor<2x2x3x2xi64>) -> tensor<2x2x3x2x2xi32> {
        %result = "stablehlo.gather"(%operand, %start_indices) {
          dimension_numbers = #stablehlo.gather<
            offset_dims = [3, 4],
            collapsed_slice_dims = [1],
            operand_batching_dims = [0],
            start_indices_batching_dims = [1],
            start_index_map = [2, 1],
            index_vector_dim = 3>,
          slice_sizes = array<i64: 1, 1, 2, 2>,
          indices_are_sorted = false
        } : (tensor<2x3x4x2xi32>, tensor<2x2x3x2xi64>) -> tensor<2x2x3x2x2xi32>
        return %result : tensor<2x2x3x2x2xi32>
      }`,
      [operand, indices],
    );
    // The spec's stated result, row by row (the out-of-range start [0, 9] is clamped to [0, 2]).
    expect(r).toEqual([
      1, 2, 3, 4, 3, 4, 5, 6, 13, 14, 15, 16, 33, 34, 35, 36, 35, 36, 37, 38, 41, 42, 43, 44,
      1, 2, 3, 4, 13, 14, 15, 16, 21, 22, 23, 24, 43, 44, 45, 46, 33, 34, 35, 36, 27, 28, 29, 30,
    ]);
  });

  it('gather as an embedding lookup: rows of a table by token id', () => {
    const [r] = run(
      `func.func @main(%table: tensor<4x2xf32>, %ids: tensor<1x3xi64>) -> tensor<1x3x2xf32> {
        %0 = "stablehlo.gather"(%table, %ids) {dimension_numbers = #stablehlo.gather<offset_dims = [2], collapsed_slice_dims = [0], start_index_map = [0], index_vector_dim = 2>, slice_sizes = array<i64: 1, 2>, indices_are_sorted = false} : (tensor<4x2xf32>, tensor<1x3xi64>) -> tensor<1x3x2xf32>
        return %0 : tensor<1x3x2xf32>
      }`,
      [tensor([4, 2], 'f32', [0, 1, 10, 11, 20, 21, 30, 31]), tensor([1, 3], 'i64', [3, 0, 2])],
    );
    expect(r).toEqual([30, 31, 0, 1, 20, 21]);
  });

  it('convolution with lhs dilation and stride 4: the spec example', () => {
    const [r] = run(`func.func @main() -> tensor<1x2x2x1xi64> {
      %lhs = "stablehlo.constant"() {value = dense<[[[[1], [2], [5], [6]], [[3], [4], [7], [8]], [[10], [11], [14], [15]], [[12], [13], [16], [17]]]]> : tensor<1x4x4x1xi64>} : () -> tensor<1x4x4x1xi64>
      %rhs = "stablehlo.constant"() {value = dense<1> : tensor<3x3x1x1xi64>} : () -> tensor<3x3x1x1xi64>
      %result = "stablehlo.convolution"(%lhs, %rhs) {
        window_strides = array<i64: 4, 4>,
        padding = dense<0> : tensor<2x2xi64>,
        lhs_dilation = array<i64: 2, 2>,
        rhs_dilation = array<i64: 1, 1>,
        window_reversal = array<i1: false, false>,
        dimension_numbers = #stablehlo.conv<[b, 0, 1, f]x[0, 1, i, o]->[b, 0, 1, f]>,
        batch_group_count = 1 : i64,
        feature_group_count = 1 : i64,
        precision_config = [#stablehlo<precision DEFAULT>, #stablehlo<precision DEFAULT>]
      } : (tensor<1x4x4x1xi64>, tensor<3x3x1x1xi64>) -> tensor<1x2x2x1xi64>
      func.return %result : tensor<1x2x2x1xi64>
    }`);
    expect(r).toEqual([10, 26, 46, 62]);
  });

  it('convolution in NCHW with padding and two feature groups (hand-computed)', () => {
    // Two input channels, one per group; kernel 1x3 of ones (group 0) and [1, 0, -1] (group 1); pad 1 left/right.
    const [r] = run(
      `func.func @main(%x: tensor<1x2x1x3xf32>, %w: tensor<2x1x1x3xf32>) -> tensor<1x2x1x3xf32> {
        %0 = "stablehlo.convolution"(%x, %w) {window_strides = array<i64: 1, 1>, padding = dense<[[0, 0], [1, 1]]> : tensor<2x2xi64>, lhs_dilation = array<i64: 1, 1>, rhs_dilation = array<i64: 1, 1>, dimension_numbers = #stablehlo.conv<[b, f, 0, 1]x[o, i, 0, 1]->[b, f, 0, 1]>, feature_group_count = 2 : i64, batch_group_count = 1 : i64} : (tensor<1x2x1x3xf32>, tensor<2x1x1x3xf32>) -> tensor<1x2x1x3xf32>
        return %0 : tensor<1x2x1x3xf32>
      }`,
      [tensor([1, 2, 1, 3], 'f32', [1, 2, 3, 10, 20, 30]), tensor([2, 1, 1, 3], 'f32', [1, 1, 1, 1, 0, -1])],
    );
    // group 0: [0+1+2, 1+2+3, 2+3+0] = [3, 6, 5]; group 1: [0 - 20, 10 - 30, 20 - 0] = [-20, -20, 20].
    expect(r).toEqual([3, 6, 5, -20, -20, 20]);
  });
});

describe('stablehlo interpreter: data movement and elementwise ops', () => {
  it('iota, transpose, reshape, slice with strides, reverse, concatenate, pad (negative and interior)', () => {
    const out = run(`func.func @main() -> (tensor<2x3xi32>, tensor<3x2xi32>, tensor<2xi32>, tensor<2x3xi32>, tensor<2x5xi32>, tensor<7xi32>) {
      %i = "stablehlo.iota"() {iota_dimension = 1 : i64} : () -> tensor<2x3xi32>
      %j = "stablehlo.iota"() {iota_dimension = 0 : i64} : () -> tensor<2x3xi32>
      %k = "stablehlo.multiply"(%j, %i) : (tensor<2x3xi32>, tensor<2x3xi32>) -> tensor<2x3xi32>
      %t = "stablehlo.transpose"(%k) {permutation = array<i64: 1, 0>} : (tensor<2x3xi32>) -> tensor<3x2xi32>
      %f = "stablehlo.reshape"(%i) : (tensor<2x3xi32>) -> tensor<6xi32>
      %s = "stablehlo.slice"(%f) {start_indices = array<i64: 1>, limit_indices = array<i64: 5>, strides = array<i64: 3>} : (tensor<6xi32>) -> tensor<2xi32>
      %r = "stablehlo.reverse"(%i) {dimensions = array<i64: 1>} : (tensor<2x3xi32>) -> tensor<2x3xi32>
      %c = "stablehlo.concatenate"(%i, %k) {dimension = 1 : i64} : (tensor<2x3xi32>, tensor<2x3xi32>) -> tensor<2x6xi32>
      %c2 = "stablehlo.slice"(%c) {start_indices = array<i64: 0, 1>, limit_indices = array<i64: 2, 6>, strides = array<i64: 1, 1>} : (tensor<2x6xi32>) -> tensor<2x5xi32>
      %v = "stablehlo.constant"() {value = dense<[1, 2, 3, 4]> : tensor<4xi32>} : () -> tensor<4xi32>
      %z = "stablehlo.constant"() {value = dense<-1> : tensor<i32>} : () -> tensor<i32>
      %p = "stablehlo.pad"(%v, %z) {edge_padding_low = array<i64: -1>, edge_padding_high = array<i64: 2>, interior_padding = array<i64: 1>} : (tensor<4xi32>, tensor<i32>) -> tensor<8xi32>
      %p2 = "stablehlo.slice"(%p) {start_indices = array<i64: 0>, limit_indices = array<i64: 7>, strides = array<i64: 1>} : (tensor<8xi32>) -> tensor<7xi32>
      return %i, %t, %s, %r, %c2, %p2 : tensor<2x3xi32>, tensor<3x2xi32>, tensor<2xi32>, tensor<2x3xi32>, tensor<2x5xi32>, tensor<7xi32>
    }`);
    expect(out[0]).toEqual([0, 1, 2, 0, 1, 2]);
    expect(out[1]).toEqual([0, 0, 0, 1, 0, 2]);
    expect(out[2]).toEqual([1, 1]);
    expect(out[3]).toEqual([2, 1, 0, 2, 1, 0]);
    expect(out[4]).toEqual([1, 2, 0, 0, 0, 1, 2, 0, 1, 2]);
    // [1, -1, 2, -1, 3, -1, 4] with the first element cut by low = -1 and two -1 appended: [-1, 2, -1, 3, -1, 4, -1, -1].
    expect(out[5]).toEqual([-1, 2, -1, 3, -1, 4, -1]);
  });

  it('compare (quiet NaN semantics), select with a scalar and a tensor predicate, convert truncates float to int', () => {
    const out = run(
      `func.func @main(%a: tensor<3xf32>, %b: tensor<3xf32>) -> (tensor<3xi1>, tensor<3xi1>, tensor<3xf32>, tensor<3xi32>, tensor<3xf32>) {
        %lt = "stablehlo.compare"(%a, %b) {comparison_direction = #stablehlo<comparison_direction LT>, compare_type = #stablehlo<comparison_type FLOAT>} : (tensor<3xf32>, tensor<3xf32>) -> tensor<3xi1>
        %ne = "stablehlo.compare"(%a, %b) {comparison_direction = #stablehlo<comparison_direction NE>} : (tensor<3xf32>, tensor<3xf32>) -> tensor<3xi1>
        %s = "stablehlo.select"(%lt, %a, %b) : (tensor<3xi1>, tensor<3xf32>, tensor<3xf32>) -> tensor<3xf32>
        %i = "stablehlo.convert"(%a) : (tensor<3xf32>) -> tensor<3xi32>
        %bf = "stablehlo.convert"(%lt) : (tensor<3xi1>) -> tensor<3xf32>
        return %lt, %ne, %s, %i, %bf : tensor<3xi1>, tensor<3xi1>, tensor<3xf32>, tensor<3xi32>, tensor<3xf32>
      }`,
      [tensor([3], 'f32', [-1.75, 2.5, NaN]), tensor([3], 'f32', [1, 2, 0])],
    );
    expect(out[0]).toEqual([1, 0, 0]);
    expect(out[1]).toEqual([1, 1, 1]);
    expect(out[2]).toEqual([-1.75, 2, 0]);
    expect(out[3].slice(0, 2)).toEqual([-1, 2]);
    expect(out[4]).toEqual([1, 0, 0]);
  });

  it('logistic, rsqrt, power, exponential, tanh, sign on floats (within float32 rounding)', () => {
    const [l, r, p, e, t, s] = run(
      `func.func @main(%x: tensor<2xf32>) -> (tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) {
        %two = "stablehlo.constant"() {value = dense<2.0> : tensor<2xf32>} : () -> tensor<2xf32>
        %0 = "stablehlo.logistic"(%x) : (tensor<2xf32>) -> tensor<2xf32>
        %1 = "stablehlo.rsqrt"(%two) : (tensor<2xf32>) -> tensor<2xf32>
        %2 = "stablehlo.power"(%x, %two) : (tensor<2xf32>, tensor<2xf32>) -> tensor<2xf32>
        %3 = "stablehlo.exponential"(%x) : (tensor<2xf32>) -> tensor<2xf32>
        %4 = "stablehlo.tanh"(%x) : (tensor<2xf32>) -> tensor<2xf32>
        %5 = "stablehlo.sign"(%x) : (tensor<2xf32>) -> tensor<2xf32>
        return %0, %1, %2, %3, %4, %5 : tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>
      }`,
      [tensor([2], 'f32', [0, -3])],
    );
    expect(l).toEqual([0.5, Math.fround(1 / (1 + Math.exp(3)))]);
    expect(r).toEqual([Math.fround(Math.SQRT1_2), Math.fround(Math.SQRT1_2)]);
    expect(p).toEqual([0, 9]);
    expect(e).toEqual([1, Math.fround(Math.exp(-3))]);
    expect(t).toEqual([0, Math.fround(Math.tanh(-3))]);
    expect(s).toEqual([0, -1]);
  });
});

describe('stablehlo interpreter: element types by the spec', () => {
  it('bf16 add rounds to nearest even after the op', () => {
    // 1 + 2^-8: halfway between 1 and 1 + 2^-7 -> 1 (even); (1 + 2^-7) + 2^-8 -> 1 + 2^-6 (even).
    const [r] = run(
      `func.func @main(%a: tensor<2xbf16>, %b: tensor<2xbf16>) -> tensor<2xbf16> {
        %0 = "stablehlo.add"(%a, %b) : (tensor<2xbf16>, tensor<2xbf16>) -> tensor<2xbf16>
        return %0 : tensor<2xbf16>
      }`,
      [tensor([2], 'bf16', [1, 1 + 2 ** -7]), tensor([2], 'bf16', [2 ** -8, 2 ** -8])],
    );
    expect(r).toEqual([1, 1 + 2 ** -6]);
  });

  it('dot_general of bf16 operands into an f32 result keeps the f32 sum (bf16 would lose it)', () => {
    const text = (out: string) => `func.func @main(%a: tensor<2xbf16>, %b: tensor<2xbf16>) -> tensor<${out}> {
        %0 = "stablehlo.dot_general"(%a, %b) {dot_dimension_numbers = #stablehlo.dot<lhs_contracting_dimensions = [0], rhs_contracting_dimensions = [0]>} : (tensor<2xbf16>, tensor<2xbf16>) -> tensor<${out}>
        return %0 : tensor<${out}>
      }`;
    const args = [tensor([2], 'bf16', [1, 2 ** -8]), tensor([2], 'bf16', [1, 1])];
    expect(run(text('f32'), args)[0]).toEqual([1 + 2 ** -8]);
    expect(run(text('bf16'), args)[0]).toEqual([1]);
  });

  it('f32 -> bf16/f16 conversion rounds (f16 overflows to inf), and the rounding helpers agree', () => {
    const [b, h] = run(
      `func.func @main(%x: tensor<3xf32>) -> (tensor<3xbf16>, tensor<3xf16>) {
        %0 = "stablehlo.convert"(%x) : (tensor<3xf32>) -> tensor<3xbf16>
        %1 = "stablehlo.convert"(%x) : (tensor<3xf32>) -> tensor<3xf16>
        return %0, %1 : tensor<3xbf16>, tensor<3xf16>
      }`,
      [tensor([3], 'f32', [1 / 3, 65520, -0.1])],
    );
    expect(b).toEqual([0.333984375, 65536, Math.fround(roundBf16(-0.1))]);
    expect(b[2]).toBeCloseTo(-0.10009765625, 12);
    expect(h).toEqual([0.333251953125, Infinity, roundF16(-0.1)]);
    expect(h[2]).toBeCloseTo(-0.0999755859375, 12);
    expect(roundF16(65504)).toBe(65504);
    expect(roundF16(2 ** -25)).toBe(0); // half the smallest subnormal: ties to even (0)
    expect(roundF16(3 * 2 ** -25)).toBe(2 ** -23);
  });

  it('i4 constants and arithmetic wrap around in 4 bits; ui4 -> f32 converts the unsigned value', () => {
    const [w, f] = run(`func.func @main() -> (tensor<3xi4>, tensor<2xf32>) {
      %a = "stablehlo.constant"() {value = dense<[7, -8, 3]> : tensor<3xi4>} : () -> tensor<3xi4>
      %one = "stablehlo.constant"() {value = dense<1> : tensor<3xi4>} : () -> tensor<3xi4>
      %s = "stablehlo.add"(%a, %one) : (tensor<3xi4>, tensor<3xi4>) -> tensor<3xi4>
      %u = "stablehlo.constant"() {value = dense<[15, 8]> : tensor<2xui4>} : () -> tensor<2xui4>
      %c = "stablehlo.convert"(%u) : (tensor<2xui4>) -> tensor<2xf32>
      return %s, %c : tensor<3xi4>, tensor<2xf32>
    }`);
    expect(w).toEqual([-8, -7, 4]);
    expect(f).toEqual([15, 8]);
  });

  it('dense literal forms: nested lists, splat, hex bits per element, MLIR hex byte strings', () => {
    const out = run(`func.func @main() -> (tensor<2x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xbf16>, tensor<2xi1>) {
      %0 = "stablehlo.constant"() {value = dense<[[1.5, -2.0e+00], [3.25e-1, 0.0]]> : tensor<2x2xf32>} : () -> tensor<2x2xf32>
      %1 = "stablehlo.constant"() {value = dense<[0x7F800000, 0x3F800000]> : tensor<2xf32>} : () -> tensor<2xf32>
      %2 = "stablehlo.constant"() {value = dense<"0x0000803F000000C0"> : tensor<2xf32>} : () -> tensor<2xf32>
      %3 = "stablehlo.constant"() {value = dense<[0x3F80, 0xC000]> : tensor<2xbf16>} : () -> tensor<2xbf16>
      %4 = "stablehlo.constant"() {value = dense<[true, false]> : tensor<2xi1>} : () -> tensor<2xi1>
      return %0, %1, %2, %3, %4 : tensor<2x2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xbf16>, tensor<2xi1>
    }`);
    expect(out).toEqual([[1.5, -2, Math.fround(0.325), 0], [Infinity, 1], [1, -2], [1, -2], [1, 0]]);
  });

  it('a module wrapper, pretty and generic returns, comments and properties syntax all parse', () => {
    const [r] = run(`// a comment
      module @m attributes {mhlo.num_partitions = 1 : i32} {
        func.func public @main(%x: tensor<2xf32> {jax.arg_info = "x"}) -> (tensor<2xf32> {jax.result_info = "y"}) {
          %c = "stablehlo.constant"() <{value = dense<1.0> : tensor<2xf32>}> : () -> tensor<2xf32>
          %0 = "stablehlo.add"(%x, %c) : (tensor<2xf32>, tensor<2xf32>) -> tensor<2xf32>
          "func.return"(%0) : (tensor<2xf32>) -> ()
        }
      }`, [tensor([2], 'f32', [1, 2])]);
    expect(r).toEqual([2, 3]);
  });
});

describe('stablehlo checker: well-formedness by the spec', () => {
  const wrap = (body: string, sig = '(%x: tensor<2x3xf32>) -> tensor<2x3xf32>') => `func.func @main${sig} {\n${body}\n}`;

  it('accepts a well-formed function', () => {
    expect(problems(wrap(`%0 = "stablehlo.add"(%x, %x) : (tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<2x3xf32>\nreturn %0 : tensor<2x3xf32>`))).toEqual([]);
  });

  it('refuses a value used before its definition, and one defined twice', () => {
    const use = problems(wrap(`%1 = "stablehlo.add"(%0, %x) : (tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<2x3xf32>\n%0 = "stablehlo.negate"(%x) : (tensor<2x3xf32>) -> tensor<2x3xf32>\nreturn %1 : tensor<2x3xf32>`));
    expect(use.join('\n')).toMatch(/uses %0 before it is defined/);
    const twice = problems(wrap(`%0 = "stablehlo.negate"(%x) : (tensor<2x3xf32>) -> tensor<2x3xf32>\n%0 = "stablehlo.abs"(%x) : (tensor<2x3xf32>) -> tensor<2x3xf32>\nreturn %0 : tensor<2x3xf32>`));
    expect(twice.join('\n')).toMatch(/%0 is defined twice/);
  });

  it('refuses an operand whose declared type is not the one it was defined with', () => {
    const p = problems(wrap(`%0 = "stablehlo.negate"(%x) : (tensor<3x2xf32>) -> tensor<3x2xf32>\nreturn %x : tensor<2x3xf32>`));
    expect(p.join('\n')).toMatch(/operand %x is declared tensor<3x2xf32>, defined as tensor<2x3xf32>/);
  });

  it('refuses result types the shape rules do not give (transpose, dot_general, slice, reduce)', () => {
    const t = problems(wrap(`%0 = "stablehlo.transpose"(%x) {permutation = array<i64: 1, 0>} : (tensor<2x3xf32>) -> tensor<2x3xf32>\nreturn %x : tensor<2x3xf32>`));
    expect(t.join('\n')).toMatch(/declares result type\(s\) tensor<2x3xf32>, the spec's rules give tensor<3x2xf32>/);
    const d = problems(wrap(`%0 = "stablehlo.dot_general"(%x, %x) {dot_dimension_numbers = #stablehlo.dot<lhs_contracting_dimensions = [1], rhs_contracting_dimensions = [0]>} : (tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<2x3xf32>\nreturn %x : tensor<2x3xf32>`));
    expect(d.join('\n')).toMatch(/\(C10\) contracting dimension sizes differ \(3 vs 2\)/);
    const s = problems(wrap(`%0 = "stablehlo.slice"(%x) {start_indices = array<i64: 0, 0>, limit_indices = array<i64: 2, 4>, strides = array<i64: 1, 1>} : (tensor<2x3xf32>) -> tensor<2x4xf32>\nreturn %x : tensor<2x3xf32>`));
    expect(s.join('\n')).toMatch(/\(C3\) 0 <= start 0 <= limit 4 <= 3/);
    const r = problems(
      wrap(
        `%i = "stablehlo.constant"() {value = dense<0.0> : tensor<f32>} : () -> tensor<f32>\n%0 = "stablehlo.reduce"(%x, %i) ({\n^bb0(%a: tensor<f32>, %b: tensor<f32>):\n%s = "stablehlo.add"(%a, %b) : (tensor<f32>, tensor<f32>) -> tensor<f32>\n"stablehlo.return"(%s) : (tensor<f32>) -> ()\n}) {dimensions = array<i64: 1>} : (tensor<2x3xf32>, tensor<f32>) -> tensor<3xf32>\nreturn %x : tensor<2x3xf32>`,
      ),
    );
    expect(r.join('\n')).toMatch(/declares result type\(s\) tensor<3xf32>, the spec's rules give tensor<2xf32>/);
  });

  it('refuses broadcast_in_dim dimensions that do not fit (C5), mismatched binary operands (C1), a bad return type, an unknown op', () => {
    const b = problems(wrap(`%0 = "stablehlo.broadcast_in_dim"(%x) {broadcast_dimensions = array<i64: 1, 0>} : (tensor<2x3xf32>) -> tensor<2x3xf32>\nreturn %0 : tensor<2x3xf32>`));
    expect(b.join('\n')).toMatch(/\(C5\) operand dimension 0 \(2\) is neither 1 nor dim\(result, 1\) = 3/);
    const a = problems(`func.func @main(%x: tensor<2xf32>, %y: tensor<2xf16>) -> tensor<2xf32> {\n%0 = "stablehlo.add"(%x, %y) : (tensor<2xf32>, tensor<2xf16>) -> tensor<2xf32>\nreturn %0 : tensor<2xf32>\n}`);
    expect(a.join('\n')).toMatch(/\(C1\) type\(lhs\) tensor<2xf32> = type\(rhs\) tensor<2xf16>/);
    const ret = problems(wrap(`return %x : tensor<2x3xf32>`, '(%x: tensor<2x3xf32>) -> tensor<3x2xf32>'));
    expect(ret.join('\n')).toMatch(/return types \(tensor<2x3xf32>\) differ from @main's result types \(tensor<3x2xf32>\)/);
    const u = problems(wrap(`%0 = "stablehlo.frobnicate"(%x) : (tensor<2x3xf32>) -> tensor<2x3xf32>\nreturn %0 : tensor<2x3xf32>`));
    expect(u.join('\n')).toMatch(/stablehlo.frobnicate is not an op this interpreter knows/);
  });

  it('refuses dense literals whose shape or values do not fit their type', () => {
    const shape = problems(`func.func @main() -> tensor<2xf32> {\n%0 = "stablehlo.constant"() {value = dense<[1.0, 2.0, 3.0]> : tensor<2xf32>} : () -> tensor<2xf32>\nreturn %0 : tensor<2xf32>\n}`);
    expect(shape.join('\n')).toMatch(/dense literal has shape \[3\], its type tensor<2xf32>/);
    const range = problems(`func.func @main() -> tensor<1xi4> {\n%0 = "stablehlo.constant"() {value = dense<[9]> : tensor<1xi4>} : () -> tensor<1xi4>\nreturn %0 : tensor<1xi4>\n}`);
    expect(range.join('\n')).toMatch(/integer literal 9 does not fit i4/);
  });

  it('refuses dynamic shapes at parse time, with the position', () => {
    expect(() => parseModule('func.func @main(%x: tensor<?x3xf32>) -> tensor<3xf32> {\n}')).toThrow(ParseError);
    expect(() => parseModule('func.func @main(%x: tensor<?x3xf32>) -> tensor<3xf32> {\n}')).toThrow(/1:\d+: dynamic dimensions/);
  });
});

describe('stablehlo interpreter: independence from the lowering', () => {
  it('imports nothing from targets/xla or kernels/', () => {
    const dir = join(ROOT, 'src', 'stablehlo');
    for (const f of readdirSync(dir).filter((n) => n.endsWith('.ts'))) {
      const imports = [...readFileSync(join(dir, f), 'utf8').matchAll(/from '([^']+)'/g)].map((m) => m[1]!);
      for (const i of imports) {
        expect(i, `${f} imports ${i}`).not.toMatch(/targets\/xla|kernels\//);
      }
    }
  });
});
