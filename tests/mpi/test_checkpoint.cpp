// test_checkpoint.cpp: checkpoints under MPI (oversubscribed, every run under `timeout`): exact resume at
// (4,1) and (2,2); a checkpoint of (4,1) continued at (2,2) and (1,1); kill -9 during a write; truncated,
// corrupt and garbage files refused or bypassed with their message; SIGUSR1 to one rank; a NaN in one block's
// gradient on one stage under every on_nonfinite policy; stats.h5 through kill -9 of its writer and resumes.
#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE checkpoint
#include <signal.h>

#include <boost/test/unit_test.hpp>
#include <chrono>
#include <cmath>
#include <cstring>
#include <thread>

#include "core/error.hpp"
#include "io/checkpoint.hpp"
#include "model/layout.hpp"
#include "test_util.hpp"

using namespace strata;
namespace fs = std::filesystem;

namespace {

const std::string kBin = STRATA_BIN;
const std::string kMpirun = test::mpirun(STRATA_MPIEXEC);

ModelConfig model() {
  ModelConfig m;
  m.layers = 16, m.d_model = 32, m.heads = 4, m.d_ffn = 64, m.seq_len = 16, m.norm = "pre";
  return m;
}

std::string config(const std::string& dir) {
  std::string p = dir + "/cfg.toml";
  std::ofstream(p) << "[model]\nlayers = 16\nd_model = 32\nheads = 4\nd_ffn = 64\nseq_len = 16\nnorm = \"pre\"\n"
                      "[train]\nsteps = 10\nbatch_size = 8\nmicro_batch_size = 2\nthreads = 1\neval_batches = 0\n"
                      "lr = 1e-3\nwarmup_steps = 2\n[data]\ntrain = \""
                   << dir << "/train.bin\"\nval = \"" << dir << "/val.bin\"\n[log]\ninterval = 1\npeak_gflops = 100.0\n";
  return p;
}

test::RunResult train(const std::string& cfg, int P, int D, const std::string& dir, const std::string& extra = "",
                      const std::string& env = "") {
  return test::run(env + " timeout 120 " + kMpirun + " -np " + std::to_string(P * D) + " " + kBin +
                   " train --config " + cfg + " --set parallel.pipeline=" + std::to_string(P) +
                   " --set parallel.data=" + std::to_string(D) + " --set checkpoint.dir=" + dir + extra);
}

struct State {
  std::vector<float> p, m, v;
  TrainState st;
};
State load(const std::string& path) {
  ParamLayout l = layout_build(model());
  State s{std::vector<float>(l.total), std::vector<float>(l.total), std::vector<float>(l.total), {}};
  checkpoint_load(path, l, s.p.data(), s.m.data(), s.v.data(), &s.st);
  return s;
}
bool same(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}
std::vector<std::string> loss_records(const std::string& metrics) {
  std::vector<std::string> out;
  std::istringstream in(test::read_file(metrics));
  std::string line;
  while (std::getline(in, line))
    if (line.find("\"loss\":") != std::string::npos) out.push_back(line.substr(0, line.find(",\"lr\"")));
  return out;
}

// Sends sig to `rank` of the run whose ranks.txt ("rank stage replica host local_rank pid") is in out.
void signal_rank(const std::string& out, int which, int sig) {
  std::istringstream ranks(test::read_file(out + "/ranks.txt"));
  int rank, stage, replica, local_rank, pid;
  std::string host;
  while (ranks >> rank >> stage >> replica >> host >> local_rank >> pid)
    if (rank == which) kill(pid, sig);
}

struct Fixture {
  std::string dir = test::fresh_dir("checkpoint_" +
                                    std::string(boost::unit_test::framework::current_test_case().p_name));
  std::string cfg;
  Fixture() {
    test::write_text_shards(dir);
    cfg = config(dir);
  }
};

}  // namespace

