// Shared by the rollout decoder's two files: the weights and cache it owns (decode.cc makes them
// from JS arguments) and the model step over them (decode-forward.cc). See decode.cc for the API.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

namespace grpo_decode {

// One decoder layer. Optional parts (a family's extras, see src/model/architecture.ts) are empty
// vectors when the family has none. Norm weights already include Gemma's + 1.
struct Layer {
  std::vector<float> inNorm;       // [d] input_layernorm
  std::vector<float> wqkv, bqkv;   // [(nH + 2 nKV) hd, d] q; k; v, and their biases
  std::vector<float> qNorm, kNorm; // [hd] Qwen3's per-head q_norm / k_norm
  std::vector<float> wo, bo;       // [d, nH hd], [d]
  std::vector<float> attnOutNorm;  // [d] Gemma2's post_attention_layernorm on the attention output
  std::vector<float> mlpNorm;      // [d] the norm before the MLP
  std::vector<float> mlpOutNorm;   // [d] Gemma2's post_feedforward_layernorm on the MLP output
  std::vector<float> wgu, bgu;     // [2 I, d] gate; up, and their biases
  std::vector<float> wdown, bdown; // [d, I], [d]
  int window = 0;                  // sliding window (positions seen, itself included); 0 = all
};

struct Decoder {
  int V, d, I, L, nH, nKV, hd;
  float eps;
  float embedScale = 1;  // embeddings times this (Gemma2: sqrt(d))
  float queryScale = 1;  // q scale folded into the rotary coefficients (already / attnCap)
  float attnCap = 0;     // scores -> attnCap * tanh(scores); 0 = no soft-capping
  float finalCap = 0;    // logits -> finalCap * tanh(logits / finalCap); 0 = none
  bool gelu = false;     // GeGLU (gelu tanh) instead of SwiGLU
  std::vector<float> embed, norm, head;
  std::vector<Layer> layers;
};

struct Cache {
  int rows = 0, maxLen = 0, L = 0, nKV = 0, hd = 0;
  int64_t cap = 0;  // floats allocated in each of k and v (>= rows L nKV maxLen hd: a reused cache may hold more)
  // [rows, L, nKV, maxLen, hd], left uninitialised: only positions below a row's len are read
  std::unique_ptr<float[]> k, v;
  std::vector<int32_t> len;   // positions held per row
  std::vector<float> cosT;    // [maxLen, hd / 2]
  std::vector<float> sinT;    // [maxLen, hd / 2]
  // scratch of forward(), kept between calls (grown, never shrunk) so a step allocates nothing
  std::vector<float> x, xn, qkv, att, proj, act, scores;
  std::vector<int32_t> rowOf, posOf;
  float* at(const std::unique_ptr<float[]>& kv, int row, int layer, int head, int pos) {
    return kv.get() + ((((int64_t)row * L + layer) * nKV + head) * maxLen + pos) * hd;
  }
};

// One call of the model over n entries holding N tokens in all: entry e appends counts[e] tokens
// (from `tokens`, in entry order) to row slots[e] and writes the log-softmax of its last token's
// logits * invT into out[e V ...]. Arguments are checked by the caller.
void forwardRows(const Decoder& m, Cache& c, const int32_t* slots, const int32_t* counts, int n, const int32_t* tokens,
                 int N, float* out, float invT);

}  // namespace grpo_decode
