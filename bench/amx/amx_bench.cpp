// Accuracy and speed driver for the addon's AMX-BF16 GEMM (native/amx_gemm.cc), against cblas_sgemm and a
// float64 reference. Build and run (see Makefile in this folder):
//   make -C bench/amx && /tmp/amx_bench test && /tmp/amx_bench acc
//   env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /tmp/amx_bench bench
// The first measurements (README.md here) were taken with the standalone prototype this driver replaced
// (git history: bench/amx/amx_gemm.cpp), which also had a two-piece variant and packing-excluded timing.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../../native/amx_gemm.h"

static void sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, const float* B, float beta, float* C) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, ta ? M : K,
              B, tb ? K : N, beta, C, N);
}

// float64 reference and the error scale |alpha|·Σ|a||b| + |beta·C0|
static void reference(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, const float* B, float beta,
                      const float* C0, std::vector<double>& ref, std::vector<double>& scale) {
  ref.assign((size_t)M * N, 0.0);
  scale.assign((size_t)M * N, 0.0);
  std::vector<double> opA((size_t)M * K), opB((size_t)K * N);  // opB stored transposed: [N][K]
  for (int i = 0; i < M; i++)
    for (int k = 0; k < K; k++) opA[(size_t)i * K + k] = ta ? A[(size_t)k * M + i] : A[(size_t)i * K + k];
  for (int k = 0; k < K; k++)
    for (int j = 0; j < N; j++) opB[(size_t)j * K + k] = tb ? B[(size_t)j * K + k] : B[(size_t)k * N + j];
#pragma omp parallel for schedule(dynamic, 4)
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      const double* a = &opA[(size_t)i * K];
      const double* b = &opB[(size_t)j * K];
      double s = 0, sa = 0;
      for (int k = 0; k < K; k++) s += a[k] * b[k], sa += std::fabs(a[k] * b[k]);
      double c0 = beta != 0.f ? (double)C0[(size_t)i * N + j] : 0.0;
      ref[(size_t)i * N + j] = (double)alpha * s + (double)beta * c0;
      scale[(size_t)i * N + j] = std::fabs((double)alpha) * sa + std::fabs((double)beta * c0);
    }
}
struct Err { double max_rel, mean_rel; };
static Err error_of(const std::vector<float>& C, const std::vector<double>& ref, const std::vector<double>& scale) {
  double mx = 0, sum = 0;
  for (size_t i = 0; i < C.size(); i++) {
    double e = scale[i] > 0 ? std::fabs((double)C[i] - ref[i]) / scale[i] : std::fabs((double)C[i] - ref[i]);
    if (!(e == e)) e = INFINITY;
    mx = std::max(mx, e);
    sum += e;
  }
  return {mx, sum / C.size()};
}

static void fill(std::vector<float>& v, int mode, std::mt19937& g) {
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_real_distribution<float> ud(-4.f, 4.f);
  for (auto& x : v) {
    x = nd(g);
    if (mode == 1) x *= std::pow(10.f, ud(g));  // magnitudes spanning 1e-4 .. 1e4
  }
}

static int run_test() {
  std::mt19937 g(1);
  int shapes[][3] = {{1, 1, 1}, {37, 53, 71}, {16, 16, 32}, {33, 17, 65}, {100, 200, 300}, {64, 768, 256}, {5, 300, 1000}, {96, 64, 1100}};
  bool ok = true;
  for (auto& s : shapes)
    for (int tr = 0; tr < 4; tr++) {
      bool ta = tr & 1, tb = tr & 2;
      int M = s[0], N = s[1], K = s[2];
      std::vector<float> A((size_t)M * K), B((size_t)K * N), C0((size_t)M * N);
      fill(A, 0, g), fill(B, 0, g), fill(C0, 0, g);
      float alpha = (tr == 1 || tr == 2) ? 1.f : 0.7f, beta = tr == 0 ? 0.3f : tr == 1 ? 1.f : 0.f;
      std::vector<double> ref, scale;
      reference(ta, tb, M, N, K, alpha, A.data(), B.data(), beta, C0.data(), ref, scale);
      std::vector<float> Cs = C0, C6 = C0;
      if (beta == 0.f) std::fill(C6.begin(), C6.end(), NAN);  // beta = 0 must not read C
      sgemm(ta, tb, M, N, K, alpha, A.data(), B.data(), beta, Cs.data());
      if (!amx_gemm(ta, tb, M, N, K, alpha, A.data(), B.data(), beta, C6.data())) {
        printf("AMX is not available on this machine or build\n");
        return 2;
      }
      Err es = error_of(Cs, ref, scale), e6 = error_of(C6, ref, scale);
      bool pass = e6.max_rel <= std::max(2.5 * es.max_rel, 1e-7);
      ok &= pass;
      printf("%-4s M=%4d N=%4d K=%4d ta=%d tb=%d  max rel err: sgemm %.2e  amx %.2e\n", pass ? "ok" : "FAIL", M, N, K, ta,
             tb, es.max_rel, e6.max_rel);
    }
  printf(ok ? "ALL OK\n" : "SOME FAILED\n");
  return ok ? 0 : 1;
}

