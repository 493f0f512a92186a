/*
 * This machine's arithmetic ceilings, the figures the GEMM engines are held against:
 *   - float32 FMA peak with AVX-512 (else AVX2): on one thread, and on every logical CPU at once;
 *   - AMX-BF16 tile peak (TDPBF16PS from tiles already loaded), where the CPU has AMX and the OS grants the tile
 *     state; skipped otherwise.
 * Registers only, no memory traffic. Each thread is pinned to its own CPU and starts from a barrier; the time is
 * from the barrier to the last thread's end, the best of a few rounds. Beside it, the rate per second of CPU time
 * the threads got, which stays near the peak when other processes share the CPUs.
 * Build and run: bash bench/peak.sh [threads]
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

static double clock_s(clockid_t c) {
  struct timespec t;
  clock_gettime(c, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}
static double now(void) { return clock_s(CLOCK_MONOTONIC); }

/* ---- the loops: each returns something derived from its accumulators, so that none is optimised away ---- */

/* 12 independent FMA chains of one vector each, more than an FMA's latency times its issue rate on current cores,
 * in named registers: with an array of accumulators GCC stores them back to the stack every iteration, which halves
 * the rate. The chains start at distinct values, so that the compiler cannot merge them into one. The same loop for
 * each vector width: V the vector type, P the intrinsics' prefix, C the asm constraint of its registers. */
#define FMA_LOOP(name, isa, V, P, C, lanes)                                                                  \
  __attribute__((target(isa))) static float name(long iters) {                                            \
    V a0 = P##_set1_ps(1.00f), a1 = P##_set1_ps(1.01f), a2 = P##_set1_ps(1.02f), a3 = P##_set1_ps(1.03f),    \
      a4 = P##_set1_ps(1.04f), a5 = P##_set1_ps(1.05f), a6 = P##_set1_ps(1.06f), a7 = P##_set1_ps(1.07f),    \
      a8 = P##_set1_ps(1.08f), a9 = P##_set1_ps(1.09f), a10 = P##_set1_ps(1.10f), a11 = P##_set1_ps(1.11f);  \
    const V x = P##_set1_ps(0.999999f), y = P##_set1_ps(1e-7f);                                           \
    for (long n = 0; n < iters; n++) {                                                                    \
      a0 = P##_fmadd_ps(a0, x, y), a1 = P##_fmadd_ps(a1, x, y), a2 = P##_fmadd_ps(a2, x, y);              \
      a3 = P##_fmadd_ps(a3, x, y), a4 = P##_fmadd_ps(a4, x, y), a5 = P##_fmadd_ps(a5, x, y);              \
      a6 = P##_fmadd_ps(a6, x, y), a7 = P##_fmadd_ps(a7, x, y), a8 = P##_fmadd_ps(a8, x, y);              \
      a9 = P##_fmadd_ps(a9, x, y), a10 = P##_fmadd_ps(a10, x, y), a11 = P##_fmadd_ps(a11, x, y);          \
      __asm__ volatile("" : "+" C(a0), "+" C(a6)); /* keep the loop a loop */                              \
    }                                                                                                     \
    float v[lanes], sum = 0;                                                                              \
    P##_storeu_ps(v, P##_add_ps(P##_add_ps(P##_add_ps(a0, a1), P##_add_ps(a2, a3)),                        \
                                P##_add_ps(P##_add_ps(P##_add_ps(a4, a5), P##_add_ps(a6, a7)),             \
                                           P##_add_ps(P##_add_ps(a8, a9), P##_add_ps(a10, a11)))));        \
    for (int i = 0; i < lanes; i++) sum += v[i];                                                          \
    return sum;                                                                                           \
  }
FMA_LOOP(fma_avx512, "avx512f", __m512, _mm512, "v", 16)
FMA_LOOP(fma_avx2, "avx2,fma", __m256, _mm256, "x", 8)

