// test_reference.cpp: for every norm placement (and each activation and init scheme), the loss and every
// parameter gradient of Strata's float32 model against the float64 PyTorch reference (torch_ref.py) on the
// same HDF5 weights: loss within 1e-5 relative, each gradient within 1e-4 as ‖ours − ref‖/‖ref‖.
#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE reference
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <random>
#include <sstream>

#include "io/checkpoint.hpp"
#include "io/h5.hpp"
#include "model/model.hpp"
#include "test_util.hpp"

using namespace strata;
namespace bdata = boost::unit_test::data;

namespace {

struct Case {
  std::string norm, activation;
  int layers = 3;
  double mix_post_fraction = 0.25;
  std::string init;  // init.scheme; a case naming one keeps its initial weights, the others move the 1-D ones
  std::string name() const {
    std::ostringstream os;
    os << norm << "_" << activation << "_L" << layers;
    if (norm == "mix") os << "_f" << mix_post_fraction;
    if (!init.empty()) os << "_" << init;
    return os.str();
  }
};
std::ostream& operator<<(std::ostream& os, const Case& c) { return os << c.name(); }

const std::vector<Case> kCases = {
    {"post", "gelu_tanh", 3, 0.25, ""}, {"res_post", "gelu_tanh", 3, 0.25, ""}, {"pre", "gelu_tanh", 3, 0.25, ""},
    {"peri", "gelu_tanh", 3, 0.25, ""}, {"deepnorm", "gelu_tanh", 3, 0.25, ""}, {"pre", "gelu", 3, 0.25, ""},
    {"post", "relu", 3, 0.25, ""},
    // mix at L = 4: 1 post-norm block (the default f = 0.25), then 2
    {"mix", "gelu_tanh", 4, 0.25, ""}, {"mix", "gelu_tanh", 4, 0.5, ""},
    // each init scheme's own initial weights
    {"pre", "gelu_tanh", 3, 0.25, "gpt2"}, {"post", "gelu_tanh", 3, 0.25, "normal"},
    {"mix", "gelu_tanh", 4, 0.5, "xavier"}, {"deepnorm", "gelu_tanh", 3, 0.25, "deepnet"},
    {"pre", "gelu_tanh", 3, 0.25, "deepnet"}};

}  // namespace

BOOST_DATA_TEST_CASE(loss_and_gradients_match_pytorch_float64, bdata::make(kCases), c) {
  Config cfg;
  cfg.model.layers = c.layers;
  cfg.model.d_model = 16;
  cfg.model.heads = 2;
  cfg.model.d_ffn = 24;
  cfg.model.seq_len = 8;
  cfg.model.vocab = 256;
  cfg.model.norm = c.norm;
  cfg.model.activation = c.activation;
  cfg.model.mix_post_fraction = c.mix_post_fraction;
  cfg.model.init_scheme = c.init;
  Model model(cfg.model);
  model.init(7);
  // Move every LayerNorm gain and bias and every linear bias away from 1 and 0 so their gradients matter.
  std::mt19937_64 g(11);
  std::normal_distribution<float> nd(0.0f, 0.2f);
  for (const TensorSpec& t : model.layout.tensors)
    if (t.shape.size() == 1 && c.init.empty())
      for (size_t i = 0; i < t.size; i++) model.params[t.offset + i] += nd(g);
  const int B = 3, T = 8;
  std::vector<int32_t> x(B * T), y(B * T);
  std::uniform_int_distribution<int> tokd(0, 255);
  for (int i = 0; i < B * T; i++) x[i] = tokd(g), y[i] = tokd(g);
  model.zero_grad();
  const float loss = model.forward(x.data(), y.data(), B, T);
  model.backward(x.data(), y.data(), B, T, 1.0f / (B * T));

  const std::string dir = test::fresh_dir("reference_" + c.name());
  CheckpointView cv{&cfg, &model.layout, model.params.data(), nullptr, nullptr, {}};
  checkpoint_write_file(dir + "/ckpt.h5", cv);
  {
    H5File bf = H5File::create(dir + "/batch.h5");
    bf.write_i32("/tokens", x.data(), {B, T});
    bf.write_i32("/targets", y.data(), {B, T});
    bf.close();
  }
  const std::string cmd = std::string(STRATA_PYTHON) + " " + STRATA_SOURCE_DIR + "/tests/reference/torch_ref.py" +
                          " --checkpoint " + dir + "/ckpt.h5 --batch " + dir + "/batch.h5 --out " + dir + "/ref.h5";
  auto r = test::run(cmd);
  BOOST_TEST_REQUIRE(r.code == 0, "torch_ref.py failed: " << r.out);

  H5File ref = H5File::open(dir + "/ref.h5");
  double ref_loss = 0;
  ref.read_f64("/loss", &ref_loss, {});
  BOOST_TEST(std::fabs(loss - ref_loss) / std::fabs(ref_loss) < 1e-5, "loss " << loss << " vs torch " << ref_loss);
  double worst = 0;
  std::string worst_name;
  for (const TensorSpec& t : model.layout.tensors) {
    std::vector<double> rg(t.size);
    ref.read_f64("/grad/" + t.name, rg.data(), std::vector<hsize_t>(t.shape.begin(), t.shape.end()));
    double diff = 0, norm = 0;
    for (size_t i = 0; i < t.size; i++) {
      const double o = model.grads[t.offset + i];
      diff += (o - rg[i]) * (o - rg[i]);
      norm += rg[i] * rg[i];
    }
    BOOST_TEST_REQUIRE(norm > 0, t.name << " has a zero reference gradient: the test would prove nothing");
    const double rel = std::sqrt(diff / norm);
    BOOST_TEST(rel < 1e-4, t.name << ": ‖ours − ref‖/‖ref‖ = " << rel);
    if (rel > worst) worst = rel, worst_name = t.name;
  }
  BOOST_TEST_MESSAGE(c << ": loss " << loss << " vs " << ref_loss << ", worst gradient " << worst_name << " "
                       << worst);
}
