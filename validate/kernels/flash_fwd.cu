// FlashAttention-2-style fused forward pass: O = softmax(Q K^T * scale + mask) V.
//
// The structure attnsim's 'fused' KernelMapping describes (attnsim/mapping/kernel.py):
//
//   grid = ceil(M / BLOCK_M) x H x B CTAs of WARPS warps; CTA (i, h, b):
//     load the Q tile [BLOCK_M, HEAD_DIM] into shared memory (once);
//     for every key tile j the mask leaves non-empty (empty tiles are never loaded):
//       K, V tiles [BLOCK_N, HEAD_DIM] -> shared memory, STAGES buffers deep (cp.async:
//         tile j+STAGES-1 is in flight while tile j is computed);
//       S = Q K^T            (mma.sync m16n8k16, fp32 accumulators in registers)
//       online softmax       (row max, exp2, row sum; rescale O)
//       O += P V             (P converted to the input type, straight from the S registers)
//     O = O / l -> global memory.
//
//   dynamic shared memory = (BLOCK_M + 2 * STAGES * BLOCK_N) * HEAD_DIM * sizeof(T)
//                         = attnsim.mapping.kernel.smem_bytes_per_cta (D = F = HEAD_DIM).
//
// Warp w owns query rows [w * BLOCK_M / WARPS, (w + 1) * BLOCK_M / WARPS) of the tile and
// the whole key tile, so softmax needs no communication between warps (FA2's split of Q).
//
// Layout: Q, O [B, H, M, HEAD_DIM]; K, V [B, Hkv, N, HEAD_DIM]; contiguous. Query head h
// reads KV head h / (H / Hkv) (GQA / MQA). Masks are bottom-right aligned: query m sits at
// key m + N - M.
//   MASK_FULL          every key
//   MASK_CAUSAL        n <= m + N - M
//   MASK_WINDOW        causal, and n > m + N - M - window (the last `window` keys), or n < sink
//   MASK_BLOCK_SPARSE  query tile i visits the key tiles col_idx[row_ptr[i] .. row_ptr[i+1])
//                      (tiles of this kernel's BLOCK_M x BLOCK_N), causal inside them if `causal`
#include "common.cuh"

namespace attnsim {

struct FwdParams {
  const void* q;  // [B, H, M, D]
  const void* k;  // [B, Hkv, N, D]
  const void* v;  // [B, Hkv, N, D]
  void* o;        // [B, H, M, D]
  int B, H, Hkv, M, N;
  float scale;  // softmax scale, usually 1 / sqrt(D)
  int window;   // MASK_WINDOW: keys in the window (>= 1)
  int sink;     // MASK_WINDOW: first keys every query also sees (>= 0)
  int causal;   // MASK_BLOCK_SPARSE: apply the causal mask inside the listed tiles
  const int* bs_row_ptr;  // MASK_BLOCK_SPARSE: [ceil(M / BLOCK_M) + 1]
  const int* bs_col_idx;  // MASK_BLOCK_SPARSE: key-tile indices, per query tile ascending
};

// Which key tiles the CTA of query rows [r0, r1] visits, in closed form (the same count as
// attnsim.model.gpu_kernel.row_tiles): `count` tiles; tile(it) maps the loop index to a tile.
template <int BLOCK_M, int BLOCK_N, int MASK>
struct KeyTiles {
  int count = 0;
  int first = 0;       // first tile of the contiguous range
  int sink_tiles = 0;  // MASK_WINDOW: tiles 0..sink_tiles-1 visited before the range
  const int* list = nullptr;  // MASK_BLOCK_SPARSE

