#!/usr/bin/env bash
# Installs every Debian package attnlab needs to build, test and benchmark.
# Idempotent: apt-get skips what is already installed. Run as root on Debian 12.
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config git xz-utils
  libgtest-dev libgmock-dev libbenchmark-dev
  libhwy-dev nlohmann-json3-dev libpcre2-dev libutf8proc-dev libcli11-dev libfmt-dev
  libpng-dev
  chromium fonts-dejavu-core  # tests/support/browser.cpp opens the HTML report headless
)
# Optional extras, space separated in ATTNLAB_SETUP_EXTRA:
#   bench: the PyTorch peer of bench/cpu_model_bench.py (Debian's torch uses the system BLAS:
#          without OpenBLAS it falls back to the reference BLAS, ~20x slower)
#   fuzz:  clang and its runtime for the libFuzzer targets (cmake --preset fuzz)
for extra in ${ATTNLAB_SETUP_EXTRA:-}; do
  case "$extra" in
    bench) packages+=(python3-torch python3-numpy libopenblas0-pthread) ;;
    fuzz) packages+=(clang libclang-rt-14-dev) ;;
    *) echo "setup.sh: unknown extra '$extra' (known: bench fuzz)" >&2; exit 2 ;;
  esac
done
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
