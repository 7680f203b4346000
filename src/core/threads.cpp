// The thread pool behind parallel_for: N-1 persistent workers plus the calling thread.
//
// Workers wait on a condition variable between jobs: kernels are coarse (a whole matmul or a
// head range per job), so wake-up latency (~10 µs) is small next to the work.
#include <attnlab/error.h>
#include <attnlab/threads.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace attnlab {

namespace {

class ThreadPool {
public:
    explicit ThreadPool(int n_threads) { resize(n_threads); }
    ~ThreadPool() { stop_workers(); }

    int size() const { return n_threads_; }
    // True on a thread that is running a job: nested parallel loops then run serially.
    static bool inside_job() { return inside_job_; }

    void resize(int n_threads) {
        stop_workers();
        n_threads_ = std::max(1, n_threads);
        stopping_ = false;
        // New workers start from generation 0 (seen = 0): reset the counter so they do not
        // mistake the last finished job for a new one.
        generation_ = 0;
        job_ = nullptr;
        for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
    }

    // Runs job(thread_index) on every thread of the pool, the caller as thread 0.
    void run_on_all(const std::function<void(int)>& job) {
        if (n_threads_ == 1 || inside_job_) {
            job(0);
            return;
        }
        std::unique_lock<std::mutex> lock(mutex_);
        job_ = &job;
        pending_ = n_threads_ - 1;
        ++generation_;
        lock.unlock();
        wake_.notify_all();
        inside_job_ = true;
        std::exception_ptr caller_error;
        try {
            job(0);
        } catch (...) {
            caller_error = std::current_exception();
        }
        inside_job_ = false;
        lock.lock();
        done_.wait(lock, [this] { return pending_ == 0; });
        job_ = nullptr;
        std::exception_ptr error = caller_error ? caller_error : worker_error_;
        worker_error_ = nullptr;
        lock.unlock();
        if (error) std::rethrow_exception(error);
    }

private:
    void worker_loop(int index) {
        uint64_t seen = 0;
        inside_job_ = true;  // nested parallel_for inside a worker runs serially
        for (;;) {
            std::unique_lock<std::mutex> lock(mutex_);
            wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
            if (stopping_) return;
            seen = generation_;
            const std::function<void(int)>* job = job_;
            lock.unlock();
            std::exception_ptr error;
            try {
                (*job)(index);
            } catch (...) {
                error = std::current_exception();
            }
            lock.lock();
            if (error && !worker_error_) worker_error_ = error;
            if (--pending_ == 0) done_.notify_one();
        }
    }

    void stop_workers() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        for (auto& t : workers_) t.join();
        workers_.clear();
    }

    int n_threads_ = 1;
    std::vector<std::thread> workers_;
    std::mutex mutex_;
    std::condition_variable wake_, done_;
    const std::function<void(int)>* job_ = nullptr;
    int pending_ = 0;
    uint64_t generation_ = 0;
    bool stopping_ = false;
    std::exception_ptr worker_error_;
    static thread_local bool inside_job_;
};

thread_local bool ThreadPool::inside_job_ = false;

int default_threads() {
    unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : static_cast<int>(n);
}

ThreadPool& pool() {
    static ThreadPool instance(default_threads());
    return instance;
}

}  // namespace

void set_num_threads(int n) {
    ATTNLAB_CHECK(n >= 0, InvalidArgument, "[threads] thread count must be >= 0, got {}", n);
    int wanted = n == 0 ? default_threads() : n;
    if (wanted != pool().size()) pool().resize(wanted);
}

int num_threads() { return pool().size(); }

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn,
                  int64_t grain) {
    if (n <= 0) return;
    grain = std::max<int64_t>(1, grain);
    int64_t max_chunks = (n + grain - 1) / grain;
    int threads = static_cast<int>(std::min<int64_t>(pool().size(), max_chunks));
    if (threads <= 1 || ThreadPool::inside_job()) {
        fn(0, n, 0);
        return;
    }
    pool().run_on_all([&](int index) {
        if (index >= threads) return;
        int64_t begin = n * index / threads;
        int64_t end = n * (index + 1) / threads;
        if (begin < end) fn(begin, end, index);
    });
}

}  // namespace attnlab
