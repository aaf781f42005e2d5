#pragma once
// Errors: every failed precondition throws an lnformer::Error subclass whose message names the
// condition, every relevant dimension and the source location. A library never calls exit().

#include <fmt/format.h>

#include <cstdint>
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

/// A backend could not allocate memory; the message names the size requested and, where known, the
/// tensor (shape) and what was free.
class OutOfMemoryError : public BackendError {
 public:
  using BackendError::BackendError;
};

/// Reading or writing a file failed, or its content is malformed.
class IoError : public Error {
 public:
  using Error::Error;
};

/// Where an error was raised. Our own type rather than std::source_location: clang 14 with
/// libstdc++ 12 has no std::source_location, while __builtin_FILE/LINE/FUNCTION work in gcc and clang.
struct SourceLocation {
  char const* file = "";
  std::uint_least32_t line_ = 0;
  char const* function = "";
  static constexpr SourceLocation current(char const* f = __builtin_FILE(), std::uint_least32_t l = __builtin_LINE(),
                                          char const* fn = __builtin_FUNCTION()) {
    return {f, l, fn};
  }
  [[nodiscard]] constexpr char const* file_name() const { return file; }
  [[nodiscard]] constexpr std::uint_least32_t line() const { return line_; }
  [[nodiscard]] constexpr char const* function_name() const { return function; }
};

namespace detail {

inline std::string where(SourceLocation loc) {
  return fmt::format("{}:{} ({})", loc.file_name(), loc.line(), loc.function_name());
}

template <class E, class... Args>
[[noreturn]] void raise(SourceLocation loc, char const* cond, fmt::format_string<Args...> f,
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
      ::lnformer::detail::raise<E>(::lnformer::SourceLocation::current(), #cond, __VA_ARGS__);    \
  } while (false)
#define LNF_EXPECTS(cond, ...) LNF_EXPECTS_AS(::lnformer::ShapeError, cond, __VA_ARGS__)
