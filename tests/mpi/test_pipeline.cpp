// test_pipeline.cpp: pipeline and data parallelism over MPI (mpirun, oversubscribed, each run under a
// timeout): for post, res_post and pre on a 96-block model (d = 32), the per-step losses of 10 steps for
// (P, D) ∈ {(2,1), (4,1), (2,2), (8,1)} and every schedule equal the single-process run within 1e-5 relative,
// and so do the final weights; an uneven partition gives the same; a rank that throws ends the job, non-zero,
// within 30 s; a world size that disagrees with P × D is a one-line error.
#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE pipeline
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <cmath>

#include "io/checkpoint.hpp"
#include "model/layout.hpp"
#include "test_util.hpp"

using namespace strata;
namespace fs = std::filesystem;
namespace bdata = boost::unit_test::data;

namespace {

const std::string kBin = STRATA_BIN;
const std::string kMpirun = test::mpirun(STRATA_MPIEXEC);

std::string config(const std::string& dir, const std::string& norm) {
  std::string p = dir + "/cfg.toml";
  std::ofstream(p) << "[model]\nlayers = 96\nd_model = 32\nheads = 4\nd_ffn = 64\nseq_len = 16\nnorm = \"" << norm
                   << "\"\n[train]\nsteps = 10\nbatch_size = 8\nmicro_batch_size = 1\nthreads = 1\n"
                      "eval_batches = 1\nlr = 1e-3\nwarmup_steps = 2\n[data]\ntrain = \""
                   << dir << "/train.bin\"\nval = \"" << dir << "/val.bin\"\n[log]\ninterval = 1\npeak_gflops = 100.0\n";
  return p;
}

std::vector<double> losses(const std::string& metrics) {
  std::vector<double> out;
  std::istringstream in(test::read_file(metrics));
  std::string line;
  while (std::getline(in, line)) {
    auto p = line.find("\"loss\":");
    if (p != std::string::npos) out.push_back(std::stod(line.substr(p + 7)));
  }
  return out;
}

std::vector<float> weights(const std::string& ckpt, const ModelConfig& m) {
  ParamLayout l = layout_build(m);
  std::vector<float> p(l.total);
  checkpoint_load(ckpt, l, p.data(), nullptr, nullptr, nullptr);
  return p;
}

// Runs one layout; checks its losses and final weights against the single-process reference.
void expect_same(const std::string& dir, const std::string& cfg, const std::string& name, int P, int D,
                 const std::string& sched, const std::string& extra, const std::vector<double>& ref_loss,
                 const std::vector<float>& ref_w, const ModelConfig& m) {
  const std::string out = dir + "/" + name;
  const int v = sched == "interleaved" ? 2 : 1;
  auto r = test::run("timeout 120 " + kMpirun + " -np " + std::to_string(P * D) + " " + kBin + " train --config " +
                     cfg + " --set parallel.pipeline=" + std::to_string(P) + " --set parallel.data=" +
                     std::to_string(D) + " --set parallel.schedule=" + sched + " --set parallel.virtual_stages=" +
                     std::to_string(v) + " --set checkpoint.dir=" + out + extra);
  BOOST_TEST_REQUIRE(r.code == 0, name << " failed (" << r.code << "): " << r.out.substr(r.out.size() > 2000 ? r.out.size() - 2000 : 0));
  auto l = losses(out + "/metrics.jsonl");
  BOOST_TEST_REQUIRE(l.size() == ref_loss.size(), name);
  double worst = 0;
  for (size_t i = 0; i < l.size(); i++) worst = std::max(worst, std::fabs(l[i] - ref_loss[i]) / std::fabs(ref_loss[i]));
  BOOST_TEST(worst < 1e-5, name << ": per-step loss differs by " << worst << " relative");
  auto w = weights(out + "/step-00000010.h5", m);
  double diff = 0, norm = 0;
  for (size_t i = 0; i < w.size(); i++) diff += double(w[i] - ref_w[i]) * (w[i] - ref_w[i]), norm += double(ref_w[i]) * ref_w[i];
  const double rel = std::sqrt(diff / norm);
  BOOST_TEST(rel < 1e-5, name << ": final weights differ by " << rel << " (‖Δw‖/‖w‖)");
  BOOST_TEST_MESSAGE(name << ": loss max rel diff " << worst << ", weights " << rel);
}

}  // namespace

