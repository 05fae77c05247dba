// Split-KV decoding (flash-decoding): a few query tokens (M >= 1, small) against a long KV cache.
//
// The structure attnsim's 'split_kv' KernelMapping describes (attnsim/mapping/kernel.py):
//
//   partial kernel: grid = n_splits x (Hkv * ceil(G*M / BLOCK_M)) x B CTAs of WARPS warps.
//     CTA (s, kv head, b) packs the G = H / Hkv query heads of its KV head as rows
//     (row r = g * M + m: q_heads_per_cta = G), so every K/V tile read from memory serves all
//     G heads; it walks the keys of split s only, [s * keys_per_split, (s+1) * keys_per_split),
//     in tiles of BLOCK_N keys, STAGES buffers deep (cp.async), and writes an fp32 partial
//     output (normalised by its own softmax sum) and its log2-sum-exp2 per row.
//   combine kernel: one warp per (b, h, m) row merges the n_splits partials:
//     O = sum_s 2^(lse_s - lse) O_s,  lse = log2 sum_s 2^lse_s.
//
//   partial dynamic shared memory = (BLOCK_M + 2 * STAGES * BLOCK_N) * HEAD_DIM * sizeof(T),
//   the same formula as the fused forward kernel.
//
// Inside a CTA, BLOCK_M / 16 warps split the rows (16 each) and the rest split the key tile
// (BLOCK_N / WARPS_N keys each); warps that share rows merge their (max, sum, O) through
// shared memory at the end (reusing the K/V buffers). With BLOCK_M = 16 all warps share the
// rows and split each key tile four ways; with BLOCK_M = 64 it is FA2's split of Q.
//
// Layout: Q, O [B, H, M, D]; K, V [B, Hkv, N, D] (a contiguous cache); workspace
// o_partial [n_splits, B*H*M, D] fp32 and lse_partial [n_splits, B*H*M] fp32.
// Masks: none, or causal (bottom-right aligned, for M > 1 speculative / chunked decoding).
#include "common.cuh"

namespace attnsim {

struct DecodeParams {
  const void* q;  // [B, H, M, D]
  const void* k;  // [B, Hkv, N, D]
  const void* v;  // [B, Hkv, N, D]
  float* o_partial;    // [n_splits, B*H*M, D]
  float* lse_partial;  // [n_splits, B*H*M]   log2 of the sum of 2^(s * scale * log2 e)
  int B, H, Hkv, M, N;
  float scale;
  int causal;
  int keys_per_split;  // a multiple of BLOCK_N
};

struct CombineParams {
  const float* o_partial;
  const float* lse_partial;
  void* o;  // [B, H, M, D]
  int rows;  // B * H * M
  int n_splits;
};

template <typename T, int HEAD_DIM, int BLOCK_M, int BLOCK_N, int WARPS, int STAGES>
__device__ __forceinline__ void flash_decode_partial_body(const DecodeParams& p) {
  constexpr int D = HEAD_DIM;
  constexpr int NT = WARPS * 32;
  constexpr int WARPS_M = BLOCK_M / 16;      // warps along the rows (16 rows each)
  constexpr int WARPS_N = WARPS / WARPS_M;   // warps along the key tile
  constexpr int KW = BLOCK_N / WARPS_N;      // keys per warp per tile
  constexpr int SN = KW / 8;                 // n8 tiles of S per warp
  constexpr int ON = D / 8;                  // n8 tiles of O per warp
  static_assert(BLOCK_M % 16 == 0 && WARPS % WARPS_M == 0, "warps must tile the rows in m16 slabs");
  static_assert(KW % 16 == 0, "each warp's key slice must be whole k16 steps");
  static_assert(D == 64 || D == 128, "head dims 64 and 128 are instantiated");
  // the end-of-CTA merge reuses the K/V buffers: O [WARPS, 16, D] + max, sum [WARPS, 16] fp32
  static_assert(WARPS * 16 * (D + 2) * 4 <= 2 * STAGES * BLOCK_N * D * (int)sizeof(T), "merge scratch too big");

  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);  // [BLOCK_M, D]
  T* sK = sQ + BLOCK_M * D;                // [STAGES][BLOCK_N, D]
  T* sV = sK + STAGES * BLOCK_N * D;       // [STAGES][BLOCK_N, D]

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int wm = warp / WARPS_N, wn = warp % WARPS_N;
  const int G = p.H / p.Hkv;
  const int rows = G * p.M;                 // packed query rows of one KV head
  const int row_blocks = (rows + BLOCK_M - 1) / BLOCK_M;
  const int split = blockIdx.x;
  const int hkv = blockIdx.y / row_blocks, rb = blockIdx.y % row_blocks;
  const int b = blockIdx.z;
  const int row0 = rb * BLOCK_M;
  const int valid_rows = min(BLOCK_M, rows - row0);
  const int off = p.N - p.M;  // query m sits at key m + off

