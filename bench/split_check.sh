#!/usr/bin/env bash
# Checks the AMX engine's float32 → three bf16 pieces split on every float32 bit pattern (bench/split_check.cc),
# compiled from native/bf16_split.h with the addon's -march=native. Needs AVX-512F, not AMX.
#   usage: bash bench/split_check.sh
set -euo pipefail
cd "$(dirname "$0")"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
g++ -std=c++17 -O2 -march=native -fopenmp split_check.cc -o "$out/split_check"
"$out/split_check"
