// prepare.cpp: byte-level tokenisation (vocab 256) of text files into llm.c shards.
#include "data/prepare.hpp"

#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/error.hpp"
#include "core/log.hpp"
#include "data/shard.hpp"

namespace strata {

void prepare_text(const std::vector<std::string>& files, const std::string& out_dir, double val_fraction) {
  STRATA_CHECK(!files.empty(), "prepare: no --text files given");
  STRATA_CHECK(val_fraction > 0 && val_fraction < 1, "prepare: --val-fraction = ", val_fraction,
               " must be in (0, 1)");
  std::vector<uint16_t> tok;
  for (auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) fail(f, ": cannot open text file");
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (unsigned char c : bytes) tok.push_back(c);
  }
  const size_t nval = size_t(double(tok.size()) * val_fraction);
  STRATA_CHECK(nval >= 2 && tok.size() - nval >= 2, "prepare: ", tok.size(), " bytes are too few to split");
  std::filesystem::create_directories(out_dir);
  const size_t ntrain = tok.size() - nval;
  shard_write(out_dir + "/train.bin", tok.data(), ntrain);
  shard_write(out_dir + "/val.bin", tok.data() + ntrain, nval);
  log_info(str("prepare: ", tok.size(), " bytes → ", out_dir, "/train.bin (", ntrain, " tokens), ", out_dir,
               "/val.bin (", nval, " tokens)"));
}

}  // namespace strata