BOOST_DATA_TEST_CASE(every_layout_and_schedule_matches_one_process, bdata::make({"post", "res_post", "pre"}), norm) {
  const std::string dir = test::fresh_dir(std::string("pipeline_") + norm);
  test::write_text_shards(dir);
  const std::string cfg = config(dir, norm);
  auto r = test::run("timeout 120 " + kBin + " train --config " + cfg + " --set checkpoint.dir=" + dir + "/single");
  BOOST_TEST_REQUIRE(r.code == 0, r.out);
  ModelConfig m;
  m.layers = 96, m.d_model = 32, m.heads = 4, m.d_ffn = 64, m.seq_len = 16, m.norm = norm;
  const auto ref_loss = losses(dir + "/single/metrics.jsonl");
  BOOST_TEST_REQUIRE(ref_loss.size() == 10u);
  BOOST_TEST(ref_loss.back() < ref_loss.front());
  const auto ref_w = weights(dir + "/single/step-00000010.h5", m);
  for (auto [P, D] : std::vector<std::pair<int, int>>{{2, 1}, {4, 1}, {2, 2}, {8, 1}})
    for (std::string s : {"gpipe", "1f1b", "interleaved", "zb-h1"})
      expect_same(dir, cfg, s + "_P" + std::to_string(P) + "_D" + std::to_string(D), P, D, s, "", ref_loss, ref_w, m);
  expect_same(dir, cfg, "uneven_P4", 4, 1, "1f1b", " --set parallel.partition=[20,28,30,18]", ref_loss, ref_w, m);
}

// One micro-batch per step (M = 1): the first stage's look-ahead posts the gradient's receive before its forward
// waits for nothing, and a middle stage has both receives of one micro-batch pending at once. It hung before each
// got a handle of its own.
BOOST_AUTO_TEST_CASE(one_micro_batch_per_step) {
  const std::string dir = test::fresh_dir("pipeline_m1");
  test::write_text_shards(dir);
  const std::string cfg = config(dir, "pre");
  const std::string m1 = " --set train.batch_size=1";
  auto r = test::run("timeout 120 " + kBin + " train --config " + cfg + m1 + " --set checkpoint.dir=" + dir + "/single");
  BOOST_TEST_REQUIRE(r.code == 0, r.out);
  ModelConfig m;
  m.layers = 96, m.d_model = 32, m.heads = 4, m.d_ffn = 64, m.seq_len = 16, m.norm = "pre";
  const auto ref_loss = losses(dir + "/single/metrics.jsonl");
  BOOST_TEST_REQUIRE(ref_loss.size() == 10u);
  const auto ref_w = weights(dir + "/single/step-00000010.h5", m);
  for (auto [P, s] : std::vector<std::pair<int, std::string>>{{2, "1f1b"}, {4, "1f1b"}, {3, "gpipe"}, {4, "zb-h1"}})
    expect_same(dir, cfg, s + "_P" + std::to_string(P) + "_M1", P, 1, s, m1, ref_loss, ref_w, m);
}

