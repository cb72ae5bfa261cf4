// activation.cpp: elementwise σ ∈ {gelu_tanh, gelu, relu}. forward: out = ; backward: din = dout·σ'(in)
// Built with -ffast-math (this file only) so the tanh/erf loops vectorise through glibc's libmvec.
#include <cmath>
#include <cstring>

#include "backend/ops.hpp"
#include "core/error.hpp"

namespace strata::cpu {

Activation activation_from_name(const char* name) {
  if (!std::strcmp(name, "gelu_tanh")) return Activation::gelu_tanh;
  if (!std::strcmp(name, "gelu")) return Activation::gelu;
  if (!std::strcmp(name, "relu")) return Activation::relu;
  fail("unknown activation \"", name, "\" (gelu_tanh, gelu, relu)");
}

namespace {
constexpr double kSqrt2OverPi = 0.7978845608028654;
constexpr double kInvSqrt2 = 0.7071067811865476;
constexpr double kInvSqrt2Pi = 0.3989422804014327;
}  // namespace

template <class T>
void activation_forward(T* out, const T* in, size_t n, Activation a) {
  const T k0 = T(kSqrt2OverPi), k1 = T(0.044715), r2 = T(kInvSqrt2);
  switch (a) {
    case Activation::gelu_tanh:
#pragma omp parallel for simd schedule(static)
      for (size_t i = 0; i < n; i++) {
        T x = in[i];
        out[i] = T(0.5) * x * (T(1) + std::tanh(k0 * (x + k1 * x * x * x)));
      }
      break;
    case Activation::gelu:
#pragma omp parallel for simd schedule(static)
      for (size_t i = 0; i < n; i++) {
        T x = in[i];
        out[i] = T(0.5) * x * (T(1) + std::erf(x * r2));
      }
      break;
    case Activation::relu:
#pragma omp parallel for simd schedule(static)
      for (size_t i = 0; i < n; i++) out[i] = in[i] > T(0) ? in[i] : T(0);
      break;
  }
}

template <class T>
void activation_backward(T* din, const T* dout, const T* in, size_t n, Activation a) {
  const T k0 = T(kSqrt2OverPi), k1 = T(0.044715), r2 = T(kInvSqrt2), rp = T(kInvSqrt2Pi);
  switch (a) {
    case Activation::gelu_tanh:
#pragma omp parallel for simd schedule(static)
      for (size_t i = 0; i < n; i++) {
        T x = in[i];
        T u = k0 * (x + k1 * x * x * x);
        T th = std::tanh(u);
        T sech2 = T(1) - th * th;
        T g = T(0.5) * (T(1) + th) + T(0.5) * x * sech2 * k0 * (T(1) + T(3) * k1 * x * x);
        din[i] = dout[i] * g;
      }
      break;
    case Activation::gelu:
#pragma omp parallel for simd schedule(static)
      for (size_t i = 0; i < n; i++) {
        T x = in[i];
        T g = T(0.5) * (T(1) + std::erf(x * r2)) + x * rp * std::exp(T(-0.5) * x * x);
        din[i] = dout[i] * g;
      }
      break;
    case Activation::relu:
#pragma omp parallel for simd schedule(static)
      for (size_t i = 0; i < n; i++) din[i] = in[i] > T(0) ? dout[i] : T(0);
      break;
  }
}

template void activation_forward<float>(float*, const float*, size_t, Activation);
template void activation_forward<double>(double*, const double*, size_t, Activation);
template void activation_backward<float>(float*, const float*, const float*, size_t, Activation);
template void activation_backward<double>(double*, const double*, const double*, size_t, Activation);

}  // namespace strata::cpu
