// test_cli.cpp: every bad input of the issue gives a one-line error naming the file or key and the values,
// a non-zero exit, and nothing overwritten; plus prepare, eval --json, sample and inspect end to end.
#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE cli
#include <boost/test/unit_test.hpp>
#include <filesystem>

#include "test_util.hpp"

using namespace strata;
namespace fs = std::filesystem;

namespace {

const std::string kBin = STRATA_BIN;

// A tiny valid config; `extra` lines are appended to their sections by key.
std::string config_text(const std::string& data, const std::string& ckpt, const std::string& model_extra = "",
                        const std::string& train_extra = "") {
  return "[model]\nlayers = 2\nd_model = 16\nheads = 2\nd_ffn = 32\nseq_len = 8\n" + model_extra +
         "\n[train]\nsteps = 3\nbatch_size = 4\nmicro_batch_size = 2\nthreads = 1\neval_batches = 1\n" + train_extra +
         "\n[data]\ntrain = \"" + data + "/train.bin\"\nval = \"" + data + "/val.bin\"\n[checkpoint]\ndir = \"" + ckpt +
         "\"\n[log]\ninterval = 1\npeak_gflops = 100.0\n";
}

std::string write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

// Runs the command, expects failure with exactly one line of output on stderr that contains every needle.
// `env` (VAR=value ...) precedes the command.
void expect_error(const std::string& args, const std::vector<std::string>& needles, const std::string& env = "") {
  auto r = test::run("(" + env + " " + kBin + " " + args + " 2>&1 1>/dev/null)");  // stderr alone
  BOOST_TEST(r.code != 0, "expected failure: " << args);
  BOOST_TEST(std::count(r.out.begin(), r.out.end(), '\n') == 1, "not one line: " << r.out);
  for (auto& n : needles) BOOST_TEST(r.out.find(n) != std::string::npos, "'" << n << "' not in: " << r.out);
}

struct Fixture {
  std::string dir = test::fresh_dir("cli");
  Fixture() { test::write_text_shards(dir); }
};

}  // namespace

BOOST_FIXTURE_TEST_CASE(bad_configs_are_one_line_errors, Fixture) {
  const std::string ck = dir + "/ck";
  write(dir + "/malformed.toml", "[model]\nlayers = = 3\n");
  expect_error("train --config " + dir + "/malformed.toml", {"malformed.toml:2", "malformed TOML"});
  write(dir + "/unknown.toml", config_text(dir, ck, "colour = \"red\"\n"));
  expect_error("train --config " + dir + "/unknown.toml", {"unknown.toml", "unknown key model.colour"});
  expect_error("train --config " + write(dir + "/ok.toml", config_text(dir, ck)) + " --set model.depth=4",
               {"unknown key model.depth"});
  expect_error("train --config " + dir + "/ok.toml --set model.heads=3",
               {"ok.toml", "model.d_model = 16 is not divisible by model.heads = 3"});
  expect_error("train --config " + dir + "/ok.toml --set train.batch_size=6 --set train.micro_batch_size=4",
               {"train.batch_size = 6 is not divisible by train.micro_batch_size = 4"});
  expect_error("train --config " + dir + "/ok.toml --set model.layers=many", {"model.layers expects an integer",
                                                                                "\"many\""});
  expect_error("train --config " + dir + "/ok.toml --set model.norm=sandwich", {"model.norm = \"sandwich\""});
  // No GPU here: a CUDA build says no device is usable (and why), a CPU-only build that it has no CUDA backend.
  expect_error("train --config " + dir + "/ok.toml --set train.device=cuda", {"ok.toml", "key train.device = \"cuda\""});
  BOOST_TEST(!fs::exists(ck), "a refused run created " << ck);
  // The kernel switches of earlier versions' environment are config keys now: a leftover variable is an error.
  expect_error("train --config " + dir + "/ok.toml --set train.device=cuda",
               {"ok.toml", "environment STRATA_CUDA_ATTENTION = 'mma' is no longer read",
                "config key train.attention_kernel"}, "STRATA_CUDA_ATTENTION=mma");
  expect_error("train --config " + dir + "/ok.toml --set train.device=cuda",
               {"environment STRATA_CUDA_BF16_ACTIVATIONS = '0'", "train.bf16_activations"},
               "STRATA_CUDA_BF16_ACTIVATIONS=0");
  BOOST_TEST(!fs::exists(ck), "a refused run created " << ck);
  expect_error("train --config " + dir + "/missing.toml", {"missing.toml", "cannot open"});
  BOOST_TEST(!fs::exists(ck), "a failed run must not create its checkpoint directory");
}

