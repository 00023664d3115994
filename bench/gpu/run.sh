#!/usr/bin/env bash
# The GPU-machine measurements of issue 16, one step per device call (bench/gpu/README.md):
#   bash bench/gpu/run.sh STEP OUTDIR      from $G/repo (bench/gpu/setup.sh app made it)
# steps: facts | peft | xla | ort-tools | llm | cuda-art | cuda-golden | cuda-diag | cuda-bench
# Every step writes its JSON and logs under OUTDIR; a failing command is reported, not fatal.
set -uo pipefail
STEP=$1; OUT=$2; mkdir -p "$OUT"
G=${G:-/tmp/peftc-gpu}
PEFTC="node dist/src/cli/main.js"
note() { echo "== $(date -u +%H:%M:%S) $*"; }
case $STEP in
  facts)
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; nproc; free -g | head -2
    python3 -c "import torch, jax, onnxruntime, onnx, peft, transformers; print('torch', torch.__version__, 'jax', jax.__version__, 'onnxruntime', onnxruntime.__version__, 'onnx', onnx.__version__, 'peft', peft.__version__, 'transformers', transformers.__version__)"
    node --version
    ;;
  peft)   # issue 15's PEFT fixtures: trained biases and modules_to_save
    note "peft fixtures"
    python3 models/export_peft.py --out $G/peft-new --only bert-lora-bias-all,bert-lora-bias-lora-only,llama-modules-to-save --log "$OUT/peft-tracebacks.log" 2>&1 | tail -20
    tar -C $G -czf "$OUT/peft-new.tgz" peft-new
    ;;
  xla)    # the golden xla artifacts, kept, then run on XLA:GPU and XLA:CPU; PyTorch eager/compile alongside
    note "golden xla variants (peftc's StableHLO interpreter on this CPU), artifacts kept"
    $PEFTC golden check --only 'zoo-*/xla-*' --only 'lm/xla-*' --keep $G/xla-art --threads 4 > "$OUT/golden-xla.txt" 2>&1; tail -3 "$OUT/golden-xla.txt"
    note "xla_bench"
    python3 bench/gpu/xla_bench.py --artifacts $G/xla-art --golden golden --out "$OUT/xla.json" --platforms cuda,cpu --torch --budget-s ${BUDGET:-200} 2>"$OUT/xla-stderr.log" | tail -60
    ;;
  ort-tools)  # onnxruntime's Python tools vs peftc on this CPU
    D=$G/peftc-ort; mkdir -p $D
    note "peftc models for the comparison"
    for n in bert-static bert-dynamic gpt2-static vit-static llama-static; do
      $PEFTC compile models/zoo/$n/model.onnx --target cpu -o $D/fused-$n.onnx > /dev/null 2>>"$OUT/ort-compile.log" || echo "compile $n failed"
    done
    for m in minmax entropy percentile; do
      $PEFTC compile models/lm/model.onnx --target cpu --quant int8 --calib models/lm/calib.npy --calib-method $m -o $D/int8-$m-lm.onnx > /dev/null 2>>"$OUT/ort-compile.log" &
      $PEFTC compile models/digits/model.onnx --target cpu --quant int8 --calib models/digits/calib.npy --calib-method $m -o $D/int8-$m-digits.onnx > /dev/null 2>>"$OUT/ort-compile.log" &
    done; wait
    ls $D | tr '\n' ' '; echo
    note "ort_tools"
    python3 bench/gpu/ort_tools.py --peftc $D --out "$OUT/ort-tools.json" --fp16-out $G/ort-fp16 --budget-s ${BUDGET:-200} 2>"$OUT/ort-tools-stderr.log" | tail -60
    ;;
  llm)    # the 0.95B bench model (bench/tasks.ts generate-llm) and its cuda fp16/int4 compiles
    note "generate the 0.95B model"
    mkdir -p $G/llm
    node dist/bench/tasks.js generate-llm "{\"dir\":\"$G/llm\",\"layers\":16,\"hidden\":2048,\"intermediate\":5632,\"vocab\":32000,\"rank\":1}" | tail -1
    for q in fp16 int4; do
      note "compile llm cuda $q"
      $PEFTC compile $G/llm/base.onnx --target cuda --quant $q -o $G/llm/cuda-$q.onnx 2>&1 | tail -4
    done
    du -sh $G/llm/*
    ;;
  cuda-golden)  # every zoo/lm cuda artifact on onnxruntime's CUDA provider: fidelity vs golden + node placement
    # one process per variant: a provider crash (it happened: bench/gpu/README.md) loses one variant, not all
    note "sanity: one model on the CUDA provider"
    $PEFTC verify models/zoo/bert-static/model.onnx models/zoo/bert-static/model.onnx --ep cuda --samples 1 2>&1 | tail -3
    mkdir -p $G/gc
    for m in $(ls golden | grep -v peft); do
      for f in golden/$m/cuda-*.json; do
        [ -f "$f" ] || continue; v=$(basename $f .json)
        $PEFTC golden check --only "$m/$v" --ep cuda --keep $G/cuda-art --json > $G/gc/$m--$v.json 2>$G/gc/$m--$v.err
        echo "$m/$v rc=$?"
      done
    done | tee "$OUT/golden-cuda-rc.txt"
    tar -C $G -czf "$OUT/golden-cuda.tgz" gc
    ;;
  cuda-art)   # the golden cuda artifacts, compiled and checked on this CPU, kept for the CUDA runs
    $PEFTC golden check --only 'zoo-*/cuda-*' --only 'lm/cuda-*' --keep $G/cuda-art --threads 4 > "$OUT/golden-cuda-cpu.txt" 2>&1; tail -2 "$OUT/golden-cuda-cpu.txt"
    ;;
  cuda-diag)  # which fusion makes float16 Llama graphs crash the CUDA provider: compile without each, run
    for m in zoo-llama-static lm; do
      src=$(node -e "console.log(require('./golden/$m/reference.json').reference)")
      in="--inputs models/lm/eval-windows-4x256.npy"; [ $m = zoo-llama-static ] && in=""
      for f in "${NO_ROTARY:-attention,rms-norm,skip-rms-norm,silu,fused-matmul,matmul-add-gemm,gelu,fast-gelu,bias-gelu,layer-norm,skip-layer-norm,conv-bn}" rotary-attention rms-norm,skip-rms-norm silu ""; do
        $PEFTC compile $src --target cuda --quant fp16 $([ -n "$f" ] && echo "--fuse $f" || echo --no-fuse) -o $G/diag-$m.onnx > /dev/null 2>&1 || { echo "$m fuse=[$f] compile failed"; continue; }
        # a float16 tolerance: exit 0 = ran and matched, 1 = ran but off, 139 = the provider crashed
        timeout 60 $PEFTC verify $src $G/diag-$m.onnx --ep cuda $in --samples 1 --continuation 0 --tolerance rel=0.01 > $G/diag.log 2>&1; echo "$m fp16 fuse=[${f:-none}] rc=$? $(grep -m1 'all outputs' $G/diag.log)"
      done
    done
    ;;
  cuda-all)   # diagnosis, then the bench with the lm fusions that run
    bash $0 cuda-diag "$OUT" | tee "$OUT/diag.txt"
    L=$(grep '^lm fp16' "$OUT/diag.txt" | grep ' rc=0 ' | grep -v 'fuse=\[rotary-attention\]' | head -1 | sed 's/.*fuse=\[\([^]]*\)\].*/\1/')
    echo "lm fusions for the bench: ${L:-(none works)}"
    LMFUSE=$L bash $0 cuda-bench "$OUT"
    ;;
  cuda-bench)  # latency on the CUDA provider: original fp32 vs each cuda artifact, interleaved
    B="$PEFTC bench --ep cuda --rounds ${ROUNDS:-2} --runs ${RUNS:-50} --warmup 5 --json"
    mkdir -p $G/bench
    bench() { local name=$1; shift; note "bench $name"; $B "$@" > "$G/bench/$name.json" 2>>"$G/bench/stderr.log" || echo "bench $name failed"; }
    arts() { for v in ${VARIANTS:-none fp16 bf16 int4 nf4}; do echo $1/cuda-$v/model.onnx; done; }
    # models/lm: the fusions the diagnosis found safe on the CUDA provider (LMFUSE), batch 1 and 8
    if [ -n "${LMFUSE:-}" ]; then
      mkdir -p $G/lm-art
      for q in none fp16 int4; do $PEFTC compile models/lm/model.onnx --target cuda --quant $q $([ "$LMFUSE" = none ] && echo --no-fuse || echo --fuse $LMFUSE) -o $G/lm-art/cuda-$q.onnx > /dev/null 2>&1 || echo "lm $q compile failed"; done
      for q in fp16 int4; do timeout 120 $PEFTC verify models/lm/model.onnx $G/lm-art/cuda-$q.onnx --ep cuda --inputs models/lm/eval-windows-4x256.npy --continuation 0 --tolerance ppl=1.02 > $G/bench/lm-verify-$q.txt 2>&1; echo "lm $q verify rc=$?"; done
      for b in 1 8; do bench lm-b$b models/lm/model.onnx $G/lm-art/cuda-none.onnx $G/lm-art/cuda-fp16.onnx $G/lm-art/cuda-int4.onnx --dim batch=$b --dim seq=${SEQ:-128}; done
    fi
    if [ -f $G/llm/cuda-int4.onnx ]; then bench llm-0.95B $G/llm/base.onnx $G/llm/cuda-fp16.onnx $G/llm/cuda-int4.onnx; fi
    for m in ${DYNAMIC:-zoo-bert-dynamic}; do
      src=$(node -e "console.log(require('./golden/$m/reference.json').reference)")
      for b in 1 8; do bench $m-b$b $src $(arts $G/cuda-art/$m) --dim batch=$b --dim seq=${SEQ:-128}; done
    done
    for m in ${STATIC:-zoo-bert-static zoo-gpt2-static zoo-vit-static zoo-cnn-static}; do
      bench $m $(node -e "console.log(require('./golden/$m/reference.json').reference)") $(arts $G/cuda-art/$m)
    done
    for n in ${FP16CMP:-bert-static gpt2-static vit-static cnn-static}; do   # onnxruntime's float16 converter vs peftc fp16
      [ -f $G/ort-fp16/ort-fp16-$n.onnx ] && bench fp16-$n models/zoo/$n/model.onnx $G/ort-fp16/ort-fp16-$n.onnx $G/cuda-art/zoo-$n/cuda-fp16/model.onnx
    done
    tar -C $G -czf "$OUT/bench.tgz" bench
    ;;
  *) echo "unknown step $STEP"; exit 2 ;;
esac
note "done $STEP"
