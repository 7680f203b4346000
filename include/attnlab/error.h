// Typed errors of the attnlab library.
//
// The library never exits: it throws one of these, with a message that starts with
// "[where]" and names the file, tensor or value at fault. The CLI catches attnlab::Error,
// prints the message on one line and exits non-zero.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace attnlab {

class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// A caller passed something malformed: a bad shape, an unknown option, an id out of range.
class InvalidArgument : public Error {
public:
    using Error::Error;
};

// A file could not be opened, read or mapped.
class IoError : public Error {
public:
    using Error::Error;
};

// A file's contents violate its format (safetensors header, config.json, tokenizer.json).
class FormatError : public Error {
public:
    using Error::Error;
};

// Valid input that attnlab does not implement yet (a RoPE type, an architecture).
class NotSupported : public Error {
public:
    using Error::Error;
};

}  // namespace attnlab

// Validates user input: throws ErrorType with the formatted message when cond is false.
#define ATTNLAB_CHECK(cond, ErrorType, ...)                         \
    do {                                                            \
        if (!(cond)) throw ErrorType(fmt::format(__VA_ARGS__));     \
    } while (0)

// Guards an internal invariant; a failure is a bug in attnlab, not in the input.
#define ATTNLAB_ASSERT(cond)                                                                  \
    do {                                                                                      \
        if (!(cond))                                                                          \
            throw ::attnlab::Error(fmt::format("[internal] assertion failed: {} ({}:{})", #cond, \
                                               __FILE__, __LINE__));                          \
    } while (0)
