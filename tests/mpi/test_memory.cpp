// test_memory.cpp: the memory features train the same bits as without them, through the real binary under
// mpirun (oversubscribed, each run under a timeout). train.recompute = selective and full against none: every
// placement, two pipeline stages, every schedule, 8 micro-batches per step, 20 steps: the same losses and gradient
// norms, the same final checkpoint (weights, both AdamW moments, state) and the same per-layer statistics.
// parallel.zero = 1 (ZeRO-1) against 0 at two replicas, the same way, and a run resumed across (P, D, zero) =
// (1, 2, 1) -> (2, 1, 0) and (2, 1, 0) -> (1, 2, 1) against one that never stopped; its optimizer memory per rank
// measured against strata plan's saving. strata plan against each rank's peak RSS.
#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE memory
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>
#include <cmath>

#include "test_util.hpp"

using namespace strata;
namespace bdata = boost::unit_test::data;

namespace {

const std::string kBin = STRATA_BIN;
const std::string kMpirun = test::mpirun(STRATA_MPIEXEC);
const std::string kSame = std::string(STRATA_PYTHON) + " " + STRATA_SOURCE_DIR + "/tests/mpi/same_h5.py ";

// 8 blocks (2 per virtual stage when interleaved), 8 micro-batches of one sequence per step.
std::string config(const std::string& dir, const std::string& norm) {
  std::string p = dir + "/cfg.toml";
  std::ofstream(p) << "[model]\nlayers = 8\nd_model = 32\nheads = 4\nd_ffn = 64\nseq_len = 16\nnorm = \"" << norm
                   << "\"\n[train]\nsteps = 20\nbatch_size = 8\nmicro_batch_size = 1\nthreads = 1\n"
                      "eval_batches = 1\nlr = 3e-3\nwarmup_steps = 4\n[data]\ntrain = \""
                   << dir << "/train.bin\"\nval = \"" << dir << "/val.bin\"\n[log]\ninterval = 1\npeak_gflops = 100.0\n"
                   << "[stats]\ninterval = 5\n";
  return p;
}

// The metrics records of training steps: loss, lr and grad_norm as printed (9 significant digits).
std::vector<std::string> step_records(const std::string& metrics) {
  std::vector<std::string> out;
  std::istringstream in(test::read_file(metrics));
  std::string line;
  while (std::getline(in, line)) {
    auto a = line.find("\"loss\":"), b = line.find(",\"ms_per_step\"");
    if (a != std::string::npos && b != std::string::npos) out.push_back(line.substr(a, b - a));
  }
  return out;
}

// Runs the binary on np ranks; requires success and returns the checkpoint directory.
std::string train(const std::string& cfg, const std::string& out, int np, const std::string& sets) {
  auto r = test::run("timeout 300 " + kMpirun + " -np " + std::to_string(np) + " " + kBin + " train --config " + cfg +
                     " --set checkpoint.dir=" + out + sets);
  BOOST_TEST_REQUIRE(r.code == 0, out << " failed (" << r.code << "): " << r.out);
  return out;
}

// A numeric array of the metrics file's record with `key` (the end-of-run memory record).
std::vector<double> metrics_array(const std::string& metrics, const std::string& key) {
  const std::string m = test::read_file(metrics);
  std::vector<double> v;
  const size_t p = m.find("\"" + key + "\":[");
  BOOST_TEST_REQUIRE(p != std::string::npos, "no " << key << " in " << metrics);
  std::istringstream in(m.substr(p + key.size() + 4));
  double x;
  char sep = ',';
  while (sep == ',' && in >> x) v.push_back(x), in >> sep;
  return v;
}

}  // namespace

