// eval.cpp: mean loss over contiguous sequences of a shard, and `strata eval`.
#include <cstdio>

#include "core/error.hpp"
#include "core/log.hpp"
#include "data/shard.hpp"
#include "io/checkpoint.hpp"
#include "train/commands.hpp"

namespace strata {

double evaluate(Model& model, const Loader& data, uint64_t nseq, int mb) {
  const int T = model.cfg.seq_len;
  std::vector<int32_t> x(size_t(mb) * T), y(size_t(mb) * T);
  double sum = 0;
  for (uint64_t j = 0; j < nseq; j += mb) {
    const int b = int(std::min<uint64_t>(mb, nseq - j));
    for (int i = 0; i < b; i++) data.eval_sequence(j + i, x.data() + size_t(i) * T, y.data() + size_t(i) * T);
    sum += double(model.forward(x.data(), y.data(), b, T)) * b * T;
  }
  return sum / (double(nseq) * T);
}

void eval_run(const EvalArgs& a) {
  set_threads(a.threads);
  ModelConfig mc = checkpoint_model_config(a.checkpoint);
  const int ckpt_T = mc.seq_len;
  Model model(mc);  // full pos_embedding, as stored
  checkpoint_load(a.checkpoint, model.layout, model.params.data(), nullptr, nullptr, nullptr);
  if (a.seq_len > 0) {
    STRATA_CHECK(a.seq_len <= ckpt_T, a.checkpoint, ": --seq-len ", a.seq_len,
                 " is beyond the checkpoint's pos_embedding of ", ckpt_T, " positions");
    model.cfg.seq_len = a.seq_len;
  }
  const int T = model.cfg.seq_len;
  STRATA_CHECK(a.batches >= 1 && a.batch_size >= 1, "eval: --batches ", a.batches, " and --batch-size ",
               a.batch_size, " must be >= 1");
  Loader data(shard_read(a.data, mc.vocab), T, 0, a.data);
  const uint64_t nseq = uint64_t(a.batches) * a.batch_size;
  STRATA_CHECK(nseq <= data.eval_sequences(), a.data, ": --batches ", a.batches, " × --batch-size ", a.batch_size,
               " = ", nseq, " sequences of ", T, " tokens need ", nseq * T + 1, " tokens; the shard has ",
               data.size());
  const double loss = evaluate(model, data, nseq, a.batch_size);
  if (a.json)
    std::printf("{\"loss\": %.9g, \"tokens\": %llu}\n", loss, static_cast<unsigned long long>(nseq * T));
  else
    std::printf("eval %s on %s: loss %.6f over %llu tokens\n", a.checkpoint.c_str(), a.data.c_str(), loss,
                static_cast<unsigned long long>(nseq * T));
}

}  // namespace strata