  // this split's keys; a causal mask also ends them at the last query's position
  const int key_begin = split * p.keys_per_split;
  int key_end = min(p.N, key_begin + p.keys_per_split);
  if (p.causal) key_end = min(key_end, p.M - 1 + off + 1);
  const int n_tiles = key_end > key_begin ? (key_end - key_begin + BLOCK_N - 1) / BLOCK_N : 0;

  // rows r = g * M + m of KV head hkv are contiguous in Q: heads hkv*G .. hkv*G + G-1
  const size_t qrow0 = (size_t)(b * p.H + hkv * G) * p.M + row0;  // row index into [B*H*M]
  const T* Q = static_cast<const T*>(p.q) + qrow0 * D;                               // [BLOCK_M, D]
  const T* K = static_cast<const T*>(p.k) + (size_t)(b * p.Hkv + hkv) * p.N * D;     // [N, D]
  const T* V = static_cast<const T*>(p.v) + (size_t)(b * p.Hkv + hkv) * p.N * D;     // [N, D]

  // read valid_rows*D elements of Q (G heads x M tokens; padding rows are zero-filled)
  load_tile_async<T, BLOCK_M, D, NT>(sQ, Q, valid_rows, tid);
  cp_async_commit();
  auto load_kv = [&](int it) {
    if (it < n_tiles) {
      const int kv0 = key_begin + it * BLOCK_N;
      const int stage = it % STAGES;
      // read BLOCK_N*D elements of K and BLOCK_N*D elements of V
      load_tile_async<T, BLOCK_N, D, NT>(sK + stage * BLOCK_N * D, K + (size_t)kv0 * D, p.N - kv0, tid);
      load_tile_async<T, BLOCK_N, D, NT>(sV + stage * BLOCK_N * D, V + (size_t)kv0 * D, p.N - kv0, tid);
    }
    cp_async_commit();
  };
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) load_kv(s);

  float o_acc[ON][4];  // this warp's O [16, D] over its key slices, fp32, unnormalised
  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0.f, 0.f};
