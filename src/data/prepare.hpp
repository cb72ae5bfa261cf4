// prepare.hpp: `strata prepare`: text files → byte tokens → DIR/train.bin and DIR/val.bin.
#pragma once
#include <string>
#include <vector>

namespace strata {

// Concatenates the files' bytes, puts the last val_fraction into val.bin and the rest into train.bin.
void prepare_text(const std::vector<std::string>& files, const std::string& out_dir, double val_fraction);

}  // namespace strata