typedef struct {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} __attribute__((packed)) TileCfg;
/* Eight tiles of 16 rows × 64 bytes. A constant in memory rather than a struct filled on the stack: GCC has been seen
 * to drop stores to a stack configuration that only LDTILECFG reads. */
static const TileCfg kTileCfg __attribute__((aligned(64))) = {
    1, 0, {0}, {64, 64, 64, 64, 64, 64, 64, 64}, {16, 16, 16, 16, 16, 16, 16, 16}};

/* Four 16×16 fp32 accumulator tiles fed by two A and two B tiles of 16 rows × 32 bf16, as the GEMM's 32×32 block:
 * four TDPBF16PS per iteration, each 16·16·32 multiply-adds. The operands are random bf16 values of magnitude
 * 2^-8 .. 2^8 with random signs: zero operands run faster than real data and would overstate the peak. */
__attribute__((target("amx-tile,amx-bf16"))) static float tiles_amx(long iters) {
  static __thread uint16_t A[2][16 * 32] __attribute__((aligned(64))), B[2][16 * 32] __attribute__((aligned(64)));
  static __thread float C[16 * 16] __attribute__((aligned(64)));
  uint32_t x = 12345u + (uint32_t)(uintptr_t)&x;
  for (int t = 0; t < 2; t++)
    for (int i = 0; i < 16 * 32; i++) {
      x = x * 1103515245u + 12345u;
      A[t][i] = (uint16_t)(0x3b80 + ((x >> 12) % 0x0800)) | (uint16_t)(x & 0x8000);
      x = x * 1103515245u + 12345u;
      B[t][i] = (uint16_t)(0x3b80 + ((x >> 12) % 0x0800)) | (uint16_t)(x & 0x8000);
    }
  _tile_loadconfig(&kTileCfg);
  _tile_loadd(4, A[0], 64);
  _tile_loadd(5, A[1], 64);
  _tile_loadd(6, B[0], 64);
  _tile_loadd(7, B[1], 64);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (long n = 0; n < iters; n++) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, C, 64);
  _tile_release();
  return C[0];
}

/* ---- threads started together ---- */

typedef float (*Loop)(long);
typedef struct {
  Loop loop;
  long iters;
  int cpu_id;
  pthread_barrier_t* start;
  double end, cpu;
  float sink;
} Job;

static void* worker(void* p) {
  Job* j = p;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(j->cpu_id, &set);
  pthread_setaffinity_np(pthread_self(), sizeof set, &set);  // best effort: unpinned threads still measure
  pthread_barrier_wait(j->start);
  const double c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
  j->sink = j->loop(j->iters);
  j->end = now();
  j->cpu = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
  return NULL;
}

/* Seconds from the common start to the last thread's end, `threads` threads each running loop(iters); *cpu gets
 * the CPU seconds of all threads together. */
static double run(Loop loop, long iters, int threads, const int* cpus, double* cpu) {
  Job jobs[256];
  pthread_t tid[256];
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, threads + 1);
  for (int t = 0; t < threads; t++) {
    jobs[t] = (Job){loop, iters, cpus[t], &start, 0, 0, 0};
    pthread_create(&tid[t], NULL, worker, &jobs[t]);
  }
  pthread_barrier_wait(&start);
  const double t0 = now();
  double end = t0;
  float sink = 0;
  *cpu = 0;
  for (int t = 0; t < threads; t++) {
    pthread_join(tid[t], NULL);
    if (jobs[t].end > end) end = jobs[t].end;
    *cpu += jobs[t].cpu;
    sink += jobs[t].sink;
  }
  pthread_barrier_destroy(&start);
  if (sink == 12345.f) puts("");  // the results are used
  return end - t0;
}

/* Best rates of a few rounds, with iterations chosen for about 0.2 s a round: operations per second of wall time
 * (all threads together) and per second of CPU time (per thread). */
