// Unfused ("naive") attention: three kernels with S and P in global memory.
//
// The structure attnsim's 'unfused' KernelMapping describes (attnsim/model/gpu_kernel.py,
// eval_unfused):
//   1. naive_qk:      S = Q K^T * scale       a batched GEMM, [M, N] per (b, h), S written in
//                                             S_T (the input type by default, or fp32)
//   2. naive_softmax: P = softmax(mask(S))    one CTA per row: reads the row of S, writes P
//                                             (input type); masked keys get P = 0
//   3. naive_pv:      O = P V                 a batched GEMM, [M, D] per (b, h)
//
// The GEMMs are simple tiled tensor-core GEMMs (mma.sync m16n8k16, the instruction class the
// model's unfused mapping uses): a 64 x 64 tile of the output per CTA of 4 warps (32 x 32
// each), the reduction dimension in steps of BLOCK_K = 64 through one shared-memory buffer
// (stages = 1, loaded with cp.async): (BLOCK_M + BLOCK_N) * BLOCK_K elements of shared memory,
// attnsim.mapping.kernel.smem_bytes_per_cta's unfused formula. N and D must be multiples of 8.
//
// Layout: Q, O [B, H, M, D]; K, V [B, Hkv, N, D]; S, P [B, H, M, N]; contiguous. GQA: query
// head h reads KV head h / (H / Hkv). Masks (runtime, bottom-right aligned): MASK_FULL,
// MASK_CAUSAL, MASK_WINDOW (window, sink); the QK GEMM computes every (m, n), masked or not,
// as a library GEMM would; the softmax applies the mask.
#include "common.cuh"

namespace attnsim {

constexpr int NAIVE_BLOCK_M = 64, NAIVE_BLOCK_N = 64, NAIVE_BLOCK_K = 64;
constexpr int NAIVE_GEMM_WARPS = 4;   // 2 x 2 warps, 32 x 32 outputs each
constexpr int NAIVE_SOFTMAX_THREADS = 256;

// Issue cp.async copies of a [ROWS, COLS] tile at g (row stride ld elements) into the swizzled
// shared tile s; rows >= valid_rows and 8-element chunks at or past valid_cols are zero-filled
// (valid_cols is a multiple of 8).
template <typename T, int ROWS, int COLS, int NT>
__device__ __forceinline__ void load_tile_strided_async(T* s, const T* g, size_t ld, int valid_rows, int valid_cols,
                                                        int tid) {
  constexpr int CPR = COLS / 8;
  static_assert((ROWS * CPR) % NT == 0, "tile chunks must split evenly over the threads");
#pragma unroll
  for (int i = 0; i < ROWS * CPR / NT; ++i) {
    const int chunk = tid + i * NT;
    const int r = chunk / CPR, c = (chunk % CPR) * 8;
    const bool ok = r < valid_rows && c < valid_cols;
    cp_async_16(s + swz<COLS>(r, c), g + r * ld + c, ok);  // not read when !ok
  }
}

// C[z] = alpha * A[z] B[z]  for z = b * H + h, on the tensor cores (mma.sync m16n8k16, fp32
// accumulation), one [BLOCK_M, BLOCK_N] tile of C per CTA, BLOCK_K = 64 per step, one buffer:
//   A [rows, kdim] row major, per query head (Q: kdim = D; P: kdim = N);
//   B_NK = true:  B stored [cols, kdim], per KV head (K: C = Q K^T);
//   B_NK = false: B stored [kdim, cols], per KV head (V: C = P V);
//   C [rows, cols] row major in TC.
// Shared memory: (BLOCK_M + BLOCK_N) * BLOCK_K elements (swizzled, no padding).
template <typename T, typename TC, bool B_NK>
__device__ __forceinline__ void naive_gemm_body(const T* A_all, const T* B_all, TC* C_all, int H, int Hkv, int rows,
                                                int cols, int kdim, float alpha) {
  constexpr int BM = NAIVE_BLOCK_M, BN = NAIVE_BLOCK_N, BK = NAIVE_BLOCK_K, NT = NAIVE_GEMM_WARPS * 32;
  constexpr int MT = 2, NTL = 4;  // per warp: 2 m16 tiles x 4 n8 tiles = 32 x 32
  __shared__ __align__(128) T sA[BM * BK];  // [BLOCK_M, BLOCK_K]
  __shared__ __align__(128) T sB[BN * BK];  // [BLOCK_N, BLOCK_K] (B_NK) or [BLOCK_K, BLOCK_N]
  const int z = blockIdx.z, h = z % H, b = z / H;
  const int hkv = h / (H / Hkv);
  const T* A = A_all + (size_t)z * rows * kdim;
  const T* Bm = B_all + (size_t)(b * Hkv + hkv) * cols * kdim;
  TC* C = C_all + (size_t)z * rows * cols;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int wm = warp / 2, wn = warp % 2;
  const uint32_t aA = smem_addr(sA), aB = smem_addr(sB);

  float acc[MT][NTL][4] = {};
  for (int k0 = 0; k0 < kdim; k0 += BK) {
    // read BLOCK_M*BLOCK_K elements of A and BLOCK_N*BLOCK_K of B
    load_tile_strided_async<T, BM, BK, NT>(sA, A + (size_t)m0 * kdim + k0, kdim, rows - m0, kdim - k0, tid);
    if (B_NK)
      load_tile_strided_async<T, BN, BK, NT>(sB, Bm + (size_t)n0 * kdim + k0, kdim, cols - n0, kdim - k0, tid);
    else
      load_tile_strided_async<T, BK, BN, NT>(sB, Bm + (size_t)k0 * cols + n0, cols, kdim - k0, cols - n0, tid);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
#pragma unroll
    for (int ks = 0; ks < BK / 16; ++ks) {
      uint32_t a[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
        ldmatrix_x4(a[mt][0], a[mt][1], a[mt][2], a[mt][3],
                    aA + 2 * swz<BK>(wm * 32 + mt * 16 + (lane % 16), ks * 16 + (lane / 16) * 8));
#pragma unroll
      for (int nt = 0; nt < NTL; nt += 2) {
        const int mi = lane / 8;
        uint32_t b0, b1, b2, b3;
        if (B_NK)  // rows n, cols k: like K in the fused kernel
          ldmatrix_x4(b0, b1, b2, b3, aB + 2 * swz<BK>(wn * 32 + nt * 8 + (lane % 8) + 8 * (mi / 2), ks * 16 + 8 * (mi % 2)));
        else       // rows k, cols n: like V in the fused kernel
          ldmatrix_x4_trans(b0, b1, b2, b3,
                            aB + 2 * swz<BN>(ks * 16 + (lane % 8) + 8 * (mi % 2), wn * 32 + nt * 8 + 8 * (mi / 2)));
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma_16816<T>(acc[mt][nt], a[mt], b0, b1);
          mma_16816<T>(acc[mt][nt + 1], a[mt], b2, b3);
        }
      }
    }
    __syncthreads();
  }
  // write BLOCK_M*BLOCK_N elements of C (cols is a multiple of 8: pairs never straddle the end)
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < NTL; ++nt)
#pragma unroll
      for (int hr = 0; hr < 2; ++hr) {
        const int r = m0 + wm * 32 + mt * 16 + lane / 4 + 8 * hr;
        const int c = n0 + wn * 32 + nt * 8 + 2 * (lane % 4);
        if (r < rows && c < cols) {
          C[(size_t)r * cols + c] = Elem<TC>::from_float(alpha * acc[mt][nt][2 * hr]);
          C[(size_t)r * cols + c + 1] = Elem<TC>::from_float(alpha * acc[mt][nt][2 * hr + 1]);
        }
      }
}

