#!/usr/bin/env bash
# Installs dependencies, builds attnlab, and runs the main job on the embedded default model
# (models/tinylm): a greedy continuation of a prompt and the model summary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DATTNLAB_TESTS=OFF >/dev/null
cmake --build build --target attnlab -j"$(nproc)"
./build/attnlab generate -m models/tinylm -p "In the beginning God created" -n 48 --temp 0
echo
./build/attnlab inspect -m models/tinylm