BOOST_DATA_TEST_CASE(recompute_trains_the_same_bits,
                     bdata::make({"post", "res_post", "pre", "peri", "deepnorm", "mix"}), norm) {
  const std::string dir = test::fresh_dir(std::string("memory_recompute_") + norm);
  test::write_text_shards(dir);
  const std::string cfg = config(dir, norm);
  for (std::string sched : {"gpipe", "1f1b", "interleaved", "zb-h1"}) {
    auto run = [&](const std::string& rc) {
      return train(cfg, dir + "/" + sched + "_" + rc, 2,
                   " --set parallel.pipeline=2 --set parallel.schedule=" + sched + " --set parallel.virtual_stages=" +
                       (sched == "interleaved" ? "2" : "1") + " --set train.recompute=" + rc);
    };
    const std::string none = run("none");
    const auto ref = step_records(none + "/metrics.jsonl");
    BOOST_TEST_REQUIRE(ref.size() == 20u, sched);
    for (std::string rc : {"selective", "full"}) {
      const std::string name = std::string(norm) + " " + sched + " " + rc;
      const std::string out = run(rc);
      BOOST_TEST((step_records(out + "/metrics.jsonl") == ref), name << ": losses or gradient norms differ");
      auto r = test::run(kSame + none + "/step-00000020.h5 " + out + "/step-00000020.h5 /model /optimizer /state");
      BOOST_TEST(r.code == 0, name << " checkpoint: " << r.out);
      r = test::run(kSame + none + "/stats.h5 " + out + "/stats.h5 /blocks /step /loss /grad_norm");
      BOOST_TEST(r.code == 0, name << " statistics: " << r.out);
      BOOST_TEST_MESSAGE(name << ": the same bits as none (" << r.out.substr(0, r.out.find('\n')) << ")");
    }
  }
}

// strata plan against the peak RSS that each rank measures at the end of its run (the metrics record
// {"peak_rss_bytes": [...], "predicted_peak_bytes": [...]}): within 15% on every rank, for layouts with and without
// recomputation, one process and two pipeline stages.
BOOST_AUTO_TEST_CASE(plan_predicts_the_peak_rss) {
  const std::string dir = test::fresh_dir("memory_plan");
  test::write_text_shards(dir, 200000);
  const std::string cfg = dir + "/cfg.toml";
  std::ofstream(cfg) << "[model]\nlayers = 48\nd_model = 128\nheads = 4\nd_ffn = 512\nseq_len = 256\n"
                        "[train]\nsteps = 2\nbatch_size = 4\nmicro_batch_size = 4\nthreads = 1\neval_batches = 1\n"
                        "[data]\ntrain = \"" << dir << "/train.bin\"\nval = \"" << dir << "/val.bin\"\n"
                        "[checkpoint]\nat_end = false\n[log]\ninterval = 1\npeak_gflops = 100.0\n";
  struct Case {
    std::string name, sets;
    int np;
  };
  for (const Case& c : {Case{"none", "", 1}, Case{"full", " --set train.recompute=full", 1},
                        Case{"P2_zb-h1_M4_selective", " --set parallel.pipeline=2 --set train.micro_batch_size=1 "
                             "--set parallel.schedule=zb-h1 --set train.recompute=selective", 2},
                        Case{"D2_zero1_M2", " --set parallel.data=2 --set parallel.zero=1 --set train.micro_batch_size=1",
                             2}}) {
    const std::string out = train(cfg, dir + "/" + c.name, c.np, c.sets);
    const auto meas = metrics_array(out + "/metrics.jsonl", "peak_rss_bytes");
    const auto pred = metrics_array(out + "/metrics.jsonl", "predicted_peak_bytes");
    BOOST_TEST_REQUIRE(meas.size() == size_t(c.np));
    BOOST_TEST_REQUIRE(pred.size() == size_t(c.np));
    for (int k = 0; k < c.np; k++) {
      const double err = (pred[k] - meas[k]) / meas[k];
      BOOST_TEST(std::fabs(err) <= 0.15, c.name << " rank " << k << ": predicted " << pred[k] / 1e6 << " MB, measured "
                                                << meas[k] / 1e6 << " MB");
      BOOST_TEST_MESSAGE(c.name << " rank " << k << ": predicted " << pred[k] / 1e6 << " MB, peak RSS "
                                << meas[k] / 1e6 << " MB (" << 100 * err << "%)");
    }
  }
}

