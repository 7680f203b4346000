// safetensors reader/writer: round trips, zero-copy mapping, and every way a hostile file or
// sharded directory can be wrong (each must be a typed error naming the file and the fault).
#include "test_support.h"

#include <attnlab/error.h>
#include <attnlab/safetensors.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace attnlab {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using test::TempDir;
using test::write_file;

// A tensor of `shape` whose bytes are a deterministic pattern (any dtype: bytes, not values,
// are compared after the round trip).
Tensor patterned(const Shape& shape, DType dtype, uint8_t seed) {
    Tensor t = Tensor::empty(shape, dtype);
    auto* p = reinterpret_cast<uint8_t*>(t.raw());
    for (size_t i = 0; i < t.nbytes(); ++i) p[i] = static_cast<uint8_t>(seed + 31 * i + (i >> 7));
    return t;
}

std::string bytes_of(const Tensor& t) {
    Tensor c = t.contiguous();
    return std::string(reinterpret_cast<const char*>(c.raw()), c.nbytes());
}

std::string le64(uint64_t v) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
    return s;
}

// A file with the given header text (length prefix computed) and data section.
std::string st_file(const std::string& header, const std::string& data) {
    return le64(header.size()) + header + data;
}

// Expects `fn` to throw exactly ErrorType with a message mentioning every needle.
template <typename ErrorType>
void expect_error(const std::function<void()>& fn, const std::vector<std::string>& needles,
                  const std::string& label) {
    SCOPED_TRACE(label);
    try {
        fn();
        ADD_FAILURE() << "no exception";
    } catch (const ErrorType& e) {
        const std::string msg = e.what();
        EXPECT_EQ(msg.rfind("[", 0), 0u) << msg;
        EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
        for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
    } catch (const std::exception& e) {
        ADD_FAILURE() << "wrong exception type: " << e.what();
    }
}

const std::vector<DType> kAllDtypes = {DType::F32, DType::F64, DType::BF16,
                                       DType::F16, DType::I32, DType::I64};

TEST(Safetensors, RoundTripEveryDtypeAndShape) {
    TempDir tmp;
    const std::vector<Shape> shapes = {{3, 5, 7}, {1}, {}, {0}, {2, 0, 3}, {1, 1, 1, 1, 13}, {17}};
    std::vector<std::pair<std::string, Tensor>> tensors;
    uint8_t seed = 1;
    for (DType d : kAllDtypes)
        for (const Shape& s : shapes)
            tensors.emplace_back(fmt::format("{}/{}", dtype_name(d), shape_string(s)), patterned(s, d, seed++));
    const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "é ∑ \"quoted\""}, {"", "empty key"}};
    const std::string path = (tmp / "all.safetensors").string();
    save_safetensors(path, tensors, metadata);

    SafetensorsFile f = load_safetensors(path);
    EXPECT_EQ(f.path, path);
    EXPECT_EQ(f.metadata, metadata);
    ASSERT_EQ(f.tensors.size(), tensors.size());
    for (const auto& [name, t] : tensors) {
        SCOPED_TRACE(name);
        ASSERT_TRUE(f.tensors.count(name));
        const Tensor& got = f.tensors.at(name);
        EXPECT_EQ(got.dtype(), t.dtype());
        EXPECT_EQ(got.shape(), t.shape());
        EXPECT_EQ(got.numel(), t.numel());
        EXPECT_EQ(bytes_of(got), bytes_of(t));
    }
    EXPECT_EQ(f.tensors.at("f32/()").numel(), 1);
    EXPECT_EQ(f.tensors.at("f32/(0,)").nbytes(), 0u);
}

TEST(Safetensors, RoundTripWithoutMetadataAndEmptyFile) {
    TempDir tmp;
    const std::string path = (tmp / "empty.safetensors").string();
    save_safetensors(path, {});
    SafetensorsFile f = load_safetensors(path);
    EXPECT_TRUE(f.tensors.empty());
    EXPECT_TRUE(f.metadata.empty());

    const std::string one = (tmp / "one.safetensors").string();
    save_safetensors(one, {{"x", Tensor::from_vector({1, 2, 3}, {3})}});
    SafetensorsFile g = load_safetensors(one);
    EXPECT_TRUE(g.metadata.empty());
    EXPECT_EQ(g.tensors.at("x").to_floats(), (std::vector<float>{1, 2, 3}));
}

