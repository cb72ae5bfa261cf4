// stats.cpp: extendable HDF5 datasets for the per-layer statistics.
#include "io/stats.hpp"

#include <filesystem>

#include "core/error.hpp"
#include "io/h5.hpp"

namespace strata {

const std::vector<std::string>& stats_names() {
  static const std::vector<std::string> n = {
      "attn_branch_rms",   "ffn_branch_rms",   "attn_norm_in_rms", "ffn_norm_in_rms", "attn_grad_norm",
      "ffn_grad_norm",     "attn_weight_norm", "ffn_weight_norm",  "attn_update_ratio", "ffn_update_ratio",
      "resid_rms",         "resid_grad_rms",   "attn_entropy",     "max_abs_act"};
  return n;
}

namespace {
const char* kScalars[] = {"/step", "/loss", "/grad_norm", "/lr"};

hid_t make(hid_t f, const std::string& name, hid_t type, int L) {
  const int nd = L > 0 ? 2 : 1;
  hsize_t dims[2] = {0, hsize_t(L)}, maxd[2] = {H5S_UNLIMITED, hsize_t(L)}, chunk[2] = {64, hsize_t(L)};
  if (L > 0) chunk[0] = 16;
  hid_t space = H5Screate_simple(nd, dims, maxd);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_chunk(dcpl, nd, chunk);
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t d = H5Dcreate2(f, name.c_str(), type, space, lcpl, dcpl, H5P_DEFAULT);
  H5Pclose(lcpl);
  H5Pclose(dcpl);
  H5Sclose(space);
  return d;
}
}  // namespace

StatsWriter::StatsWriter(const std::string& path, int L, int64_t keep_until) : path_(path), L_(L) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  if (std::filesystem::exists(path)) {
    file_ = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    if (file_ < 0) fail(path, ": cannot open the statistics file (key stats.file)");
    hid_t d = H5Dopen2(file_, "/step", H5P_DEFAULT);
    if (d < 0) fail(path, ": /step is missing: not a Strata statistics file (key stats.file)");
    hid_t sp = H5Dget_space(d);
    hsize_t n = 0;
    H5Sget_simple_extent_dims(sp, &n, nullptr);
    H5Sclose(sp);
    std::vector<int64_t> steps(n);
    if (n) H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, steps.data());
    H5Dclose(d);
    rows_ = 0;
    while (rows_ < int64_t(n) && steps[rows_] <= keep_until) rows_++;
    hid_t b = H5Dopen2(file_, ("/blocks/" + stats_names()[0]).c_str(), H5P_DEFAULT);
    hsize_t bd[2] = {0, 0};
    if (b >= 0) {
      hid_t bs = H5Dget_space(b);
      H5Sget_simple_extent_dims(bs, bd, nullptr);
      H5Sclose(bs);
      H5Dclose(b);
    }
    STRATA_CHECK(b >= 0 && int(bd[1]) == L, path, ": the statistics file has ", bd[1], " blocks, the model ", L,
                 " (key stats.file)");
    for (const char* s : kScalars) extend(H5Dopen2(file_, s, H5P_DEFAULT), rows_);
    for (auto& s : stats_names()) extend(H5Dopen2(file_, ("/blocks/" + s).c_str(), H5P_DEFAULT), rows_);
    H5Fflush(file_, H5F_SCOPE_LOCAL);
    return;
  }
  file_ = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (file_ < 0) fail(path, ": cannot create the statistics file (key stats.file)");
  H5Dclose(make(file_, "/step", H5T_STD_I64LE, 0));
  for (int i = 1; i < 4; i++) H5Dclose(make(file_, kScalars[i], H5T_IEEE_F64LE, 0));
  for (auto& s : stats_names()) H5Dclose(make(file_, "/blocks/" + s, H5T_IEEE_F32LE, L));
  H5Fflush(file_, H5F_SCOPE_LOCAL);
}

StatsWriter::~StatsWriter() {
  if (file_ >= 0 && H5Fclose(file_) < 0) h5_mark_unclean();
}

void StatsWriter::extend(hid_t d, int64_t rows) {
  if (d < 0) fail(path_, ": a dataset of the statistics file is missing");
  hid_t sp = H5Dget_space(d);
  hsize_t dims[2] = {0, 0};
  const int nd = H5Sget_simple_extent_dims(sp, dims, nullptr);
  H5Sclose(sp);
  dims[0] = hsize_t(rows);
  herr_t r = H5Dset_extent(d, dims);
  H5Dclose(d);
  if (r < 0 || nd < 1) fail(path_, ": resizing a dataset of the statistics file failed");
}

void StatsWriter::append(int64_t step, double loss, double grad_norm, double lr, const std::vector<float>& values) {
  const size_t S = stats_names().size();
  STRATA_CHECK(values.size() == S * size_t(L_), "statistics row of ", values.size(), " values, expected ", S * L_);
  auto row = [&](const std::string& name, hid_t mem, const void* data, int L) {
    hid_t d = H5Dopen2(file_, name.c_str(), H5P_DEFAULT);
    hsize_t dims[2] = {hsize_t(rows_ + 1), hsize_t(L)};
    herr_t r = d < 0 ? -1 : H5Dset_extent(d, dims);
    hid_t fs = H5Dget_space(d);
    hsize_t start[2] = {hsize_t(rows_), 0}, count[2] = {1, hsize_t(L)};
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, nullptr, count, nullptr);
    hid_t ms = H5Screate_simple(L > 0 ? 2 : 1, count, nullptr);
    if (r >= 0) r = H5Dwrite(d, mem, ms, fs, H5P_DEFAULT, data);
    H5Sclose(ms);
    H5Sclose(fs);
    if (H5Dclose(d) < 0) r = -1;  // the close writes the dataset's cached chunks: a full disk shows here
    if (r < 0) fail(path_, ": appending to ", name, " failed", h5_io_reason(), " (key stats.file)");
  };
  row("/step", H5T_NATIVE_INT64, &step, 0);
  row("/loss", H5T_NATIVE_DOUBLE, &loss, 0);
  row("/grad_norm", H5T_NATIVE_DOUBLE, &grad_norm, 0);
  row("/lr", H5T_NATIVE_DOUBLE, &lr, 0);
  for (size_t s = 0; s < S; s++) row("/blocks/" + stats_names()[s], H5T_NATIVE_FLOAT, values.data() + s * L_, L_);
  rows_++;
  if (H5Fflush(file_, H5F_SCOPE_LOCAL) < 0)
    fail(path_, ": writing the statistics of step ", step, " failed", h5_io_reason(), " (key stats.file)");
}

}  // namespace strata
