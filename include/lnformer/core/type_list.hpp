#pragma once
// Type lists: the compile-time lists of policies, and the one place where a runtime name becomes a
// type (dispatch), at the edge of a program.

#include <lnformer/core/error.hpp>

#include <optional>
#include <tuple>

#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace lnformer {

template <class... Ts>
struct TypeList {
  static constexpr std::size_t size = sizeof...(Ts);
};

template <class T>
struct TypeTag {
  using type = T;
};

/// f(TypeTag<T>{}) for every T of the list, in order.
template <class... Ts, class F>
constexpr void for_each_type(TypeList<Ts...>, F&& f) {
  (f(TypeTag<Ts>{}), ...);
}

/// The names of the list's members (each T has `static constexpr std::string_view name`), comma-separated.
template <class... Ts>
std::string type_names(TypeList<Ts...>) {
  std::string s;
  ((s += (s.empty() ? "" : ", "), s += Ts::name), ...);
  return s;
}

/// The names of the list's members, in order (for a command-line parser's choice check).
template <class... Ts>
std::vector<std::string> type_name_list(TypeList<Ts...>) {
  return {std::string(Ts::name)...};
}

namespace detail {
/// A name typed by a user is not one of the list's: the message says what was asked for and the valid
/// names, and nothing about where in the library that was found (no source location, no types).
template <class... Ts>
[[noreturn]] void throw_unknown_name(TypeList<Ts...> list, std::string_view name, std::string_view what) {
  throw ValueError(fmt::format("unknown {} '{}'; valid: {}", what, name, type_names(list)));
}
}  // namespace detail

/// Calls f(TypeTag<T>{}) for the T of the list whose `name` equals `name`; ValueError listing the
/// valid names otherwise (a user-input error: no library internals in the message). `what` names the
/// choice in the message ("normalization policy", "--norm").
template <class... Ts, class F>
auto dispatch(TypeList<Ts...> list, std::string_view name, F&& f, std::string_view what = "choice") {
  using R = decltype(f(TypeTag<std::tuple_element_t<0, std::tuple<Ts...>>>{}));
  if constexpr (std::is_void_v<R>) {
    bool found = false;
    (void)((!found && Ts::name == name ? (f(TypeTag<Ts>{}), found = true) : false), ...);
    if (!found) detail::throw_unknown_name(list, name, what);
  } else {
    std::optional<R> out;
    (void)((!out && Ts::name == name ? (out.emplace(f(TypeTag<Ts>{})), true) : false), ...);
    if (!out) detail::throw_unknown_name(list, name, what);
    return *std::move(out);
  }
}

}  // namespace lnformer