BOOST_FIXTURE_TEST_CASE(format_2_stacks_block_tensors_and_format_1_files_still_load, Fixture) {
  // mix: post-norm blocks 0-1 (ln_out) and pre-norm blocks 2-7 (ln_in), so the stacks differ in rows.
  ModelConfig mc = model();
  mc.layers = 8, mc.norm = "mix", mc.mix_post_fraction = 0.25;
  Config c;
  c.model = mc;
  const ParamLayout l = layout_build(mc);
  std::vector<float> p(l.total), m(l.total), v(l.total);
  for (size_t i = 0; i < l.total; i++) p[i] = std::sin(0.37f * i), m[i] = std::cos(0.11f * i), v[i] = 1e-3f * (i % 97);
  TrainState st;
  st.step = 42, st.data_cursor = 1234, st.tokens_seen = 99;
  const std::string a = dir + "/a.h5", b = dir + "/b.h5";
  checkpoint_write_file(a, {&c, &l, p.data(), m.data(), v.data(), st});
  auto shape = test::run(std::string(STRATA_PYTHON) + " -c \"import h5py; f=h5py.File('" + a +
                         "'); g=f['model/blocks/attn']; n=[]; f.visititems(lambda k, o: n.append(k) if "
                         "isinstance(o, h5py.Dataset) else None); print(f.attrs['strata_checkpoint_format'], "
                         "g['ln_in/gain'].shape, list(g['ln_in/gain'].attrs['blocks']), g['ln_out/gain'].shape, "
                         "list(g['ln_out/gain'].attrs['blocks']), g['w_qkv'].shape, g['w_qkv'].chunks, len(n))\"");
  BOOST_TEST_REQUIRE(shape.code == 0, shape.out);
  // 16 block stacks + 5 others per kind, × 3 kinds, + 6 state + config = 70 datasets (format 1: 310).
  BOOST_TEST(shape.out == "2 (6, 32) [2, 3, 4, 5, 6, 7] (2, 32) [0, 1] (8, 32, 96) (1, 32, 96) 70\n");
  auto conv = test::run(std::string(STRATA_PYTHON) + " " + STRATA_SOURCE_DIR + "/tests/mpi/to_format1.py " + a + " " + b);
  BOOST_TEST_REQUIRE(conv.code == 0, conv.out);
  for (const std::string& path : {a, b}) {
    std::vector<float> p2(l.total, -1), m2(l.total, -1), v2(l.total, -1);
    TrainState st2;
    checkpoint_load(path, l, p2.data(), m2.data(), v2.data(), &st2);
    BOOST_TEST(same(p2, p), path);
    BOOST_TEST(same(m2, m), path);
    BOOST_TEST(same(v2, v), path);
    BOOST_TEST(st2.step == 42);
    BOOST_TEST(st2.data_cursor == 1234u);
  }
  // A stack whose @blocks does not match its rows is refused, naming the dataset.
  auto edit = test::run(std::string(STRATA_PYTHON) + " -c \"import h5py; f=h5py.File('" + a +
                        "', 'r+'); f['model/blocks/ffn/w_h'].attrs['blocks'] = list(range(7))\"");
  BOOST_TEST_REQUIRE(edit.code == 0, edit.out);
  std::vector<float> p3(l.total);
  try {
    checkpoint_load(a, l, p3.data(), nullptr, nullptr, nullptr);
    BOOST_ERROR("a stack with 8 rows and 7 blocks must be refused");
  } catch (const Error& e) {
    BOOST_TEST(std::string(e.what()).find("/model/blocks/ffn/w_h has 8 rows but its attribute blocks lists 7") !=
                   std::string::npos, e.what());
  }
}

