// The rollout decoder's model step (see decode.cc for the API and decode.h for the data): every
// layer, the head and the log-softmax for all entries of one forward() call, with each family's
// extras (biases, q/k norms, sandwich norms, GeGLU, soft-capping, sliding windows) where set. Compiled for
// AVX-512, AVX2+FMA and plain x86-64, picked at load time by the CPU; GEMMs go to OpenBLAS.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "decode.h"

namespace grpo_decode {

namespace {

// y [n, out] = x [n, in] x W^T (+ b), W [out, in] row-major, b [out] or empty.
inline void linear(const float* x, const float* w, const std::vector<float>& b, float* y, int n, int in, int out) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
  if (b.empty()) return;
  for (int i = 0; i < n; i++) {
    float* yr = y + (int64_t)i * out;
    for (int j = 0; j < out; j++) yr[j] += b[j];
  }
}

// gelu_pytorch_tanh as llama-forward.ts's geluTanh computes it, in float32 step by step:
// 0.5 x (1 + tanh(sqrt(2/pi) (x + x x x 0.044715))).
__attribute__((always_inline)) inline float geluTanh(float x) {
  const float c = (float)0.7978845608028654;  // sqrt(2 / pi)
  const float inner = (x + x * x * x * 0.044715f) * c;
  return x * 0.5f * (std::tanh(inner) + 1.0f);
}

// y = x * rsqrt(mean(x^2) + eps) * w over rows of d, float32 as the reference computes it.
__attribute__((always_inline)) inline void rmsNorm(const float* x, const float* w, float* y, int n, int d, float eps) {
  for (int i = 0; i < n; i++) {
    const float* xr = x + (int64_t)i * d;
    float* yr = y + (int64_t)i * d;
    float ss = 0;
    for (int j = 0; j < d; j++) ss += xr[j] * xr[j];
    const float r = 1.0f / std::sqrt(ss / d + eps);
    for (int j = 0; j < d; j++) yr[j] = xr[j] * r * w[j];
  }
}

// x_rot = x * c + rotate_half(x) * s with the coefficients pre-multiplied by `scale` (q's 1/sqrt(hd)).
__attribute__((always_inline)) inline void rotate(float* x, const float* cosP, const float* sinP, int hd, float scale) {
  const int half = hd / 2;
  for (int i = 0; i < half; i++) {
    const float c = cosP[i] * scale, s = sinP[i] * scale;
    const float a = x[i], b = x[i + half];
    x[i] = a * c + b * -s;
    x[i + half] = b * c + a * s;
  }
}


// One call of the model over n entries holding N tokens in all (see the header comment).
// Compiled for AVX-512, AVX2+FMA and plain x86-64, picked at load time by the CPU.
#if defined(__x86_64__)
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
void runForward(const Decoder& m, Cache& c, const int32_t* slots, const int32_t* counts, int n, const int32_t* tokens,
                int N, float* out, float invT) {
  const int d = m.d, I = m.I, hd = m.hd, nH = m.nH, nKV = m.nKV, g = nH / nKV;
  const int qw = nH * hd, heads = nH + 2 * nKV, half = hd / 2;
  const float scale = m.queryScale;
  const float embedScale = m.embedScale;
  auto grow = [](auto& v, int64_t n) {
    if ((int64_t)v.size() < n) v.resize(n);
  };
  grow(c.x, (int64_t)N * d);
  grow(c.xn, (int64_t)N * d);
  grow(c.qkv, (int64_t)N * heads * hd);
  grow(c.att, (int64_t)N * qw);
  grow(c.proj, (int64_t)N * std::max(d, 2 * I));
  grow(c.act, (int64_t)N * I);
  grow(c.scores, c.maxLen);
  grow(c.rowOf, N);
  grow(c.posOf, N);
  auto &x = c.x, &xn = c.xn, &qkv = c.qkv, &att = c.att, &proj = c.proj, &act = c.act, &scores = c.scores;
  auto &rowOf = c.rowOf, &posOf = c.posOf;
  for (int e = 0, t = 0; e < n; e++) {
    for (int j = 0; j < counts[e]; j++, t++) {
      rowOf[t] = slots[e];
      posOf[t] = c.len[slots[e]] + j;
    }
  }
  for (int t = 0; t < N; t++) std::memcpy(&x[(int64_t)t * d], &m.embed[(int64_t)tokens[t] * d], d * sizeof(float));
  if (embedScale != 1.0f) {
    for (int64_t i = 0; i < (int64_t)N * d; i++) x[i] *= embedScale;
  }

  for (int l = 0; l < m.L; l++) {
    const Layer& w = m.layers[l];
    rmsNorm(x.data(), w.inNorm.data(), xn.data(), N, d, m.eps);
    linear(xn.data(), w.wqkv.data(), w.bqkv, qkv.data(), N, d, heads * hd);
    // (Qwen3: RMSNorm each q and k head), rotate q (scaled) and k, then store k and v at their
    // positions: all of them before any attention, so a prefill's later tokens see its earlier ones
    for (int t = 0; t < N; t++) {
      float* r = &qkv[(int64_t)t * heads * hd];
      if (!w.qNorm.empty()) {
        for (int h = 0; h < nH; h++) rmsNorm(r + h * hd, w.qNorm.data(), r + h * hd, 1, hd, m.eps);
        for (int h = nH; h < nH + nKV; h++) rmsNorm(r + h * hd, w.kNorm.data(), r + h * hd, 1, hd, m.eps);
      }
      const float* cs = &c.cosT[(int64_t)posOf[t] * half];
      const float* sn = &c.sinT[(int64_t)posOf[t] * half];
      for (int h = 0; h < nH + nKV; h++) rotate(r + h * hd, cs, sn, hd, h < nH ? scale : 1.0f);
      for (int h = 0; h < nKV; h++) {
        std::memcpy(c.at(c.k, rowOf[t], l, h, posOf[t]), r + (nH + h) * hd, hd * sizeof(float));
        std::memcpy(c.at(c.v, rowOf[t], l, h, posOf[t]), r + (nH + nKV + h) * hd, hd * sizeof(float));
      }
    }
    // attention of each token's query heads over its row's positions first..pos (first > 0 only
    // on a sliding-window layer); scores soft-capped where the family does (q carries 1 / cap)
    const float cap = m.attnCap;
    for (int t = 0; t < N; t++) {
      const int Tk = posOf[t] + 1;
      const int first = w.window > 0 ? std::max(0, Tk - w.window) : 0;
      for (int h = 0; h < nH; h++) {
        const float* qh = &qkv[(int64_t)t * heads * hd + h * hd];
        const float* K = c.at(c.k, rowOf[t], l, h / g, 0);
        const float* Vv = c.at(c.v, rowOf[t], l, h / g, 0);
        float mx = -INFINITY;
        for (int s = first; s < Tk; s++) {
          float dot = 0;
          for (int i = 0; i < hd; i++) dot += qh[i] * K[(int64_t)s * hd + i];
          if (cap != 0.0f) dot = std::tanh(dot) * cap;
          scores[s] = dot;
          mx = std::max(mx, dot);
        }
        float sum = 0;
        for (int s = first; s < Tk; s++) sum += scores[s] = std::exp(scores[s] - mx);
        const float inv = 1.0f / sum;
        float* o = &att[(int64_t)t * qw + h * hd];
        std::fill(o, o + hd, 0.0f);
        for (int s = first; s < Tk; s++) {
          const float p = scores[s] * inv;
          for (int i = 0; i < hd; i++) o[i] += p * Vv[(int64_t)s * hd + i];
        }
      }
    }
    linear(att.data(), w.wo.data(), w.bo, proj.data(), N, qw, d);
    if (!w.attnOutNorm.empty()) rmsNorm(proj.data(), w.attnOutNorm.data(), proj.data(), N, d, m.eps);
    for (int64_t i = 0; i < (int64_t)N * d; i++) x[i] += proj[i];
    rmsNorm(x.data(), w.mlpNorm.data(), xn.data(), N, d, m.eps);
    linear(xn.data(), w.wgu.data(), w.bgu, proj.data(), N, d, 2 * I);
    for (int t = 0; t < N; t++) {
      const float* gu = &proj[(int64_t)t * 2 * I];
      float* a = &act[(int64_t)t * I];
      if (m.gelu) {
        for (int i = 0; i < I; i++) a[i] = geluTanh(gu[i]) * gu[I + i];
      } else {
        for (int i = 0; i < I; i++) {
          const float gate = gu[i];
          a[i] = gate * (1.0f / (1.0f + std::exp(-gate))) * gu[I + i];
        }
      }
    }
    linear(act.data(), w.wdown.data(), w.bdown, proj.data(), N, I, d);
    if (!w.mlpOutNorm.empty()) rmsNorm(proj.data(), w.mlpOutNorm.data(), proj.data(), N, d, m.eps);
    for (int64_t i = 0; i < (int64_t)N * d; i++) x[i] += proj[i];
  }
  for (int e = 0, t = 0; e < n; e++) {
    c.len[slots[e]] += counts[e];
    t += counts[e];
    // the entry's last token predicts the next one
    rmsNorm(&x[(int64_t)(t - 1) * d], m.norm.data(), &xn[(int64_t)e * d], 1, d, m.eps);
  }
  const int V = m.V;
  static const std::vector<float> none;
  linear(xn.data(), m.head.data(), none, out, n, d, V);
  const float fcap = m.finalCap, invCap = fcap != 0.0f ? (float)(1.0 / (double)fcap) : 0.0f;
  for (int e = 0; e < n; e++) {
    float* z = out + (int64_t)e * V;
    if (fcap != 0.0f) for (int i = 0; i < V; i++) z[i] = std::tanh(z[i] * invCap) * fcap;
    if (invT != 1.0f) for (int i = 0; i < V; i++) z[i] *= invT;
    float mx = -INFINITY;
    for (int i = 0; i < V; i++) mx = std::max(mx, z[i]);
    double sum = 0;
    for (int i = 0; i < V; i++) sum += std::exp((double)(z[i] - mx));
    const float lse = mx + (float)std::log(sum);
    for (int i = 0; i < V; i++) z[i] -= lse;
  }
}


}  // namespace

void forwardRows(const Decoder& m, Cache& c, const int32_t* slots, const int32_t* counts, int n, const int32_t* tokens,
                 int N, float* out, float invT) {
  runForward(m, c, slots, counts, n, tokens, N, out, invT);
}

}  // namespace grpo_decode
