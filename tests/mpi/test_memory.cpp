// test_memory.cpp: the memory features train the same bits as without them, through the real binary under
// mpirun (oversubscribed, each run under a timeout). train.recompute = selective and full against none: every
// placement, two pipeline stages, every schedule, 8 micro-batches per step, 20 steps: the same losses and gradient
// norms, the same final checkpoint (weights, both AdamW moments, state) and the same per-layer statistics.
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

}  // namespace

BOOST_DATA_TEST_CASE(recompute_trains_the_same_bits,
                     bdata::make({"post", "res_post", "pre", "peri", "deepnorm", "mix"}), norm) {
  const std::string dir = test::fresh_dir(std::string("memory_recompute_") + norm);
  test::write_text_shards(dir);
  const std::string cfg = config(dir, norm);
  for (std::string sched : {"gpipe", "1f1b", "interleaved", "zb-h1"}) {
    auto run = [&](const std::string& rc) {
      const std::string out = dir + "/" + sched + "_" + rc;
      auto r = test::run("timeout 120 " + kMpirun + " -np 2 " + kBin + " train --config " + cfg +
                         " --set parallel.pipeline=2 --set parallel.schedule=" + sched +
                         " --set parallel.virtual_stages=" + (sched == "interleaved" ? "2" : "1") +
                         " --set train.recompute=" + rc + " --set checkpoint.dir=" + out);
      BOOST_TEST_REQUIRE(r.code == 0, sched << " " << rc << " failed (" << r.code << "): " << r.out);
      return out;
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
                        Case{"P2_1f1b_M4", " --set parallel.pipeline=2 --set train.micro_batch_size=1", 2},
                        Case{"P2_zb-h1_M4_selective", " --set parallel.pipeline=2 --set train.micro_batch_size=1 "
                             "--set parallel.schedule=zb-h1 --set train.recompute=selective", 2}}) {
    const std::string out = dir + "/" + c.name;
    auto r = test::run("timeout 300 " + kMpirun + " -np " + std::to_string(c.np) + " " + kBin + " train --config " +
                       cfg + " --set checkpoint.dir=" + out + c.sets);
    BOOST_TEST_REQUIRE(r.code == 0, c.name << ": " << r.out);
    const std::string m = test::read_file(out + "/metrics.jsonl");
    auto array = [&](const std::string& key) {
      std::vector<double> v;
      const size_t p = m.find("\"" + key + "\":[");
      BOOST_TEST_REQUIRE(p != std::string::npos, c.name << ": no " << key << " in " << m);
      std::istringstream in(m.substr(p + key.size() + 4));
      double x;
      char sep = ',';
      while (sep == ',' && in >> x) v.push_back(x), in >> sep;
      return v;
    };
    const auto meas = array("peak_rss_bytes"), pred = array("predicted_peak_bytes");
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
