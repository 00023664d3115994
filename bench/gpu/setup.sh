#!/usr/bin/env bash
# On the GPU machine, from the repository root: unpacks what bench/gpu/pack.sh packed.
#   bash bench/gpu/setup.sh app      node, dist/, node_modules/ -> $G/repo (a copy of this tree)
#   bash bench/gpu/setup.sh chunk    joins the .device/cuda.xz.* chunks carried so far into $G/cuda.xz
#   bash bench/gpu/setup.sh cuda     unpacks the CUDA provider beside onnxruntime-node's binding
# and `source bench/gpu/setup.sh env` sets PATH (node) and LD_LIBRARY_PATH (the CUDA 13 and cuDNN 9
# libraries of the machine's Python wheels, which the provider links against).
# $G (default /tmp/peftc-gpu) survives between calls while the machine stays warm.
G=${G:-/tmp/peftc-gpu}
case "${1:-env}" in
  app)
    set -e
    mkdir -p $G/repo
    tar -C $G/repo -xJf .device/app.tar.xz
    mv -f $G/repo/bin/node $G/node
    # the repository's tracked files, so later calls can run from $G/repo with a slim tree
    tar --exclude=./.device --exclude=./.git -cf - . | tar -C $G/repo -xf -
    echo "setup: app in $G/repo ($(du -sh $G/repo | cut -f1)), node $($G/node --version)"
    ;;
  chunk)
    set -e
    # ignored paths stay on a warm machine between calls: the chunks of earlier calls are still
    # here, so the whole file is re-made from every chunk present, in order
    cat .device/cuda.xz.* > $G/cuda.xz; ls -la .device/cuda.xz.*
    echo "setup: $G/cuda.xz now $(stat -c %s $G/cuda.xz) bytes"
    ;;
  cuda)
    set -e
    xz -dc $G/cuda.xz > $G/repo/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so
    ls -la $G/repo/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/
    ;;
  env)
    export PATH=$G:$PATH
    SP=$(python3 -c 'import site; print(site.getsitepackages()[0])')
    export LD_LIBRARY_PATH=$(find "$SP/nvidia" -name 'lib*.so*' -printf '%h\n' 2>/dev/null | sort -u | paste -sd:)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    ;;
esac
