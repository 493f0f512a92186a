// N-API bindings: argument checking only. Every buffer's length is checked against the shape
// arguments so a mistake on the TypeScript side throws instead of corrupting memory.
#include <cblas.h>
#include <napi.h>

#include <cmath>
#include <string>
#include <xmmintrin.h>

#include "kernels.h"

namespace {

// Flush denormals on the calling (JavaScript) thread for the duration of one kernel call only.
struct DenormalGuard {
  unsigned saved;
  DenormalGuard() : saved(_mm_getcsr()) { _mm_setcsr(saved | 0x8040); }
  ~DenormalGuard() { _mm_setcsr(saved); }
};

struct Args {
  const Napi::CallbackInfo& info;
  const char* fn;
  DenormalGuard guard;
  explicit Args(const Napi::CallbackInfo& i, const char* name) : info(i), fn(name) {}

  [[noreturn]] void fail(int i, const std::string& what) const {
    throw Napi::TypeError::New(info.Env(), std::string(fn) + ": argument " + std::to_string(i) + " " + what);
  }
  double num(int i) const {
    if (!info[i].IsNumber()) fail(i, "must be a number");
    return info[i].As<Napi::Number>().DoubleValue();
  }
  int integer(int i) const {
    double d = num(i);
    if (d != (double)(int64_t)d || d < -2147483648.0 || d > 2147483647.0) fail(i, "must be an int32");
    return (int)d;
  }
  int dim(int i) const {
    int d = integer(i);
    if (d < 0) fail(i, "must be >= 0");
    return d;
  }
  bool boolean(int i) const {
    if (!info[i].IsBoolean()) fail(i, "must be a boolean");
    return info[i].As<Napi::Boolean>().Value();
  }
  template <typename T, napi_typedarray_type K>
  T* typed(int i, int64_t need, bool nullable, const char* tname) const {
    if (nullable && (info[i].IsNull() || info[i].IsUndefined())) return nullptr;
    if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != K)
      fail(i, std::string("must be a ") + tname);
    auto arr = info[i].As<Napi::TypedArrayOf<T>>();
    if ((int64_t)arr.ElementLength() < need)
      fail(i, std::string("has ") + std::to_string(arr.ElementLength()) + " elements, needs " + std::to_string(need));
    return arr.Data();
  }
  float* f32(int i, int64_t need) const { return typed<float, napi_float32_array>(i, need, false, "Float32Array"); }
  float* f32n(int i, int64_t need) const { return typed<float, napi_float32_array>(i, need, true, "Float32Array"); }
  int32_t* i32(int i, int64_t need) const { return typed<int32_t, napi_int32_array>(i, need, false, "Int32Array"); }
  double* f64(int i, int64_t need) const { return typed<double, napi_float64_array>(i, need, false, "Float64Array"); }
  uint16_t* u16n(int i, int64_t need) const { return typed<uint16_t, napi_uint16_array>(i, need, true, "Uint16Array"); }
  uint16_t* u16(int i, int64_t need) const { return typed<uint16_t, napi_uint16_array>(i, need, false, "Uint16Array"); }
  bool absent(int i) const { return info[i].IsUndefined(); }
  // An element count that may exceed int32 (a whole weight matrix).
  int64_t count(int i) const {
    double d = num(i);
    if (!(d >= 0) || d > 9007199254740992.0 || d != (double)(int64_t)d) fail(i, "must be an integer >= 0");
    return (int64_t)d;
  }
  float eps(int i) const {
    double d = num(i);
    if (!(d >= 0) || !std::isfinite(d)) fail(i, "(eps) must be a finite number >= 0");
    return (float)d;
  }
  int half_kind(int i) const {
    if (!info[i].IsNumber() || (num(i) != 0 && num(i) != 1)) fail(i, "(kind) must be 0 (bf16) or 1 (IEEE f16)");
    return (int)num(i);
  }
};