typedef struct {
  double wall, cpu;
} Rate;
static Rate best_rate(Loop loop, double ops_per_iter, int threads, const int* cpus) {
  double cpu;
  long iters = 1 << 16;
  while (run(loop, iters, 1, cpus, &cpu) < 0.02) iters *= 4;
  iters = (long)(iters * 0.2 / run(loop, iters, 1, cpus, &cpu)) + 1;
  Rate best = {0, 0};
  for (int round = 0; round < 3; round++) {
    const double ops = ops_per_iter * iters * threads, wall = run(loop, iters, threads, cpus, &cpu);
    if (ops / wall > best.wall) best.wall = ops / wall;
    if (ops / cpu > best.cpu) best.cpu = ops / cpu;  // cpu sums the threads: this is per CPU second of one thread
  }
  return best;
}

static void report(const char* what, Loop loop, double flop_per_iter, int threads, const int* cpus) {
  const Rate one = best_rate(loop, flop_per_iter, 1, cpus);
  printf("%s\n  1 thread : %8.1f GFLOP/s (%.1f per CPU second)\n", what, one.wall / 1e9, one.cpu / 1e9);
  if (threads > 1) {
    const Rate all = best_rate(loop, flop_per_iter, threads, cpus);
    printf("  %d threads: %8.1f GFLOP/s (%.1f per thread, %.2f× one thread; %.1f per CPU second of a thread)\n", threads,
           all.wall / 1e9, all.wall / 1e9 / threads, all.wall / one.wall, all.cpu / 1e9);
  }
}

static int amx_supported(const char** why) {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 24)) || !(d & (1u << 22))) {
    *why = "the CPU has no AMX-TILE / AMX-BF16";
    return 0;
  }
  if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) {
    *why = "the OS does not grant the AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM failed)";
    return 0;
  }
  return 1;
}

int main(int argc, char** argv) {
  cpu_set_t allowed;
  int cpus[256], ncpu = 0;
  if (sched_getaffinity(0, sizeof allowed, &allowed) == 0) {
    for (int c = 0; c < CPU_SETSIZE && ncpu < 256; c++)
      if (CPU_ISSET(c, &allowed)) cpus[ncpu++] = c;
  }
  if (ncpu == 0) cpus[ncpu++] = 0;
  int threads = argc > 1 ? atoi(argv[1]) : ncpu;
  if (threads < 1 || threads > ncpu) {
    fprintf(stderr, "usage: %s [threads], 1 to %d (the CPUs this process may run on)\n", argv[0], ncpu);
    return 2;
  }
  char model[256] = "unknown";
  FILE* f = fopen("/proc/cpuinfo", "r");
  if (f) {
    char line[512];
    while (fgets(line, sizeof line, f))
      if (!strncmp(line, "model name", 10)) {
        const char* v = strchr(line, ':');
        if (v) snprintf(model, sizeof model, "%s", v + 2);
        model[strcspn(model, "\n")] = 0;
        break;
      }
    fclose(f);
  }
  printf("CPU: %s; %d logical CPUs available, measuring on %d\n", model, ncpu, threads);

  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f"))
    report("float32 FMA, AVX-512 (12 chains × 16 lanes):", fma_avx512, 12.0 * 16 * 2, threads, cpus);
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    report("float32 FMA, AVX2 (12 chains × 8 lanes):", fma_avx2, 12.0 * 8 * 2, threads, cpus);
  else
    puts("float32 FMA: skipped (neither AVX-512F nor AVX2 with FMA)");

  const char* why = "";
  if (amx_supported(&why)) {
    const double flop = 4.0 * 16 * 16 * 32 * 2;
    report("AMX-BF16 TDPBF16PS, tiles loaded once (bf16 multiply-adds, as FLOP):", tiles_amx, flop, threads, cpus);
    puts("  (the GEMM's float32 product takes six of these per multiply-add: divide by 6 for its ceiling)");
  } else {
    printf("AMX-BF16: skipped (%s)\n", why);
  }
  return 0;
}