TEST(Safetensors, WritesNonContiguousTensorsContiguous) {
    TempDir tmp;
    Tensor a = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
    Tensor at = a.transpose(0, 1);  // (3, 2), strided
    const std::string path = (tmp / "t.safetensors").string();
    save_safetensors(path, {{"at", at}});
    SafetensorsFile f = load_safetensors(path);
    const Tensor& got = f.tensors.at("at");
    EXPECT_EQ(got.shape(), (Shape{3, 2}));
    EXPECT_EQ(got.to_floats(), (std::vector<float>{1, 4, 2, 5, 3, 6}));
}

TEST(Safetensors, SaveRejectsDuplicateAndReservedNames) {
    TempDir tmp;
    Tensor x = Tensor::zeros({2});
    const std::string path = (tmp / "d.safetensors").string();
    expect_error<InvalidArgument>([&] { save_safetensors(path, {{"a", x}, {"a", x}}); }, {"'a'"}, "duplicate");
    expect_error<InvalidArgument>([&] { save_safetensors(path, {{"__metadata__", x}}); },
                                  {"__metadata__"}, "reserved");
}

TEST(Safetensors, SaveToUnwritablePathIsIoError) {
    TempDir tmp;
    expect_error<IoError>([&] { save_safetensors((tmp / "no/such/dir/x.safetensors").string(), {}); },
                          {"no/such/dir"}, "unwritable");
}

TEST(Safetensors, LoadedTensorsAreViewsIntoTheMapping) {
    TempDir tmp;
    const std::string path = (tmp / "z.safetensors").string();
    save_safetensors(path, {{"a", patterned({64, 3}, DType::F32, 7)}, {"b", patterned({4}, DType::BF16, 9)},
                            {"c", patterned({2, 2}, DType::I64, 3)}});
    SafetensorsFile f = load_safetensors(path);
    ASSERT_TRUE(f.mapping);
    const std::byte* begin = f.mapping->data();
    const std::byte* end = begin + f.mapping->size();
    for (const auto& [name, t] : f.tensors) {
        SCOPED_TRACE(name);
        // Every offset here is aligned for its dtype, so nothing may be copied.
        EXPECT_EQ(t.storage().get(), f.mapping.get());
        EXPECT_GE(t.raw(), begin);
        EXPECT_LE(t.raw() + t.nbytes(), end);
        EXPECT_FALSE(t.writable());
    }
    // The view outlives the SafetensorsFile: the tensor holds the mapping.
    Tensor a = f.tensors.at("a");
    const std::string expected = bytes_of(patterned({64, 3}, DType::F32, 7));
    f = SafetensorsFile{};
    EXPECT_EQ(bytes_of(a), expected);
}

TEST(Safetensors, MisalignedTensorIsCopiedWithCorrectValues) {
    TempDir tmp;
    // A 3-element BF16 tensor (6 bytes) puts the F32 tensor after it at a misaligned offset.
    const std::string path = (tmp / "m.safetensors").string();
    Tensor a = patterned({3}, DType::BF16, 1);
    Tensor b = Tensor::from_vector({1.5f, -2.25f, 3.0f}, {3});
    save_safetensors(path, {{"a", a}, {"b", b}});
    SafetensorsFile f = load_safetensors(path);
    EXPECT_EQ(f.tensors.at("a").storage().get(), f.mapping.get());
    const Tensor& got = f.tensors.at("b");
    EXPECT_EQ(reinterpret_cast<uintptr_t>(got.raw()) % 4, 0u);
    EXPECT_EQ(got.to_floats(), (std::vector<float>{1.5f, -2.25f, 3.0f}));
}

struct HostileCase {
    std::string name;
    std::string contents;
    bool not_supported = false;      // NotSupported instead of FormatError
    std::vector<std::string> needles;  // besides the file path
};

