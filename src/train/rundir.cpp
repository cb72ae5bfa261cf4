// rundir.cpp: what an earlier run left in checkpoint.dir, and a fresh start's claim on the directory.
#include "train/rundir.hpp"

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <regex>

#include "core/error.hpp"

namespace fs = std::filesystem;

namespace strata {

namespace {
std::string metrics_path(const Config& c) {
  return c.log.metrics.empty() ? c.checkpoint.dir + "/metrics.jsonl" : c.log.metrics;
}
std::string stats_path(const Config& c) { return c.stats.file.empty() ? c.checkpoint.dir + "/stats.h5" : c.stats.file; }
bool is_checkpoint(const std::string& p) {
  static const std::regex re("step-[0-9]{8}\\.h5");
  const std::string n = fs::path(p).filename().string();
  return n == "latest" || std::regex_match(n, re);
}

// Rank 0's list, sent to every rank as one '\n'-joined string.
std::vector<std::string> bcast_lines(const std::vector<std::string>& mine, const Topology& topo) {
  std::string text;
  for (const std::string& s : mine) text += s + "\n";
  unsigned long long n = text.size();
  STRATA_MPI(MPI_Bcast(&n, 1, MPI_UNSIGNED_LONG_LONG, 0, topo.world));
  text.resize(n);
  STRATA_MPI(MPI_Bcast(text.data(), int(n), MPI_CHAR, 0, topo.world));
  std::vector<std::string> out;
  for (size_t a = 0, b; a < text.size(); a = b + 1) out.push_back(text.substr(a, (b = text.find('\n', a)) - a));
  return out;
}
}  // namespace

std::vector<std::string> run_dir_earlier(const Config& cfg, const Topology& topo) {
  std::vector<std::string> found;
  if (topo.rank == 0) {
    std::error_code ec;
    if (fs::is_directory(cfg.checkpoint.dir, ec))
      for (const auto& e : fs::directory_iterator(cfg.checkpoint.dir, ec))
        if (is_checkpoint(e.path().string())) found.push_back(e.path().string());
    std::sort(found.begin(), found.end());
    for (const std::string& p : {metrics_path(cfg), stats_path(cfg)})
      if (fs::is_regular_file(p, ec) && fs::file_size(p, ec) > 0) found.push_back(p);
  }
  return bcast_lines(found, topo);
}

void run_dir_fresh_start(const Config& cfg, const Topology& topo, const std::vector<std::string>& earlier,
                         const std::function<void(const std::string&)>& say) {
  if (earlier.empty()) return;
  size_t ckpts = 0;
  for (const std::string& p : earlier) ckpts += is_checkpoint(p) ? 1 : 0;
  const bool automatic = cfg.checkpoint.resume == "auto" && ckpts == 0;
  std::string names;
  for (size_t i = 0; i < earlier.size() && i < 4; i++) names += (i ? ", " : "") + fs::path(earlier[i]).filename().string();
  if (earlier.size() > 4) names += str(" and ", earlier.size() - 4, " more");
  if (!cfg.checkpoint.overwrite && !automatic) {
    const std::string why =
        cfg.checkpoint.resume == "none"
            ? str("checkpoint.resume = \"none\" would start over in it")
            : str("checkpoint.resume = \"auto\" found no readable checkpoint among its ", ckpts, " (see the warnings "
                  "above)");
    throw AgreedError(str(cfg.source, ": key checkpoint.dir = \"", cfg.checkpoint.dir, "\" holds an earlier run (",
                          names, ") and ", why, ": set checkpoint.resume = \"auto\" to continue it, or "
                          "checkpoint.overwrite = true to start over with the old files moved to ",
                          cfg.checkpoint.dir, "/replaced-<time>/, or choose another checkpoint.dir"));
  }
  std::string moved_to;
  if (topo.rank == 0) {
    char stamp[32];
    const std::time_t now = std::time(nullptr);
    std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::gmtime(&now));
    moved_to = cfg.checkpoint.dir + "/replaced-" + stamp;
    for (int k = 1; fs::exists(moved_to); k++) moved_to = cfg.checkpoint.dir + "/replaced-" + stamp + "-" + std::to_string(k);
    fs::create_directories(moved_to);
    for (const std::string& p : earlier) fs::rename(p, moved_to + "/" + fs::path(p).filename().string());
  }
  STRATA_MPI(MPI_Barrier(topo.world));
  say(str("warning: ", cfg.checkpoint.dir, " held an earlier run (", names, "); ",
          automatic ? "it left no checkpoint to resume (checkpoint.resume = \"auto\"), so this run starts over"
                    : "checkpoint.overwrite = true",
          ": moved to ", moved_to.empty() ? cfg.checkpoint.dir + "/replaced-*" : moved_to));
}

void run_dir_remove_partial(const Config& cfg, const Topology& topo,
                            const std::function<void(const std::string&)>& say) {
  if (topo.rank == 0) {
    static const std::regex re("\\.step-[0-9]{8}\\.h5\\.tmp|latest\\.tmp");
    std::error_code ec;
    std::vector<std::string> gone;
    for (const auto& e : fs::directory_iterator(cfg.checkpoint.dir, ec))
      if (std::regex_match(e.path().filename().string(), re) && fs::remove(e.path(), ec)) gone.push_back(e.path());
    std::sort(gone.begin(), gone.end());
    for (const std::string& g : gone) say(str("removed ", g, ": a checkpoint write cut short by an earlier run"));
  }
  STRATA_MPI(MPI_Barrier(topo.world));
}

}  // namespace strata