  __device__ __forceinline__ KeyTiles(const FwdParams& p, int mblock, int r0, int r1) {
    const int off = p.N - p.M;  // query m sits at key m + off
    const int ncol = (p.N + BLOCK_N - 1) / BLOCK_N;
    if (MASK == MASK_FULL) {
      count = ncol;
    } else if (MASK == MASK_BLOCK_SPARSE) {
      const int start = p.bs_row_ptr[mblock];
      list = p.bs_col_idx + start;
      count = p.bs_row_ptr[mblock + 1] - start;
    } else {
      const int a = max(r0, -off);  // rows before `a` see no key (only when M > N)
      if (a > r1) return;
      const int hi_last = min(r1 + off, p.N - 1);  // last key of the last row
      const int j1 = hi_last / BLOCK_N;
      if (MASK == MASK_CAUSAL) {
        count = j1 + 1;
      } else {  // MASK_WINDOW: [lo(first row), hi(last row)] plus the sink tiles below it
        const int lo_first = max(0, a + off - p.window + 1);
        first = lo_first / BLOCK_N;
        const int s_end = min(p.sink, hi_last + 1);
        sink_tiles = s_end > 0 ? min((s_end - 1) / BLOCK_N + 1, first) : 0;
        count = sink_tiles + (j1 - first + 1);
      }
    }
  }
  __device__ __forceinline__ int tile(int it) const {
    if (MASK == MASK_BLOCK_SPARSE) return list[it];
    if (MASK == MASK_WINDOW) return it < sink_tiles ? it : first + (it - sink_tiles);
    return it;
  }
};

template <typename T, int HEAD_DIM, int BLOCK_M, int BLOCK_N, int WARPS, int STAGES, int MASK>
__device__ __forceinline__ void flash_fwd_body(const FwdParams& p) {
  constexpr int D = HEAD_DIM;
  constexpr int NT = WARPS * 32;          // threads per CTA
  constexpr int WM = BLOCK_M / WARPS;     // query rows per warp
  constexpr int MT = WM / 16;             // m16 tiles per warp
  // Keys per softmax step. The S sub-tile [WM, SUB_N] and the O accumulator [WM, D] live in
  // fp32 registers; ptxas (CUDA 13) spills when they pass ~160 of a thread's 255 registers (a
  // full 128x64 S beside a 128x128 O on 4 warps does; the window mask's extra index math
  // leaves room for ~144), so the key tile is consumed in sub-tiles: loads, masks and the
  // pipeline stay per BLOCK_N tile, K/V fragments are still read from shared memory once per
  // warp, and the exp count is unchanged; the extra cost is one O rescale (and one row max)
  // per sub-tile instead of per tile.
  constexpr int REG_BUDGET = MASK == MASK_WINDOW ? 144 : 160;
  constexpr int SUB_N = (MT * (D / 8 + BLOCK_N / 8) * 4 <= REG_BUDGET) ? BLOCK_N
                        : (MT * (D / 8 + 64 / 8) * 4 <= REG_BUDGET && BLOCK_N % 64 == 0) ? 64
                        : (MT * (D / 8 + 32 / 8) * 4 <= REG_BUDGET && BLOCK_N % 32 == 0) ? 32 : 16;
  constexpr int SN = SUB_N / 8;           // n8 tiles of S per m16 tile
  constexpr int ON = D / 8;               // n8 tiles of O per m16 tile
  static_assert(WM % 16 == 0, "each warp needs whole m16 tiles of query rows");
  static_assert(BLOCK_N % 16 == 0 && D % 16 == 0, "tiles are multiples of the mma k-step (16)");
  static_assert(D == 64 || D == 128, "head dims 64 and 128 are instantiated");
  static_assert(STAGES >= 1, "at least one K/V buffer");

  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);  // [BLOCK_M, D]
  T* sK = sQ + BLOCK_M * D;                // [STAGES][BLOCK_N, D]
  T* sV = sK + STAGES * BLOCK_N * D;       // [STAGES][BLOCK_N, D]

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int n_mblocks = (p.M + BLOCK_M - 1) / BLOCK_M;
  // Causal rows grow with the query index: launch the longest CTAs first (launch_order
  // 'longest_first'), so that the short ones fill the tail.
  const int mblock = (MASK == MASK_CAUSAL) ? n_mblocks - 1 - (int)blockIdx.x : (int)blockIdx.x;
  const int h = blockIdx.y, b = blockIdx.z;
  const int hkv = h / (p.H / p.Hkv);
  const int off = p.N - p.M;
  const int r0 = mblock * BLOCK_M;          // first query row of the tile
  const int r1 = min(p.M, r0 + BLOCK_M) - 1;  // last

