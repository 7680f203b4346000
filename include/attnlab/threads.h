// A fixed pool of worker threads for data-parallel loops (`-t N`, default all cores).
//
// parallel_for splits [0, n) into contiguous chunks, one per thread; the caller's thread takes
// part, so a pool of N threads has N-1 workers. Nested calls run serially on the caller.
#pragma once

#include <cstdint>
#include <functional>

namespace attnlab {

// Sets the number of threads used by every kernel (>= 1); 0 means all cores.
void set_num_threads(int n);
int num_threads();

// Calls fn(begin, end, thread_index) on disjoint chunks covering [0, n).
// `grain` is the smallest chunk worth a thread.
void parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn,
                  int64_t grain = 1);

}  // namespace attnlab