// STRATA_TEST_SEPARATE_MEMORY=1 keeps every model buffer apart from the host vectors, as on a GPU: parameters
// pushed after init and resume and pulled for checkpoints, moments likewise, the float64 gradient sums through
// the host between replicas, transfers staged through host memory (StagedTransport), statistics and the
// non-finite check on the backend's buffers. It must train the same bits as host memory: losses, the final
// checkpoint (weights, both moments, state) and every statistic, also across a save-exit-resume.
BOOST_AUTO_TEST_CASE(separate_memory_trains_the_same_bits) {
  const std::string dir = test::fresh_dir("pipeline_separate");
  test::write_text_shards(dir);
  const std::string cfg = config(dir, "pre");
  const std::string same = std::string(STRATA_PYTHON) + " " + STRATA_SOURCE_DIR + "/tests/mpi/same_h5.py ";
  struct Layout {
    int P, D;
    std::string sched;
  };
  for (const Layout& L : {Layout{1, 1, "1f1b"}, Layout{2, 2, "zb-h1"}, Layout{2, 1, "interleaved"}}) {
    const std::string name = L.sched + "_P" + std::to_string(L.P) + "_D" + std::to_string(L.D);
    auto cmd = [&](const std::string& out, const std::string& extra) {
      return "timeout 120 " + kMpirun + " -np " + std::to_string(L.P * L.D) + " " + kBin + " train --config " + cfg +
             " --set parallel.pipeline=" + std::to_string(L.P) + " --set parallel.data=" + std::to_string(L.D) +
             " --set parallel.schedule=" + L.sched + " --set parallel.virtual_stages=" +
             (L.sched == "interleaved" ? "2" : "1") + " --set stats.interval=1 --set checkpoint.dir=" + out + extra;
    };
    const std::string host = dir + "/host_" + name, sep = dir + "/sep_" + name;
    auto r = test::run(cmd(host, ""));
    BOOST_TEST_REQUIRE(r.code == 0, name << ": " << r.out);
    r = test::run("STRATA_TEST_SEPARATE_MEMORY=1 " + cmd(sep, " --set train.exit_interval=5"));
    BOOST_TEST_REQUIRE(r.code == 0, name << ": " << r.out);
    BOOST_TEST_REQUIRE(fs::exists(sep + "/step-00000005.h5"), name << ": " << r.out);
    r = test::run("STRATA_TEST_SEPARATE_MEMORY=1 " + cmd(sep, " --set checkpoint.resume=auto"));
    BOOST_TEST_REQUIRE(r.code == 0, name << ": " << r.out);
    BOOST_TEST(r.out.find("resumed from") != std::string::npos, name << ": " << r.out);
    BOOST_TEST(r.out.find("on cpu (separate memory)") != std::string::npos, name << ": " << r.out);
    const auto a = losses(host + "/metrics.jsonl"), b = losses(sep + "/metrics.jsonl");
    BOOST_TEST_REQUIRE(a.size() == 10u, name);
    BOOST_TEST(a == b, name << ": per-step losses differ");
    r = test::run(same + host + "/step-00000010.h5 " + sep + "/step-00000010.h5 /model /optimizer /state");
    BOOST_TEST(r.code == 0, name << " checkpoint: " << r.out);
    r = test::run(same + host + "/stats.h5 " + sep + "/stats.h5 /blocks /step /loss /grad_norm");
    BOOST_TEST(r.code == 0, name << " stats: " << r.out);
    BOOST_TEST_MESSAGE(name << ": separate memory trains the same bits (" << r.out.substr(0, r.out.find('\n')) << ")");
  }
  // A NaN planted in a backend buffer (STRATA_TEST_NAN writes through upload) is found by the backend's check,
  // reported the same way, and skip-policy training continues to the same bits as on host memory.
  std::string runs[2];
  for (int k = 0; k < 2; k++) {
    const std::string out = dir + (k ? "/nan_sep" : "/nan_host");
    auto r = test::run(std::string(k ? "STRATA_TEST_SEPARATE_MEMORY=1 " : "") + "STRATA_TEST_NAN=1:4:blocks/050/ffn/w_h " +
                       "timeout 120 " + kMpirun + " -np 2 " + kBin + " train --config " + cfg +
                       " --set parallel.pipeline=2 --set train.on_nonfinite=skip --set checkpoint.dir=" + out);
    BOOST_TEST_REQUIRE(r.code == 0, r.out);
    BOOST_TEST(r.out.find("step 4: non-finite gradient first in stage 1, block 50, tensor /model/blocks/ffn/w_h") !=
                   std::string::npos,
               r.out);
    runs[k] = out;
  }
  auto r = test::run(same + runs[0] + "/step-00000010.h5 " + runs[1] + "/step-00000010.h5 /model /optimizer /state");
  BOOST_TEST(r.code == 0, "NaN skip run: " << r.out);
}

BOOST_AUTO_TEST_CASE(a_rank_that_throws_ends_the_job_quickly) {
  const std::string dir = test::fresh_dir("pipeline_fail");
  test::write_text_shards(dir);
  const std::string cfg = config(dir, "pre");
  const auto t0 = std::chrono::steady_clock::now();
  auto r = test::run("STRATA_TEST_FAIL=2:3 timeout 120 " + kMpirun + " -np 4 " + kBin + " train --config " + cfg +
                     " --set parallel.pipeline=4 --set checkpoint.dir=" + dir + "/out");
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  BOOST_TEST(r.code != 0);
  BOOST_TEST(r.code != 124, "the job hung until the timeout");
  BOOST_TEST(s < 30.0, "took " << s << " s");
  BOOST_TEST(r.out.find("rank 2") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("injected failure at step 3") != std::string::npos, r.out);
}

BOOST_AUTO_TEST_CASE(world_size_must_equal_pipeline_times_data) {
  const std::string dir = test::fresh_dir("pipeline_world");
  test::write_text_shards(dir);
  auto r = test::run("(timeout 60 " + kMpirun + " -np 3 " + kBin + " train --config " + config(dir, "pre") +
                     " --set parallel.pipeline=2 --set checkpoint.dir=" + dir + "/out 2>&1 1>/dev/null)");
  BOOST_TEST(r.code != 0);
  BOOST_TEST(r.out.find("strata: error: parallel.pipeline (2) × parallel.data (1) = 2 ≠ world size 3\n") !=
                 std::string::npos,
             r.out);
  size_t ours = 0;  // one line from Strata (rank 0 alone); the rest is mpirun's own report
  for (size_t p = r.out.find("strata: error"); p != std::string::npos; p = r.out.find("strata: error", p + 1)) ours++;
  BOOST_TEST(ours == 1u, r.out);
}
