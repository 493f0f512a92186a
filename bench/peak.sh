#!/usr/bin/env bash
# This machine's float32 FMA peak (AVX-512, else AVX2) on one thread and on all CPUs, and its AMX-BF16 tile peak
# where the CPU has AMX and the OS grants it (bench/peak.c). Runs for a few seconds; an idle machine gives the
# figures worth keeping.
#   usage: bash bench/peak.sh [threads]
set -euo pipefail
cd "$(dirname "$0")"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
gcc -std=gnu11 -O2 -Wall -pthread peak.c -o "$out/peak"
"$out/peak" "$@"