using Fn = Napi::Value (*)(const Napi::CallbackInfo&);

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  Args a(info, "setNumThreads");
  int n = a.integer(0);
  if (n < 1) a.fail(0, "must be >= 1");
  uf::set_num_threads(n);
  return info.Env().Undefined();
}
Napi::Value GetNumThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), uf::get_num_threads());
}
Napi::Value SetGemmMode(const Napi::CallbackInfo& info) {
  Args a(info, "setGemmMode");
  if (!info[0].IsString()) a.fail(0, "must be 'auto', 'blas' or 'amx'");
  std::string m = info[0].As<Napi::String>().Utf8Value();
  if (m != "auto" && m != "blas" && m != "amx") a.fail(0, "must be 'auto', 'blas' or 'amx'");
  uf::set_gemm_mode(m == "blas" ? 1 : m == "amx" ? 2 : 0);
  return info.Env().Undefined();
}
const char* gemm_mode_name() {
  int m = uf::get_gemm_mode();
  return m == 1 ? "blas" : m == 2 ? "amx" : "auto";
}
Napi::Value GetGemmMode(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), gemm_mode_name()); }
Napi::Value GemmAmxAvailable(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), uf::gemm_amx_available());
}
Napi::Value Info(const Napi::CallbackInfo& info) {
  std::string s = std::string("OpenBLAS ") + openblas_get_config() + "; core " + openblas_get_corename() +
                  "; threads " + std::to_string(uf::get_num_threads()) + "; gemm " + gemm_mode_name() +
                  (uf::gemm_amx_available() ? " (AMX-BF16 available)" : " (no AMX)");
  return Napi::String::New(info.Env(), s);
}

// The arguments gemm and gemmPacked share: (transA, transB, M, N, K, alpha, A, B, ...).
struct GemmArgs {
  bool ta, tb;
  int M, N, K;
  float alpha;
  const float *A, *B;
  explicit GemmArgs(const Args& a)
      : ta(a.boolean(0)), tb(a.boolean(1)), M(a.dim(2)), N(a.dim(3)), K(a.dim(4)), alpha((float)a.num(5)),
        A(a.f32(6, (int64_t)M * K)), B(a.f32(7, (int64_t)K * N)) {}
};

Napi::Value Gemm(const Napi::CallbackInfo& info) {
  Args a(info, "gemm");
  GemmArgs g(a);
  float beta = (float)a.num(8);
  float* C = a.f32(9, (int64_t)g.M * g.N);
  uf::gemm(g.ta, g.tb, g.M, g.N, g.K, g.alpha, g.A, g.B, beta, C);
  return info.Env().Undefined();
}

Napi::Value GemmGelu(const Napi::CallbackInfo& info) {
  Args a(info, "gemmGelu");
  GemmArgs g(a);
  float beta = (float)a.num(8);
  float* C = a.f32(9, (int64_t)g.M * g.N);
  int kind = (int)a.num(10);
  if (kind != 1 && kind != 2) a.fail(10, "must be 1 (aux = gelu(C)) or 2 (C = C · gelu'(aux))");
  float* aux = a.f32(11, (int64_t)g.M * g.N);
  uf::gemm_gelu(g.ta, g.tb, g.M, g.N, g.K, g.alpha, g.A, g.B, beta, C, kind, aux);
  return info.Env().Undefined();
}

// C = alpha·op(A)·op(B) + beta·C over sub-matrices with leading dimensions (row strides): the column blocks of
// stacked projections (LoRA's per-module products). Straight to cblas_sgemm.
Napi::Value GemmStrided(const Napi::CallbackInfo& info) {
  Args a(info, "gemmStrided");
  bool ta = a.boolean(0), tb = a.boolean(1);
  int M = a.dim(2), N = a.dim(3), K = a.dim(4);
  float alpha = (float)a.num(5);
  int lda = a.dim(7), ldb = a.dim(9), ldc = a.dim(12);
  const int aRows = ta ? K : M, aCols = ta ? M : K, bRows = tb ? N : K, bCols = tb ? K : N;
  if (lda < std::max(aCols, 1)) a.fail(7, "(lda) is smaller than a row of A");
  if (ldb < std::max(bCols, 1)) a.fail(9, "(ldb) is smaller than a row of B");
  if (ldc < std::max(N, 1)) a.fail(12, "(ldc) is smaller than a row of C");
  auto need = [](int rows, int cols, int ld) { return rows == 0 || cols == 0 ? (int64_t)0 : (int64_t)(rows - 1) * ld + cols; };
  const float* A = a.f32(6, need(aRows, aCols, lda));
  const float* B = a.f32(8, need(bRows, bCols, ldb));
  float beta = (float)a.num(10);
  float* C = a.f32(11, need(M, N, ldc));
  if (M == 0 || N == 0) return info.Env().Undefined();
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B,
              ldb, beta, C, ldc);
  return info.Env().Undefined();
}