static void run_acc() {
  std::mt19937 g(2);
  int shapes[][3] = {{512, 512, 256}, {256, 256, 1024}, {4096, 768, 256}, {4096, 256, 1024}, {512, 512, 4096}};
  printf("| dist | M | N | K | trans | sgemm max | AMX max | sgemm mean | AMX mean |\n");
  printf("|---|---|---|---|---|---|---|---|---|\n");
  for (int mode = 0; mode < 2; mode++)
    for (auto& s : shapes)
      for (int tr = 0; tr < 2; tr++) {
        bool ta = false, tb = tr == 1;
        int M = s[0], N = s[1], K = s[2];
        std::vector<float> A((size_t)M * K), B((size_t)K * N);
        fill(A, mode, g), fill(B, mode, g);
        std::vector<double> ref, scale;
        reference(ta, tb, M, N, K, 1.f, A.data(), B.data(), 0.f, nullptr, ref, scale);
        std::vector<float> Cs((size_t)M * N), C6((size_t)M * N);
        sgemm(ta, tb, M, N, K, 1.f, A.data(), B.data(), 0.f, Cs.data());
        amx_gemm(ta, tb, M, N, K, 1.f, A.data(), B.data(), 0.f, C6.data());
        Err es = error_of(Cs, ref, scale), e6 = error_of(C6, ref, scale);
        printf("| %s | %d | %d | %d | %s | %.2e | %.2e | %.2e | %.2e |\n", mode ? "mixed 1e±4" : "normal", M, N, K,
               tb ? "N,T" : "N,N", es.max_rel, e6.max_rel, es.mean_rel, e6.mean_rel);
        fflush(stdout);
      }
}

template <typename F>
static double time_batch(F f, double min_s) {  // seconds per call, one batch
  int n = 0;
  double t0 = omp_get_wtime(), t;
  do { f(); n++; t = omp_get_wtime() - t0; } while (t < min_s);
  return t / n;
}