// ZeRO-1 at two replicas trains the bits of zero = 0 (losses, gradient norms, checkpoint, statistics), and a run
// saved under one of (P, D, zero) = (1, 2, 1), (2, 1, 0) resumes under the other to the bits of a run that never
// stopped: the checkpoint is the same logical file whoever held which moments.
BOOST_AUTO_TEST_CASE(zero1_trains_the_same_bits_and_resumes_across_layouts) {
  const std::string dir = test::fresh_dir("memory_zero");
  test::write_text_shards(dir);
  const std::string cfg = config(dir, "pre");
  const std::string d2 = " --set parallel.data=2", p2 = " --set parallel.pipeline=2";
  const std::string z0 = train(cfg, dir + "/zero0", 2, d2 + " --set parallel.zero=0");
  const std::string z1 = train(cfg, dir + "/zero1", 2, d2 + " --set parallel.zero=1");
  const auto ref = step_records(z0 + "/metrics.jsonl");
  BOOST_TEST_REQUIRE(ref.size() == 20u);
  BOOST_TEST((step_records(z1 + "/metrics.jsonl") == ref), "zero = 1: losses or gradient norms differ");
  auto r = test::run(kSame + z0 + "/step-00000020.h5 " + z1 + "/step-00000020.h5 /model /optimizer /state");
  BOOST_TEST(r.code == 0, "zero = 1 checkpoint: " << r.out);
  r = test::run(kSame + z0 + "/stats.h5 " + z1 + "/stats.h5 /blocks /step /loss /grad_norm");
  BOOST_TEST(r.code == 0, "zero = 1 statistics: " << r.out);
  struct Leg {
    std::string name, first, second;
  };
  for (const Leg& l : {Leg{"1x2_zero1_to_2x1_zero0", d2 + " --set parallel.zero=1", p2 + " --set parallel.zero=0"},
                       Leg{"2x1_zero0_to_1x2_zero1", p2 + " --set parallel.zero=0", d2 + " --set parallel.zero=1"}}) {
    const std::string out = dir + "/" + l.name;
    train(cfg, out, 2, l.first + " --set train.exit_interval=10");
    BOOST_TEST_REQUIRE(std::filesystem::exists(out + "/step-00000010.h5"), l.name);
    train(cfg, out, 2, l.second + " --set checkpoint.resume=auto");
    BOOST_TEST((step_records(out + "/metrics.jsonl") == ref), l.name << ": losses or gradient norms differ");
    r = test::run(kSame + z0 + "/step-00000020.h5 " + out + "/step-00000020.h5 /model /optimizer /state");
    BOOST_TEST(r.code == 0, l.name << " checkpoint: " << r.out);
    BOOST_TEST_MESSAGE(l.name << ": the bits of the run that never stopped (" << r.out.substr(0, r.out.find('\n'))
                              << ")");
  }
}

