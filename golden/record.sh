#!/usr/bin/env bash
# Re-creates every golden record of the models that ship in models/ (run from the repository
# root after `npm run build`). Reference inputs: ONNX's test_data_set_0 beside each model, or for
# models/lm four held-out windows of eval.bin. Reference outputs: onnxruntime-node running the
# reference model. PEFT cases are checked against PEFT's own merged export (merged.onnx).
# After an intentional change, prefer `peftc golden update` (keeps tolerances, prints what moved).
set -euo pipefail
cd "$(dirname "$0")/.."
peftc() { node dist/src/cli/main.js "$@"; }
rec() { peftc golden record --dir golden "$@"; }

for m in models/zoo/*/model.onnx; do
  rec "$m" --quant none
  rec "$m" --quant int4
  for q in none fp16 bf16 int4 nf4; do rec "$m" --target cuda --quant "$q"; done
  # tfjs needs static shapes: the dynamic exports are fixed at their test data's [2, 16].
  shape=(); case "$m" in *-dynamic/*) shape=(--shape input_ids=2x16); [[ "$m" == *bert-dynamic* || "$m" == *mask-dynamic* ]] && shape+=(--shape attention_mask=2x16);; esac
  for q in none fp16 uint8; do rec "$m" --target tfjs --quant "$q" "${shape[@]}"; done
  for q in none bf16 int4; do rec "$m" --target xla --quant "$q" "${shape[@]}"; done
done

# models/lm: 4 held-out windows of 256 bytes (bytes 0..1023 of eval.bin) as int64 [4, 256].
windows=models/lm/eval-windows-4x256.npy
[ -f "$windows" ] || node --input-type=module -e "
import { readFileSync, writeFileSync } from 'node:fs';
import { encodeNpy } from './dist/src/runtime/npy.js';
import { Tensor } from './dist/src/ir/tensor.js';
import { DataType } from './dist/src/ir/dtype.js';
const bytes = readFileSync('models/lm/eval.bin').subarray(0, 4 * 256);
const ids = BigInt64Array.from(bytes, (b) => BigInt(b));
writeFileSync('$windows', encodeNpy(Tensor.fromTypedArray('input_ids', DataType.INT64, [4, 256], ids)));
"
for q in none int4 int8-weight nf4; do rec models/lm/model.onnx --quant "$q" --inputs "$windows"; done
for q in none fp16 bf16 int4 nf4; do rec models/lm/model.onnx --target cuda --quant "$q" --inputs "$windows"; done
for q in none bf16 int4; do rec models/lm/model.onnx --target xla --quant "$q" --inputs "$windows" --shape input_ids=4x256; done

for d in models/peft/*/; do
  c=$(basename "$d")
  ref=(--reference "$d/merged.onnx" --name "peft-$c")
  if [ "$c" = llama-two-adapters ]; then
    lora=(--lora "$d/adapter:0.7" --lora "$d/adapter2:0.3"); unmerged="$d/unmerged_cat.onnx"
  else
    lora=(--lora "$d/adapter"); unmerged="$d/unmerged.onnx"
  fi
  rec "$unmerged" "${ref[@]}" --quant none --tag unmerged
  rec "$d/base.onnx" "${ref[@]}" "${lora[@]}" --quant none --tag lora
  rec "$d/base.onnx" "${ref[@]}" "${lora[@]}" --quant int4 --tag lora
  for q in none fp16 bf16 int4 nf4; do rec "$d/base.onnx" "${ref[@]}" "${lora[@]}" --target cuda --quant "$q" --tag lora; done
done