BOOST_FIXTURE_TEST_CASE(bad_shards_are_one_line_errors, Fixture) {
  const std::string ok = write(dir + "/ok.toml", config_text(dir, dir + "/ck"));
  auto shard_with = [&](const std::string& name, int32_t magic, int32_t version, int32_t count, size_t ntok,
                        uint16_t fill) {
    std::string s(1024, '\0');
    int32_t* h = reinterpret_cast<int32_t*>(s.data());
    h[0] = magic, h[1] = version, h[2] = count;
    for (size_t i = 0; i < ntok; i++) s.append(reinterpret_cast<const char*>(&fill), 2);
    return write(dir + "/" + name, s);
  };
  std::string p = shard_with("magic.bin", 12345, 1, 100, 100, 65);
  expect_error("train --config " + ok + " --set data.train=" + p, {"magic.bin", "magic is 12345", "20240520"});
  p = shard_with("version.bin", 20240520, 7, 100, 100, 65);
  expect_error("train --config " + ok + " --set data.train=" + p, {"version.bin", "version is 7, expected 1"});
  p = shard_with("size.bin", 20240520, 1, 500, 100, 65);
  expect_error("train --config " + ok + " --set data.train=" + p, {"size.bin", "500 tokens", "1224 bytes"});
  p = shard_with("vocab.bin", 20240520, 1, 100, 100, 300);
  expect_error("train --config " + ok + " --set data.train=" + p, {"vocab.bin", "token 300", "model.vocab = 256"});
  expect_error("eval --checkpoint nowhere.h5 --data " + p + " --batches 1 --batch-size 1", {"nowhere.h5"});
}

BOOST_FIXTURE_TEST_CASE(checkpoint_mismatches_are_refused_and_nothing_is_overwritten, Fixture) {
  const std::string ck = dir + "/ck";
  const std::string ok = write(dir + "/ok.toml", config_text(dir, ck));
  auto r = test::run(kBin + " train --config " + ok);
  BOOST_TEST_REQUIRE(r.code == 0, r.out);
  const std::string ckpt = ck + "/step-00000003.h5";
  const std::string before = test::read_file(ckpt), latest = test::read_file(ck + "/latest");
  const std::string metrics = test::read_file(ck + "/metrics.jsonl"), ranks = test::read_file(ck + "/ranks.txt");
  const std::string run = test::read_file(ck + "/run.json"), conf = test::read_file(ck + "/config.toml");
  expect_error("train --config " + ok + " --set checkpoint.resume=auto --set model.norm=post --set train.steps=5",
               {"step-00000003.h5", "model.norm = pre", "model.norm = post"});
  expect_error("train --config " + ok + " --set checkpoint.resume=auto --set model.seq_len=32 --set train.steps=5",
               {"step-00000003.h5", "model.seq_len = 32", "pos_embedding of 8 positions"});
  expect_error("eval --checkpoint " + ckpt + " --data " + dir + "/val.bin --batches 1 --batch-size 1 --seq-len 9",
               {"step-00000003.h5", "--seq-len 9", "pos_embedding of 8 positions"});
  expect_error("train --config " + ok + " --set checkpoint.resume=" + dir + "/none.h5",
               {"checkpoint.resume", "none.h5"});
  BOOST_TEST(test::read_file(ckpt) == before);
  BOOST_TEST(test::read_file(ck + "/latest") == latest);
  BOOST_TEST(test::read_file(ck + "/metrics.jsonl") == metrics);
  BOOST_TEST(test::read_file(ck + "/ranks.txt") == ranks);
  BOOST_TEST(test::read_file(ck + "/run.json") == run);
  BOOST_TEST(test::read_file(ck + "/config.toml") == conf);
  int files = 0;
  for (auto& e : fs::directory_iterator(ck)) files += e.is_regular_file();
  BOOST_TEST(files == 7);  // step-00000003.h5, latest, metrics.jsonl, ranks.txt, run.json, runs.jsonl, config.toml
}

