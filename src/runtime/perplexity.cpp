// Perplexity by windows: the schedule of windows, one forward pass per window from an empty
// cache, and the NLL of each scored token from a log-softmax in double.
#include <attnlab/error.h>
#include <attnlab/perplexity.h>
#include <attnlab/threads.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace attnlab {

namespace {

// Text tokens [begin, end) run in one window; [first_scored, end) are scored there.
struct Window {
    int64_t begin, end, first_scored;
};

// Window i starts `step` text tokens after window i-1 and scores what the earlier windows did not
// (the Hugging Face guide's loop). Without BOS a window's first token has nothing to be
// predicted from, so it is never scored there; a window left with nothing to score is dropped.
std::vector<Window> plan_windows(int64_t n, int64_t text_per_window, int64_t step, bool bos) {
    std::vector<Window> windows;
    int64_t prev_end = 0;
    for (int64_t begin = 0;; begin += step) {
        const int64_t end = std::min(begin + text_per_window, n);
        const int64_t first_scored = std::max(prev_end, begin + (bos ? 0 : 1));
        if (first_scored < end) windows.push_back({begin, end, first_scored});
        prev_end = end;
        if (end == n) break;
    }
    return windows;
}

// -log softmax(row)[target], as logsumexp(row) - row[target] in double.
double token_nll(const float* row, int64_t V, int32_t target) {
    double m = row[0];
    for (int64_t v = 1; v < V; ++v) m = std::max(m, static_cast<double>(row[v]));
    double sum = 0;
    for (int64_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(row[v]) - m);
    return m + std::log(sum) - static_cast<double>(row[target]);
}

}  // namespace

PerplexityResult perplexity(const Model& model, std::span<const int32_t> ids, const PerplexityOptions& options) {
    const ModelConfig& c = model.config();
    const int64_t n = static_cast<int64_t>(ids.size());
    ATTNLAB_CHECK(n >= 2, InvalidArgument, "[perplexity] needs at least 2 tokens, got {}", n);
    ATTNLAB_CHECK(options.context >= 0, InvalidArgument, "[perplexity] context must be >= 2, got {}",
                  options.context);
    const int64_t max_pos = c.max_position_embeddings > 0 ? c.max_position_embeddings : 1024;
    const int64_t context = options.context > 0 ? options.context : std::min<int64_t>(max_pos, 1024);
    ATTNLAB_CHECK(context >= 2, InvalidArgument, "[perplexity] context must be >= 2, got {}", context);
    const int64_t stride = options.stride > 0 ? options.stride : context;
    ATTNLAB_CHECK(options.stride >= 0 && stride <= context, InvalidArgument,
                  "[perplexity] stride must be in [1, context = {}], got {}", context, options.stride);

    const bool bos = options.add_bos && c.bos_token_id.has_value();
    const int64_t text_per_window = bos ? context - 1 : context;
    const int64_t step = std::min(stride, text_per_window);
    const std::vector<Window> windows = plan_windows(n, text_per_window, step, bos);
    const int64_t V = c.vocab_size;

    // Welford's running mean and sum of squared deviations of the per-token NLL.
    int64_t count = 0;
    double mean = 0, m2 = 0;
    std::vector<int32_t> seq;
    std::vector<double> nll;
    for (size_t w = 0; w < windows.size(); ++w) {
        const Window& win = windows[w];
        seq.clear();
        if (bos) seq.push_back(static_cast<int32_t>(*c.bos_token_id));
        seq.insert(seq.end(), ids.begin() + win.begin, ids.begin() + win.end);
        KVCache cache = model.new_cache();
        ForwardOptions fo;
        fo.all_logits = true;
        const Tensor logits = model.forward(seq, cache, fo).contiguous();  // (rows, V)
        ATTNLAB_ASSERT(logits.dim() == 2 && logits.size(0) == static_cast<int64_t>(seq.size()) &&
                       logits.size(1) == V);
        // Text token i sits at window position i - begin + bos and is predicted by the row before.
        const int64_t offset = (bos ? 1 : 0) - win.begin - 1;
        const int64_t scored = win.end - win.first_scored;
        nll.assign(static_cast<size_t>(scored), 0.0);
        const float* base = logits.data<float>();
        parallel_for(scored, [&](int64_t a, int64_t b, int) {
            for (int64_t k = a; k < b; ++k) {
                const int64_t i = win.first_scored + k;
                nll[static_cast<size_t>(k)] = token_nll(base + (i + offset) * V, V, ids[static_cast<size_t>(i)]);
            }
        }, 16);
        for (double x : nll) {
            ++count;
            const double delta = x - mean;
            mean += delta / static_cast<double>(count);
            m2 += delta * (x - mean);
        }
        if (options.progress) options.progress(static_cast<int64_t>(w) + 1, static_cast<int64_t>(windows.size()));
    }

    PerplexityResult r;
    r.tokens_scored = count;
    r.windows = static_cast<int64_t>(windows.size());
    r.context = context;
    r.stride = step;
    r.mean_nll = mean;
    r.nll_stderr = count >= 2 ? std::sqrt(m2 / static_cast<double>(count - 1) / static_cast<double>(count)) : 0.0;
    r.ppl = std::exp(mean);
    r.ppl_stderr = r.ppl * r.nll_stderr;
    return r;
}

}  // namespace attnlab