#pragma unroll
  for (int i = 0; i < ON; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) o_acc[i][e] = 0.f;
  const float scale_log2 = p.scale * LOG2E;
  const uint32_t aQ = smem_addr(sQ);

  for (int it = 0; it < n_tiles; ++it) {
    load_kv(it + STAGES - 1);
    cp_async_wait<STAGES - 1>();
    __syncthreads();
    const int kv0 = key_begin + it * BLOCK_N;
    const uint32_t aK = smem_addr(sK + (it % STAGES) * BLOCK_N * D);  // [BLOCK_N, D]
    const uint32_t aV = smem_addr(sV + (it % STAGES) * BLOCK_N * D);  // [BLOCK_N, D]
    const int key0 = wn * KW;  // this warp's slice of the tile

    // ---- S = Q K^T: [16, KW] per warp
    float s_acc[SN][4];
#pragma unroll
    for (int i = 0; i < SN; ++i)
#pragma unroll
      for (int e = 0; e < 4; ++e) s_acc[i][e] = 0.f;
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
      uint32_t qa[4];
      ldmatrix_x4(qa[0], qa[1], qa[2], qa[3], aQ + 2 * swz<D>(wm * 16 + (lane % 16), ks * 16 + (lane / 16) * 8));
#pragma unroll
      for (int nt = 0; nt < SN; nt += 2) {
        const int mi = lane / 8;
        uint32_t b0, b1, b2, b3;
        ldmatrix_x4(b0, b1, b2, b3, aK + 2 * swz<D>(key0 + nt * 8 + (lane % 8) + 8 * (mi / 2), ks * 16 + 8 * (mi % 2)));
        mma_16816<T>(s_acc[nt], qa, b0, b1);
        mma_16816<T>(s_acc[nt + 1], qa, b2, b3);
      }
    }

    // ---- scale, mask (the split's end, N, and the causal limit of each row's token)
    const bool need_mask = kv0 + BLOCK_N > key_end || (p.causal && kv0 + BLOCK_N - 1 > off);
#pragma unroll
    for (int nt = 0; nt < SN; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float x = s_acc[nt][e] * scale_log2;
        if (need_mask) {
          const int r = row0 + wm * 16 + lane / 4 + 8 * (e / 2);  // packed row g * M + m
          const int n = kv0 + key0 + nt * 8 + 2 * (lane % 4) + (e % 2);
          bool ok = n < key_end;
          if (p.causal) ok = ok && n <= (r % p.M) + off;
          if (!ok) x = -INFINITY;
        }
        s_acc[nt][e] = x;
      }

    // ---- online softmax over this warp's key slice
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      float mx = row_max[hr];
#pragma unroll
      for (int nt = 0; nt < SN; ++nt) mx = fmaxf(mx, fmaxf(s_acc[nt][2 * hr], s_acc[nt][2 * hr + 1]));
      mx = quad_max(mx);
      const float base = mx == -INFINITY ? 0.f : mx;
      const float alpha = exp2_approx(row_max[hr] - base);
      row_max[hr] = mx;
      float sum = 0.f;
#pragma unroll
      for (int nt = 0; nt < SN; ++nt)
#pragma unroll
        for (int e = 2 * hr; e < 2 * hr + 2; ++e) {
          const float pe = exp2_approx(s_acc[nt][e] - base);
          s_acc[nt][e] = pe;
          sum += pe;
        }
      row_sum[hr] = row_sum[hr] * alpha + sum;
#pragma unroll
      for (int i = 0; i < ON; ++i) {
        o_acc[i][2 * hr] *= alpha;
        o_acc[i][2 * hr + 1] *= alpha;
      }
    }

    // ---- O += P V over the warp's KW keys
#pragma unroll
    for (int ks = 0; ks < KW / 16; ++ks) {
      uint32_t pa[4];
      pa[0] = Elem<T>::pack(s_acc[2 * ks][0], s_acc[2 * ks][1]);
      pa[1] = Elem<T>::pack(s_acc[2 * ks][2], s_acc[2 * ks][3]);
      pa[2] = Elem<T>::pack(s_acc[2 * ks + 1][0], s_acc[2 * ks + 1][1]);
      pa[3] = Elem<T>::pack(s_acc[2 * ks + 1][2], s_acc[2 * ks + 1][3]);
#pragma unroll
      for (int ft = 0; ft < ON; ft += 2) {
        const int mi = lane / 8;
        uint32_t b0, b1, b2, b3;
        ldmatrix_x4_trans(b0, b1, b2, b3,
                          aV + 2 * swz<D>(key0 + ks * 16 + (lane % 8) + 8 * (mi % 2), ft * 8 + 8 * (mi / 2)));
        mma_16816<T>(o_acc[ft], pa, b0, b1);
        mma_16816<T>(o_acc[ft + 1], pa, b2, b3);
      }
    }
    __syncthreads();
  }
  cp_async_wait<0>();
  __syncthreads();  // the K/V buffers become the merge scratch

  // ---- merge the WARPS_N warps of each row slab through shared memory
  float* sO = reinterpret_cast<float*>(sK);  // [WARPS, 16, D]
  float* sMax = sO + WARPS * 16 * D;         // [WARPS, 16]
  float* sSum = sMax + WARPS * 16;           // [WARPS, 16]
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    const int rr = lane / 4 + 8 * hr;
    const float l = quad_sum(row_sum[hr]);
    if (lane % 4 == 0) {
      sMax[warp * 16 + rr] = row_max[hr];
      sSum[warp * 16 + rr] = l;
    }