  const T* Q = static_cast<const T*>(p.q) + ((size_t)(b * p.H + h) * p.M + r0) * D;  // [BLOCK_M, D]
  const T* K = static_cast<const T*>(p.k) + (size_t)(b * p.Hkv + hkv) * p.N * D;     // [N, D]
  const T* V = static_cast<const T*>(p.v) + (size_t)(b * p.Hkv + hkv) * p.N * D;     // [N, D]
  T* O = static_cast<T*>(p.o) + ((size_t)(b * p.H + h) * p.M + r0) * D;              // [BLOCK_M, D]

  const KeyTiles<BLOCK_M, BLOCK_N, MASK> tiles(p, mblock, r0, r1);

  // read BLOCK_M*D elements of Q (once per CTA; rows past M are zero-filled)
  load_tile_async<T, BLOCK_M, D, NT>(sQ, Q, r1 - r0 + 1, tid);
  cp_async_commit();

  auto load_kv = [&](int it) {  // tile `it` of the loop -> buffer it % STAGES
    if (it < tiles.count) {
      const int kv0 = tiles.tile(it) * BLOCK_N;
      const int stage = it % STAGES;
      // read BLOCK_N*D elements of K and BLOCK_N*D elements of V
      load_tile_async<T, BLOCK_N, D, NT>(sK + stage * BLOCK_N * D, K + (size_t)kv0 * D, p.N - kv0, tid);
      load_tile_async<T, BLOCK_N, D, NT>(sV + stage * BLOCK_N * D, V + (size_t)kv0 * D, p.N - kv0, tid);
    }
    cp_async_commit();  // an empty group past the end keeps the wait count uniform
  };
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) load_kv(s);  // prologue: STAGES-1 tiles in flight

  float o_acc[MT][ON][4];  // O accumulator [WM, D] per warp, fp32
  float row_max[MT][2];    // running max of each of the thread's rows (log2 domain)
  float row_sum[MT][2];    // running sum of exp2, this thread's columns only
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int i = 0; i < ON; ++i)
#pragma unroll
      for (int e = 0; e < 4; ++e) o_acc[mt][i][e] = 0.f;
    row_max[mt][0] = row_max[mt][1] = -INFINITY;
    row_sum[mt][0] = row_sum[mt][1] = 0.f;
  }
  const float scale_log2 = p.scale * LOG2E;  // exp(x * scale) = exp2(x * scale * log2 e)
  const uint32_t aQ = smem_addr(sQ);

  for (int it = 0; it < tiles.count; ++it) {
    load_kv(it + STAGES - 1);     // prefetch: overlaps the math below
    cp_async_wait<STAGES - 1>();  // Q and tile `it` have landed (this thread's copies)
    __syncthreads();              // ... and everybody else's
    const int kv0 = tiles.tile(it) * BLOCK_N;
    const uint32_t aK = smem_addr(sK + (it % STAGES) * BLOCK_N * D);  // [BLOCK_N, D]
    const uint32_t aV = smem_addr(sV + (it % STAGES) * BLOCK_N * D);  // [BLOCK_N, D]

    // Does the tile cut through the mask? (only such tiles pay for the element-wise test)
    bool need_mask = kv0 + BLOCK_N > p.N;  // ragged last tile
    if (MASK == MASK_CAUSAL || MASK == MASK_WINDOW || (MASK == MASK_BLOCK_SPARSE && p.causal))
      need_mask |= kv0 + BLOCK_N - 1 > r0 + off;  // the first row does not see the whole tile
    if (MASK == MASK_WINDOW)
      need_mask |= kv0 < r1 + off - p.window + 1 && kv0 + BLOCK_N - 1 >= p.sink;  // the window's lower edge

    // The tile's keys in sub-tiles of SUB_N: S, softmax and P V per sub-tile (see SUB_N).
#pragma unroll 1
    for (int sub = 0; sub < BLOCK_N / SUB_N; ++sub) {
      const int key0 = sub * SUB_N;  // first key of the sub-tile within the tile

      // ---- S = Q K^T: [WM, SUB_N] per warp, D/16 k-steps
      float s_acc[MT][SN][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int i = 0; i < SN; ++i)
#pragma unroll
          for (int e = 0; e < 4; ++e) s_acc[mt][i][e] = 0.f;
#pragma unroll
      for (int ks = 0; ks < D / 16; ++ks) {
        uint32_t qa[MT][4];  // A fragments of Q [16, 16] (re-read from shared memory)
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          const int row = warp * WM + mt * 16 + (lane % 16);
          const int col = ks * 16 + (lane / 16) * 8;
          ldmatrix_x4(qa[mt][0], qa[mt][1], qa[mt][2], qa[mt][3], aQ + 2 * swz<D>(row, col));
        }
#pragma unroll
        for (int nt = 0; nt < SN; nt += 2) {  // B fragments of two n8 tiles of keys
          const int mi = lane / 8;
          const int krow = key0 + nt * 8 + (lane % 8) + 8 * (mi / 2);
          const int col = ks * 16 + 8 * (mi % 2);
          uint32_t b0, b1, b2, b3;
          ldmatrix_x4(b0, b1, b2, b3, aK + 2 * swz<D>(krow, col));
#pragma unroll
          for (int mt = 0; mt < MT; ++mt) {
            mma_16816<T>(s_acc[mt][nt], qa[mt], b0, b1);
            mma_16816<T>(s_acc[mt][nt + 1], qa[mt], b2, b3);
          }
        }
      }

      // ---- scale into the log2 domain, mask
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < SN; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            float x = s_acc[mt][nt][e] * scale_log2;
            if (need_mask) {
              const int m = r0 + warp * WM + mt * 16 + lane / 4 + 8 * (e / 2);  // query row
              const int n = kv0 + key0 + nt * 8 + 2 * (lane % 4) + (e % 2);    // key
              const int pos = m + off;                                         // aligned position
              bool ok = n < p.N;
              if (MASK == MASK_CAUSAL || (MASK == MASK_BLOCK_SPARSE && p.causal)) ok = ok && n <= pos;
              if (MASK == MASK_WINDOW) ok = ok && n <= pos && (n > pos - p.window || n < p.sink);
              if (!ok) x = -INFINITY;
            }
            s_acc[mt][nt][e] = x;
          }

      // ---- online softmax: a row lives in the 4 lanes of a quad, 2 values per n8 tile each
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int hr = 0; hr < 2; ++hr) {  // rows lane/4 and lane/4 + 8 of the m16 tile
          float mx = row_max[mt][hr];
#pragma unroll
          for (int nt = 0; nt < SN; ++nt)
            mx = fmaxf(mx, fmaxf(s_acc[mt][nt][2 * hr], s_acc[mt][nt][2 * hr + 1]));
          mx = quad_max(mx);
          const float base = mx == -INFINITY ? 0.f : mx;  // a row that saw only masked keys so far
          const float alpha = exp2_approx(row_max[mt][hr] - base);  // rescales the old O and sum
          row_max[mt][hr] = mx;
          float sum = 0.f;
#pragma unroll
          for (int nt = 0; nt < SN; ++nt)
#pragma unroll
            for (int e = 2 * hr; e < 2 * hr + 2; ++e) {
              const float pe = exp2_approx(s_acc[mt][nt][e] - base);  // one exp per element
              s_acc[mt][nt][e] = pe;
              sum += pe;
            }
          row_sum[mt][hr] = row_sum[mt][hr] * alpha + sum;
#pragma unroll
          for (int i = 0; i < ON; ++i) {
            o_acc[mt][i][2 * hr] *= alpha;
            o_acc[mt][i][2 * hr + 1] *= alpha;
          }
        }

      // ---- O += P V: [WM, D] per warp, SUB_N/16 k-steps; P is the A operand, from registers
