// test_robust.cpp: nothing is lost, ever (issue 20). Each case is a class of hostile use that lost data, crashed
// or hung before: a full disk under checkpoints, statistics and metrics (a small tmpfs mounted by the test), a run
// directory holding an earlier run, signals with slow saves (mpirun's real one-second grace), a frozen rank, and
// odd inputs. Every command runs under `timeout`, so a hang fails the case instead of blocking the suite.
#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE robust
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <filesystem>
#include <regex>

#include "test_util.hpp"

using namespace strata;
namespace fs = std::filesystem;

namespace {

const std::string kBin = STRATA_BIN;

std::string mpirun(int n) { return test::mpirun(STRATA_MPIEXEC) + " -n " + std::to_string(n) + " "; }

// A tiny model: 2 blocks, d = 16; `steps` steps, a checkpoint every `interval`.
std::string config_text(const std::string& data, const std::string& ckpt, int steps = 6, int interval = 3,
                        const std::string& extra = "") {
  return "[model]\nlayers = 2\nd_model = 16\nheads = 2\nd_ffn = 32\nseq_len = 8\n"
         "[train]\nsteps = " + std::to_string(steps) +
         "\nbatch_size = 4\nmicro_batch_size = 2\nthreads = 1\neval_batches = 1\n" + extra +
         "[data]\ntrain = \"" + data + "/train.bin\"\nval = \"" + data + "/val.bin\"\n[checkpoint]\ndir = \"" + ckpt +
         "\"\ninterval = " + std::to_string(interval) + "\nkeep = 2\nresume = \"auto\"\n[log]\ninterval = 1\npeak_gflops = 100.0\n";
}

std::string write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

// The lines of `out` that are Strata's errors.
std::vector<std::string> error_lines(const std::string& out) {
  std::vector<std::string> e;
  std::istringstream in(out);
  for (std::string l; std::getline(in, l);)
    if (l.find("strata: error") != std::string::npos) e.push_back(l);
  return e;
}

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

// Fails with the output unless `r` failed (not by a signal, not by timeout) with exactly one error line holding
// every needle.
void expect_one_error(const test::RunResult& r, const std::vector<std::string>& needles, const std::string& what) {
  BOOST_TEST(r.code != 0, what << ": expected failure:\n" << r.out);
  BOOST_TEST(r.code < 124, what << ": exit " << r.code << " (a crash, a signal or a hang):\n" << r.out);
  const auto e = error_lines(r.out);
  BOOST_TEST(e.size() == 1u, what << ": " << e.size() << " error lines:\n" << r.out);
  for (const auto& n : needles) BOOST_TEST(contains(r.out, n), what << ": '" << n << "' not in:\n" << r.out);
}

std::string latest(const std::string& dir) {
  std::string s = test::read_file(dir + "/latest");
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

std::vector<std::string> tmp_files(const std::string& dir) {
  std::vector<std::string> t;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".tmp") t.push_back(e.path().filename());
  return t;
}

// A tmpfs of `bytes`, unmounted and removed when the case ends (beside the case's directory, so that a run killed
// before unmounting does not block the next one's fresh_dir).
struct SmallDisk {
  std::string dir = std::string(STRATA_TEST_TMP) + "/robust-disk-" + std::to_string(::getpid());
  bool mounted = false;
  explicit SmallDisk(size_t bytes) {
    fs::create_directories(dir);
    const std::string opt = "size=" + std::to_string(bytes);
    mounted = ::mount("tmpfs", dir.c_str(), "tmpfs", 0, opt.c_str()) == 0;
    BOOST_TEST_REQUIRE(mounted, "cannot mount a tmpfs at " << dir << " (" << std::strerror(errno)
                                                            << "): the disk-full cases need root (CI runs as root)");
  }
  ~SmallDisk() {
    if (mounted) ::umount2(dir.c_str(), MNT_DETACH);
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

// Disk blocks a file takes.
size_t allocated(const std::string& path) {
  struct stat s {};
  return ::stat(path.c_str(), &s) == 0 ? size_t(s.st_blocks) * 512 : 0;
}

struct Fixture {
  std::string dir = test::fresh_dir("robust");
  Fixture() { test::write_text_shards(dir); }
};

}  // namespace

// A full disk while writing a checkpoint: one line naming the directory and the reason, a non-zero exit, the
// previous checkpoint and `latest` as they were, no .tmp left; with 1 rank and with 2 (parallel HDF5), with the
// free-space check up front and without it (a disk that fills during the write).
BOOST_FIXTURE_TEST_CASE(disk_full_during_a_checkpoint, Fixture) {
  const std::string probe = dir + "/probe";
  auto r = test::run("timeout 60 " + kBin + " train --config " + write(dir + "/probe.toml", config_text(dir, probe)));
  BOOST_TEST_REQUIRE(r.code == 0, r.out);
  const size_t ck = allocated(probe + "/step-00000003.h5");
  BOOST_TEST_REQUIRE(ck > 0u);
  // Room for the first checkpoint and the small files, not for a second checkpoint beside it.
  SmallDisk disk(ck + ck / 2 + (64 << 10));
  struct Way {
    std::string launch, env, name;
  };
  const Way ways[] = {{"", "", "1 rank"},
                      {"", "STRATA_TEST_NO_SPACE_CHECK=1", "1 rank, no space check"},
                      {mpirun(2), "", "2 ranks (P = 2)"},
                      {mpirun(2) + "-x STRATA_TEST_NO_SPACE_CHECK=1 ", "", "2 ranks (D = 2), no space check"}};
  for (const Way& w : ways) {
    const std::string ckd = disk.dir + "/run";
    fs::remove_all(ckd);
    const std::string layout = contains(w.name, "D = 2") ? " --set parallel.data=2" : contains(w.name, "P = 2") ? " --set parallel.pipeline=2" : "";
    r = test::run("timeout 60 env " + w.env + " " + w.launch + kBin + " train --config " +
                  write(dir + "/full.toml", config_text(dir, ckd)) + layout);
    expect_one_error(r, {"step-00000003.h5 and latest are as they were", "step 6"}, w.name);
    BOOST_TEST(latest(ckd) == "step-00000003.h5", w.name);
    BOOST_TEST(tmp_files(ckd).empty(), w.name << ": left " << tmp_files(ckd).size() << " .tmp file(s)");
    BOOST_TEST(!fs::exists(ckd + "/step-00000006.h5"), w.name);
    auto in = test::run("timeout 30 " + kBin + " inspect " + ckd + "/step-00000003.h5");
    BOOST_TEST(in.code == 0, w.name << ": the previous checkpoint no longer reads:\n" << in.out);
    if (w.env.empty() && !contains(w.launch, "NO_SPACE_CHECK"))
      BOOST_TEST(contains(r.out, "No space left on device"), w.name << ":\n" << r.out);
  }
}

// A full disk under stats.h5 and under metrics.jsonl: one error line with the file and the reason, non-zero exit,
// and every record written before it still there (not an exit 0 with the records silently gone).
BOOST_FIXTURE_TEST_CASE(disk_full_under_statistics_and_metrics, Fixture) {
  SmallDisk disk(48 << 10);
  const std::string stats = disk.dir + "/stats.h5";
  auto r = test::run("timeout 60 " + kBin + " train --config " +
                     write(dir + "/s.toml", config_text(dir, dir + "/ck_s", 400, 0,
                                                        "")) +
                     " --set stats.interval=1 --set stats.file=" + stats + " --set checkpoint.at_end=false");
  expect_one_error(r, {"stats.h5", "No space left on device", "stats.file"}, "stats.h5");
  const std::string metrics = disk.dir + "/metrics.jsonl";
  fs::remove(stats);
  r = test::run("timeout 120 " + kBin + " train --config " + write(dir + "/m.toml", config_text(dir, dir + "/ck_m", 3000, 0)) +
                " --set log.metrics=" + metrics + " --set checkpoint.at_end=false --set train.eval_batches=0");
  expect_one_error(r, {"metrics.jsonl", "No space left on device", "every record before it"}, "metrics.jsonl");
  // Every line in the file is whole, and the steps run 1, 2, 3, ... up to the failure.
  std::istringstream in(test::read_file(metrics));
  int64_t n = 0;
  for (std::string l; std::getline(in, l);) {
    BOOST_TEST_REQUIRE((!l.empty() && l.back() == '}'), "a partial record: " << l);
    if (contains(l, "\"loss\"")) BOOST_TEST(contains(l, "{\"step\":" + std::to_string(++n) + ","), l);
  }
  BOOST_TEST(n > 100);
}

// A run directory belongs to one run: resume = none into an earlier run is refused with its history intact;
// checkpoint.overwrite moves the earlier run aside; resume = auto where no checkpoint reads is refused (not a
// silent fresh start over the history); a resume with another train.seed is refused.
BOOST_FIXTURE_TEST_CASE(a_run_directory_belongs_to_one_run, Fixture) {
  const std::string ck = dir + "/ck";
  const std::string cfg = write(dir + "/c.toml", config_text(dir, ck));
  auto r = test::run("timeout 60 " + kBin + " train --config " + cfg);
  BOOST_TEST_REQUIRE(r.code == 0, r.out);
  const std::string history = test::read_file(ck + "/metrics.jsonl");
  BOOST_TEST_REQUIRE(!history.empty());
  r = test::run("timeout 60 " + kBin + " train --config " + cfg + " --set checkpoint.resume=none");
  expect_one_error(r, {"checkpoint.dir", "holds an earlier run", "checkpoint.overwrite"}, "resume = none");
  BOOST_TEST(test::read_file(ck + "/metrics.jsonl") == history, "the earlier run's history changed");
  // Another seed on resume.
  r = test::run("timeout 60 " + kBin + " train --config " + cfg + " --set train.steps=9 --set train.seed=7");
  expect_one_error(r, {"seed"}, "resume with another seed");
  BOOST_TEST(test::read_file(ck + "/metrics.jsonl") == history);
  // Every checkpoint unreadable under resume = auto.
  for (const auto& e : fs::directory_iterator(ck))
    if (e.path().extension() == ".h5") fs::resize_file(e.path(), 1000);
  r = test::run("timeout 60 " + kBin + " train --config " + cfg + " --set train.steps=9");
  expect_one_error(r, {"checkpoint"}, "auto with every checkpoint corrupt");
  BOOST_TEST(test::read_file(ck + "/metrics.jsonl") == history);
  // `latest` naming a file that is gone, with no other checkpoint.
  for (const auto& e : fs::directory_iterator(ck))
    if (e.path().extension() == ".h5") fs::remove(e.path());
  r = test::run("timeout 60 " + kBin + " train --config " + cfg + " --set train.steps=9");
  expect_one_error(r, {"checkpoint"}, "auto with latest naming a missing file");
  BOOST_TEST(test::read_file(ck + "/metrics.jsonl") == history);
  // Starting over, asked for: the earlier files are moved aside, not lost.
  r = test::run("timeout 60 " + kBin + " train --config " + cfg + " --set checkpoint.overwrite=true");
  BOOST_TEST_REQUIRE(r.code == 0, r.out);
  std::vector<fs::path> aside;
  for (const auto& e : fs::directory_iterator(ck))
    if (e.is_directory() && e.path().filename().string().rfind("replaced-", 0) == 0) aside.push_back(e.path());
  BOOST_TEST_REQUIRE(aside.size() == 1u, r.out);
  BOOST_TEST(test::read_file((aside[0] / "metrics.jsonl").string()) == history);
  BOOST_TEST(fs::exists(ck + "/step-00000006.h5"));
}

// SIGTERM and SIGINT to one process: the run saves at the next step boundary and exits 0. Through the launcher,
// SIGTERM with a save that takes seconds: every rank saves and the job exits 0. Bare mpirun's SIGTERM kills the
// ranks one second after forwarding it (odls_base_sigkill_timeout), mid-save: the previous checkpoint and latest
// stay intact, and the next start removes the cut-short file and resumes from them.
BOOST_FIXTURE_TEST_CASE(signals_save_or_leave_the_last_checkpoint_intact, Fixture) {
  for (const char* sig : {"TERM", "INT"}) {
    const std::string ck = dir + "/sig_" + sig;
    const std::string cfg = write(dir + "/sig.toml", config_text(dir, ck, 1000000, 0));
    // No `timeout` around it (timeout signals its whole process group): a killer in the background bounds it.
    auto r = test::run("(" + kBin + " train --config " + cfg + " & p=$!; (sleep 30; kill -KILL $p) >/dev/null 2>&1 & "
                       "k=$!; sleep 2; kill -" + sig + " $p; wait $p; rc=$?; kill $k; exit $rc)");
    BOOST_TEST(r.code == 0, sig << ":\n" << r.out);
    BOOST_TEST(contains(r.out, std::string("received SIG") + sig + ": saving at step"), r.out);
    BOOST_TEST(fs::exists(ck + "/" + latest(ck)), sig << ": no checkpoint");
  }
  // Through launch/local.sh, a save of ~3 s (the test hook delays the write).
  const std::string ck = dir + "/sig_launch";
  const std::string cfg = write(dir + "/launch.toml", config_text(dir, ck, 1000000, 0));
  auto r = test::run("(STRATA_TEST_SAVE_DELAY_MS=500 STRATA_BIN=" + kBin + " timeout 90 bash " STRATA_SOURCE_DIR
                     "/launch/local.sh -p 2 -t 1 --config " + cfg + " & p=$!; sleep 4; kill -TERM $p; wait $p)");
  BOOST_TEST(r.code == 0, r.out);
  BOOST_TEST(contains(r.out, "received SIGUSR1: saving at step"), r.out);
  const std::string saved = latest(ck);
  BOOST_TEST_REQUIRE(!saved.empty(), r.out);
  BOOST_TEST(test::run(kBin + " inspect " + ck + "/" + saved).code == 0);
  // Bare mpirun, SIGTERM during a save of ~3 s: killed, the earlier checkpoint intact.
  const std::string ck2 = dir + "/sig_mpirun";
  const std::string cfg2 = write(dir + "/mpirun.toml", config_text(dir, ck2, 1000000, 50));
  r = test::run("(timeout 90 " + mpirun(2) + "-x STRATA_TEST_SAVE_DELAY_MS=500 " + kBin + " train --config " + cfg2 +
                " --set parallel.pipeline=2 & p=$!; n=0; while { ! ls " + ck2 +
                "/.step-*.tmp >/dev/null 2>&1 || [ ! -e " + ck2 + "/latest ]; } && [ $((n += 1)) -lt 600 ]; do sleep 0.1; "
                "done; kill -TERM $p; "
                "wait $p)");
  BOOST_TEST(r.code != 0, "mpirun's SIGTERM: " << r.out);
  const std::string before = latest(ck2);
  BOOST_TEST_REQUIRE(!before.empty(), r.out);
  BOOST_TEST(test::run(kBin + " inspect " + ck2 + "/" + before).code == 0, "latest no longer reads");
  // The next start cleans up and resumes from latest.
  r = test::run("timeout 90 " + mpirun(2) + kBin + " train --config " + cfg2 + " --set parallel.pipeline=2 " +
                "--set train.steps=" + std::to_string(std::stoi(before.substr(5, 8)) + 2));
  BOOST_TEST(r.code == 0, r.out);
  BOOST_TEST(contains(r.out, "a checkpoint write cut short by an earlier run"), r.out);
  BOOST_TEST(contains(r.out, "resum"), r.out);
  BOOST_TEST(tmp_files(ck2).empty());
}

// One rank frozen (SIGSTOP) mid-run: the watchdog ends the job within its timeout and names the silent rank, for a
// pipeline neighbour (a transfer) and a data-parallel replica (the gradient reduction).
BOOST_FIXTURE_TEST_CASE(a_frozen_rank_ends_the_job_naming_it, Fixture) {
  for (const char* layout : {"pipeline", "data"}) {
    const std::string ck = dir + "/wd_" + layout;
    const std::string cfg = write(dir + "/wd.toml", config_text(dir, ck, 10000000, 0));
    // Freeze world rank 1 (found by its OMPI rank in the environment) once training has begun.
    auto r = test::run("(timeout 60 " + mpirun(2) + kBin + " train --config " + cfg + " --set parallel." + layout +
                       "=2 --set parallel.watchdog_s=4 & p=$!; sleep 3; "
                       "for q in $(pgrep -f 'strata train --config " + cfg + "'); do "
                       "  grep -qz '^OMPI_COMM_WORLD_RANK=1$' /proc/$q/environ 2>/dev/null && kill -STOP $q; done; "
                       "t0=$(date +%s); wait $p; rc=$?; echo \"ended after $(( $(date +%s) - t0 )) s\"; exit $rc)");
    BOOST_TEST(r.code != 0, layout << ":\n" << r.out);
    BOOST_TEST(r.code != 124, layout << ": the job hung:\n" << r.out);
    BOOST_TEST(contains(r.out, "watchdog: no progress for"), layout << ":\n" << r.out);
    BOOST_TEST(contains(r.out, "rank 1 is silent"), layout << ":\n" << r.out);
    std::smatch m;
    const std::regex re("ended after ([0-9]+) s");
    BOOST_TEST_REQUIRE(std::regex_search(r.out, m, re), r.out);
    BOOST_TEST(std::stoi(m[1]) <= 20, layout << ": " << m[1] << " s");
    test::run("pkill -KILL -f 'strata train --config " + cfg + "'");  // nothing left behind if a check failed
  }
}

// Inputs are checked for type and size before work starts: a directory or FIFO as the config, a FIFO as a shard
// or as `inspect`'s input (which would block the reader forever), a config over 1 MiB, a validation shard shorter
// than one batch, a bad partition list, a `--set` below a scalar; each one line, with the key and the value.
BOOST_FIXTURE_TEST_CASE(inputs_are_checked_before_work, Fixture) {
  const std::string ck = dir + "/ck_in";
  const std::string cfg = write(dir + "/ok.toml", config_text(dir, ck));
  auto one = [&](const std::string& args, const std::vector<std::string>& needles) {
    expect_one_error(test::run("timeout 20 " + kBin + " " + args), needles, args);
  };
  fs::create_directories(dir + "/adir.toml");
  one("train --config " + dir + "/adir.toml", {"adir.toml", "a directory"});
  BOOST_TEST_REQUIRE(::mkfifo((dir + "/fifo.toml").c_str(), 0644) == 0);
  one("train --config " + dir + "/fifo.toml", {"fifo.toml", "FIFO"});
  BOOST_TEST_REQUIRE(::mkfifo((dir + "/fifo.bin").c_str(), 0644) == 0);
  one("train --config " + cfg + " --set data.train=" + dir + "/fifo.bin", {"fifo.bin", "FIFO", "data.train"});
  BOOST_TEST_REQUIRE(::mkfifo((dir + "/fifo.h5").c_str(), 0644) == 0);
  one("inspect " + dir + "/fifo.h5", {"fifo.h5", "FIFO"});
  write(dir + "/big.toml", config_text(dir, ck) + "# " + std::string(1 << 20, 'x') + "\n");
  one("train --config " + dir + "/big.toml", {"big.toml", "MiB"});
  std::vector<uint16_t> few(9, 'a');
  shard_write(dir + "/short_val.bin", few.data(), few.size());
  one("train --config " + cfg + " --set data.val=" + dir + "/short_val.bin", {"short_val.bin", "eval_batches"});
  one("plan --config " + cfg + " --set parallel.pipeline=2 --set 'parallel.partition=[1, x]'",
      {"parallel.partition", "[1, x]"});
  one("train --config " + cfg + " --set model.layers.deep=3", {"model.layers.deep"});
  const auto r = test::run("timeout 20 " + kBin + " plan --config " + cfg +
                           " --set parallel.pipeline=2 --set 'parallel.partition=[1, x]'");
  BOOST_TEST(!contains(r.out, "stoi"), r.out);
  BOOST_TEST(!fs::exists(ck + "/metrics.jsonl"), "a refused start wrote into the run directory");
}

// on_nonfinite = "skip" does not train through a run whose updates keep failing; a partial last metrics line
// (a run killed while writing it) is dropped with a clear line on resume.
BOOST_FIXTURE_TEST_CASE(skips_and_partial_records, Fixture) {
  const std::string ck = dir + "/ck_skip";
  const std::string cfg = write(dir + "/skip.toml", config_text(dir, ck, 20, 0, "on_nonfinite = \"skip\"\n"));
  auto r = test::run("timeout 60 env STRATA_TEST_NAN=0:3:w_qkv:8 " + kBin + " train --config " + cfg);
  expect_one_error(r, {"on_nonfinite = skip gave up"}, "skip in a row");
  BOOST_TEST(contains(r.out, "5 skipped steps in a row"), r.out);
  fs::remove_all(ck);
  r = test::run("timeout 60 env STRATA_TEST_NAN=0:3:w_qkv:2 " + kBin + " train --config " + cfg);
  BOOST_TEST(r.code == 0, r.out);  // 2 skips of 20: a run that recovers trains on
  BOOST_TEST(contains(r.out, "2 skipped so far"), r.out);
  // Scattered: every other step from step 3, 9 times (never twice in a row): more than 5 of 20 is not training.
  fs::remove_all(ck);
  r = test::run("timeout 60 env STRATA_TEST_NAN=0:3:w_qkv:9:2 " + kBin + " train --config " + cfg);
  expect_one_error(r, {"more than a tenth of train.steps = 20"}, "scattered skips");
  fs::remove_all(ck);
  const std::string ck2 = dir + "/ck_partial";
  const std::string cfg2 = write(dir + "/partial.toml", config_text(dir, ck2, 6, 3));
  r = test::run("timeout 60 " + kBin + " train --config " + cfg2);
  BOOST_TEST_REQUIRE(r.code == 0, r.out);
  std::ofstream(ck2 + "/metrics.jsonl", std::ios::app) << "{\"step\":7,\"lo";
  r = test::run("timeout 60 " + kBin + " train --config " + cfg2 + " --set train.steps=8");
  BOOST_TEST(r.code == 0, r.out);
  BOOST_TEST(contains(r.out, "dropped 1 record(s) cut short"), r.out);
  BOOST_TEST(!contains(r.out, "stoll"), r.out);
  BOOST_TEST(!contains(test::read_file(ck2 + "/metrics.jsonl"), "\"lo\n"));
}