// P[row] = softmax over the allowed keys of S[row] (log2 domain; S already holds the scale).
// One CTA of 256 threads per (b, h, m) row; pass 1 reads the row for the max and the sum
// (online, per thread, then merged), pass 2 reads it again and writes P (the second read is
// of the N elements this CTA just read, mostly an L2 hit). Two exps per element (one per pass).
template <typename TS, typename TP>
__device__ __forceinline__ void naive_softmax_body(const TS* S_all, TP* P_all, int M, int N, int mask, int window,
                                                   int sink) {
  constexpr int NT = NAIVE_SOFTMAX_THREADS;
  const size_t row = blockIdx.x + (size_t)blockIdx.y * gridDim.x;  // (b * H + h) * M + m
  const int m = (int)(row % M);
  const int pos = m + N - M;  // the key this query sits at
  const TS* S = S_all + row * N;
  TP* P = P_all + row * N;
  auto allowed = [&](int n) {
    if (mask == MASK_CAUSAL) return n <= pos;
    if (mask == MASK_WINDOW) return n <= pos && (n > pos - window || n < sink);
    return true;
  };
  // pass 1: read N elements of S
  float mx = -INFINITY, sum = 0.f;
  for (int n = threadIdx.x; n < N; n += NT) {
    if (!allowed(n)) continue;
    const float x = Elem<TS>::to_float(S[n]) * LOG2E;
    if (x > mx) {
      sum = sum * exp2f(mx - x) + 1.f;
      mx = x;
    } else {
      sum += exp2f(x - mx);
    }
  }
  // merge (max, sum) pairs: in the warp, then across the 8 warps through shared memory
  __shared__ float s_max[NT / 32], s_sum[NT / 32];
  const float wmx = warp_max(mx);
  sum = (mx == -INFINITY) ? 0.f : sum * exp2f(mx - wmx);
  sum = warp_sum(sum);
  if (threadIdx.x % 32 == 0) {
    s_max[threadIdx.x / 32] = wmx;
    s_sum[threadIdx.x / 32] = sum;
  }
  __syncthreads();
  float gmx = -INFINITY;
#pragma unroll
  for (int w = 0; w < NT / 32; ++w) gmx = fmaxf(gmx, s_max[w]);
  float gsum = 0.f;
#pragma unroll
  for (int w = 0; w < NT / 32; ++w) gsum += s_max[w] == -INFINITY ? 0.f : s_sum[w] * exp2f(s_max[w] - gmx);
  const float inv = gsum > 0.f ? 1.f / gsum : 0.f;
  // pass 2: read N elements of S, write N elements of P
  for (int n = threadIdx.x; n < N; n += NT) {
    const float pn = allowed(n) ? exp2f(Elem<TS>::to_float(S[n]) * LOG2E - gmx) * inv : 0.f;
    P[n] = Elem<TP>::from_float(pn);
  }
}

