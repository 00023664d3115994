/**
 * onnxruntime's node placement report: read from a real session's VERBOSE log (CPU provider
 * here; the CUDA provider is exercised on the GPU machine, bench/gpu/), and parsed from the
 * mixed-provider form onnxruntime prints when a provider leaves nodes to the CPU.
 */
import { describe, expect, it } from 'vitest';
import { loadModel } from '../src/onnx/io.js';
import { cpuFindings, nodePlacement, parsePlacement, shapeSubgraph } from '../src/runtime/placement.js';

describe('node placement', () => {
  it('reads the placement onnxruntime prints for a real session', async () => {
    const p = await nodePlacement('models/zoo/cnn-static/model.onnx', 'cpu');
    expect(Object.keys(p.providers)).toEqual(['CPUExecutionProvider']);
    // after onnxruntime's own fusions: at least one node, at most the graph's
    const nodes = loadModel('models/zoo/cnn-static/model.onnx').graph.nodes.length;
    expect(p.providers.CPUExecutionProvider!.count).toBeGreaterThan(0);
    expect(p.providers.CPUExecutionProvider!.count).toBeLessThanOrEqual(nodes);
    expect(p.onCpu).toEqual([]);
  });

  it('lists the nodes a GPU provider left to the CPU, without the Memcpy nodes it inserted', () => {
    const log = [
      '2026-12-05 [V:onnxruntime:, session_state.cc:1280 VerifyEachNodeIsAssignedToAnEp] Node placements',
      '2026-12-05 [V:onnxruntime:, session_state.cc:1282 VerifyEachNodeIsAssignedToAnEp]  Node(s) placed on [CUDAExecutionProvider]. Number of nodes: 3',
      '2026-12-05 [V:onnxruntime:, session_state.cc:1284 VerifyEachNodeIsAssignedToAnEp]   MatMul (/q/MatMul)',
      '2026-12-05 [V:onnxruntime:, session_state.cc:1284 VerifyEachNodeIsAssignedToAnEp]   MemcpyFromHost (Memcpy)',
      '2026-12-05 [V:onnxruntime:, session_state.cc:1284 VerifyEachNodeIsAssignedToAnEp]   Add (/Add)',
      '2026-12-05 [V:onnxruntime:, session_state.cc:1282 VerifyEachNodeIsAssignedToAnEp]  Node(s) placed on [CPUExecutionProvider]. Number of nodes: 2',
      '2026-12-05 [V:onnxruntime:, session_state.cc:1284 VerifyEachNodeIsAssignedToAnEp]   Shape (/Shape)',
      '2026-12-05 [V:onnxruntime:, session_state.cc:1284 VerifyEachNodeIsAssignedToAnEp]   MemcpyToHost (Memcpy_token_1)',
      '2026-12-05 [W:onnxruntime:, session_state.cc:1286 VerifyEachNodeIsAssignedToAnEp] Some nodes were not assigned to the preferred execution providers',
    ].join('\n');
    const p = parsePlacement(log);
    expect(p.providers.CUDAExecutionProvider).toEqual({ count: 3, nodes: ['MatMul (/q/MatMul)', 'MemcpyFromHost (Memcpy)', 'Add (/Add)'] });
    expect(p.providers.CPUExecutionProvider!.count).toBe(2);
    expect(p.onCpu).toEqual(['Shape (/Shape)']);
  });

  it('tells shape computations and onnxruntime-made nodes from the compute nodes a GPU provider left', () => {
    const graph = loadModel('models/zoo/bert-dynamic/model.onnx').graph;
    const shape = shapeSubgraph(graph);
    const shapes = graph.nodes.filter((n) => n.opType === 'Shape');
    const matmuls = graph.nodes.filter((n) => n.opType === 'MatMul');
    expect(shapes.length).toBeGreaterThan(0);
    for (const n of shapes) expect(shape.has(n.name)).toBe(true);
    for (const n of matmuls) expect(shape.has(n.name)).toBe(false);
    const onCpu = [`Shape (${shapes[0]!.name})`, `MatMul (${matmuls[0]!.name})`, 'Gather (Gather_token_3)'];
    const f = cpuFindings({ providers: {}, onCpu }, graph);
    expect(f).toEqual({ shape: [onCpu[0]], compute: [onCpu[1]], runtimeMade: [onCpu[2]] });
  });
});