#pragma unroll
      for (int ks = 0; ks < SUB_N / 16; ++ks) {
        uint32_t pa[MT][4];  // two n8 tiles of S (16 keys) = one A fragment, in the input type
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          pa[mt][0] = Elem<T>::pack(s_acc[mt][2 * ks][0], s_acc[mt][2 * ks][1]);
          pa[mt][1] = Elem<T>::pack(s_acc[mt][2 * ks][2], s_acc[mt][2 * ks][3]);
          pa[mt][2] = Elem<T>::pack(s_acc[mt][2 * ks + 1][0], s_acc[mt][2 * ks + 1][1]);
          pa[mt][3] = Elem<T>::pack(s_acc[mt][2 * ks + 1][2], s_acc[mt][2 * ks + 1][3]);
        }
#pragma unroll
        for (int ft = 0; ft < ON; ft += 2) {  // B fragments of two n8 tiles of V's columns
          const int mi = lane / 8;
          const int vrow = key0 + ks * 16 + (lane % 8) + 8 * (mi % 2);
          const int col = ft * 8 + 8 * (mi / 2);
          uint32_t b0, b1, b2, b3;
          ldmatrix_x4_trans(b0, b1, b2, b3, aV + 2 * swz<D>(vrow, col));
#pragma unroll
          for (int mt = 0; mt < MT; ++mt) {
            mma_16816<T>(o_acc[mt][ft], pa[mt], b0, b1);
            mma_16816<T>(o_acc[mt][ft + 1], pa[mt], b2, b3);
          }
        }
      }
    }
    __syncthreads();  // everyone is done with buffer it % STAGES before it is refilled
  }
  cp_async_wait<0>();  // drain the (empty) trailing groups before exit

  // ---- epilogue: O / l, write BLOCK_M*D elements of O (rows past M are dropped)
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      const float l = quad_sum(row_sum[mt][hr]);
      const float inv = l > 0.f ? 1.f / l : 0.f;  // a row that sees no key outputs zeros
      const int row = warp * WM + mt * 16 + lane / 4 + 8 * hr;
      if (r0 + row <= r1) {
#pragma unroll
        for (int i = 0; i < ON; ++i) {
          const int col = i * 8 + 2 * (lane % 4);
          *reinterpret_cast<uint32_t*>(O + (size_t)row * D + col) =
              Elem<T>::pack(o_acc[mt][i][2 * hr] * inv, o_acc[mt][i][2 * hr + 1] * inv);
        }
      }
    }
}