Napi::Value GemmPackSize(const Napi::CallbackInfo& info) {
  Args a(info, "gemmPackSize");
  return Napi::Number::New(info.Env(), (double)uf::gemm_pack_size(a.dim(0), a.dim(1)));
}

Napi::Value GemmPackB(const Napi::CallbackInfo& info) {
  Args a(info, "gemmPackB");
  bool tb = a.boolean(0);
  int N = a.dim(1), K = a.dim(2);
  const float* B = a.f32(3, (int64_t)K * N);
  const size_t words = uf::gemm_pack_size(N, K);
  if (words == 0) a.fail(4, "cannot be filled: this machine or build has no packing engine (gemmPackSize is 0)");
  uint16_t* P = a.u16n(4, (int64_t)words);
  if (!P) a.fail(4, "must be a Uint16Array");
  return Napi::Boolean::New(info.Env(), uf::gemm_pack_b(tb, N, K, B, P));
}

Napi::Value GemmPacked(const Napi::CallbackInfo& info) {
  Args a(info, "gemmPacked");
  GemmArgs g(a);
  const uint16_t* P = a.u16n(8, (int64_t)uf::gemm_pack_size(g.N, g.K));
  float beta = (float)a.num(9);
  float* C = a.f32(10, (int64_t)g.M * g.N);
  uf::gemm_packed(g.ta, g.tb, g.M, g.N, g.K, g.alpha, g.A, g.B, P, beta, C);
  return info.Env().Undefined();
}

Napi::Value GemmHalfB(const Napi::CallbackInfo& info) {
  Args a(info, "gemmHalfB");
  bool ta = a.boolean(0), tb = a.boolean(1);
  int M = a.dim(2), N = a.dim(3), K = a.dim(4);
  float alpha = (float)a.num(5);
  const float* A = a.f32(6, (int64_t)M * K);
  const uint16_t* B = a.u16(7, (int64_t)K * N);
  int kind = a.half_kind(8);
  float beta = (float)a.num(9);
  uf::gemm_half_b(ta, tb, M, N, K, alpha, A, B, kind, beta, a.f32(10, (int64_t)M * N));
  return info.Env().Undefined();
}

Napi::Value GemmPackBHalf(const Napi::CallbackInfo& info) {
  Args a(info, "gemmPackBHalf");
  bool tb = a.boolean(0);
  int N = a.dim(1), K = a.dim(2);
  const uint16_t* B = a.u16(3, (int64_t)K * N);
  int kind = a.half_kind(4);
  const size_t words = uf::gemm_pack_size(N, K);
  if (words == 0) a.fail(5, "cannot be filled: this machine or build has no packing engine (gemmPackSize is 0)");
  uint16_t* P = a.u16(5, (int64_t)words);
  return Napi::Boolean::New(info.Env(), uf::gemm_pack_b_half(tb, N, K, B, kind, P));
}

void throwBadId(const Napi::CallbackInfo& info, const char* fn, int64_t row, int32_t id, int V) {
  throw Napi::RangeError::New(info.Env(), std::string(fn) + ": token id " + std::to_string(id) + " at row " +
                                              std::to_string(row) + " is outside [0, " + std::to_string(V) + ")");
}

// embeddingForward(out, table, ids, rows, V, D) and embeddingBackward(dtable, dout, ids, rows, V, D): argument 0
// is written and argument 1 read, one of them the [V, D] table and the other the [rows, D] rows.
template <bool kBackward>
Napi::Value Embedding(const Napi::CallbackInfo& info) {
  const char* fn = kBackward ? "embeddingBackward" : "embeddingForward";
  Args a(info, fn);
  int64_t rows = a.dim(3);
  int V = a.dim(4), D = a.dim(5);
  const int64_t table = (int64_t)V * D;
  float* dst = a.f32(0, kBackward ? table : rows * D);
  const float* src = a.f32(1, kBackward ? rows * D : table);
  const int32_t* ids = a.i32(2, rows);
  int64_t bad = kBackward ? uf::embedding_backward(dst, src, ids, rows, V, D)
                          : uf::embedding_forward(dst, src, ids, rows, V, D);
  if (bad >= 0) throwBadId(info, fn, bad, ids[bad], V);
  return info.Env().Undefined();
}