#pragma unroll
    for (int i = 0; i < ON; ++i) {
      const int c = i * 8 + 2 * (lane % 4);
      sO[(warp * 16 + rr) * D + c] = o_acc[i][2 * hr];
      sO[(warp * 16 + rr) * D + c + 1] = o_acc[i][2 * hr + 1];
    }
  }
  __syncthreads();
  // write valid_rows*D fp32 of o_partial and valid_rows of lse_partial (coalesced along D)
  const size_t prow0 = (size_t)split * p.B * p.H * p.M + qrow0;
  for (int idx = tid; idx < valid_rows * D; idx += NT) {
    const int r = idx / D, c = idx % D;
    const int slab = r / 16, rr = r % 16;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < WARPS_N; ++w) mx = fmaxf(mx, sMax[(slab * WARPS_N + w) * 16 + rr]);
    const float base = mx == -INFINITY ? 0.f : mx;
    float l = 0.f, o = 0.f;
#pragma unroll
    for (int w = 0; w < WARPS_N; ++w) {
      const int ww = slab * WARPS_N + w;
      const float f = exp2_approx(sMax[ww * 16 + rr] - base);
      l += sSum[ww * 16 + rr] * f;
      o += sO[(ww * 16 + rr) * D + c] * f;
    }
    p.o_partial[(prow0 + r) * D + c] = l > 0.f ? o / l : 0.f;
    if (c == 0) p.lse_partial[prow0 + r] = l > 0.f ? base + log2f(l) : -INFINITY;
  }
}

// One warp per output row: O = sum_s w_s O_s with w_s = 2^(lse_s - max) / sum_s' 2^(lse_s' - max).
template <typename T, int HEAD_DIM>
__device__ __forceinline__ void flash_decode_combine_body(const CombineParams& p) {
  constexpr int PER_LANE = HEAD_DIM / 32;
  const int lane = threadIdx.x % 32;
  const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  if (row >= p.rows) return;
  float mx = -INFINITY;
  for (int s = 0; s < p.n_splits; ++s) mx = fmaxf(mx, p.lse_partial[(size_t)s * p.rows + row]);  // read n_splits lse
  const float base = mx == -INFINITY ? 0.f : mx;
  float l = 0.f;
  for (int s = 0; s < p.n_splits; ++s) l += exp2f(p.lse_partial[(size_t)s * p.rows + row] - base);
  const float inv = l > 0.f ? 1.f / l : 0.f;
  float acc[PER_LANE];
#pragma unroll
  for (int j = 0; j < PER_LANE; ++j) acc[j] = 0.f;
  for (int s = 0; s < p.n_splits; ++s) {
    const float w = exp2f(p.lse_partial[(size_t)s * p.rows + row] - base) * inv;
    const float* src = p.o_partial + ((size_t)s * p.rows + row) * HEAD_DIM;  // read HEAD_DIM fp32 per split
#pragma unroll
    for (int j = 0; j < PER_LANE; ++j) acc[j] += w * src[lane + 32 * j];
  }
  T* dst = static_cast<T*>(p.o) + (size_t)row * HEAD_DIM;  // write HEAD_DIM elements of O
#pragma unroll
  for (int j = 0; j < PER_LANE; ++j) dst[lane + 32 * j] = Elem<T>::from_float(acc[j]);
}

constexpr int COMBINE_WARPS = 4;

