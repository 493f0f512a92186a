/*
 * AMX-BF16 peak of one core (tiles in registers, no memory traffic): the ceiling for a future split-bf16
 * GEMM that would keep fp32 accuracy (six bf16 products per fp32 product). Not part of the build.
 * Build and run: gcc -O2 -mamx-tile -mamx-bf16 bench/amx_peak.c -o /tmp/amx_peak && /tmp/amx_peak
 * Measured 2026-11-26 on the 2-core dev machine: 3080 and 3506 GFLOP/s on one core (two runs) (fp32 sgemm 1024³: ~190 per core).
 */
#include <immintrin.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18
typedef struct { uint8_t palette; uint8_t start_row; uint8_t res[14]; uint16_t colsb[16]; uint8_t rows[16]; } __attribute__((packed)) cfg_t;
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(){
  if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)) { perror("arch_prctl"); return 1; }
  cfg_t c; memset(&c,0,sizeof c); c.palette=1;
  for(int i=0;i<8;i++){c.colsb[i]=64;c.rows[i]=16;}
  _tile_loadconfig(&c);
  static uint16_t A[16*32] __attribute__((aligned(64))); static float C[16*16] __attribute__((aligned(64)));
  for(int i=0;i<16*32;i++)A[i]=0x3f80; // 1.0 bf16
  _tile_loadd(4,A,64);_tile_loadd(5,A,64);_tile_loadd(6,A,64);_tile_loadd(7,A,64);
  _tile_zero(0);_tile_zero(1);_tile_zero(2);_tile_zero(3);
  long n=20000000; double t0=now();
  for(long i=0;i<n;i++){ _tile_dpbf16ps(0,4,6); _tile_dpbf16ps(1,4,7); _tile_dpbf16ps(2,5,6); _tile_dpbf16ps(3,5,7);}
  double t=now()-t0;
  _tile_stored(0,C,64);
  printf("C[0]=%g  %.1f GFLOP/s (one core)\n", C[0], 4.0*n*16*16*32*2/t/1e9);
  _tile_release();
  return 0;
}
