// Chunked causal linear attention (Lightning Attention-2 style, without decay):
//
//   o_i = sum_{j <= i} (q_i . k_j) v_j      (no softmax, no normalisation)
//
// computed chunk by chunk along the sequence, with a running state S = sum_j k_j^T v_j:
//
//   for each chunk t of CHUNK tokens (Q_t, K_t [CHUNK, D], V_t [CHUNK, F]):
//     O_t = (Q_t K_t^T  (*)  causal) V_t      intra-chunk: quadratic, causal within the chunk
//         + Q_t S                             inter-chunk: every earlier chunk through S [D, F]
//     S  += K_t^T V_t                         carried to the next chunk (fp32)
//
// One CTA per (b, h) walks all chunks in order (the state is a sequential dependency); 256
// threads. Work per chunk: CHUNK^2 D / 2 + CHUNK^2 F / 2 (intra) + 2 CHUNK D F (inter + state)
// multiply-adds, on the CUDA cores in fp32. Traffic per chunk: read CHUNK*(2D + F) elements,
// write CHUNK*F; S never leaves shared memory.
//
// Shared memory (dynamic): S [D, F] fp32 + Q_t [CHUNK, D], K_t^T [D, CHUNK + 2] and V_t
// [CHUNK, F] in the input type + A = Q_t K_t^T [CHUNK, CHUNK] fp32; D = F = HEAD_DIM here. K_t
// is stored transposed (and padded by 2) so that threads walking keys read consecutive words.
// Layout: Q, O [B, H, N, D]; K, V [B, Hkv, N, D] (query head h reads KV head h / (H / Hkv)).
#include "common.cuh"

