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

/// Calls f(TypeTag<T>{}) for the T of the list whose `name` equals `name`; ValueError listing the
/// valid names otherwise. `what` names the choice in the message ("normalization policy").
template <class... Ts, class F>
auto dispatch(TypeList<Ts...> list, std::string_view name, F&& f, std::string_view what = "choice") {
  using R = decltype(f(TypeTag<std::tuple_element_t<0, std::tuple<Ts...>>>{}));
  if constexpr (std::is_void_v<R>) {
    bool found = false;
    (void)((!found && Ts::name == name ? (f(TypeTag<Ts>{}), found = true) : false), ...);
    LNF_EXPECTS_AS(ValueError, found, "unknown {} '{}'; valid: {}", what, name, type_names(list));
  } else {
    std::optional<R> out;
    (void)((!out && Ts::name == name ? (out.emplace(f(TypeTag<Ts>{})), true) : false), ...);
    LNF_EXPECTS_AS(ValueError, out.has_value(), "unknown {} '{}'; valid: {}", what, name, type_names(list));
    return *std::move(out);
  }
}

}  // namespace lnformer
