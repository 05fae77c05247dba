// Shared helpers of the bundled attnsim kernels (sm_80 and newer).
//
//   * element types: half and __nv_bfloat16 inputs, fp32 accumulation everywhere;
//   * the tensor-core instruction `mma.sync.aligned.m16n8k16` (inline PTX) and `ldmatrix`;
//   * `cp.async` 16-byte global -> shared copies (the K/V pipeline of flash_fwd / flash_decode);
//   * an XOR swizzle for [rows, 64 | 128] shared-memory tiles, so that ldmatrix reads are
//     bank-conflict free without padding (the shared-memory footprint stays exactly
//     rows * cols * sizeof(T), the number attnsim's smem model uses).
//
// Fragment layouts of mma.m16n8k16 (PTX ISA, "Matrix fragments for mma.m16n8k16"), with
// g = lane / 4 (the "group") and t = lane % 4 (the thread in the group):
//   A 16x16 (row major), 4 x b32 = 8 elements: a0 = (g, 2t..2t+1), a1 = (g+8, 2t..),
//                                              a2 = (g, 2t+8..),   a3 = (g+8, 2t+8..)
//   B 16x8  ("col": element (k, n) at n * ld + k), 2 x b32: b0 = (k 2t..2t+1, n g), b1 = (k 2t+8.., n g)
//   C 16x8  fp32, 4 floats: c0,c1 = (g, 2t..2t+1), c2,c3 = (g+8, 2t..2t+1)
// Two adjacent C tiles (16 x 16) hold exactly the elements of one A fragment, which is how the
// fused kernels feed P = softmax(S) from registers into O += P V without touching shared memory.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

namespace attnsim {

// Mask modes of the fused forward kernel (template parameter) and of the naive softmax
// (runtime argument). Masks are bottom-right aligned: query m sits at key m + N - M.
enum MaskMode : int { MASK_FULL = 0, MASK_CAUSAL = 1, MASK_WINDOW = 2, MASK_BLOCK_SPARSE = 3 };

constexpr float LOG2E = 1.4426950408889634f;

// ---------------------------------------------------------------------------- element types

template <typename T> struct Elem;

template <> struct Elem<half> {
  static __device__ __forceinline__ float to_float(half x) { return __half2float(x); }
  static __device__ __forceinline__ half from_float(float x) { return __float2half_rn(x); }
  // two floats -> one b32 register holding (lo, hi) as f16x2
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
  }
};

template <> struct Elem<__nv_bfloat16> {
  static __device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
  static __device__ __forceinline__ __nv_bfloat16 from_float(float x) { return __float2bfloat16_rn(x); }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
  }
};

template <> struct Elem<float> {
  static __device__ __forceinline__ float to_float(float x) { return x; }
  static __device__ __forceinline__ float from_float(float x) { return x; }
};

// ---------------------------------------------------------------------------- tensor cores

// D = A * B + D, one 16x8x16 tile per warp, fp32 accumulators.
template <typename T>
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);

template <>
__device__ __forceinline__ void mma_16816<half>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <>
__device__ __forceinline__ void mma_16816<__nv_bfloat16>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                                         uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Four 8x8 b16 matrices from shared memory (addr: a shared-window address, see smem_addr);
// lanes 8i..8i+7 give the row addresses of matrix i.
// Each lane receives, of matrix i, the elements (row lane/4, cols 2*(lane%4)..+1) in r[i].
__device__ __forceinline__ void ldmatrix_x4(uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3,
                                            uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}

// The same, each matrix transposed: lane receives (rows 2*(lane%4)..+1, col lane/4).
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3,
                                                  uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}

// ---------------------------------------------------------------------------- cp.async

// Copy 16 bytes global -> shared without staging through registers; `valid` false writes 16
// zero bytes instead (rows past the end of the sequence), reading nothing.
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, bool valid) {
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(smem)), "l"(gmem),
               "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// Wait until at most N of this thread's committed groups are still in flight.
template <int N> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// ---------------------------------------------------------------------------- swizzled tiles

// Element (r, c) of a [rows, COLS] b16 tile: 16-byte chunk c/8 of row r is stored at chunk
// (c/8) ^ (r % 8). Eight consecutive rows read at the same column hit eight different chunks,
// i.e. all 32 banks, so ldmatrix (8 rows x 16 bytes per matrix) is conflict free.
template <int COLS>
__device__ __forceinline__ int swz(int r, int c) {
  static_assert(COLS % 64 == 0, "swizzled tiles need rows of >= 8 chunks of 16 bytes");
  return r * COLS + ((((c >> 3) ^ (r & 7))) << 3) + (c & 7);
}

// Issue cp.async copies of a [ROWS, COLS] tile whose row r is at g + r * COLS (contiguous rows),
// into the swizzled shared tile s; rows >= valid_rows are zero-filled. NT threads cooperate,
// consecutive threads take consecutive 16-byte chunks (coalesced 128-byte segments).
template <typename T, int ROWS, int COLS, int NT>
__device__ __forceinline__ void load_tile_async(T* s, const T* g, int valid_rows, int tid) {
  constexpr int CHUNKS_PER_ROW = COLS / 8;  // 8 b16 elements = 16 bytes
  constexpr int CHUNKS = ROWS * CHUNKS_PER_ROW;
  static_assert(CHUNKS % NT == 0, "tile chunks must split evenly over the threads");
#pragma unroll
  for (int i = 0; i < CHUNKS / NT; ++i) {
    const int chunk = tid + i * NT;
    const int r = chunk / CHUNKS_PER_ROW;
    const int c = (chunk % CHUNKS_PER_ROW) * 8;
    const bool ok = r < valid_rows;
    cp_async_16(s + swz<COLS>(r, c), g + (size_t)r * COLS + c, ok);  // not read when !ok
  }
}

// 2^x on the special-function unit (MUFU.EX2), flushing denormals: what exp2f becomes under
// --use_fast_math, which FlashAttention builds with. One per softmax element.
__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// ---------------------------------------------------------------------------- reductions

__device__ __forceinline__ float quad_max(float x) {  // over the 4 lanes of an mma row group
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}
__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// Launch helper: opt in to more than 48 KiB of dynamic shared memory when needed.
template <typename Kernel>
inline cudaError_t set_dynamic_smem(Kernel kernel, size_t bytes) {
  if (bytes <= 48 * 1024) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
}

}  // namespace attnsim