std::vector<HostileCase> hostile_cases() {
    const std::string f32x2 = std::string(8, '\1');
    auto one = [](const std::string& entry) { return "{\"t\":" + entry + "}"; };
    std::vector<HostileCase> c;
    c.push_back({"empty file", "", false, {"0 bytes", "too short"}});
    c.push_back({"shorter than 8 bytes", std::string("\x05\0\0", 3), false, {"3 bytes", "too short"}});
    c.push_back({"header length beyond file", le64(1000) + "{}", false, {"1000", "past the end"}});
    c.push_back({"header length 2^63", le64(uint64_t(1) << 63) + "{}", false, {"9223372036854775808"}});
    c.push_back({"header length 2^64-1", le64(~uint64_t(0)) + "{}", false, {"18446744073709551615"}});
    c.push_back({"zero header length", le64(0), false, {"not valid JSON"}});
    c.push_back({"non-JSON header", st_file("{\"t\": {dtype", ""), false, {"not valid JSON"}});
    c.push_back({"invalid UTF-8 in header", st_file("{\"\xff\xfe\":1}", ""), false, {"not valid JSON"}});
    c.push_back({"JSON array header", st_file("[1, 2, 3]", ""), false, {"not a JSON object"}});
    c.push_back({"JSON string header", st_file("\"hello\"", ""), false, {"not a JSON object"}});
    c.push_back({"entry not an object", st_file(one("[1,2]"), ""), false, {"'t'", "dtype, shape and data_offsets"}});
    c.push_back({"missing dtype", st_file(one(R"({"shape":[2],"data_offsets":[0,8]})"), f32x2), false,
                 {"'t'", "dtype"}});
    c.push_back({"missing shape", st_file(one(R"({"dtype":"F32","data_offsets":[0,8]})"), f32x2), false,
                 {"'t'", "shape"}});
    c.push_back({"missing data_offsets", st_file(one(R"({"dtype":"F32","shape":[2]})"), f32x2), false,
                 {"'t'", "data_offsets"}});
    c.push_back({"dtype not a string", st_file(one(R"({"dtype":4,"shape":[2],"data_offsets":[0,8]})"), f32x2),
                 false, {"'t'", "dtype"}});
    c.push_back({"shape not an array", st_file(one(R"({"dtype":"F32","shape":2,"data_offsets":[0,8]})"), f32x2),
                 false, {"'t'", "shape"}});
    c.push_back({"negative shape", st_file(one(R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})"), f32x2),
                 false, {"'t'", "negative"}});
    c.push_back({"float shape", st_file(one(R"({"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})"), f32x2),
                 false, {"'t'", "non-integer"}});
    c.push_back({"string shape", st_file(one(R"({"dtype":"F32","shape":["2"],"data_offsets":[0,8]})"), f32x2),
                 false, {"'t'", "non-integer"}});
    c.push_back({"shape with 9 dims",
                 st_file(one(R"({"dtype":"F32","shape":[1,1,1,1,1,1,1,1,2],"data_offsets":[0,8]})"), f32x2),
                 false, {"'t'", "shape"}});
    c.push_back({"shape product overflow",
                 st_file(one(R"({"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]})"),
                         f32x2),
                 false, {"'t'", "overflows"}});
    c.push_back({"shape product overflow (wraps to 8 bytes)",
                 st_file(one(R"({"dtype":"F32","shape":[2,4611686018427387904],"data_offsets":[0,8]})"), f32x2),
                 false, {"'t'", "overflows"}});
    c.push_back({"shape entry above int64",
                 st_file(one(R"({"dtype":"I64","shape":[18446744073709551615],"data_offsets":[0,8]})"), f32x2),
                 false, {"'t'", "overflows"}});
    c.push_back({"data_offsets reversed", st_file(one(R"({"dtype":"F32","shape":[0],"data_offsets":[8,0]})"), f32x2),
                 false, {"'t'", "[8, 0]", "reversed"}});
    c.push_back({"data_offsets negative", st_file(one(R"({"dtype":"F32","shape":[2],"data_offsets":[-8,0]})"), f32x2),
                 false, {"'t'", "data_offsets"}});
    c.push_back({"data_offsets float", st_file(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0.0,8.0]})"), f32x2),
                 false, {"'t'", "data_offsets"}});
    c.push_back({"data_offsets three entries",
                 st_file(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8,16]})"), f32x2), false,
                 {"'t'", "data_offsets"}});
    c.push_back({"data_offsets beyond data section",
                 st_file(one(R"({"dtype":"F32","shape":[4],"data_offsets":[0,16]})"), f32x2), false,
                 {"'t'", "[0, 16]", "outside the data section", "8 bytes"}});
    c.push_back({"data_offsets huge",
                 st_file(one(R"({"dtype":"F32","shape":[2],"data_offsets":[18446744073709551608,18446744073709551615]})"),
                         f32x2),
                 false, {"'t'", "outside the data section"}});
    c.push_back({"overlapping tensors",
                 st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                         R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                         std::string(12, '\0')),
                 false, {"'b'", "overlaps"}});
    c.push_back({"aliased tensors",
                 st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                         R"("b":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}})",
                         f32x2),
                 false, {"overlaps"}});
    c.push_back({"gap between tensors",
                 st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                         R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                         std::string(12, '\0')),
                 false, {"'b'", "gap", "offset 8", "expected 4"}});
    c.push_back({"gap at the start", st_file(one(R"({"dtype":"F32","shape":[1],"data_offsets":[4,8]})"), f32x2),
                 false, {"'t'", "gap"}});
    c.push_back({"span not dtype x shape",
                 st_file(one(R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})"), f32x2), false,
                 {"'t'", "12 bytes", "span 8 bytes"}});
    c.push_back({"span not dtype x shape (BF16)",
                 st_file(one(R"({"dtype":"BF16","shape":[2],"data_offsets":[0,8]})"), f32x2), false,
                 {"'t'", "4 bytes", "span 8 bytes"}});
    c.push_back({"trailing bytes", st_file(one(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})"), f32x2),
                 false, {"data section is 8 bytes", "cover 4"}});
    c.push_back({"data but no tensors", st_file("{}", f32x2), false, {"data section is 8 bytes", "cover 0"}});
    c.push_back({"unknown dtype F8_E4M3",
                 st_file(one(R"({"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]})"), f32x2), true,
                 {"'t'", "F8_E4M3", "not supported"}});
    c.push_back({"unknown dtype garbage", st_file(one(R"({"dtype":"","shape":[8],"data_offsets":[0,8]})"), f32x2),
                 true, {"'t'", "not supported"}});
    c.push_back({"metadata with number value", st_file(R"({"__metadata__":{"format":"pt","n":3}})", ""), false,
                 {"'n'", "not a string"}});
    c.push_back({"metadata with object value", st_file(R"({"__metadata__":{"o":{"x":"y"}}})", ""), false,
                 {"'o'", "not a string"}});
    c.push_back({"metadata with null value", st_file(R"({"__metadata__":{"z":null}})", ""), false,
                 {"'z'", "not a string"}});
    c.push_back({"metadata not an object", st_file(R"({"__metadata__":["a"]})", ""), false,
                 {"__metadata__", "not an object"}});
    return c;
}