static void run_bench(int rounds, double min_s) {
  struct S { int M, N, K; bool ta, tb; } shapes[] = {
      {4096, 768, 256, 0, 0},  {4096, 256, 256, 0, 0}, {4096, 1024, 256, 0, 0}, {4096, 256, 1024, 0, 0},
      {3584, 768, 256, 0, 0},  {4096, 4096, 128, 0, 0}, {4096, 4096, 128, 0, 1}, {1024, 1024, 1024, 0, 0},
      {64, 768, 256, 0, 0},    {64, 1024, 256, 0, 0},
      // backward-pass forms used by the project (dX = dY·W^T: N,T; dW = X^T·dY: T,N)
      {4096, 256, 768, 0, 1},  {256, 768, 4096, 1, 0}};
  printf("threads=%d rounds=%d (each round: batch of calls >= %.2fs; median over rounds)\n", omp_get_max_threads(), rounds,
         min_s);
  printf("| M | N | K | op | sgemm GFLOP/s | AMX GFLOP/s (packing included) | speedup |\n");
  printf("|---|---|---|---|---|---|---|\n");
  std::mt19937 g(3);
  for (auto& s : shapes) {
    int M = s.M, N = s.N, K = s.K;
    std::vector<float> A((size_t)M * K), B((size_t)K * N), C((size_t)M * N, 0.f);
    fill(A, 0, g), fill(B, 0, g);
    double fl = 2.0 * M * N * K;
    auto f_s = [&] { sgemm(s.ta, s.tb, M, N, K, 1.f, A.data(), B.data(), 0.f, C.data()); };
    auto f_a = [&] { amx_gemm(s.ta, s.tb, M, N, K, 1.f, A.data(), B.data(), 0.f, C.data()); };
    f_s(), f_a();  // warm-up
    std::vector<double> ts, ta;
    for (int r = 0; r < rounds; r++) ts.push_back(time_batch(f_s, min_s)), ta.push_back(time_batch(f_a, min_s));
    auto med = [](std::vector<double> v) { std::sort(v.begin(), v.end()); return v[v.size() / 2]; };
    double s_m = med(ts), a_m = med(ta);
    printf("| %d | %d | %d | %s | %.0f | %.0f | %.2fx |\n", M, N, K, s.ta ? (s.tb ? "T,T" : "T,N") : (s.tb ? "N,T" : "N,N"),
           fl / s_m / 1e9, fl / a_m / 1e9, s_m / a_m);
    fflush(stdout);
  }
}

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "test";
  if (!amx_available()) {
    fprintf(stderr, "AMX-BF16 is not available (CPU, OS permission, or a build without -mamx-*)\n");
    return 2;
  }
  if (mode == "test") return run_test();
  if (mode == "acc") { run_acc(); return 0; }
  if (mode == "bench") {
    run_bench(argc > 2 ? atoi(argv[2]) : 7, argc > 3 ? atof(argv[3]) : 0.15);
    return 0;
  }
  if (mode == "packed" && argc >= 7) {  // sgemm vs AMX vs AMX with op(B) packed beforehand: packed M N K ta tb
    int M = atoi(argv[2]), N = atoi(argv[3]), K = atoi(argv[4]);
    bool ta = atoi(argv[5]), tb = atoi(argv[6]);
    std::mt19937 g(3);
    std::vector<float> A((size_t)M * K), B((size_t)K * N), C((size_t)M * N, 0.f), C2((size_t)M * N, 0.f);
    fill(A, 0, g), fill(B, 0, g);
    std::vector<uint16_t> pb(amx_packed_b_size(N, K));
    amx_pack_b(tb, N, K, B.data(), pb.data());
    auto fs = [&] { sgemm(ta, tb, M, N, K, 1.f, A.data(), B.data(), 0.f, C.data()); };
    auto fa = [&] { amx_gemm(ta, tb, M, N, K, 1.f, A.data(), B.data(), 0.f, C.data()); };
    auto fp = [&] { amx_gemm_packed(ta, M, N, K, 1.f, A.data(), pb.data(), 0.f, C2.data()); };
    fs(), fa(), fp();
    double fl = 2.0 * M * N * K;
    for (int r = 0; r < 3; r++)
      printf("%d x %d x %d: sgemm %.0f  amx %.0f  amx packed-B %.0f GFLOP/s\n", M, N, K, fl / time_batch(fs, 0.2) / 1e9,
             fl / time_batch(fa, 0.2) / 1e9, fl / time_batch(fp, 0.2) / 1e9);
    // error per element against float64, scaled by sum_k |a||b| (as in the tests), for the three engines
    auto err = [&](const std::vector<float>& X) {
      double worst = 0;
      for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
          double s = 0, sa = 0;
          for (int k = 0; k < K; k++) {
            double a = ta ? A[(size_t)k * M + i] : A[(size_t)i * K + k], b = tb ? B[(size_t)j * K + k] : B[(size_t)k * N + j];
            s += a * b, sa += std::fabs(a * b);
          }
          worst = std::max(worst, std::fabs(X[(size_t)i * N + j] - s) / sa);
        }
      return worst;
    };
    fa();
    double e_amx = err(C);
    fs();
    printf("max scaled error: sgemm %.2e  amx %.2e  amx packed-B %.2e\n", err(C), e_amx, err(C2));
    return 0;
  }
  if (mode == "decode") {  // the decoder's products of a D=256, L=6, V=4096 model at 64 rows, weights pre-packed;
                           // with `cold`, a 100 MB sweep between steps stands in for the KV-cache reads: decode [steps] [cold]
    const int D = 256, F = 1024, L = 6, V = 4096, M = 64, steps = argc > 2 ? atoi(argv[2]) : 50;
    const bool cold = argc > 3 && std::string(argv[3]) == "cold";
    struct W { int N, K; bool tb; std::vector<uint16_t> p; };
    std::vector<W> ws;
    std::mt19937 g(3);
    for (int l = 0; l < L; l++)
      for (auto nk : {std::pair<int, int>{3 * D, D}, {D, D}, {F, D}, {D, F}}) ws.push_back({nk.first, nk.second, false, {}});
    ws.push_back({V, D, true, {}});
    for (auto& w : ws) {
      std::vector<float> B((size_t)w.N * w.K);
      fill(B, 0, g);
      w.p.resize(amx_packed_b_size(w.N, w.K));
      amx_pack_b(w.tb, w.N, w.K, B.data(), w.p.data());
    }
    std::vector<float> A((size_t)M * F), C((size_t)M * V), sweep((size_t)25 << 20);
    fill(A, 0, g);
    double fl = 0, t_gemm = 0;
    for (int s = 0; s < steps; s++) {
      volatile float sink = 0;
      if (cold) for (size_t i = 0; i < sweep.size(); i += 16) sink = sink + sweep[i];
      double t0 = omp_get_wtime();
      for (auto& w : ws) {
        amx_gemm_packed(false, M, w.N, w.K, 1.f, A.data(), w.p.data(), 0.f, C.data());
        fl += 2.0 * M * w.N * w.K;
      }
      t_gemm += omp_get_wtime() - t0;
    }
    printf("decode products (%s weights): %.0f GFLOP/s (%.2f ms per step)\n", cold ? "cold" : "warm", fl / t_gemm / 1e9,
           1e3 * t_gemm / steps);
    return 0;
  }
  if (mode == "one" && argc >= 7) {  // one shape, AMX only, for a profiler: one M N K ta tb [seconds | cold]
    int M = atoi(argv[2]), N = atoi(argv[3]), K = atoi(argv[4]);
    bool ta = atoi(argv[5]), tb = atoi(argv[6]);
    std::mt19937 g(3);
    std::vector<float> A((size_t)M * K), B((size_t)K * N), C((size_t)M * N, 0.f);
    fill(A, 0, g), fill(B, 0, g);
    // `cold` as the last argument: a 100 MB sweep before each call (operands and C come from memory, as
    // in a training step); only the call itself is timed.
    const bool cold = std::string(argv[argc - 1]) == "cold";
    std::vector<float> sweep(cold ? (size_t)25 << 20 : 0);
    double t;
    if (cold) {
      int n = 0;
      double tt = 0;
      while (tt < 1.0 || n < 5) {
        volatile float sink = 0;
        for (size_t i = 0; i < sweep.size(); i += 16) sink = sink + sweep[i];
        double t0 = omp_get_wtime();
        amx_gemm(ta, tb, M, N, K, 1.f, A.data(), B.data(), 0.f, C.data());
        tt += omp_get_wtime() - t0, n++;
      }
      t = tt / n;
    } else {
      t = time_batch([&] { amx_gemm(ta, tb, M, N, K, 1.f, A.data(), B.data(), 0.f, C.data()); },
                     argc > 7 ? atof(argv[7]) : 2.0);
    }
    printf("%d x %d x %d %s%s: %.0f GFLOP/s\n", M, N, K, ta ? (tb ? "T,T" : "T,N") : (tb ? "N,T" : "N,N"), cold ? " (cold)" : "",
           2.0 * M * N * K / t / 1e9);
    return 0;
  }
  fprintf(stderr, "usage: %s test|acc|bench [rounds] [min_seconds_per_batch] | one M N K ta tb [seconds | cold] | "
                  "packed M N K ta tb | decode [steps] [cold]\n", argv[0]);
  return 2;
}
