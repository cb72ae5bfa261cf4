// test_config.cpp: TOML loading, --set overrides, type errors and the resolved-config round trip.
#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE config
#include <boost/test/unit_test.hpp>

#include "config/config.hpp"
#include "core/error.hpp"

using namespace strata;

BOOST_AUTO_TEST_CASE(overrides_apply_in_order_and_round_trip) {
  Config c = config_parse("[model]\nlayers = 6\nnorm = \"post\"\n[train]\nlr = 0.002\n", "t.toml",
                          {"model.layers=12", "model.norm=peri", "train.lr=1e-4", "model.layers=24",
                           "checkpoint.dir=runs/a b", "model.res_post_zero_gain=true"});
  BOOST_TEST(c.model.layers == 24);
  BOOST_TEST(c.model.norm == "peri");
  BOOST_TEST(c.train.lr == 1e-4);
  BOOST_TEST(c.checkpoint.dir == "runs/a b");
  BOOST_TEST(c.model.res_post_zero_gain);
  Config back = config_parse(config_to_toml(c), "resolved");
  BOOST_TEST(config_to_toml(back) == config_to_toml(c));
  BOOST_TEST(back.train.lr == c.train.lr);
  BOOST_TEST(back.model.ln_eps == 1e-5);
}

// The GPU kernel choices that change the numbers are keys of the resolved config (stored in every checkpoint).
BOOST_AUTO_TEST_CASE(gpu_kernel_keys_round_trip) {
  Config d = config_parse("", "t.toml");
  BOOST_TEST(d.train.attention_kernel == "wmma");
  BOOST_TEST(d.train.bf16_activations);
  Config c = config_parse("[train]\ndevice = \"cuda\"\nprecision = \"bf16\"\n", "t.toml",
                          {"train.attention_kernel=mma", "train.bf16_activations=false"});
  const std::string text = config_to_toml(c);
  BOOST_TEST(text.find("attention_kernel = \"mma\"\n") != std::string::npos, text);
  BOOST_TEST(text.find("bf16_activations = false\n") != std::string::npos, text);
  Config back = config_parse(text, "resolved");
  BOOST_TEST(back.train.attention_kernel == "mma");
  BOOST_TEST(!back.train.bf16_activations);
}

BOOST_AUTO_TEST_CASE(init_section_and_mix_round_trip) {
  Config c = config_parse("[model]\nnorm = \"mix\"\nmix_post_fraction = 0.5\n[init]\nscheme = \"xavier\"\n", "t.toml",
                          {"init.scheme=deepnet"});
  BOOST_TEST(c.model.norm == "mix");
  BOOST_TEST(c.model.mix_post_fraction == 0.5);
  BOOST_TEST(c.model.init_scheme == "deepnet");
  const std::string text = config_to_toml(c);
  BOOST_TEST(text.find("[init]\nscheme = \"deepnet\"\n") != std::string::npos, text);
  BOOST_TEST(config_to_toml(config_parse(text, "resolved")) == text);
  BOOST_TEST(config_parse("", "t.toml").model.init_scheme == "");
}