BOOST_FIXTURE_TEST_CASE(interleaved_stages_write_mix_stacks_as_one_process_does, Fixture) {
  // mix at 16 blocks: ln_out rows for blocks 0-3, ln_in rows for 4-15; P = 2 with 2 virtual stages each gives
  // stage 1 the non-contiguous blocks 4-7 and 12-15 of every stack. The file must equal one process's.
  const std::string mix = " --set model.norm=mix --set train.steps=4 --set checkpoint.interval=4";
  auto r = train(cfg, 1, 1, dir + "/one", mix);
  BOOST_TEST_REQUIRE(r.code == 0, r.out);
  r = train(cfg, 2, 1, dir + "/inter", mix + " --set parallel.schedule=interleaved --set parallel.virtual_stages=2");
  BOOST_TEST_REQUIRE(r.code == 0, r.out);
  ModelConfig mc = model();
  mc.norm = "mix";
  const ParamLayout l = layout_build(mc);
  auto load_mix = [&](const std::string& path) {
    State s{std::vector<float>(l.total), std::vector<float>(l.total), std::vector<float>(l.total), {}};
    checkpoint_load(path, l, s.p.data(), s.m.data(), s.v.data(), &s.st);
    return s;
  };
  State a = load_mix(dir + "/one/step-00000004.h5"), b = load_mix(dir + "/inter/step-00000004.h5");
  BOOST_TEST(same(a.p, b.p));
  BOOST_TEST(same(a.m, b.m));
  BOOST_TEST(same(a.v, b.v));
  // A file of a format this build does not read stops resume = "auto" instead of falling back past it.
  auto edit = test::run(std::string(STRATA_PYTHON) + " -c \"import h5py; f=h5py.File('" + dir +
                        "/one/step-00000004.h5', 'r+'); f.attrs['strata_checkpoint_format'] = 3\"");
  BOOST_TEST_REQUIRE(edit.code == 0, edit.out);
  r = train(cfg, 1, 1, dir + "/one", mix + " --set train.steps=6 --set checkpoint.resume=auto");
  BOOST_TEST(r.code != 0, r.out);
  BOOST_TEST(r.out.find("checkpoint format 3 is not one this build reads") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("resumed from") == std::string::npos, r.out);
}

BOOST_FIXTURE_TEST_CASE(resume_is_bit_exact_and_moves_between_layouts, Fixture) {
  for (auto [P, D] : std::vector<std::pair<int, int>>{{4, 1}, {2, 2}}) {
    const std::string tag = std::to_string(P) + "x" + std::to_string(D);
    auto r = train(cfg, P, D, dir + "/straight" + tag);
    BOOST_TEST_REQUIRE(r.code == 0, r.out);
    r = train(cfg, P, D, dir + "/split" + tag, " --set train.exit_interval=5");
    BOOST_TEST_REQUIRE(r.code == 0, r.out);
    BOOST_TEST(!fs::exists(dir + "/split" + tag + "/step-00000010.h5"));
    r = train(cfg, P, D, dir + "/split" + tag, " --set checkpoint.resume=auto");
    BOOST_TEST_REQUIRE(r.code == 0, r.out);
    State a = load(dir + "/straight" + tag + "/step-00000010.h5"), b = load(dir + "/split" + tag + "/step-00000010.h5");
    BOOST_TEST(same(a.p, b.p), tag << ": weights");
    BOOST_TEST(same(a.m, b.m), tag << ": first moments");
    BOOST_TEST(same(a.v, b.v), tag << ": second moments");
    BOOST_TEST(a.st.data_cursor == b.st.data_cursor);
    BOOST_TEST(loss_records(dir + "/straight" + tag + "/metrics.jsonl") ==
               loss_records(dir + "/split" + tag + "/metrics.jsonl"));
  }
  // The step-5 checkpoint of (4,1), continued at (2,2) and at (1,1), against (4,1) continuing.
  const std::string at5 = dir + "/split4x1/step-00000005.h5";
  const auto ref = loss_records(dir + "/straight4x1/metrics.jsonl");
  for (auto [P, D] : std::vector<std::pair<int, int>>{{2, 2}, {1, 1}}) {
    const std::string out = dir + "/moved" + std::to_string(P) + "x" + std::to_string(D);
    auto r = train(cfg, P, D, out, " --set checkpoint.resume=" + at5);
    BOOST_TEST_REQUIRE(r.code == 0, r.out);
    BOOST_TEST(r.out.find("resumed from " + at5 + " at step 5") != std::string::npos);
    auto l = loss_records(out + "/metrics.jsonl");
    BOOST_TEST_REQUIRE(l.size() == 5u);
    auto value = [](const std::string& rec) { return std::stod(rec.substr(rec.find("\"loss\":") + 7)); };
    for (size_t i = 0; i < l.size(); i++)
      BOOST_TEST(std::fabs(value(l[i]) - value(ref[5 + i])) / value(ref[5 + i]) < 1e-5, "step " << 6 + i);
    State a = load(dir + "/straight4x1/step-00000010.h5"), b = load(out + "/step-00000010.h5");
    BOOST_TEST(same(a.p, b.p));
    BOOST_TEST(same(a.m, b.m));
  }
}

