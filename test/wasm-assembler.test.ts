import { describe, expect, it } from 'vitest';
import { assembleModule, get, I32, uleb, wasm } from '../src/wasm/assembler.js';

describe('wasm assembler', () => {
  it('encodes unsigned LEB128 as the WebAssembly spec does', () => {
    expect(uleb(0)).toEqual([0x00]);
    expect(uleb(127)).toEqual([0x7f]);
    expect(uleb(128)).toEqual([0x80, 0x01]);
    expect(uleb(624485)).toEqual([0xe5, 0x8e, 0x26]); // the DWARF/Wikipedia example
  });

  it('assembles a module the engine validates, instantiates against an imported memory and runs', () => {
    // add(a, b) = a + b; store(p, v): memory[p] = v (i32)
    const bytes = assembleModule([
      { name: 'add', params: [I32, I32], results: [I32], body: [0x00, ...get(0), ...get(1), 0x6a, 0x0b] },
      { name: 'store', params: [I32, I32], results: [], body: [0x00, ...get(0), ...get(1), 0x36, 2, 0, 0x0b] },
    ]);
    if (!wasm) throw new Error('this Node.js has no WebAssembly');
    expect(wasm.validate(bytes)).toBe(true);
    const memory = new wasm.Memory({ initial: 1 });
    const { add, store } = new wasm.Instance(new wasm.Module(bytes), { env: { memory } }).exports as {
      add: (a: number, b: number) => number;
      store: (p: number, v: number) => void;
    };
    expect(add(40, 2)).toBe(42);
    store(8, 0x01020304);
    expect(new Uint32Array(memory.buffer)[2]).toBe(0x01020304);
  });
});