// ZeRO-1's saving in each rank's peak RSS: at least 80% of what strata plan predicts for the optimizer state (half of
// AdamW's moments at two replicas), on a model whose moments are ~300 MB.
BOOST_AUTO_TEST_CASE(zero1_saves_what_plan_predicts) {
  const std::string dir = test::fresh_dir("memory_zero_rss");
  test::write_text_shards(dir, 100000);
  const std::string cfg = dir + "/cfg.toml";
  std::ofstream(cfg) << "[model]\nlayers = 48\nd_model = 256\nheads = 4\nd_ffn = 1024\nseq_len = 32\n"
                        "[train]\nsteps = 2\nbatch_size = 2\nmicro_batch_size = 1\nthreads = 1\neval_batches = 1\n"
                        "[data]\ntrain = \"" << dir << "/train.bin\"\nval = \"" << dir << "/val.bin\"\n"
                        "[checkpoint]\nat_end = false\n[log]\ninterval = 1\npeak_gflops = 100.0\n"
                        "[parallel]\ndata = 2\n";
  std::vector<double> meas[2], pred[2];
  for (int z = 0; z < 2; z++) {
    const std::string out = train(cfg, dir + "/zero" + std::to_string(z), 2, " --set parallel.zero=" + std::to_string(z));
    meas[z] = metrics_array(out + "/metrics.jsonl", "peak_rss_bytes");
    pred[z] = metrics_array(out + "/metrics.jsonl", "predicted_peak_bytes");
    BOOST_TEST_REQUIRE(meas[z].size() == 2u);
  }
  for (int k = 0; k < 2; k++) {
    const double want = pred[0][k] - pred[1][k], got = meas[0][k] - meas[1][k];
    BOOST_TEST(want > 100e6, "rank " << k << ": predicted saving " << want / 1e6 << " MB");
    BOOST_TEST(got >= 0.8 * want, "rank " << k << ": peak RSS fell by " << got / 1e6 << " MB, predicted " << want / 1e6);
    BOOST_TEST_MESSAGE("rank " << k << ": zero = 1 peak RSS " << meas[1][k] / 1e6 << " MB vs " << meas[0][k] / 1e6
                               << " MB: " << got / 1e6 << " MB less, predicted " << want / 1e6 << " MB ("
                               << 100 * got / want << "%)");
  }
}

// parallel.grad_bucket_mb: buckets reduced while the backward runs (some as small as one tensor, so each schedule's
// last passes start many) give the bits of one reduction after the backward: two replicas alone, with ZeRO-1, and
// 2 stages x 2 replicas under every schedule. Each run says how many buckets it started.
BOOST_AUTO_TEST_CASE(gradient_buckets_train_the_same_bits) {
  const std::string dir = test::fresh_dir("memory_buckets");
  test::write_text_shards(dir);
  const std::string cfg = config(dir, "peri");
  const std::string d2 = " --set parallel.data=2", b = " --set parallel.grad_bucket_mb=0.004";
  struct Case {
    std::string name, sets;
    int np;
  };
  std::vector<Case> cases{{"D2", d2, 2}, {"D2_zero1", d2 + " --set parallel.zero=1", 2}};
  for (std::string s : {"gpipe", "1f1b", "interleaved", "zb-h1"})
    cases.push_back({"P2_D2_" + s,
                     d2 + " --set parallel.pipeline=2 --set parallel.schedule=" + s +
                         " --set parallel.virtual_stages=" + (s == "interleaved" ? "2" : "1"),
                     4});
  for (const Case& c : cases) {  // each against the same layout reduced after the backward
    const std::string ref_dir = train(cfg, dir + "/" + c.name + "_after", c.np, c.sets);
    const auto ref = step_records(ref_dir + "/metrics.jsonl");
    BOOST_TEST_REQUIRE(ref.size() == 20u);
    const std::string out = dir + "/" + c.name;
    auto r = test::run("timeout 300 " + kMpirun + " -np " + std::to_string(c.np) + " " + kBin + " train --config " +
                       cfg + " --set checkpoint.dir=" + out + c.sets + b);
    BOOST_TEST_REQUIRE(r.code == 0, c.name << ": " << r.out);
    BOOST_TEST(r.out.find("started during the backward") != std::string::npos, c.name << ": " << r.out);
    BOOST_TEST((step_records(out + "/metrics.jsonl") == ref), c.name << ": losses or gradient norms differ");
    auto same = test::run(kSame + ref_dir + "/step-00000020.h5 " + out + "/step-00000020.h5 /model /optimizer /state");
    BOOST_TEST(same.code == 0, c.name << " checkpoint: " << same.out);
    same = test::run(kSame + ref_dir + "/stats.h5 " + out + "/stats.h5 /blocks /step /loss /grad_norm");
    BOOST_TEST(same.code == 0, c.name << " statistics: " << same.out);
    const size_t p = r.out.find("gradient reduction over");
    BOOST_TEST_MESSAGE(c.name << ": the same bits; " << r.out.substr(p, r.out.find('\n', p) - p));
  }
}