BOOST_FIXTURE_TEST_CASE(config_prints_the_resolved_config_and_single_keys, Fixture) {
  const std::string ok = write(dir + "/ok.toml", config_text(dir, dir + "/ck"));
  auto r = test::run(kBin + " config --config " + ok + " --set parallel.pipeline=4 --get parallel.pipeline");
  BOOST_TEST_REQUIRE(r.code == 0, r.out);
  BOOST_TEST(r.out == "4\n");
  r = test::run(kBin + " config --config " + ok + " --get checkpoint.dir");
  BOOST_TEST(r.out == dir + "/ck\n");
  r = test::run(kBin + " config --config " + ok + " --set model.norm=post");
  BOOST_TEST(r.code == 0);
  BOOST_TEST(r.out.find("norm = \"post\"") != std::string::npos, r.out);
  expect_error("config --config " + ok + " --get model.nothing", {"model.nothing", "no such key"});
  expect_error("config --config " + ok + " --set model.heads=3", {"model.heads = 3"});
}

BOOST_FIXTURE_TEST_CASE(prepare_eval_sample_inspect_end_to_end, Fixture) {
  write(dir + "/text.txt", std::string(5000, 'a') + "the end\n");
  auto r = test::run(kBin + " prepare --text " + dir + "/text.txt --out " + dir + "/prep");
  BOOST_TEST_REQUIRE(r.code == 0, r.out);
  BOOST_TEST(fs::file_size(dir + "/prep/train.bin") == 1024 + 2 * (5008 - 500));
  BOOST_TEST(fs::file_size(dir + "/prep/val.bin") == 1024 + 2 * 500);
  const std::string ok = write(dir + "/ok.toml", config_text(dir, dir + "/ck"));
  BOOST_TEST_REQUIRE(test::run(kBin + " train --config " + ok).code == 0);
  const std::string ckpt = dir + "/ck/step-00000003.h5";
  r = test::run(kBin + " eval --checkpoint " + ckpt + " --data " + dir + "/val.bin --batches 2 --batch-size 3 --json");
  BOOST_TEST_REQUIRE(r.code == 0, r.out);
  BOOST_TEST(r.out.find("\"tokens\": 48") != std::string::npos, r.out);  // 2 · 3 sequences · 8 tokens
  const double loss = std::stod(r.out.substr(r.out.find("\"loss\": ") + 8));
  BOOST_TEST(loss > 0.5);
  BOOST_TEST(loss < 7.0);
  r = test::run(kBin + " sample --checkpoint " + ckpt + " --prompt 'in the' --tokens 20 --seed 3");
  BOOST_TEST_REQUIRE(r.code == 0, r.out);
  BOOST_TEST(r.out.rfind("in the", 0) == 0);
  BOOST_TEST(r.out.size() == 6 + 20 + 1);
  auto again = test::run(kBin + " sample --checkpoint " + ckpt + " --prompt 'in the' --tokens 20 --seed 3");
  BOOST_TEST(again.out == r.out, "sampling with the same seed must repeat");
  r = test::run(kBin + " inspect " + ckpt);
  BOOST_TEST_REQUIRE(r.code == 0, r.out);
  BOOST_TEST(r.out.find("blocks/001/ffn/w_f") != std::string::npos);
  BOOST_TEST(r.out.find("[32, 16]") != std::string::npos);
  BOOST_TEST(r.out.find("step 3") != std::string::npos);
}

BOOST_FIXTURE_TEST_CASE(checkpoint_at_end_false_saves_only_when_asked, Fixture) {
  const std::string ck = dir + "/ck_at_end";
  const std::string cfg = write(dir + "/at_end.toml", config_text(dir, ck));
  auto r = test::run(kBin + " train --config " + cfg + " --set checkpoint.at_end=false");
  BOOST_TEST_REQUIRE(r.code == 0, r.out);
  BOOST_TEST(!fs::exists(ck + "/step-00000003.h5"), "checkpoint.at_end = false wrote a final checkpoint");
  BOOST_TEST(fs::exists(ck + "/metrics.jsonl"));
  // exit_interval still saves (a requeued job must be able to resume). The directory holds the first run's history,
  // so starting over in it is asked for explicitly.
  r = test::run(kBin + " train --config " + cfg +
                " --set checkpoint.at_end=false --set train.exit_interval=2 --set checkpoint.overwrite=true");
  BOOST_TEST_REQUIRE(r.code == 0, r.out);
  BOOST_TEST(fs::exists(ck + "/step-00000002.h5"), r.out);
}
