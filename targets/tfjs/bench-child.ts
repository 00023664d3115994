/**
 * One measurement of one TF.js artifact in a process of its own, for `peftc bench` (the
 * counterpart of src/bench/child.ts for onnxruntime models): argv[2] is a JSON TfjsMeasureArgs;
 * prints one JSON line in ChildResult's shape (plus `backend`). Exit 2 with the message on failure.
 */
import { measureTfjsArtifact, type TfjsMeasureArgs } from './bench.js';

measureTfjsArtifact(JSON.parse(process.argv[2]!) as TfjsMeasureArgs)
  .then((r) => process.stdout.write(`${JSON.stringify(r)}\n`))
  .catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  });