BOOST_AUTO_TEST_CASE(errors_name_file_key_and_value) {
  auto msg = [](const std::string& text, std::vector<std::string> ov = {}) {
    try {
      config_parse(text, "x.toml", ov);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  BOOST_TEST(msg("[model]\nlayers = 2.5\n") == "x.toml: key model.layers expects an integer, got 2.5");
  BOOST_TEST(msg("[modle]\n") == "x.toml: unknown section [modle]");
  BOOST_TEST(msg("[train]\nsteps = 10\nbatch_size = 8\nmicro_batch_size = 3\n") ==
             "x.toml: train.batch_size = 8 is not divisible by train.micro_batch_size = 3");
  BOOST_TEST(msg("", {"model"}) == "x.toml: --set 'model' is not of the form section.key=value");
  BOOST_TEST(msg("", {"train.lr=-1"}).find("train.lr = -1") != std::string::npos);
  BOOST_TEST(msg("[model]\nmix_post_fraction = 1.5\n") ==
             "x.toml: key model.mix_post_fraction = 1.5 must be in [0, 1]");
  BOOST_TEST(msg("", {"model.mix_post_fraction=-0.25"}) ==
             "x.toml: key model.mix_post_fraction = -0.25 must be in [0, 1]");
  BOOST_TEST(msg("[init]\nscheme = \"kaiming\"\n") ==
             "x.toml: key init.scheme = \"kaiming\" is not one of gpt2, normal, xavier, deepnet");
  BOOST_TEST(msg("", {"model.norm=sandwich"}) ==
             "x.toml: key model.norm = \"sandwich\" is not one of post, res_post, pre, peri, deepnorm, mix");
  BOOST_TEST(msg("", {"train.device=tpu"}) == "x.toml: key train.device = \"tpu\" is not one of cpu, cuda");
  BOOST_TEST(msg("", {"train.precision=fp16"}) == "x.toml: key train.precision = \"fp16\" is not one of fp32, bf16");
  BOOST_TEST(msg("", {"train.precision=bf16"}) ==
             "x.toml: key train.precision = \"bf16\" needs train.device = \"cuda\" (train.device = \"cpu\" computes "
             "in fp32)");
  BOOST_TEST(msg("", {"parallel.transport=nccl"}) ==
             "x.toml: key parallel.transport = \"nccl\" moves GPU buffers: it needs train.device = \"cuda\" "
             "(train.device = \"cpu\")");
  BOOST_TEST(msg("", {"parallel.transport=gloo"}) == "x.toml: key parallel.transport = \"gloo\" is not one of mpi, nccl");
  BOOST_TEST(msg("", {"train.attention=fused"}) ==
             "x.toml: key train.attention = \"fused\" needs train.device = \"cuda\" (train.device = \"cpu\" keeps "
             "the probabilities)");
  BOOST_TEST(msg("", {"train.device=cuda", "parallel.transport=nccl", "parallel.schedule=interleaved",
                      "parallel.virtual_stages=2"}) ==
             "x.toml: key parallel.transport = \"nccl\" with parallel.pipeline = 1 and parallel.virtual_stages = 2: the "
             "chunks would send to their own rank; use parallel.transport = \"mpi\"");
  BOOST_TEST(msg("", {"train.attention=sdpa"}) == "x.toml: key train.attention = \"sdpa\" is not one of auto, fused, unfused");
  BOOST_TEST(msg("", {"train.device=cuda", "train.precision=bf16", "parallel.transport=nccl", "train.attention=fused"}) ==
             "no error");
  // The bf16 attention kernel: the mma.sync kernels run fused bf16 attention of head sizes 16, 32 and 64 only.
  const std::vector<std::string> bf16 = {"train.device=cuda", "train.precision=bf16"};
  auto with = [](std::vector<std::string> a, std::vector<std::string> b) { a.insert(a.end(), b.begin(), b.end()); return a; };
  BOOST_TEST(msg("", with(bf16, {"train.attention_kernel=flash"})) ==
             "x.toml: key train.attention_kernel = \"flash\" is not one of wmma, mma");
  BOOST_TEST(msg("", {"train.device=cuda", "train.attention_kernel=mma"}) ==
             "x.toml: key train.attention_kernel = \"mma\" is bf16 tensor-core attention: it needs train.precision = "
             "\"bf16\" (train.precision = \"fp32\")");
  BOOST_TEST(msg("", with(bf16, {"train.attention_kernel=mma", "train.attention=unfused"})) ==
             "x.toml: key train.attention_kernel = \"mma\" is fused attention: it needs train.attention = \"auto\" or "
             "\"fused\" (train.attention = \"unfused\")");
  BOOST_TEST(msg("", with(bf16, {"train.attention_kernel=mma", "model.d_model=512"})) ==
             "x.toml: key train.attention_kernel = \"mma\" needs a head size of 16, 32 or 64 (model.d_model / "
             "model.heads = 512 / 4 = 128)");
  BOOST_TEST(msg("", with(bf16, {"train.attention_kernel=mma"})) == "no error");  // 256 / 4 = 64
  BOOST_TEST(msg("", {"train.recompute=some"}) ==
             "x.toml: key train.recompute = \"some\" is not one of none, selective, full");
  BOOST_TEST(msg("", {"parallel.zero=2"}) == "x.toml: key parallel.zero = 2 is not 0 (every replica keeps the whole "
                                             "optimizer state) or 1 (ZeRO-1: sharded over the replicas)");
  BOOST_TEST(msg("", {"parallel.grad_bucket_mb=-1"}) ==
             "x.toml: key parallel.grad_bucket_mb = -1 must be >= 0 (0: reduce the gradients after the backward)");
  BOOST_TEST(msg("", {"train.recompute=full", "parallel.zero=1", "parallel.grad_bucket_mb=25"}) == "no error");
  BOOST_TEST(msg("", {"train.bf16_activations=1"}) == "x.toml: key train.bf16_activations expects true or false, got 1");
}
