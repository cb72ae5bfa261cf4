// runinfo.cpp: config.toml, ranks.txt, run.json and runs.jsonl beside a run's checkpoints.
#include "train/runinfo.hpp"

#include <cblas.h>
#include <hdf5.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>
#include <vector>

#include "core/error.hpp"
#include "core/files.hpp"

namespace fs = std::filesystem;

namespace strata {

namespace {

std::string json_str(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\', o += char(c);
    } else if (c == '\n') {
      o += "\\n";
    } else if (c < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      o += b;
    } else {
      o += char(c);
    }
  }
  return o + "\"";
}

std::string env_or(const char* name, const char* dflt) {
  const char* v = std::getenv(name);
  return v && *v ? v : dflt;
}

std::string mpi_version() {
  char v[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(v, &len);
  std::string s(v, len);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\0')) s.pop_back();
  const auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

// Creates the directory and a probe file in it; "" when writable, else the reason.
std::string writable(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return ec.message();
  const std::string probe = dir + "/.write-probe-" + std::to_string(getpid());
  FILE* f = std::fopen(probe.c_str(), "w");
  if (!f) return std::strerror(errno);
  std::fclose(f);
  fs::remove(probe, ec);
  return "";
}

}  // namespace

void run_info_write(const Config& cfg, const Topology& topo, int threads, const std::string& resumed_from,
                    int64_t step) {
  const std::string& dir = cfg.checkpoint.dir;
  std::string why = topo.rank == 0 ? writable(dir) : "";
  int ok = why.empty() ? 1 : 0;
  STRATA_MPI(MPI_Bcast(&ok, 1, MPI_INT, 0, topo.world));
  if (!ok) {
    // rank 0's reason, known to every rank so the message is printed once and every rank exits alike.
    char reason[256] = {};
    if (topo.rank == 0) std::snprintf(reason, sizeof reason, "%s", why.c_str());
    STRATA_MPI(MPI_Bcast(reason, sizeof reason, MPI_CHAR, 0, topo.world));
    throw AgreedError(str(cfg.source, ": key checkpoint.dir = \"", dir, "\": not writable on rank 0 (", reason, ")"));
  }

  char line[256];
  std::snprintf(line, sizeof line, "%d %d %d %s %d %d\n", topo.rank, topo.stage, topo.replica, topo.host.c_str(),
                topo.local_rank, int(getpid()));
  std::vector<char> all(topo.rank == 0 ? 256 * topo.size : 0);
  STRATA_MPI(MPI_Gather(line, 256, MPI_CHAR, all.data(), 256, MPI_CHAR, 0, topo.world));
  if (topo.rank == 0) {
    std::string ranks;
    std::map<std::string, int> hosts;  // host → ranks on it, in first-seen order below
    std::vector<std::string> order;
    for (int r = 0; r < topo.size; r++) {
      const char* l = all.data() + 256 * r;
      ranks += l;
      char host[256] = {};
      int a, b, c;
      if (std::sscanf(l, "%d %d %d %255s", &a, &b, &c, host) == 4) {
        if (!hosts.count(host)) order.push_back(host);
        hosts[host]++;
      }
    }
    write_text_atomic(dir + "/ranks.txt", ranks);
    write_text_atomic(dir + "/config.toml", "# resolved config of the run started " + std::to_string(std::time(nullptr)) +
                                            " (unix time) from " + cfg.source + "\n" + config_to_toml(cfg));

    unsigned h5maj = 0, h5min = 0, h5rel = 0;
    H5get_libversion(&h5maj, &h5min, &h5rel);
    char now[32];
    const std::time_t t = std::time(nullptr);
    std::strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
    std::string hl;
    for (const auto& h : order) hl += (hl.empty() ? "" : ", ") + str("{\"host\": ", json_str(h), ", \"ranks\": ", hosts[h], "}");
    std::string j = "{";
    j += "\"started\": " + json_str(now);
    j += ", \"git_commit\": " + json_str(kGitCommit);
    j += ", \"config\": " + json_str(cfg.source);
    j += ", \"resumed_from\": " + json_str(resumed_from);
    j += str(", \"step\": ", step);
    j += str(", \"world_size\": ", topo.size, ", \"pipeline\": ", topo.P, ", \"data\": ", topo.D);
    j += str(", \"threads_per_rank\": ", threads);
    j += ", \"hosts\": [" + hl + "]";
    j += ", \"mpi\": " + json_str(mpi_version());
    j += ", \"nccl\": " + json_str("none (CPU build)");
    j += ", \"hdf5\": " + json_str(str(h5maj, ".", h5min, ".", h5rel));
    j += ", \"openblas\": " + json_str(openblas_get_config());
    j += ", \"slurm_job\": " + json_str(env_or("SLURM_JOB_ID", ""));
    j += ", \"slurm_array_task\": " + json_str(env_or("SLURM_ARRAY_TASK_ID", ""));
    j += ", \"slurm_restart_count\": " + json_str(env_or("SLURM_RESTART_COUNT", "0"));
    j += "}\n";
    write_text_atomic(dir + "/run.json", j);
    RecordLog runs;
    runs.open(dir + "/runs.jsonl", "the run history");
    (runs << j).commit();
  }
  STRATA_MPI(MPI_Barrier(topo.world));
}

}  // namespace strata
