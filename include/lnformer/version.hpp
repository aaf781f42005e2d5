#pragma once
// The library version, the single place it is written: the top-level CMakeLists.txt reads the three
// numbers below for project(VERSION ...), so the headers, the installed package's
// lnformerConfigVersion.cmake and this file cannot disagree. 0.x: minor versions may break the API.

#define LNF_VERSION_MAJOR 0
#define LNF_VERSION_MINOR 1
#define LNF_VERSION_PATCH 0

#define LNF_DETAIL_STRINGIFY(x) #x
#define LNF_DETAIL_EXPAND_STRINGIFY(x) LNF_DETAIL_STRINGIFY(x)
/// "MAJOR.MINOR.PATCH", e.g. "0.1.0".
#define LNF_VERSION_STRING                                                                     \
  LNF_DETAIL_EXPAND_STRINGIFY(LNF_VERSION_MAJOR)                                               \
  "." LNF_DETAIL_EXPAND_STRINGIFY(LNF_VERSION_MINOR) "." LNF_DETAIL_EXPAND_STRINGIFY(LNF_VERSION_PATCH)
/// One comparable number, MAJOR * 10000 + MINOR * 100 + PATCH: `#if LNF_VERSION >= 200` means 0.2.0.
#define LNF_VERSION (LNF_VERSION_MAJOR * 10000 + LNF_VERSION_MINOR * 100 + LNF_VERSION_PATCH)

#include <string_view>

namespace lnformer {
inline constexpr int version_major = LNF_VERSION_MAJOR;
inline constexpr int version_minor = LNF_VERSION_MINOR;
inline constexpr int version_patch = LNF_VERSION_PATCH;
inline constexpr std::string_view version_string = LNF_VERSION_STRING;
}  // namespace lnformer