template <typename T, int HEAD_DIM, int BLOCK_M, int BLOCK_N, int WARPS, int STAGES>
inline cudaError_t flash_decode_launch(void (*partial)(DecodeParams), void (*combine)(CombineParams),
                                       DecodeParams p, void* o, int n_splits, cudaStream_t stream) {
  if (p.Hkv < 1 || p.H % p.Hkv != 0 || p.M < 1 || p.N < 1) return cudaErrorInvalidValue;
  // Tile-aligned splits: n_splits is clamped to [1, key tiles]; the launched count may be lower
  // when the tiles do not divide evenly (the workspace holds the requested count).
  const int n_tiles = (p.N + BLOCK_N - 1) / BLOCK_N;
  n_splits = max(1, min(n_splits, n_tiles));
  const int tiles_per_split = (n_tiles + n_splits - 1) / n_splits;
  p.keys_per_split = tiles_per_split * BLOCK_N;
  const int splits = (n_tiles + tiles_per_split - 1) / tiles_per_split;
  const int rows = (p.H / p.Hkv) * p.M;
  const size_t smem = (size_t)(BLOCK_M + 2 * STAGES * BLOCK_N) * HEAD_DIM * sizeof(T);
  cudaError_t err = set_dynamic_smem(partial, smem);
  if (err != cudaSuccess) return err;
  const dim3 grid(splits, p.Hkv * ((rows + BLOCK_M - 1) / BLOCK_M), p.B);
  partial<<<grid, WARPS * 32, smem, stream>>>(p);
  if ((err = cudaGetLastError()) != cudaSuccess) return err;
  CombineParams c{p.o_partial, p.lse_partial, o, p.B * p.H * p.M, splits};
  combine<<<(c.rows + COMBINE_WARPS - 1) / COMBINE_WARPS, COMBINE_WARPS * 32, 0, stream>>>(c);
  return cudaGetLastError();
}

}  // namespace attnsim

// The combine kernel of one (type, head dim): a __global__ entry named NAME.
#define ATTNSIM_FLASH_DECODE_COMBINE(NAME, T, HEAD_DIM)                                                  \
  extern "C" __global__ void __launch_bounds__(attnsim::COMBINE_WARPS * 32) NAME(attnsim::CombineParams p) { \
    attnsim::flash_decode_combine_body<T, HEAD_DIM>(p);                                                   \
  }

// One partial-kernel instantiation: a __global__ entry NAME and a host launcher
// `launch_NAME(q, k, v, o, o_partial, lse_partial, B, H, Hkv, M, N, scale, causal, n_splits,
// stream)` that runs the partial kernel, then COMBINE (declared with ATTNSIM_FLASH_DECODE_COMBINE
// first). The workspace holds n_splits * B * H * M * (HEAD_DIM + 1) floats.
#define ATTNSIM_FLASH_DECODE_VARIANT(NAME, COMBINE, T, HEAD_DIM, BLOCK_M, BLOCK_N, WARPS, STAGES)               \
  extern "C" __global__ void __launch_bounds__((WARPS) * 32) NAME(attnsim::DecodeParams p) {                  \
    attnsim::flash_decode_partial_body<T, HEAD_DIM, BLOCK_M, BLOCK_N, WARPS, STAGES>(p);                      \
  }                                                                                                           \
  extern "C" int launch_##NAME(const void* q, const void* k, const void* v, void* o, float* o_partial,       \
                               float* lse_partial, int B, int H, int Hkv, int M, int N, float scale,         \
                               int causal, int n_splits, cudaStream_t stream) {                               \
    attnsim::DecodeParams p{q, k, v, o_partial, lse_partial, B, H, Hkv, M, N, scale, causal, 0};             \
    return (int)attnsim::flash_decode_launch<T, HEAD_DIM, BLOCK_M, BLOCK_N, WARPS, STAGES>(NAME, COMBINE, p,  \
                                                                                           o, n_splits, stream); \
  }
