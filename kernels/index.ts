/** Importing this module registers every reference kernel. */
export * from './registry.js';
import './elementwise.js';
import './shape-ops.js';
import './data-movement.js';
import './reduce.js';
import './matmul.js';
import './softmax.js';
import './quantize.js';
import './generators.js';
import './cast.js';