TEST(Safetensors, HostileFilesAreTypedErrorsNamingFileAndFault) {
    TempDir tmp;
    int i = 0;
    for (const HostileCase& c : hostile_cases()) {
        const std::string path = (tmp / fmt::format("hostile_{}.safetensors", i++)).string();
        write_file(path, c.contents);
        std::vector<std::string> needles = c.needles;
        needles.push_back(path);
        auto load = [&] { load_safetensors(path); };
        if (c.not_supported) expect_error<NotSupported>(load, needles, c.name);
        else expect_error<FormatError>(load, needles, c.name);
    }
}

TEST(Safetensors, TruncatedRealCheckpointIsFormatError) {
    TempDir tmp;
    const std::string src = test::read_file(test::fixtures_dir() / "models/llama3-tiny/model.safetensors");
    for (size_t keep : {size_t(0), size_t(7), size_t(8), size_t(100), src.size() / 2, src.size() - 1}) {
        const std::string path = (tmp / fmt::format("cut_{}.safetensors", keep)).string();
        write_file(path, src.substr(0, keep));
        expect_error<FormatError>([&] { load_safetensors(path); }, {path}, fmt::format("keep {}", keep));
    }
}

TEST(Safetensors, EveryOneByteCorruptionOfTheLengthIsHandled) {
    // Flipping any byte of the header length must not crash or hang, whatever it becomes.
    TempDir tmp;
    const std::string path0 = (tmp / "ok.safetensors").string();
    save_safetensors(path0, {{"x", patterned({4, 4}, DType::F32, 5)}});
    const std::string good = test::read_file(path0);
    for (int byte = 0; byte < 8; ++byte)
        for (int v : {0x00, 0x01, 0x7f, 0x80, 0xff}) {
            std::string bad = good;
            if (static_cast<uint8_t>(bad[byte]) == v) continue;
            bad[byte] = static_cast<char>(v);
            const std::string path = (tmp / "bad.safetensors").string();
            write_file(path, bad);
            EXPECT_THROW(load_safetensors(path), FormatError) << "byte " << byte << " = " << v;
        }
}

