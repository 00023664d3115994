/** Deterministic uniform [0, 1) generator (mulberry32), shared with the library's generated inputs. */
export { mulberry32 } from '../src/random.js';
