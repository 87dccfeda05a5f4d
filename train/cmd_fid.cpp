// `xgan fid`: the Frechet distance between two sets of feature statistics (train/metrics.h), each
// given as a stats file (mu, sigma) or as raw features, so FIDs from another implementation's
// features can be checked number for number (DESIGN.md, "The command-line contract").
// Try: xgan fid --stats1 real.safetensors --stats2 fake_features.safetensors --json fid.json
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "train/commands.h"
#include "train/metrics.h"

namespace xgan::cli {

namespace {

struct FidArgs {
  std::string stats1, stats2, json, save1, save2;
};

// Writes F.tmp, then renames it over F, so a reader never sees half a file.
void write_json_atomically(const std::string& path, const nlohmann::json& j) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) throw std::runtime_error(path + ": cannot open " + tmp + " for writing");
    out << j.dump(2) << "\n";
    out.flush();
    if (!out) throw std::runtime_error(path + ": writing " + tmp + " failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    throw std::runtime_error(path + ": cannot rename " + tmp + " over it");
  }
}

void warn_if_rank_deficient(const metrics::GaussianStats& s, const std::string& path) {
  // With n <= D samples the covariance has rank < D and the estimate is strongly biased; FID is
  // still defined, but comparable only between sets of the same size.
  if (s.n > 0 && s.n <= s.mu.size())
    std::fprintf(
        stderr, "xgan fid: warning: %s: %lld samples for %lld-d features: the covariance is rank-deficient\n",
        path.c_str(), static_cast<long long>(s.n), static_cast<long long>(s.mu.size()));
}

int run_fid(const FidArgs& a) {
  const metrics::GaussianStats s1 = metrics::load_stats_or_features(a.stats1);
  const metrics::GaussianStats s2 = metrics::load_stats_or_features(a.stats2);
  if (s1.mu.size() != s2.mu.size())
    throw std::runtime_error("fid: " + a.stats1 + " has " + std::to_string(s1.mu.size()) + "-d features, " +
                             a.stats2 + " has " + std::to_string(s2.mu.size()) +
                             "-d; both must come from the same feature network");
  warn_if_rank_deficient(s1, a.stats1);
  warn_if_rank_deficient(s2, a.stats2);
  if (!a.save1.empty()) metrics::save_stats(s1, a.save1);
  if (!a.save2.empty()) metrics::save_stats(s2, a.save2);
  const double value = metrics::fid(s1, s2);
  // 15 significant digits: every digit a double carries reliably, enough to compare implementations.
  std::printf("FID %.15g\n", value);
  std::fflush(stdout);
  if (!a.json.empty()) write_json_atomically(a.json, nlohmann::json{{"fid", value}});
  return 0;
}

}  // namespace

Run add_fid(CLI::App& app) {
  auto args = std::make_shared<FidArgs>();
  CLI::App* sub = app.add_subcommand(
      "fid",
      "Frechet distance between two feature distributions: |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 "
      "S1^1/2)^1/2),\n"
      "in float64, covariances with 1/(N-1). Each input is a safetensors file holding either statistics\n"
      "{mu [D], sigma [D, D], n []} or raw features {features [N, D]} (float32 or float64).");
  sub->add_option("--stats1", args->stats1, "First statistics or features file (e.g. the real images)")
      ->required()
      ->check(CLI::ExistingFile);
  sub->add_option("--stats2", args->stats2, "Second statistics or features file (e.g. the generated images)")
      ->required()
      ->check(CLI::ExistingFile);
  sub->add_option("--json", args->json, "Also write {\"fid\": value} to this file");
  sub->add_option("--save-stats1", args->save1,
                  "Save the statistics of --stats1 (mu, sigma, n) to this file, e.g. to reuse them for\n"
                  "the real images instead of their features");
  sub->add_option("--save-stats2", args->save2, "Save the statistics of --stats2 to this file");
  return [args] { return run_fid(*args); };
}

}  // namespace xgan::cli
