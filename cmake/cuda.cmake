# The CUDA backend (src/kernels/cuda/, docs/cuda.md): the static library attnlab_cuda, built
# where nvcc exists (ATTNLAB_CUDA defaults to ON then) and skipped with one status line where
# not. Kernels are compiled for the H200/H100 only (sm_90a), which keeps the build a few
# instantiations long on CI's 2 cores. ATTNLAB_CUDA_TESTS adds the GPU tests (tests/cuda) and
# the GPU benchmark; it is off by default because CI has nvcc but no GPU.
include(CheckLanguage)
check_language(CUDA)
if(CMAKE_CUDA_COMPILER)
  set(ATTNLAB_CUDA_DEFAULT ON)
else()
  set(ATTNLAB_CUDA_DEFAULT OFF)
endif()
option(ATTNLAB_CUDA "Build the CUDA backend (needs nvcc)" ${ATTNLAB_CUDA_DEFAULT})
option(ATTNLAB_CUDA_TESTS "Build the GPU tests and benchmark (need a GPU to run)" OFF)

if(ATTNLAB_CUDA AND NOT CMAKE_CUDA_COMPILER)
  message(STATUS "attnlab: CUDA backend skipped (ATTNLAB_CUDA=ON but no nvcc found)")
  set(ATTNLAB_CUDA OFF)
elseif(NOT ATTNLAB_CUDA)
  message(STATUS "attnlab: CUDA backend off (ATTNLAB_CUDA=OFF or no nvcc found)")
endif()

if(ATTNLAB_CUDA)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 90a)
  endif()
  enable_language(CUDA)
  # CMake 3.25 does not know nvcc 13's C++20 flag: tell it (set before the standard, which
  # would otherwise fail its dialect check).
  set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
  set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
  set(CMAKE_CUDA_STANDARD 20)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  set(CMAKE_CUDA_EXTENSIONS OFF)
  find_package(CUDAToolkit REQUIRED)
  message(STATUS "attnlab: CUDA backend on (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, sm ${CMAKE_CUDA_ARCHITECTURES})")

  file(GLOB ATTNLAB_CUDA_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/kernels/cuda/*.cu)
  add_library(attnlab_cuda STATIC ${ATTNLAB_CUDA_SOURCES})
  # The directory's GCC flags (warnings, sanitizers) mean nothing to nvcc: pass ours instead.
  set_property(TARGET attnlab_cuda PROPERTY COMPILE_OPTIONS "")
  target_compile_options(attnlab_cuda PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wno-unused-parameter>)
  # fmt turns its constexpr off when it sees nvcc, but its C++20 format checks still need it
  # (the host pass then fails with "call to non-constexpr function"): keep it on.
  target_compile_definitions(attnlab_cuda PUBLIC $<$<COMPILE_LANGUAGE:CUDA>:FMT_USE_CONSTEXPR=1>)
  target_include_directories(attnlab_cuda PRIVATE ${CMAKE_SOURCE_DIR}/src)
  # attnlab_cuda uses the library (spec, plan) and the library's users get attnlab_cuda: a
  # cycle of two static libraries, which CMake links by repeating them.
  # cuBLAS (the model's matmuls, model_forward.cu) is linked as the shared library: the static
  # one is several hundred MB.
  target_link_libraries(attnlab_cuda PUBLIC attnlab_lib CUDA::cudart_static CUDA::cublas)
  target_link_libraries(attnlab_lib INTERFACE attnlab_cuda)
  target_compile_definitions(attnlab_lib PUBLIC ATTNLAB_HAVE_CUDA)

  if(ATTNLAB_CUDA_TESTS)
    add_executable(cuda_attention_bench ${CMAKE_SOURCE_DIR}/bench/cuda_attention_bench.cu)
    set_property(TARGET cuda_attention_bench PROPERTY COMPILE_OPTIONS "")
    target_include_directories(cuda_attention_bench PRIVATE ${CMAKE_SOURCE_DIR}/src)
    target_link_libraries(cuda_attention_bench PRIVATE attnlab_lib)
  endif()
endif()
