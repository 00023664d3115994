#!/usr/bin/env bash
# Packs what the GPU machine lacks into .device/ (git-ignored), to travel with the device tool's
# `carry` (64 MiB a call, so the CUDA provider goes in xz chunks over several calls):
#   .device/app.tar.xz    node (this machine's binary), dist/ and the production node_modules
#                         without TF.js, with onnxruntime-node 1.29.0 (linux x64 only) in place
#                         of 1.30 (same version as the CUDA provider below)
#   .device/cuda.xz.aa..  libonnxruntime_providers_cuda.so of onnxruntime 1.29.0 (xz, split; its
#                         14 KiB libonnxruntime_providers_shared.so travels in app.tar.xz),
#                         built for CUDA 13 (npm: com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9)
# Then on the GPU machine: bench/gpu/setup.sh (see bench/gpu/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
D=.device
CHUNK=${CHUNK:-55M}
mkdir -p $D/dl $D/stage
npm run build >/dev/null
( cd $D/dl && for p in onnxruntime-node@1.29.0 onnxruntime-common@1.29.0 com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9; do
    f=$(npm pack --silent "$p" 2>/dev/null | tail -1); mkdir -p "${f%.tgz}" && tar -xzf "$f" -C "${f%.tgz}"; done )
S=$D/stage; rm -rf $S; mkdir -p $S/node_modules $S/bin
cp "$(command -v node)" $S/bin/node
cp -r dist $S/dist
# production dependencies, less TF.js (only the tfjs target's runner needs it) and onnxruntime
for m in $(npm ls --omit=dev --all --parseable 2>/dev/null | sed "s|^$PWD/||" | grep '^node_modules/' \
           | grep -v 'tensorflow\|onnxruntime\|@types\|@webgpu' | awk -F/ '{ print ($2 ~ /^@/) ? $1"/"$2"/"$3 : $1"/"$2 }' | sort -u); do
  mkdir -p "$S/$(dirname "$m")"; cp -r "$m" "$S/$m"
done
O=$D/dl/onnxruntime-node-1.29.0/package
mkdir -p $S/node_modules/onnxruntime-node/bin/napi-v6/linux
cp -r $O/dist $O/package.json $S/node_modules/onnxruntime-node/
cp -r $O/bin/napi-v6/linux/x64 $S/node_modules/onnxruntime-node/bin/napi-v6/linux/
cp -r $D/dl/onnxruntime-common-1.29.0/package $S/node_modules/onnxruntime-common
P=$D/dl/com.github.asus4.onnxruntime.linux-x64-gpu-0.4.9/package/Plugins/Linux/x64
# the 14 KiB bridge library travels with the app; the 230 MB CUDA provider in chunks
cp $P/libonnxruntime_providers_shared.so $S/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/
tar -C $S -cf - . | xz -T0 -6 > $D/app.tar.xz
if [ ! -f $D/cuda.xz.aa ]; then
  xz -T0 -9 -c $P/libonnxruntime_providers_cuda.so | split -b "$CHUNK" - $D/cuda.xz.
fi
ls -la $D/app.tar.xz $D/cuda.xz.*
