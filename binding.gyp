{
  "targets": [
    {
      "target_name": "unforget_native",
      "sources": ["native/addon.cc", "native/kernels.cc", "native/attention.cc", "native/amx_gemm.cc", "native/f32_packed.cc", "native/hf_kernels.cc"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "/usr/include/x86_64-linux-gnu/openblas-openmp"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-O3", "-march=native", "-fno-math-errno", "-mprefer-vector-width=512", "-fopenmp", "-fexceptions"],
      "libraries": [
        "-L/usr/lib/x86_64-linux-gnu/openblas-openmp",
        "-Wl,-rpath,/usr/lib/x86_64-linux-gnu/openblas-openmp",
        "-lopenblas",
        "-fopenmp"
      ]
    }
  ]
}
