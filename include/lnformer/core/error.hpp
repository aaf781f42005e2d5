#pragma once
// Errors: every failed precondition throws an lnformer::Error subclass whose message names the
// condition, every relevant dimension and the source location. A library never calls exit().

#include <fmt/format.h>

#include <source_location>
#include <stdexcept>
#include <string>
#include <utility>

namespace lnformer {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A tensor argument has the wrong rank, shape or layout for the op it is given to.
class ShapeError : public Error {
 public:
  using Error::Error;
};

/// An argument value is out of its valid range (probability, index, size, ...).
class ValueError : public Error {
 public:
  using Error::Error;
};

/// A backend library (oneDNN, CUDA, cuBLAS) reported a failure.
class BackendError : public Error {
 public:
  using Error::Error;
};

/// Reading or writing a file failed, or its content is malformed.
class IoError : public Error {
 public:
  using Error::Error;
};

namespace detail {

inline std::string where(std::source_location loc) {
  return fmt::format("{}:{} ({})", loc.file_name(), loc.line(), loc.function_name());
}

template <class E, class... Args>
[[noreturn]] void raise(std::source_location loc, char const* cond, fmt::format_string<Args...> f,
                        Args&&... args) {
  throw E(fmt::format("{} [check `{}` failed at {}]", fmt::format(f, std::forward<Args>(args)...),
                      cond, where(loc)));
}

}  // namespace detail
}  // namespace lnformer

/// LNF_EXPECTS(cond, fmt, args...): throw lnformer::ShapeError with a formatted message unless cond.
/// LNF_EXPECTS_AS(ErrorType, cond, fmt, args...): the same with a chosen Error subclass.
#define LNF_EXPECTS_AS(E, cond, ...)                                                        \
  do {                                                                                      \
    if (!(cond)) [[unlikely]]                                                               \
      ::lnformer::detail::raise<E>(std::source_location::current(), #cond, __VA_ARGS__);    \
  } while (false)
#define LNF_EXPECTS(cond, ...) LNF_EXPECTS_AS(::lnformer::ShapeError, cond, __VA_ARGS__)
