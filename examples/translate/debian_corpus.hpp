#pragma once
// The default translation corpus: German-English message pairs from the gettext catalogs of a pinned
// list of Debian packages. Fetched with `apt-get download` (no root, no install: the .deb lands in
// the cache) and unpacked with `dpkg-deb -x` into the cache; every de/LC_MESSAGES/*.mo is parsed by
// lnformer/data/gettext.hpp. A second run reuses the cached .deb files (nothing is fetched).
// The manifest records each package's exact version and the SHA-256 of its .deb, so a corpus can be
// compared with another one built later (Debian point releases change versions and messages).

#include <lnformer/data/gettext.hpp>
#include <lnformer/io/sha256.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace translate {

namespace fs = std::filesystem;
using lnformer::IoError;

/// The pinned package list (Debian 12 "bookworm" names); each ships de/LC_MESSAGES catalogs. The
/// first 23 are the list (gdb has no German catalog in Debian: dropped; binutils and e2fsprogs
/// ship theirs in binutils-common and e2fsprogs-l10n); the rest bring the corpus to about 43,000 pairs.
inline std::vector<std::string> default_packages() {
  return {"git",        "coreutils",       "libc-l10n",      "gcc-12-locales",     "dpkg",       "apt",
          "tar",        "grep",            "sed",            "findutils",          "diffutils",  "bash",
          "wget",       "gettext",         "make",           "binutils-common",    "e2fsprogs-l10n",
          "util-linux-locales",            "cpio",           "procps",             "psmisc",     "gnupg-l10n",
          "postgresql-client-15",          "subversion",     "sudo",               "aptitude-common",
          "mutt",       "lynx-common",     "libglib2.0-data", "gawk",              "texinfo",    "nano",
          "bison",      "kbd",             "login",          "man-db",             "mc-data"};
}

struct PrepareOptions {
  fs::path cache = "data/cache/debian";  ///< debs/ (downloaded .deb) and root/<pkg>/ (unpacked)
  fs::path out = "data/de-en";           ///< {train,valid,test}.{de,en} and manifest.json
  std::vector<std::string> packages = default_packages();
  lnformer::CorpusOptions corpus;
  bool offline = false;  ///< never run apt-get; every .deb must already be in the cache
};

namespace detail {

inline std::string shell_quote(std::string const& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

inline void check_package_name(std::string const& p) {
  bool ok = !p.empty();
  for (char c : p) ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '+' || c == '-');
  LNF_EXPECTS_AS(IoError, ok, "'{}' is not a Debian package name (lowercase letters, digits, . + -)", p);
}

/// The cached .deb of `pkg` (debs/<pkg>_<version>_<arch>.deb), or an empty path.
inline fs::path cached_deb(fs::path const& debs, std::string const& pkg) {
  if (!fs::exists(debs)) return {};
  fs::path found;
  for (auto const& e : fs::directory_iterator(debs)) {
    auto const name = e.path().filename().string();
    if (e.path().extension() == ".deb" && name.starts_with(pkg + "_") && (found.empty() || name > found.filename().string()))
      found = e.path();
  }
  return found;
}

/// The version from a .deb file name ("git_1%3a2.39.5-0+deb12u3_amd64.deb" -> "1:2.39.5-0+deb12u3").
inline std::string deb_version(fs::path const& deb) {
  auto const name = deb.stem().string();
  auto const a = name.find('_'), b = name.rfind('_');
  std::string v = a != std::string::npos && b > a ? name.substr(a + 1, b - a - 1) : std::string();
  for (std::size_t p; (p = v.find("%3a")) != std::string::npos;) v.replace(p, 3, ":");
  return v;
}

inline std::string file_sha256(fs::path const& path) {
  std::ifstream in(path, std::ios::binary);
  LNF_EXPECTS_AS(IoError, in.good(), "cannot open {}", path.string());
  lnformer::Sha256 h;
  std::string buf(1 << 20, '\0');
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    h.update(std::string_view(buf.data(), static_cast<std::size_t>(in.gcount())));
  }
  return h.hex();
}

inline void run(std::string const& cmd, std::string const& what) {
  int const rc = std::system(cmd.c_str());
  LNF_EXPECTS_AS(IoError, rc == 0, "{} failed (exit status {}): {}", what, rc, cmd);
}

}  // namespace detail