Napi::Value EmbeddingForwardHalf(const Napi::CallbackInfo& info) {
  Args a(info, "embeddingForwardHalf");
  int64_t rows = a.dim(4);
  int V = a.dim(5), D = a.dim(6);
  float* out = a.f32(0, rows * D);
  const uint16_t* table = a.u16(1, (int64_t)V * D);
  int kind = a.half_kind(2);
  const int32_t* ids = a.i32(3, rows);
  int64_t bad = uf::embedding_forward_half(out, table, kind, ids, rows, V, D);
  if (bad >= 0) throwBadId(info, "embeddingForwardHalf", bad, ids[bad], V);
  return info.Env().Undefined();
}

Napi::Value RmsnormForward(const Napi::CallbackInfo& info) {
  Args a(info, "rmsnormForward");
  int64_t R = a.dim(3);
  int C = a.dim(4);
  const float* gain = a.f32n(5, C);
  const float eps = a.absent(6) ? uf::kRmsEps : a.eps(6);
  uf::rmsnorm_forward(a.f32(0, R * C), a.f32(1, R), a.f32(2, R * C), R, C, gain, eps);
  return info.Env().Undefined();
}

Napi::Value RmsnormGainBackward(const Napi::CallbackInfo& info) {
  Args a(info, "rmsnormGainBackward");
  int64_t R = a.dim(6);
  int C = a.dim(7);
  uf::rmsnorm_gain_backward(a.f32(0, R * C), a.f32n(1, C), a.f32(2, R * C), a.f32(3, R * C), a.f32(4, R),
                            a.f32(5, C), R, C);
  return info.Env().Undefined();
}

// The arguments qkRopeForward and qkRopeBackward share, from argument i: B, T, N, Nkv, H, pos0, invFreq, mode, gq, gk.
struct QkRopeArgs {
  int B, T, N, Nkv, H, pos0, mode;
  const double* inv;
  const float *gq = nullptr, *gk = nullptr;
  int64_t rows, width, heads;
  QkRopeArgs(const Args& a, int i)
      : B(a.dim(i)), T(a.dim(i + 1)), N(a.dim(i + 2)), Nkv(a.dim(i + 3)), H(a.dim(i + 4)), pos0(a.dim(i + 5)) {
    if (H % 2) a.fail(i + 4, "(head size) must be even (RoPE rotates halves)");
    if ((int64_t)pos0 + T > 2147483647) a.fail(i + 5, "pos0 + T must be an int32");
    inv = a.f64(i + 6, H / 2);
    mode = a.integer(i + 7);
    if (mode < 0 || mode > 2) a.fail(i + 7, "(mode) must be 0 (no norm), 1 (RMSNorm) or 2 (RMSNorm times gq, gk)");
    if (mode == 2) {
      gq = a.f32(i + 8, H);
      gk = a.f32(i + 9, H);
    }
    rows = (int64_t)B * T;
    heads = (int64_t)N + Nkv;
    width = ((int64_t)N + 2 * (int64_t)Nkv) * H;
  }
};

Napi::Value QkRopeForward(const Napi::CallbackInfo& info) {
  Args a(info, "qkRopeForward");
  QkRopeArgs q(a, 3);
  float* rstd = q.mode > 0 ? a.f32(1, q.rows * q.heads) : nullptr;
  const float eps = a.eps(13);
  uf::qk_rope_forward(a.f32(0, q.rows * q.width), rstd, a.f32(2, q.rows * q.width), q.B, q.T, q.N, q.Nkv, q.H,
                      q.pos0, q.inv, q.mode, q.gq, q.gk, eps);
  return info.Env().Undefined();
}

Napi::Value QkRopeBackward(const Napi::CallbackInfo& info) {
  Args a(info, "qkRopeBackward");
  QkRopeArgs q(a, 6);
  float* dgq = q.mode == 2 ? a.f32n(1, q.H) : nullptr;
  float* dgk = q.mode == 2 ? a.f32n(2, q.H) : nullptr;
  const float* rstd = q.mode > 0 ? a.f32(5, q.rows * q.heads) : nullptr;
  uf::qk_rope_backward(a.f32(0, q.rows * q.width), dgq, dgk, a.f32(3, q.rows * q.width), a.f32(4, q.rows * q.width),
                       rstd, q.B, q.T, q.N, q.Nkv, q.H, q.pos0, q.inv, q.mode, q.gq, q.gk);
  return info.Env().Undefined();
}

