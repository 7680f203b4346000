#!/usr/bin/env bash
# Installs dependencies, builds attnlab, and runs the main job on the embedded default model
# (models/tinylm): the HTML report of what every attention head does on a prompt
# (report/report.html, see docs/report.md), then a greedy continuation of the prompt.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DATTNLAB_TESTS=OFF >/dev/null
cmake --build build --target attnlab -j"$(nproc)"
PROMPT="And the LORD said unto Moses, Behold, I have hearkened unto thee"
./build/attnlab report -m models/tinylm -p "$PROMPT" -o report
./build/attnlab probe heads -m models/tinylm -p "$PROMPT"
./build/attnlab generate -m models/tinylm -p "$PROMPT" -n 32 --temp 0
echo
echo "Open report/report.html in a browser."
