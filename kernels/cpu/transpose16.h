// An in-register transpose of a 16 x 16 float block on AVX-512, shared by the GEMM's packing
// (kernels/cpu/sgemm.cpp) and the Winograd transforms (kernels/cpu/winograd.cpp).
#pragma once
#if defined(__AVX512F__)
#include <immintrin.h>

namespace xgan::cpu {

// r[i] holds row i on entry and column i on return. Pairs of rows interleave (unpack), then 4 x 4
// blocks within each 128-bit lane (shuffle_ps), then the 128-bit lanes themselves (shuffle_f32x4).
inline void transpose16(__m512 (&r)[16]) {
  __m512 t[16], s[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int g = 0; g < 4; ++g) {  // s[4g + m], lane block j: column 4j + m of rows 4g..4g+3
    s[4 * g] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    s[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
    s[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    s[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
  }
  for (int m = 0; m < 4; ++m) {
    const __m512 u0 = _mm512_shuffle_f32x4(s[m], s[4 + m], 0x44),
                 u1 = _mm512_shuffle_f32x4(s[m], s[4 + m], 0xEE);
    const __m512 u2 = _mm512_shuffle_f32x4(s[8 + m], s[12 + m], 0x44),
                 u3 = _mm512_shuffle_f32x4(s[8 + m], s[12 + m], 0xEE);
    r[m] = _mm512_shuffle_f32x4(u0, u2, 0x88);
    r[4 + m] = _mm512_shuffle_f32x4(u0, u2, 0xDD);
    r[8 + m] = _mm512_shuffle_f32x4(u1, u3, 0x88);
    r[12 + m] = _mm512_shuffle_f32x4(u1, u3, 0xDD);
  }
}

}  // namespace xgan::cpu
#endif