Napi::Value SwigluForward(const Napi::CallbackInfo& info) {
  Args a(info, "swigluForward");
  int64_t R = a.dim(2);
  int F = a.dim(3);
  uf::swiglu_forward(a.f32(0, R * F), a.f32(1, R * 2 * F), R, F);
  return info.Env().Undefined();
}

Napi::Value SwigluBackward(const Napi::CallbackInfo& info) {
  Args a(info, "swigluBackward");
  int64_t R = a.dim(3);
  int F = a.dim(4);
  uf::swiglu_backward(a.f32(0, R * 2 * F), a.f32(1, R * F), a.f32(2, R * 2 * F), R, F);
  return info.Env().Undefined();
}

// biasForward(y, b, R, C) and biasBackward(db, dy, R, C): the [R, C] rows are argument 0 forward, 1 backward.
template <bool kBackward>
Napi::Value Bias(const Napi::CallbackInfo& info) {
  Args a(info, kBackward ? "biasBackward" : "biasForward");
  int64_t R = a.dim(2);
  int C = a.dim(3);
  if (kBackward) uf::bias_backward(a.f32(0, C), a.f32(1, R * C), R, C);
  else uf::bias_forward(a.f32(0, R * C), a.f32(1, C), R, C);
  return info.Env().Undefined();
}

Napi::Value WidenHalf(const Napi::CallbackInfo& info) {
  Args a(info, "widenHalf");
  int64_t n = a.count(2);
  int kind = a.half_kind(3);
  uf::widen_half(a.f32(0, n), a.u16(1, n), n, kind);
  return info.Env().Undefined();
}

Napi::Value NarrowHalf(const Napi::CallbackInfo& info) {
  Args a(info, "narrowHalf");
  int64_t n = a.count(2);
  int kind = a.half_kind(3);
  uf::narrow_half(a.u16(0, n), a.f32(1, n), n, kind);
  return info.Env().Undefined();
}

Napi::Value RmsnormBackward(const Napi::CallbackInfo& info) {
  Args a(info, "rmsnormBackward");
  int64_t R = a.dim(4);
  int C = a.dim(5);
  uf::rmsnorm_backward(a.f32(0, R * C), a.f32(1, R * C), a.f32(2, R * C), a.f32(3, R), R, C);
  return info.Env().Undefined();
}

Napi::Value QkNormRopeForward(const Napi::CallbackInfo& info) {
  Args a(info, "qkNormRopeForward");
  int B = a.dim(3), T = a.dim(4), N = a.dim(5), H = a.dim(6), pos0 = a.dim(7);
  if (H % 2) a.fail(6, "(head size) must be even");
  int64_t rows = (int64_t)B * T, D = (int64_t)N * H;
  uf::qk_norm_rope_forward(a.f32(0, rows * 3 * D), a.f32(1, rows * 2 * N), a.f32(2, rows * 3 * D), B, T, N, H, pos0);
  return info.Env().Undefined();
}

// The key/value head count of the attention kernels (argument i, N when left out): at least 1, dividing N.
int kvHeads(const Args& a, int i, int N) {
  if (a.info[i].IsUndefined() || a.info[i].IsNull()) return N;
  int Nkv = a.dim(i);
  if (Nkv < 1) a.fail(i, "(Nkv, key/value heads) must be >= 1");
  if (N % Nkv) a.fail(i, "(Nkv, key/value heads) must divide N = " + std::to_string(N) + ", got " + std::to_string(Nkv));
  return Nkv;
}

// q and k normalised inside need an even head size and one key/value head per query head.
void checkQkNorm(const Args& a, int rstdArg, int hArg, int H, int N, int Nkv) {
  if (H % 2) a.fail(hArg, "(head size) must be even when q and k are normalised inside (RoPE rotates pairs)");
  if (Nkv != N)
    a.fail(rstdArg, "(qkRstd) needs Nkv == N (q and k normalised inside without grouped key/value heads), got N = " +
                        std::to_string(N) + ", Nkv = " + std::to_string(Nkv));
}

