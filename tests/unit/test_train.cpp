// test_train.cpp: training-state exactness: 2N straight steps equal N steps, resume, N steps, bit for bit
// (weights, both moments, data cursor, every logged loss); the same seed gives the same bits; training lowers
// the loss on learnable text.
#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE train
#include <boost/test/unit_test.hpp>
#include <cstring>

#include "core/log.hpp"
#include "io/checkpoint.hpp"
#include "model/layout.hpp"
#include "test_util.hpp"
#include "train/commands.hpp"

using namespace strata;

struct MpiEnv {  // train_run runs on MPI_COMM_WORLD (a singleton here)
  MpiEnv() { MPI_Init(nullptr, nullptr); }
  ~MpiEnv() { MPI_Finalize(); }
};
BOOST_TEST_GLOBAL_FIXTURE(MpiEnv);

namespace {

Config small_config(const std::string& data, const std::string& ckpt, const std::string& norm) {
  Config c;
  c.source = "test";
  c.model.layers = 3;
  c.model.d_model = 32;
  c.model.heads = 4;
  c.model.d_ffn = 64;
  c.model.seq_len = 16;
  c.model.norm = norm;
  c.train.steps = 8;
  c.train.batch_size = 4;
  c.train.micro_batch_size = 2;  // exercises gradient accumulation
  c.train.lr = 3e-3;
  c.train.min_lr = 3e-4;
  c.train.warmup_steps = 2;
  c.train.threads = 2;
  c.train.eval_batches = 2;
  c.data.train = data + "/train.bin";
  c.data.val = data + "/val.bin";
  c.checkpoint.dir = ckpt;
  c.log.interval = 1;
  c.log.peak_gflops = 100;
  return c;
}

struct Snapshot {
  std::vector<float> p, m, v;
  TrainState st;
};

Snapshot load(const std::string& path, const ModelConfig& mc) {
  ParamLayout l = layout_build(mc);
  Snapshot s{std::vector<float>(l.total), std::vector<float>(l.total), std::vector<float>(l.total), {}};
  checkpoint_load(path, l, s.p.data(), s.m.data(), s.v.data(), &s.st);
  return s;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// The "loss" of each training record in a metrics file, in order.
std::vector<std::string> losses(const std::string& metrics) {
  std::vector<std::string> out;
  std::istringstream in(test::read_file(metrics));
  std::string line;
  while (std::getline(in, line)) {
    auto p = line.find("\"loss\":");
    if (p != std::string::npos) out.push_back(line.substr(0, line.find(",\"lr\"")));
  }
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(two_n_steps_equal_n_resume_n_bit_for_bit) {
  const std::string root = test::fresh_dir("resume");
  test::write_text_shards(root);
  for (const char* norm : {"pre", "post"}) {
    Config straight = small_config(root, root + "/straight_" + norm, norm);
    train_run(straight);
    Config first = small_config(root, root + "/split_" + norm, norm);
    first.train.exit_interval = 4;  // stops after step 4 with a checkpoint
    train_run(first);
    BOOST_TEST(checkpoint_find_latest(first.checkpoint.dir) == first.checkpoint.dir + "/step-00000004.h5");
    Config second = small_config(root, root + "/split_" + norm, norm);
    second.checkpoint.resume = "auto";
    train_run(second);

    Snapshot a = load(straight.checkpoint.dir + "/step-00000008.h5", straight.model);
    Snapshot b = load(second.checkpoint.dir + "/step-00000008.h5", second.model);
    BOOST_TEST(same_bits(a.p, b.p), norm << ": weights differ after resume");
    BOOST_TEST(same_bits(a.m, b.m), norm << ": first moments differ after resume");
    BOOST_TEST(same_bits(a.v, b.v), norm << ": second moments differ after resume");
    BOOST_TEST(a.st.data_cursor == b.st.data_cursor);
    BOOST_TEST(a.st.data_cursor == 8u * 4u);
    BOOST_TEST(a.st.tokens_seen == b.st.tokens_seen);
    auto la = losses(straight.checkpoint.dir + "/metrics.jsonl"), lb = losses(second.checkpoint.dir + "/metrics.jsonl");
    BOOST_TEST(la.size() == 8u);
    BOOST_TEST(la == lb, norm << ": per-step losses differ after resume");
    // The weights moved: the test compares trained states, not two copies of the init.
    Snapshot s4 = load(first.checkpoint.dir + "/step-00000004.h5", first.model);
    BOOST_TEST(!same_bits(s4.p, b.p));
  }
}

BOOST_AUTO_TEST_CASE(same_seed_same_bits_and_training_lowers_loss) {
  const std::string root = test::fresh_dir("determinism");
  test::write_text_shards(root);
  Config a = small_config(root, root + "/a", "pre"), b = small_config(root, root + "/b", "pre");
  a.train.steps = b.train.steps = 60;
  a.train.eval_batches = b.train.eval_batches = 0;
  train_run(a);
  train_run(b);
  Snapshot sa = load(a.checkpoint.dir + "/step-00000060.h5", a.model);
  Snapshot sb = load(b.checkpoint.dir + "/step-00000060.h5", b.model);
  BOOST_TEST(same_bits(sa.p, sb.p));
  auto l = losses(a.checkpoint.dir + "/metrics.jsonl");
  BOOST_TEST_REQUIRE(l.size() == 60u);
  auto value = [](const std::string& rec) { return std::stod(rec.substr(rec.find("\"loss\":") + 7)); };
  BOOST_TEST(value(l.front()) > 5.0);  // ≈ ln 256 at init
  BOOST_TEST(value(l.back()) < 3.0);   // nine repeated words are easy to learn
}

BOOST_AUTO_TEST_CASE(keep_prunes_old_checkpoints_and_latest_names_the_newest) {
  const std::string root = test::fresh_dir("keep");
  test::write_text_shards(root);
  Config c = small_config(root, root + "/ckpt", "pre");
  c.train.steps = 5;
  c.checkpoint.interval = 1;
  c.checkpoint.keep = 2;
  train_run(c);
  int n = 0;
  for (auto& e : std::filesystem::directory_iterator(c.checkpoint.dir))
    if (e.path().extension() == ".h5") n++;
  BOOST_TEST(n == 2);
  BOOST_TEST(std::filesystem::exists(c.checkpoint.dir + "/step-00000004.h5"));
  BOOST_TEST(test::read_file(c.checkpoint.dir + "/latest") == "step-00000005.h5\n");
}
