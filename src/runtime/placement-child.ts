/**
 * Opens one model with onnxruntime's log at VERBOSE, so that onnxruntime prints its node placement
 * to this process's stderr, then exits (read by placement.ts). argv: MODEL EP.
 */
import { OrtSession, type ExecutionProvider } from './ort.js';

const [model, ep] = process.argv.slice(2) as [string, ExecutionProvider];
try {
  const session = await OrtSession.create(model, { executionProvider: ep, logSeverityLevel: 0, label: model });
  await session.release();
} catch (err) {
  process.stdout.write(`${(err as Error).message}\n`);
  process.exit(1);
}