template <typename T, typename TS>
struct NaiveKernels {
  void (*qk)(const T*, const T*, TS*, int, int, int, int, int, float);
  void (*softmax)(const TS*, T*, int, int, int, int, int);
  void (*pv)(const T*, const T*, T*, int, int, int, int, int, float);
};

// Runs the three kernels on `stream`. s is the S workspace [B, H, M, N] in TS; p the P
// workspace [B, H, M, N] in T (may alias s when TS == T: each thread reads S[n] before it
// writes P[n] at the same place).
template <typename T, typename TS>
inline cudaError_t naive_launch(const NaiveKernels<T, TS>& k, const T* q, const T* kk, const T* v, T* o, TS* s,
                                T* p, int B, int H, int Hkv, int M, int N, int D, float scale, int mask, int window,
                                int sink, cudaStream_t stream) {
  // 16-byte rows for cp.async: N and D multiples of 8
  if (Hkv < 1 || H % Hkv != 0 || M < 1 || N < 8 || N % 8 || D < 8 || D % 8 || B * H > 65535)
    return cudaErrorInvalidValue;
  const dim3 block(NAIVE_GEMM_WARPS * 32);
  k.qk<<<dim3((N + NAIVE_BLOCK_N - 1) / NAIVE_BLOCK_N, (M + NAIVE_BLOCK_M - 1) / NAIVE_BLOCK_M, B * H), block, 0,
         stream>>>(q, kk, s, H, Hkv, M, N, D, scale);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  k.softmax<<<dim3(M, B * H), NAIVE_SOFTMAX_THREADS, 0, stream>>>(s, p, M, N, mask, window, sink);
  if ((err = cudaGetLastError()) != cudaSuccess) return err;
  // P [M, N] per query head times V [N, D] per KV head: the GEMM's B is V, stored [kdim, cols]
  k.pv<<<dim3((D + NAIVE_BLOCK_N - 1) / NAIVE_BLOCK_N, (M + NAIVE_BLOCK_M - 1) / NAIVE_BLOCK_M, B * H), block, 0,
         stream>>>(p, v, o, H, Hkv, M, D, N, 1.f);
  return cudaGetLastError();
}

}  // namespace attnsim

// The three kernels for input type T and S type TS, named QK, SOFTMAX and PV, and a launcher
// `launch_GROUP(q, k, v, o, s, p, B, H, Hkv, M, N, D, scale, mask, window, sink, stream)`.
#define ATTNSIM_NAIVE_VARIANT(GROUP, QK, SOFTMAX, PV, T, TS)                                                 \
  extern "C" __global__ void __launch_bounds__(attnsim::NAIVE_GEMM_WARPS * 32)                             \
      QK(const T* q, const T* k, TS* s, int H, int Hkv, int M, int N, int D, float scale) {                \
    attnsim::naive_gemm_body<T, TS, true>(q, k, s, H, Hkv, M, N, D, scale);                              \
  }                                                                                                          \
  extern "C" __global__ void __launch_bounds__(attnsim::NAIVE_SOFTMAX_THREADS)                              \
      SOFTMAX(const TS* s, T* p, int M, int N, int mask, int window, int sink) {                            \
    attnsim::naive_softmax_body<TS, T>(s, p, M, N, mask, window, sink);                                     \
  }                                                                                                          \
  extern "C" __global__ void __launch_bounds__(attnsim::NAIVE_GEMM_WARPS * 32)                             \
      PV(const T* p, const T* v, T* o, int H, int Hkv, int M, int D, int N, float one) {                    \
    attnsim::naive_gemm_body<T, T, false>(p, v, o, H, Hkv, M, D, N, one);                                \
  }                                                                                                          \
  extern "C" int launch_##GROUP(const T* q, const T* k, const T* v, T* o, TS* s, T* p, int B, int H, int Hkv, \
                                int M, int N, int D, float scale, int mask, int window, int sink,             \
                                cudaStream_t stream) {                                                       \
    const attnsim::NaiveKernels<T, TS> kernels{QK, SOFTMAX, PV};                                             \
    return (int)attnsim::naive_launch<T, TS>(kernels, q, k, v, o, s, p, B, H, Hkv, M, N, D, scale, mask,     \
                                             window, sink, stream);                                          \
  }