template <typename T, int HEAD_DIM, int BLOCK_M, int BLOCK_N, int WARPS, int STAGES>
constexpr size_t flash_fwd_smem_bytes() {
  return (size_t)(BLOCK_M + 2 * STAGES * BLOCK_N) * HEAD_DIM * sizeof(T);
}

template <typename T, int HEAD_DIM, int BLOCK_M, int BLOCK_N, int WARPS, int STAGES>
inline cudaError_t flash_fwd_launch(void (*kernel)(FwdParams), const FwdParams& p, cudaStream_t stream) {
  if (p.H % p.Hkv != 0 || p.M < 1 || p.N < 1) return cudaErrorInvalidValue;
  const size_t smem = flash_fwd_smem_bytes<T, HEAD_DIM, BLOCK_M, BLOCK_N, WARPS, STAGES>();
  cudaError_t err = set_dynamic_smem(kernel, smem);
  if (err != cudaSuccess) return err;
  const dim3 grid((p.M + BLOCK_M - 1) / BLOCK_M, p.H, p.B);
  kernel<<<grid, WARPS * 32, smem, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace attnsim

// One instantiation: a __global__ entry named NAME (so ptxas reports it by that name) and a
// host launcher `launch_NAME(q, k, v, o, B, H, Hkv, M, N, scale, window, sink, causal,
// bs_row_ptr, bs_col_idx, stream)` returning a cudaError_t (0 = success).
#define ATTNSIM_FLASH_FWD_VARIANT(NAME, T, HEAD_DIM, BLOCK_M, BLOCK_N, WARPS, STAGES, MASK)                     \
  extern "C" __global__ void __launch_bounds__((WARPS) * 32) NAME(attnsim::FwdParams p) {                     \
    attnsim::flash_fwd_body<T, HEAD_DIM, BLOCK_M, BLOCK_N, WARPS, STAGES, MASK>(p);                           \
  }                                                                                                           \
  extern "C" int launch_##NAME(const void* q, const void* k, const void* v, void* o, int B, int H, int Hkv,  \
                               int M, int N, float scale, int window, int sink, int causal,                   \
                               const int* bs_row_ptr, const int* bs_col_idx, cudaStream_t stream) {           \
    attnsim::FwdParams p{q, k, v, o, B, H, Hkv, M, N, scale, window, sink, causal, bs_row_ptr, bs_col_idx};   \
    return (int)attnsim::flash_fwd_launch<T, HEAD_DIM, BLOCK_M, BLOCK_N, WARPS, STAGES>(NAME, p, stream);     \
  }
