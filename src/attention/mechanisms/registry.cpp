// The mechanism registry: adding a mechanism is one file in this folder plus one line here.
// The tests sweep every entry (alone, with `causal`, and in combinations) using `example`.
#include "attention/mechanism_params.h"

namespace attnlab {
namespace mech {
using Factory = std::shared_ptr<const Mechanism> (*)(MechanismParams&);
std::shared_ptr<const Mechanism> make_causal(MechanismParams&);
std::shared_ptr<const Mechanism> make_window(MechanismParams&);
std::shared_ptr<const Mechanism> make_streaming(MechanismParams&);
std::shared_ptr<const Mechanism> make_chunked(MechanismParams&);
std::shared_ptr<const Mechanism> make_prefix(MechanismParams&);
std::shared_ptr<const Mechanism> make_document(MechanismParams&);
std::shared_ptr<const Mechanism> make_segment(MechanismParams&);
std::shared_ptr<const Mechanism> make_power(MechanismParams&);
std::shared_ptr<const Mechanism> make_radial(MechanismParams&);
std::shared_ptr<const Mechanism> make_radial_blocks(MechanismParams&);
std::shared_ptr<const Mechanism> make_alibi(MechanismParams&);
std::shared_ptr<const Mechanism> make_softcap(MechanismParams&);
std::shared_ptr<const Mechanism> make_decay(MechanismParams&);
std::shared_ptr<const Mechanism> make_temperature(MechanismParams&);
std::shared_ptr<const Mechanism> make_boost(MechanismParams&);
std::shared_ptr<const Mechanism> make_sinks(MechanismParams&);
std::shared_ptr<const Mechanism> make_sigmoid(MechanismParams&);
std::shared_ptr<const Mechanism> make_relu(MechanismParams&);
}  // namespace mech

const std::vector<MechanismInfo>& mechanism_registry() {
    static const std::vector<MechanismInfo> registry = {
        // name, parameters, meaning, example at test sizes, factory
        {"causal", "", "keep j <= i", "causal", mech::make_causal},
        {"window", "size=W", "keep |i-j| < W (with causal: Mistral's sliding window)", "window(size=5)", mech::make_window},
        {"streaming", "sink=N=4,window=W", "keep j < N or |i-j| < W (StreamingLLM)", "streaming(sink=2,window=4)", mech::make_streaming},
        {"chunked", "size=C", "keep floor(i/C) = floor(j/C)", "chunked(size=6)", mech::make_chunked},
        {"prefix", "len=P", "keep j < P or j <= i (prefix-LM; replaces causal)", "prefix(len=5)", mech::make_prefix},
        {"document", "", "keep seg[i] = seg[j] (input segments, one id per position)", "document", mech::make_document},
        {"segment", "id=N", "keep keys whose segment id is N (input segments)", "segment(id=1)", mech::make_segment},
        {"power", "block=B=256,window=W=5,sink=N=1",
         "keep d < W or kb < N or (d >= 0 and d&(d-1) = 0), d = floor(i/B)-floor(j/B), kb = floor(j/B) (PowerAttention)",
         "power(block=4,window=2,sink=1)", mech::make_power},
        {"radial", "frame=F,decay=d=1,block=128", "Radial Attention's token-level spatiotemporal mask (F tokens per frame)",
         "radial(frame=4,decay=1,block=2)", mech::make_radial},
        {"radial_blocks", "frame=F,decay=d=1,block=128", "Radial Attention's block-sparse form (B x B blocks)",
         "radial_blocks(frame=4,decay=1,block=4)", mech::make_radial_blocks},
        {"alibi", "", "s -= m_h*|i-j| (ALiBi slopes, any head count)", "alibi", mech::make_alibi},
        {"softcap", "cap=c", "s = c*tanh(s/c)", "softcap(cap=2)", mech::make_softcap},
        {"decay", "gamma=g", "s += |i-j|*ln(g) (RetNet-style decay as a log bias)", "decay(gamma=0.9)", mech::make_decay},
        {"temperature", "t=T", "s = s/T", "temperature(t=0.5)", mech::make_temperature},
        {"boost", "segment=N,alpha=a", "s += a*|s| for keys whose segment id is N (PAINT's logit boost; input segments)",
         "boost(segment=1,alpha=0.7)", mech::make_boost},
        {"sinks", "", "learned per-head sink logit joins each softmax denominator (input sinks (H), gpt-oss)", "sinks",
         mech::make_sinks},
        {"sigmoid", "bias=b=0", "normalizer p = sigmoid(s+b) (SWAT)", "sigmoid(bias=-1)", mech::make_sigmoid},
        {"relu", "", "normalizer p = relu(s)/(number of kept keys)", "relu", mech::make_relu},
    };
    return registry;
}

}  // namespace attnlab
