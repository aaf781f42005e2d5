// Built only when the CUDA language is available (CONSUMER_CUDA): proves that lnformer::cuda brings
// the CUDA runtime and cuBLAS/cuBLASLt headers and libraries, and that lnformer's core headers (fmt
// included) compile under nvcc. No GPU is needed: it reports the device count, or why there is none.
// (backend/cpu/cpu.hpp stays out: nvcc 13 in C++20 mode crashes on oneDNN's dnnl.hpp.)
#include <lnformer/core/tensor.hpp>
#include <lnformer/version.hpp>

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <fmt/format.h>

#include <cstdio>

__global__ void scale(float* x, int n, float a) {
  int const i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] *= a;
}

int main() {
  int devices = 0;
  cudaError_t const err = cudaGetDeviceCount(&devices);
  if (err == cudaSuccess && devices > 0) {  // with a GPU, also run a kernel and check its result
    float host[4] = {1, 2, 3, 4};
    float* x = nullptr;
    if (cudaMalloc(&x, sizeof host) != cudaSuccess) return 1;
    cudaMemcpy(x, host, sizeof host, cudaMemcpyHostToDevice);
    scale<<<1, 32>>>(x, 4, 2.0f);
    cudaMemcpy(host, x, sizeof host, cudaMemcpyDeviceToHost);
    cudaFree(x);
    if (host[3] != 8.0f) {
      std::printf("kernel result %g, expected 8\n", host[3]);
      return 1;
    }
  }
  fmt::print("lnformer {} cuda consumer ok: shape {}, cublas {}, cublasLt {}, devices {} ({})\n",
             LNF_VERSION_STRING, lnformer::Shape{2, 3}, CUBLAS_VERSION, cublasLtGetVersion(),
             err == cudaSuccess ? devices : 0, err == cudaSuccess ? "cuda ok" : cudaGetErrorString(err));
  return 0;
}