Napi::Value AttentionForward(const Napi::CallbackInfo& info) {
  Args a(info, "attentionForward");
  int B = a.dim(3), T = a.dim(4), N = a.dim(5), H = a.dim(6), Nkv = kvHeads(a, 8, N);
  int64_t D = (int64_t)N * H, BT = (int64_t)B * T, row = (int64_t)(N + 2 * (int64_t)Nkv) * H;
  float* qk_rstd = a.f32n(7, BT * 2 * N);
  if (qk_rstd) checkQkNorm(a, 7, 6, H, N, Nkv);
  uf::attention_forward(a.f32(0, BT * D), a.f32(1, (int64_t)B * N * T), a.f32(2, BT * row), B, T, N, H, qk_rstd, Nkv);
  return info.Env().Undefined();
}

Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  Args a(info, "attentionBackward");
  int B = a.dim(4), T = a.dim(5), N = a.dim(6), H = a.dim(7), Nkv = kvHeads(a, 9, N);
  int64_t D = (int64_t)N * H, BT = (int64_t)B * T, row = (int64_t)(N + 2 * (int64_t)Nkv) * H;
  const float* qk_rstd = a.f32n(8, BT * 2 * N);
  if (qk_rstd) checkQkNorm(a, 8, 7, H, N, Nkv);
  uf::attention_backward(a.f32(0, BT * row), a.f32(1, BT * D), a.f32(2, (int64_t)B * N * T), a.f32(3, BT * row), B,
                         T, N, H, qk_rstd, Nkv);
  return info.Env().Undefined();
}

Napi::Value AttentionDecode(const Napi::CallbackInfo& info) {
  Args a(info, "attentionDecode");
  int B = a.dim(4), Tq = a.dim(5), N = a.dim(6), H = a.dim(7), Tmax = a.dim(8), pos0 = a.dim(9);
  int Nkv = kvHeads(a, 10, N);
  if ((int64_t)pos0 + Tq > Tmax) a.fail(9, "pos0 + Tq exceeds the cache length Tmax");
  int64_t D = (int64_t)N * H, Dkv = (int64_t)Nkv * H, row = D + 2 * Dkv;
  uf::attention_decode(a.f32(0, (int64_t)B * Tq * D), a.f32(1, (int64_t)B * Tq * row), a.f32(2, (int64_t)B * Tmax * Dkv),
                       a.f32(3, (int64_t)B * Tmax * Dkv), B, Tq, N, H, Tmax, pos0, Nkv);
  return info.Env().Undefined();
}

Napi::Value GeluForward(const Napi::CallbackInfo& info) {
  Args a(info, "geluForward");
  int64_t n = (int64_t)a.num(2);
  uf::gelu_forward(a.f32(0, n), a.f32(1, n), n);
  return info.Env().Undefined();
}

Napi::Value CrossEntropy(const Napi::CallbackInfo& info) {
  Args a(info, "crossEntropy");
  int64_t R = a.dim(3);
  int V = a.dim(4);
  const float* logits = a.f32(0, R * V);
  const int32_t* targets = a.i32(1, R);
  const float* w = a.f32(2, R);
  float* rowLoss = a.f32n(5, R);
  float* dlogits = a.f32n(6, R * V);
  float gs = (float)a.num(7);
  int64_t bad = -1;
  double s = uf::cross_entropy(logits, targets, w, R, V, rowLoss, dlogits, gs, &bad);
  if (bad >= 0) throwBadId(info, "crossEntropy", bad, targets[bad], V);
  return Napi::Number::New(info.Env(), s);
}

Napi::Value KlDiv(const Napi::CallbackInfo& info) {
  Args a(info, "klDiv");
  int64_t R = a.dim(3);
  int V = a.dim(4);
  double s = uf::kl_div(a.f32(0, R * V), a.f32(1, R * V), a.f32(2, R), R, V, a.f32n(5, R), a.f32n(6, R * V),
                        (float)a.num(7));
  return Napi::Number::New(info.Env(), s);
}

Napi::Value AdamwStep(const Napi::CallbackInfo& info) {
  Args a(info, "adamwStep");
  int64_t n = (int64_t)a.num(4);
  uf::adamw_step(a.f32(0, n), a.f32(1, n), a.f32(2, n), a.f32(3, n), n, (float)a.num(5), (float)a.num(6),
                 (float)a.num(7), (float)a.num(8), (float)a.num(9), (float)a.num(10), (float)a.num(11));
  return info.Env().Undefined();
}