BOOST_FIXTURE_TEST_CASE(kill_9_during_a_write_leaves_the_previous_checkpoint, Fixture) {
  auto r = train(cfg, 2, 1, dir + "/ref");
  BOOST_TEST_REQUIRE(r.code == 0, r.out);
  const State ref = load(dir + "/ref/step-00000010.h5");
  for (int delay_ms : {50, 300, 700}) {  // how long into the step-6 write the kill lands
    const std::string out = dir + "/killed" + std::to_string(delay_ms);
    fs::create_directories(out);
    // Slow writes (40 ms per block) so the kill lands inside the file; checkpoints at 3, 6, 9.
    const std::string cmd = "STRATA_TEST_SAVE_DELAY_MS=40 timeout 120 " + kMpirun + " -np 2 " + kBin +
                            " train --config " + cfg + " --set parallel.pipeline=2 --set checkpoint.interval=3" +
                            " --set checkpoint.dir=" + out + " > " + out + "/log 2>&1; echo $? > " + out + "/rc";
    BOOST_TEST_REQUIRE(std::system(("(" + cmd + ") &").c_str()) == 0);
    const std::string tmp = out + "/.step-00000006.h5.tmp";
    bool seen = false;
    for (int i = 0; i < 6000 && !seen; i++) {
      seen = fs::exists(tmp);
      if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    BOOST_TEST_REQUIRE(seen, "the step-6 write never started");
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    signal_rank(out, 1, SIGKILL);
    for (int i = 0; i < 3000 && !fs::exists(out + "/rc"); i++)  // mpirun ends the job: every rank is gone
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    BOOST_TEST(test::read_file(out + "/rc") != "0\n", "the killed job must fail");
    BOOST_TEST(!fs::exists(out + "/step-00000006.h5"), "a killed write must not appear complete");
    BOOST_TEST(checkpoint_find_latest(out) == out + "/step-00000003.h5");
    r = train(cfg, 2, 1, out, " --set checkpoint.resume=auto");
    BOOST_TEST_REQUIRE(r.code == 0, r.out);
    BOOST_TEST(r.out.find("resumed from " + out + "/step-00000003.h5") != std::string::npos, r.out);
    State s = load(out + "/step-00000010.h5");
    BOOST_TEST(same(s.p, ref.p), "after kill at +" << delay_ms << " ms");
  }
}

BOOST_FIXTURE_TEST_CASE(bad_files_are_refused_or_bypassed_with_their_message, Fixture) {
  auto r = train(cfg, 2, 1, dir + "/run", " --set checkpoint.interval=3 --set train.steps=6");
  BOOST_TEST_REQUIRE(r.code == 0, r.out);
  const std::string newest = dir + "/run/step-00000006.h5", older = dir + "/run/step-00000003.h5";
  const std::string good = test::read_file(newest);
  auto resume = [&](const std::string& extra = " --set checkpoint.resume=auto") {
    fs::remove_all(dir + "/run/metrics.jsonl");
    return train(cfg, 2, 1, dir + "/run", extra + " --set train.steps=7");
  };
  // Truncated: the newest is skipped with its name, the older one resumes.
  std::ofstream(newest, std::ios::binary | std::ios::trunc) << good.substr(0, good.size() / 2);
  r = resume();
  BOOST_TEST(r.code == 0, r.out);
  BOOST_TEST(r.out.find(newest) != std::string::npos, r.out);
  BOOST_TEST(r.out.find("resumed from " + older) != std::string::npos, r.out);
  // A flipped byte inside block 12's row of a dataset (located with h5py): Fletcher32 names the dataset and tensor.
  fs::remove(dir + "/run/step-00000007.h5");
  std::ofstream(newest, std::ios::binary | std::ios::trunc) << good;
  auto off = test::run(std::string(STRATA_PYTHON) + " -c \"import h5py; f=h5py.File('" + newest +
                       "'); print(f['model/blocks/ffn/w_h'].id.get_chunk_info_by_coord((12, 0, 0)).byte_offset)\"");
  BOOST_TEST_REQUIRE(off.code == 0, off.out);
  std::string bytes = good;
  bytes[std::stoul(off.out) + 100] ^= 0x5a;
  std::ofstream(newest, std::ios::binary | std::ios::trunc) << bytes;
  r = resume();
  BOOST_TEST(r.code == 0, r.out);
  BOOST_TEST(r.out.find("blocks/012/ffn/w_h") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("checksum") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("resumed from " + older) != std::string::npos, r.out);
  // Named explicitly, the corrupt file is an error, not a fallback.
  r = resume(" --set checkpoint.resume=" + newest);
  BOOST_TEST(r.code != 0);
  BOOST_TEST(r.out.find("blocks/012/ffn/w_h") != std::string::npos, r.out);
  // Garbage in latest: bypassed with a message, the newest complete checkpoint resumes.
  fs::remove(dir + "/run/step-00000007.h5");
  std::ofstream(newest, std::ios::binary | std::ios::trunc) << good;
  std::ofstream(dir + "/run/latest", std::ios::trunc) << "\x01\x02garbage";
  r = resume();
  BOOST_TEST(r.code == 0, r.out);
  BOOST_TEST(r.out.find("latest: does not name a checkpoint") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("resumed from " + newest) != std::string::npos, r.out);
}

BOOST_FIXTURE_TEST_CASE(sigusr1_to_one_rank_saves_everywhere_and_exits_0, Fixture) {
  const std::string out = dir + "/sig";
  fs::create_directories(out);
  // Many steps so the signal lands mid-run.
  const std::string cmd = "timeout 120 " + kMpirun + " -np 4 " + kBin + " train --config " + cfg +
                          " --set parallel.pipeline=2 --set parallel.data=2 --set train.steps=100000" +
                          " --set checkpoint.dir=" + out + " > " + out + "/log 2>&1; echo $? > " + out + "/rc";
  BOOST_TEST_REQUIRE(std::system(("(" + cmd + ") &").c_str()) == 0);
  for (int i = 0; i < 6000 && loss_records(out + "/metrics.jsonl").size() < 3; i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  signal_rank(out, 3, SIGUSR1);
  for (int i = 0; i < 6000 && !fs::exists(out + "/rc"); i++) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  BOOST_TEST(test::read_file(out + "/rc") == "0\n", test::read_file(out + "/log"));
  const std::string log = test::read_file(out + "/log");
  BOOST_TEST(log.find("received SIGUSR1: saving at step") != std::string::npos, log);
  const std::string latest = checkpoint_find_latest(out);
  BOOST_TEST_REQUIRE(!latest.empty());
  State s = load(latest);
  BOOST_TEST(s.st.step == int64_t(loss_records(out + "/metrics.jsonl").size()));
  BOOST_TEST(s.st.step < 100000);
}

BOOST_FIXTURE_TEST_CASE(a_nan_in_one_gradient_is_reported_under_every_policy, Fixture) {
  // Rank 2 is stage 1 of (P, D) = (2, 2): blocks 8–15. The NaN goes into block 12's FFN at step 5.
  for (std::string policy : {"abort", "skip", "rollback"}) {
    auto r = train(cfg, 2, 2, dir + "/" + policy, " --set checkpoint.interval=3 --set train.on_nonfinite=" + policy,
                   "STRATA_TEST_NAN=2:5:blocks/012/ffn/w_h");
    const std::string expect =
        "step 5: non-finite gradient first in stage 1, block 12, tensor /model/blocks/ffn/w_h (the row of block 12)";
    BOOST_TEST(r.out.find(expect) != std::string::npos, policy << ": " << r.out);
    if (policy == "abort") {
      BOOST_TEST(r.code != 0);
      BOOST_TEST(!fs::exists(dir + "/abort/step-00000010.h5"));
    } else {
      BOOST_TEST(r.code == 0, r.out);
      State s = load(dir + "/" + policy + "/step-00000010.h5");
      BOOST_TEST(s.st.step == 10);
      for (float x : s.p) BOOST_TEST_REQUIRE(std::isfinite(x));
      if (policy == "skip") BOOST_TEST(s.st.skipped_steps == 1);
      if (policy == "rollback") {
        BOOST_TEST(s.st.lr_scale == 0.5);
        BOOST_TEST(r.out.find("rolled back to " + dir + "/rollback/step-00000003.h5") != std::string::npos);
        BOOST_TEST(s.st.data_cursor == 8u * 12u);  // 10 steps plus the 2 batches left behind (steps 4 and 5)
      }
    }
  }
}

BOOST_FIXTURE_TEST_CASE(stats_file_of_a_96_block_run_has_every_dataset_and_plots, Fixture) {
  std::string c96 = test::read_file(cfg);
  c96.replace(c96.find("layers = 16"), 11, "layers = 96");
  std::ofstream(dir + "/c96.toml") << c96;
  const std::string cfg96 = dir + "/c96.toml", one = dir + "/one", par = dir + "/par";
  auto r = train(cfg96, 1, 1, one, " --set stats.interval=1 --set train.steps=4");
  BOOST_TEST_REQUIRE(r.code == 0, r.out);
  // (2,2) to step 3, then resumed from step 2: row 3 is dropped and written again, never twice.
  r = train(cfg96, 2, 2, par, " --set stats.interval=1 --set train.steps=4 --set checkpoint.interval=2"
                              " --set train.exit_interval=3");
  BOOST_TEST_REQUIRE(r.code == 0, r.out);
  fs::remove(par + "/step-00000003.h5");
  std::ofstream(par + "/latest", std::ios::trunc) << "step-00000002.h5\n";
  r = train(cfg96, 2, 2, par, " --set stats.interval=1 --set train.steps=4 --set checkpoint.resume=auto");
  BOOST_TEST_REQUIRE(r.code == 0, r.out);
  const std::string py = std::string(STRATA_PYTHON) + " -c \"import h5py, numpy as np\n"
      "a=h5py.File('" + one + "/stats.h5'); b=h5py.File('" + par + "/stats.h5')\n"
      "print('steps', list(a['step'][:]), list(b['step'][:]))\n"
      "print('blocks', sorted(a['blocks']) == sorted(b['blocks']), len(a['blocks']))\n"
      "bad=[k for k in a['blocks'] if a['blocks'][k].shape != (4, 96) or b['blocks'][k].shape != (4, 96)]\n"
      "print('shapes', bad)\n"
      "print('finite', all(np.isfinite(a['blocks'][k][:]).all() for k in a['blocks']))\n"
      "d=max(float(np.max(np.abs(a['blocks'][k][:]-b['blocks'][k][:])/(np.abs(a['blocks'][k][:])+1e-12))) for k in a['blocks'])\n"
      "print('maxrel', d)\"";
  r = test::run(py);
  BOOST_TEST_REQUIRE(r.code == 0, r.out);
  BOOST_TEST(r.out.find("steps [1, 2, 3, 4] [1, 2, 3, 4]") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("blocks True 14") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("shapes []") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("finite True") != std::string::npos, r.out);
  const double maxrel = std::stod(r.out.substr(r.out.find("maxrel ") + 7));
  BOOST_TEST(maxrel < 1e-4, "statistics of (2,2) against one process: " << maxrel);
  r = test::run(std::string(STRATA_PYTHON) + " " + STRATA_SOURCE_DIR + "/tools/plot_stats.py " + par +
                "/stats.h5 --out " + dir + "/png");
  BOOST_TEST_REQUIRE(r.code == 0, r.out);
  BOOST_TEST(fs::file_size(dir + "/png/resid_rms.png") > 10000);
  BOOST_TEST(fs::file_size(dir + "/png/loss.png") > 10000);
  r = test::run(kBin + " inspect " + par + "/step-00000004.h5");
  BOOST_TEST(r.code == 0);
  BOOST_TEST(r.out.find("per-layer statistics at step 4") != std::string::npos, r.out.substr(0, 500));
}

// stats.h5 is flushed at every append: kill -9 of the rank that writes it (rank 0), at three points of a run
// that resumes each time from its newest checkpoint, leaves a file that opens with every row up to the last
// logged step; each resume drops the rows past its checkpoint, so at the end every step is there exactly once.
BOOST_FIXTURE_TEST_CASE(stats_file_survives_kill_9_of_its_writer_and_resumes_without_duplicates, Fixture) {
  const std::string out = dir + "/run";
  const std::string common = " --set parallel.pipeline=2 --set stats.interval=1 --set checkpoint.interval=2"
                             " --set checkpoint.resume=auto --set checkpoint.dir=" + out;
  auto stats_steps = [&]() {  // "rows k: s1 s2 …" and whether every block dataset has k finite rows
    auto r = test::run(std::string(STRATA_PYTHON) + " -c \"import h5py, numpy as np\n"
                       "f=h5py.File('" + out + "/stats.h5','r'); n=len(f['step'])\n"
                       "ok=all(f['blocks'][k].shape==(n,16) and np.isfinite(f['blocks'][k][:]).all() for k in f['blocks'])\n"
                       "ok=ok and all(len(f[k])==n for k in ('loss','grad_norm','lr'))\n"
                       "print('consistent', ok); print('steps', *f['step'][:])\"");
    return r;
  };
  int logged_before = 0;
  for (int round = 0; round < 3; round++) {
    fs::remove(out + "/rc");
    const std::string cmd = "timeout 120 " + kMpirun + " -np 2 " + kBin + " train --config " + cfg + common +
                            " --set train.steps=100000 >> " + dir + "/log 2>&1; echo $? > " + out + "/rc";
    fs::create_directories(out);
    BOOST_TEST_REQUIRE(std::system(("(" + cmd + ") &").c_str()) == 0);
    const size_t want = size_t(logged_before + 3 + 2 * round);  // a different point of the run each round
    for (int i = 0; i < 6000 && loss_records(out + "/metrics.jsonl").size() < want; i++)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    signal_rank(out, 0, SIGKILL);
    for (int i = 0; i < 3000 && !fs::exists(out + "/rc"); i++) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    BOOST_TEST_REQUIRE(test::read_file(out + "/rc") != "0\n", "the killed job must fail");
    const auto logged = loss_records(out + "/metrics.jsonl");
    const int last = std::stoi(logged.back().substr(logged.back().find("\"step\":") + 7));
    auto r = stats_steps();
    BOOST_TEST_REQUIRE(r.code == 0, "stats.h5 unreadable after kill -9 in round " << round << ": " << r.out);
    BOOST_TEST(r.out.find("consistent True") != std::string::npos, r.out);
    std::istringstream in(r.out.substr(r.out.find("steps") + 5));
    int s, expect = 1;
    bool consecutive = true;
    while (in >> s) consecutive = consecutive && s == expect++;
    BOOST_TEST(consecutive, "round " << round << ": steps not 1, 2, 3, …: " << r.out);
    BOOST_TEST(expect - 1 >= last, "round " << round << ": stats rows end at " << expect - 1 << ", log at " << last);
    logged_before = last;
  }
  // Finish: resume once more and run to a fixed end; every step 1 … end appears once.
  const int end = logged_before + 4;
  auto r = test::run("timeout 120 " + kMpirun + " -np 2 " + kBin + " train --config " + cfg + common +
                     " --set train.steps=" + std::to_string(end));
  BOOST_TEST_REQUIRE(r.code == 0, r.out);
  r = stats_steps();
  std::string want = "steps";
  for (int s = 1; s <= end; s++) want += " " + std::to_string(s);
  BOOST_TEST(r.out.find(want + "\n") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("consistent True") != std::string::npos, r.out);
}