namespace attnsim {

constexpr int LINEAR_THREADS = 256;

struct LinearParams {
  const void* q;
  const void* k;
  const void* v;
  void* o;
  int B, H, Hkv, N;
};

template <typename T, int HEAD_DIM, int CHUNK>
constexpr size_t linear_attn_smem_bytes() {
  return (size_t)HEAD_DIM * HEAD_DIM * 4 + ((size_t)CHUNK * 2 * HEAD_DIM + (size_t)HEAD_DIM * (CHUNK + 2)) * sizeof(T) +
         (size_t)CHUNK * CHUNK * 4;
}

template <typename T, int HEAD_DIM, int CHUNK>
__device__ __forceinline__ void linear_attn_body(const LinearParams& p) {
  constexpr int D = HEAD_DIM, F = HEAD_DIM, C = CHUNK, NT = LINEAR_THREADS;
  constexpr int CK = C + 2;                // row length of the transposed K tile
  constexpr int ROW_GROUPS = NT / F;       // threads per output column
  constexpr int ROWS = C / ROW_GROUPS;     // chunk rows per thread (intra + inter output)
  constexpr int D_PER = D / ROW_GROUPS;    // state rows per thread (state update)
  static_assert(NT % F == 0 && C % ROW_GROUPS == 0 && D % ROW_GROUPS == 0, "thread layout");

  extern __shared__ __align__(16) unsigned char smem_raw[];
  float* sS = reinterpret_cast<float*>(smem_raw);  // [D, F] running state, fp32
  T* sQ = reinterpret_cast<T*>(sS + D * F);        // [C, D]
  T* sKt = sQ + C * D;                             // [D, C + 2]  (K_t transposed)
  T* sV = sKt + D * CK;                            // [C, F]
  float* sA = reinterpret_cast<float*>(sV + C * F);  // [C, C] masked Q_t K_t^T

  const int tid = threadIdx.x;
  const int h = blockIdx.x % p.H, b = blockIdx.x / p.H;
  const int hkv = h / (p.H / p.Hkv);
  const T* Q = static_cast<const T*>(p.q) + (size_t)(b * p.H + h) * p.N * D;
  const T* K = static_cast<const T*>(p.k) + (size_t)(b * p.Hkv + hkv) * p.N * D;
  const T* V = static_cast<const T*>(p.v) + (size_t)(b * p.Hkv + hkv) * p.N * F;
  T* O = static_cast<T*>(p.o) + (size_t)(b * p.H + h) * p.N * F;

  for (int i = tid; i < D * F; i += NT) sS[i] = 0.f;
  const int f = tid % F;   // this thread's output / state column
  const int grp = tid / F;  // and its group of rows

  for (int c0 = 0; c0 < p.N; c0 += C) {
    const int valid = min(C, p.N - c0);
    // read C*D elements of Q and K and C*F of V (rows past N -> 0)
    for (int i = tid; i < C * D; i += NT) {
      const int r = i / D, d = i % D;
      const bool ok = r < valid;
      sQ[i] = ok ? Q[(size_t)c0 * D + i] : Elem<T>::from_float(0.f);
      sKt[d * CK + r] = ok ? K[(size_t)c0 * D + i] : Elem<T>::from_float(0.f);
      sV[i] = ok ? V[(size_t)c0 * F + i] : Elem<T>::from_float(0.f);
    }
    __syncthreads();
    // A = Q_t K_t^T, causal inside the chunk: [C, C], C*(C+1)/2 dot products of length D
    for (int i = tid; i < C * C; i += NT) {
      const int r = i / C, c = i % C;
      float a = 0.f;
      if (c <= r) {
        for (int d = 0; d < D; ++d) a = fmaf(Elem<T>::to_float(sQ[r * D + d]), Elem<T>::to_float(sKt[d * CK + c]), a);
      }
      sA[i] = a;
    }
    __syncthreads();
    // O_t = A V_t + Q_t S: rows grp*ROWS .. +ROWS-1 of column f
    float acc[ROWS];
#pragma unroll
    for (int i = 0; i < ROWS; ++i) acc[i] = 0.f;
    const int rbase = grp * ROWS;
    for (int d = 0; d < D; ++d) {  // inter-chunk: Q_t S
      const float s = sS[d * F + f];
#pragma unroll
      for (int i = 0; i < ROWS; ++i) acc[i] = fmaf(Elem<T>::to_float(sQ[(rbase + i) * D + d]), s, acc[i]);
    }
    for (int j = 0; j < rbase + ROWS; ++j) {  // intra-chunk: keys j <= row (A is zero above)
      const float vj = Elem<T>::to_float(sV[j * F + f]);
#pragma unroll
      for (int i = 0; i < ROWS; ++i) acc[i] = fmaf(sA[(rbase + i) * C + j], vj, acc[i]);
    }
    // write C*F elements of O
#pragma unroll
    for (int i = 0; i < ROWS; ++i)
      if (rbase + i < valid) O[(size_t)(c0 + rbase + i) * F + f] = Elem<T>::from_float(acc[i]);
    // S += K_t^T V_t: state rows grp*D_PER .. +D_PER-1 of column f (after everyone read S)
    __syncthreads();
    float st[D_PER];
#pragma unroll
    for (int i = 0; i < D_PER; ++i) st[i] = sS[(grp * D_PER + i) * F + f];
    for (int j = 0; j < C; ++j) {
      const float vj = Elem<T>::to_float(sV[j * F + f]);
#pragma unroll
      for (int i = 0; i < D_PER; ++i) st[i] = fmaf(Elem<T>::to_float(sKt[(grp * D_PER + i) * CK + j]), vj, st[i]);
    }
#pragma unroll
    for (int i = 0; i < D_PER; ++i) sS[(grp * D_PER + i) * F + f] = st[i];
    __syncthreads();  // S and the chunk buffers are free for the next chunk
  }
}

template <typename T, int HEAD_DIM, int CHUNK>
inline cudaError_t linear_attn_launch(void (*kernel)(LinearParams), const LinearParams& p, cudaStream_t stream) {
  if (p.Hkv < 1 || p.H % p.Hkv != 0 || p.N < 1) return cudaErrorInvalidValue;
  const size_t smem = linear_attn_smem_bytes<T, HEAD_DIM, CHUNK>();
  cudaError_t err = set_dynamic_smem(kernel, smem);
  if (err != cudaSuccess) return err;
  kernel<<<p.B * p.H, LINEAR_THREADS, smem, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace attnsim

// One instantiation: a __global__ entry NAME and `launch_NAME(q, k, v, o, B, H, Hkv, N, stream)`.
#define ATTNSIM_LINEAR_ATTN_VARIANT(NAME, T, HEAD_DIM, CHUNK)                                                  \
  extern "C" __global__ void __launch_bounds__(attnsim::LINEAR_THREADS) NAME(attnsim::LinearParams p) {      \
    attnsim::linear_attn_body<T, HEAD_DIM, CHUNK>(p);                                                        \
  }                                                                                                          \
  extern "C" int launch_##NAME(const void* q, const void* k, const void* v, void* o, int B, int H, int Hkv,  \
                               int N, cudaStream_t stream) {                                                 \
    attnsim::LinearParams p{q, k, v, o, B, H, Hkv, N};                                                       \
    return (int)attnsim::linear_attn_launch<T, HEAD_DIM, CHUNK>(NAME, p, stream);                             \
  }