TEST(Safetensors, MissingFileAndDirectoryAreIoErrors) {
    TempDir tmp;
    const std::string missing = (tmp / "nope.safetensors").string();
    expect_error<IoError>([&] { load_safetensors(missing); }, {missing}, "missing file");
    expect_error<IoError>([&] { load_safetensors(tmp.path().string()); }, {tmp.path().string()}, "directory");
}

// ---- WeightStore: single file and sharded directories ----

void write_index(const fs::path& dir, const json& weight_map) {
    json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}};
    write_file(dir / "model.safetensors.index.json", index.dump(2));
}

TEST(WeightStore, OpensSingleFileAndShardedDirectories) {
    TempDir tmp;
    fs::create_directories(tmp / "single");
    save_safetensors((tmp / "single/model.safetensors").string(),
                     {{"a", patterned({2, 3}, DType::F32, 1)}, {"b", patterned({4}, DType::BF16, 2)}});
    WeightStore single = WeightStore::open_directory((tmp / "single").string());
    EXPECT_EQ(single.tensors().size(), 2u);
    EXPECT_EQ(single.total_bytes(), 2 * 3 * 4 + 4 * 2u);

    fs::create_directories(tmp / "sharded");
    save_safetensors((tmp / "sharded/model-00001-of-00002.safetensors").string(),
                     {{"a", patterned({2, 3}, DType::F32, 1)}});
    save_safetensors((tmp / "sharded/model-00002-of-00002.safetensors").string(),
                     {{"b", patterned({4}, DType::BF16, 2)}, {"c", patterned({1}, DType::I64, 3)}});
    write_index(tmp / "sharded", {{"a", "model-00001-of-00002.safetensors"},
                                  {"b", "model-00002-of-00002.safetensors"},
                                  {"c", "model-00002-of-00002.safetensors"}});
    WeightStore sharded = WeightStore::open_directory((tmp / "sharded").string());
    EXPECT_EQ(sharded.tensors().size(), 3u);
    EXPECT_EQ(bytes_of(sharded.get("b", {4})), bytes_of(patterned({4}, DType::BF16, 2)));
    EXPECT_EQ(sharded.unused(), (std::vector<std::string>{"a", "c"}));
}

TEST(WeightStore, GetOfMissingTensorOrWrongShapeNamesTheTensor) {
    TempDir tmp;
    save_safetensors((tmp / "model.safetensors").string(), {{"layer.0.weight", patterned({2, 3}, DType::F32, 1)}});
    WeightStore store = WeightStore::open_directory(tmp.path().string());
    expect_error<FormatError>([&] { store.get("layer.1.weight", {2, 3}); }, {"'layer.1.weight'", "missing"},
                              "missing");
    expect_error<FormatError>([&] { store.get("layer.0.weight", {3, 2}); },
                              {"'layer.0.weight'", "(2, 3)", "expected (3, 2)"}, "wrong shape");
    expect_error<FormatError>([&] { store.get("layer.0.weight", {2, 3, 1}); }, {"'layer.0.weight'"},
                              "wrong rank");
    EXPECT_EQ(store.find("nope"), nullptr);
    EXPECT_EQ(store.get("layer.0.weight", {2, 3}).shape(), (Shape{2, 3}));
}

TEST(WeightStore, DirectoryWithoutWeightsIsIoError) {
    TempDir tmp;
    expect_error<IoError>([&] { WeightStore::open_directory(tmp.path().string()); },
                          {tmp.path().string(), "model.safetensors"}, "empty dir");
}

// A directory of two valid shards plus an index built by `make_index`.
struct ShardCase {
    std::string name;
    std::function<void(const fs::path&)> setup;
    std::vector<std::string> needles;
    bool io_error = false;
};