/// Fetches (unless cached), unpacks and parses every package, writes the corpus and manifest.json
/// into o.out, and returns the manifest. Progress goes to `log` (one line per package).
inline nlohmann::json prepare_debian_corpus(PrepareOptions const& o, std::FILE* log = stderr) {
  using clock = std::chrono::steady_clock;
  auto const t0 = clock::now();
  fs::path const debs = o.cache / "debs", root = o.cache / "root";
  fs::create_directories(debs);
  double fetch_s = 0, parse_s = 0;
  lnformer::GettextCorpus corpus(o.corpus);
  nlohmann::json packages = nlohmann::json::array();
  for (auto const& pkg : o.packages) {
    detail::check_package_name(pkg);
    auto const tf = clock::now();
    fs::path deb = detail::cached_deb(debs, pkg);
    if (deb.empty()) {
      LNF_EXPECTS_AS(IoError, !o.offline, "package {} is not in the cache {} and --offline was given", pkg, debs.string());
      detail::run(fmt::format("cd {} && apt-get download -q {} >/dev/null 2>&1", detail::shell_quote(debs.string()), pkg),
                  fmt::format("apt-get download {} (needs Debian's package lists: apt-get update, and network)", pkg));
      deb = detail::cached_deb(debs, pkg);
      LNF_EXPECTS_AS(IoError, !deb.empty(), "apt-get download {} succeeded but left no {}_*.deb in {}", pkg, pkg,
                     debs.string());
    }
    fs::path const dir = root / pkg;
    fs::path const marker = dir / ".unpacked";
    std::string const version = detail::deb_version(deb);
    if (!fs::exists(marker) || [&] { std::ifstream m(marker); std::string v; std::getline(m, v); return v != deb.filename().string(); }()) {
      fs::remove_all(dir);
      fs::create_directories(dir);
      detail::run(fmt::format("dpkg-deb -x {} {}", detail::shell_quote(deb.string()), detail::shell_quote(dir.string())),
                  fmt::format("unpacking {}", deb.filename().string()));
      std::ofstream(marker) << deb.filename().string() << '\n';
    }
    auto const tp = clock::now();
    fetch_s += std::chrono::duration<double>(tp - tf).count();

    std::vector<fs::path> mos;
    for (auto const& e : fs::recursive_directory_iterator(dir)) {
      auto const& p = e.path();
      if (p.extension() == ".mo" && p.parent_path().filename() == "LC_MESSAGES" &&
          p.parent_path().parent_path().filename() == "de")
        mos.push_back(p);
    }
    std::sort(mos.begin(), mos.end());
    nlohmann::json catalogs = nlohmann::json::array();
    std::int64_t const kept_before = corpus.kept();
    for (auto const& mo : mos) {
      auto const cat = lnformer::read_mo(mo);
      corpus.add(cat, pkg + "/" + mo.filename().string());
      catalogs.push_back({{"file", fs::relative(mo, dir).string()}, {"messages", cat.entries.size()}});
    }
    parse_s += std::chrono::duration<double>(clock::now() - tp).count();
    packages.push_back({{"name", pkg},
                        {"version", version},
                        {"deb", deb.filename().string()},
                        {"sha256", detail::file_sha256(deb)},
                        {"catalogs", catalogs},
                        {"new_pairs", corpus.kept() - kept_before}});
    if (log)
      fmt::print(log, "{:<22} {:<24} {:>2} catalog(s) {:>6} new pairs\n", pkg, version, mos.size(),
                 corpus.kept() - kept_before);
    LNF_EXPECTS_AS(IoError, !mos.empty(), "package {} ({}) has no de/LC_MESSAGES/*.mo catalog", pkg, deb.filename().string());
  }
  auto const tw = clock::now();
  nlohmann::json m = corpus.write(o.out);
  m["corpus"] = "German-English gettext messages of Debian packages";
  m["source_lang"] = "de";
  m["target_lang"] = "en";
  m["packages"] = packages;
  m["seconds"] = {{"fetch_unpack", fetch_s},
                  {"parse_filter", parse_s},
                  {"write", std::chrono::duration<double>(clock::now() - tw).count()},
                  {"total", std::chrono::duration<double>(clock::now() - t0).count()}};
  fs::path const manifest = o.out / "manifest.json", tmp = o.out / "manifest.json.tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << m.dump(1) << '\n';
    f.close();
    if (f.fail()) {  // a full disk: no partial manifest, no .tmp left behind
      int const err = errno;
      fs::remove(tmp);
      throw IoError(fmt::format("error writing {}: {}", manifest.string(), std::strerror(err)));
    }
  }
  fs::rename(tmp, manifest);
  return m;
}

}  // namespace translate