Napi::Value SgdStep(const Napi::CallbackInfo& info) {
  Args a(info, "sgdStep");
  int64_t n = (int64_t)a.num(2);
  uf::sgd_step(a.f32(0, n), a.f32(1, n), n, (float)a.num(3), (float)a.num(4));
  return info.Env().Undefined();
}

Napi::Value Axpy(const Napi::CallbackInfo& info) {
  Args a(info, "axpy");
  int64_t n = (int64_t)a.num(0);
  uf::axpy(n, (float)a.num(1), a.f32(2, n), a.f32(3, n));
  return info.Env().Undefined();
}

Napi::Value Add(const Napi::CallbackInfo& info) {
  Args a(info, "add");
  int64_t n = (int64_t)a.num(0);
  uf::add(n, a.f32(1, n), a.f32(2, n), a.f32(3, n));
  return info.Env().Undefined();
}

Napi::Value SumSquares(const Napi::CallbackInfo& info) {
  Args a(info, "sumSquares");
  int64_t n = (int64_t)a.num(1);
  return Napi::Number::New(info.Env(), uf::sum_squares(a.f32(0, n), n));
}

Napi::Value DiffSumSquares(const Napi::CallbackInfo& info) {
  Args a(info, "diffSumSquares");
  int64_t n = (int64_t)a.num(2);
  return Napi::Number::New(info.Env(), uf::diff_sum_squares(a.f32(0, n), a.f32(1, n), n));
}

Napi::Value SampleRows(const Napi::CallbackInfo& info) {
  Args a(info, "sampleRows");
  int64_t R = a.dim(1);
  int V = a.dim(2);
  if (V < 1) a.fail(2, "must be >= 1");
  double top_p = 1.0;
  if (!a.absent(7)) {
    top_p = a.num(7);
    if (!(top_p > 0 && top_p <= 1)) a.fail(7, "(topP) must be in (0, 1]");
  }
  uf::sample_rows(a.f32(0, R * V), R, V, (float)a.num(3), a.integer(4), a.f64(5, R),
                  a.i32(6, R), top_p);
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  const std::pair<const char*, Fn> fns[] = {
      {"setNumThreads", SetNumThreads},
      {"getNumThreads", GetNumThreads},
      {"info", Info},
      {"setGemmMode", SetGemmMode},
      {"getGemmMode", GetGemmMode},
      {"gemmAmxAvailable", GemmAmxAvailable},
      {"gemm", Gemm},
      {"embeddingForward", Embedding<false>},
      {"embeddingBackward", Embedding<true>},
      {"rmsnormForward", RmsnormForward},
      {"rmsnormBackward", RmsnormBackward},
      {"qkNormRopeForward", QkNormRopeForward},
      {"attentionForward", AttentionForward},
      {"attentionBackward", AttentionBackward},
      {"attentionDecode", AttentionDecode},
      {"geluForward", GeluForward},
      {"crossEntropy", CrossEntropy},
      {"klDiv", KlDiv},
      {"adamwStep", AdamwStep},
      {"sgdStep", SgdStep},
      {"axpy", Axpy},
      {"gemmGelu", GemmGelu},
      {"gemmPackSize", GemmPackSize},
      {"gemmPackB", GemmPackB},
      {"gemmPacked", GemmPacked},
      {"add", Add},
      {"sumSquares", SumSquares},
      {"diffSumSquares", DiffSumSquares},
      {"sampleRows", SampleRows},
      {"rmsnormGainBackward", RmsnormGainBackward},
      {"qkRopeForward", QkRopeForward},
      {"qkRopeBackward", QkRopeBackward},
      {"swigluForward", SwigluForward},
      {"swigluBackward", SwigluBackward},
      {"biasForward", Bias<false>},
      {"biasBackward", Bias<true>},
      {"widenHalf", WidenHalf},
      {"narrowHalf", NarrowHalf},
      {"embeddingForwardHalf", EmbeddingForwardHalf},
      {"gemmHalfB", GemmHalfB},
      {"gemmStrided", GemmStrided},
      {"gemmPackBHalf", GemmPackBHalf},
  };
  for (const auto& [name, fn] : fns) exports.Set(name, Napi::Function::New(env, fn, name));
  {
    // set_num_threads flushes denormals on every thread of its parallel region, this (JavaScript) one included
    DenormalGuard keep_ieee_in_javascript;
    uf::set_num_threads(uf::get_num_threads());
  }
  return exports;
}

}  // namespace

NODE_API_MODULE(unforget_native, Init)