TEST(WeightStore, HostileShardedDirectories) {
    const std::string s1 = "model-00001-of-00002.safetensors", s2 = "model-00002-of-00002.safetensors";
    auto two_shards = [&](const fs::path& d) {
        save_safetensors((d / s1).string(), {{"a", patterned({2}, DType::F32, 1)}});
        save_safetensors((d / s2).string(), {{"b", patterned({2}, DType::F32, 2)}});
    };
    std::vector<ShardCase> cases = {
        {"index lists a missing shard",
         [&](const fs::path& d) {
             two_shards(d);
             write_index(d, {{"a", s1}, {"b", s2}, {"c", "model-00003-of-00003.safetensors"}});
         },
         {"model-00003-of-00003.safetensors"}},
        {"tensor present in two shards",
         [&](const fs::path& d) {
             save_safetensors((d / s1).string(), {{"a", patterned({2}, DType::F32, 1)}});
             save_safetensors((d / s2).string(),
                              {{"a", patterned({2}, DType::F32, 1)}, {"b", patterned({2}, DType::F32, 2)}});
             write_index(d, {{"a", s1}, {"b", s2}});
         },
         {"'a'", s1, s2}},
        {"index puts a tensor in the wrong shard",
         [&](const fs::path& d) {
             two_shards(d);
             write_index(d, {{"a", s2}, {"b", s1}});
         },
         {"'b'", "is in " + s2, "index puts it in " + s1}},
        {"shard holds a tensor the index does not list",
         [&](const fs::path& d) {
             two_shards(d);
             save_safetensors((d / s2).string(),
                              {{"b", patterned({2}, DType::F32, 2)}, {"extra", patterned({1}, DType::F32, 3)}});
             write_index(d, {{"a", s1}, {"b", s2}});
         },
         {"'extra'", "no shard"}},
        {"index lists a tensor its shard lacks",
         [&](const fs::path& d) {
             two_shards(d);
             write_index(d, {{"a", s1}, {"b", s2}, {"ghost", s2}});
         },
         {"'ghost'", s2}},
        {"shard name with ../",
         [&](const fs::path& d) {
             two_shards(d);
             write_index(d, {{"a", "../" + s1}, {"b", s2}});
         },
         {"../" + s1, "plain file name"}},
        {"shard name ..",
         [&](const fs::path& d) {
             two_shards(d);
             write_index(d, {{"a", ".."}, {"b", s2}});
         },
         {"'..'", "plain file name"}},
        {"shard name .",
         [&](const fs::path& d) {
             two_shards(d);
             write_index(d, {{"a", "."}, {"b", s2}});
         },
         {"'.'", "plain file name"}},
        {"absolute shard name",
         [&](const fs::path& d) {
             two_shards(d);
             write_index(d, {{"a", "/etc/passwd"}, {"b", s2}});
         },
         {"/etc/passwd", "plain file name"}},
        {"empty shard name",
         [&](const fs::path& d) {
             two_shards(d);
             write_index(d, {{"a", ""}, {"b", s2}});
         },
         {"plain file name"}},
        {"shard name not a string",
         [&](const fs::path& d) {
             two_shards(d);
             write_index(d, {{"a", 1}, {"b", s2}});
         },
         {"'a'", "not a string"}},
        {"index not JSON",
         [&](const fs::path& d) {
             two_shards(d);
             write_file(d / "model.safetensors.index.json", "{\"weight_map\": ");
         },
         {"model.safetensors.index.json", "invalid JSON"}},
        {"index without weight_map",
         [&](const fs::path& d) {
             two_shards(d);
             write_file(d / "model.safetensors.index.json", R"({"metadata": {}})");
         },
         {"model.safetensors.index.json", "weight_map"}},
        {"index is an array",
         [&](const fs::path& d) {
             two_shards(d);
             write_file(d / "model.safetensors.index.json", "[]");
         },
         {"model.safetensors.index.json", "weight_map"}},
        {"a shard is corrupt",
         [&](const fs::path& d) {
             two_shards(d);
             write_file(d / s2, "garbage!garbage!");
             write_index(d, {{"a", s1}, {"b", s2}});
         },
         {s2}},
    };
    for (const ShardCase& c : cases) {
        TempDir tmp;
        c.setup(tmp.path());
        auto open = [&] { WeightStore::open_directory(tmp.path().string()); };
        expect_error<FormatError>(open, c.needles, c.name);
    }
}

}  // namespace
}  // namespace attnlab
