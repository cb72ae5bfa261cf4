// h5.cpp: HDF5 C API calls with their errors turned into one-line strata::Error messages.
#include "io/h5.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <exception>

#include "core/error.hpp"
#include "core/files.hpp"

namespace strata {

namespace {

struct Silence {  // HDF5 prints its own error stack by default; we report our own line instead
  Silence() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }
};
void silence() { static Silence s; }

}  // namespace

// The system's reason behind the HDF5 error now on the stack (its file drivers put "errno = 28, error message =
// 'No space left on device'" into a message), as ": reason", or "" when the stack names none.
std::string h5_io_reason() {
  std::string reason;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, [](unsigned, const H5E_error2_t* e, void* out) -> herr_t {
    const std::string d = e->desc ? e->desc : "";
    const auto p = d.find("error message = '");
    auto& r = *static_cast<std::string*>(out);
    if (p != std::string::npos && r.empty()) r = d.substr(p + 17, d.find('\'', p + 17) - (p + 17));
    return 0;
  }, &reason);
  return reason.empty() ? "" : ": " + reason;
}

namespace {
// Handles whose close failed: closing a dataset writes its cached chunks, so a full disk may first show there, in
// a destructor that cannot throw. H5File::close() fails when the count grew while its file was open.
long g_failed_closes = 0;
bool g_unclean = false;  // see h5_unclean()

// Closes any HDF5 handle at scope exit.
struct Handle {
  hid_t id;
  herr_t (*close)(hid_t);
  ~Handle() {
    if (id >= 0 && close(id) < 0) g_failed_closes++;
  }
};

hid_t lcpl() {  // link creation with intermediate groups
  hid_t p = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(p, 1);
  return p;
}

}  // namespace

std::string dims_text(const std::vector<hsize_t>& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); i++) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

H5File::H5File(hid_t id, std::string path) : id_(id), path_(std::move(path)), failed_closes_at_open_(g_failed_closes) {}

H5File H5File::create(const std::string& path) {
  silence();
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  // 1.10 object headers and indexes (h5py and h5dump of Debian 12 read them); metadata in 1 MiB blocks.
  H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110);
  H5Pset_meta_block_size(fapl, 1 << 20);
  hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  H5Pclose(fapl);
  if (f < 0) fail(path, ": cannot create HDF5 file");
  H5File h(f, path);
  h.writeback_fd_ = ::open(path.c_str(), O_RDONLY);  // -1: start_writeback does nothing
  return h;
}

void H5File::start_writeback() {
#ifdef __linux__
  if (writeback_fd_ >= 0) sync_file_range(writeback_fd_, 0, 0, SYNC_FILE_RANGE_WRITE);  // advisory: errors ignored
#endif
}

H5File H5File::create_parallel(const std::string& path, MPI_Comm comm) {
  silence();
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
  H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110);
  H5Pset_meta_block_size(fapl, 1 << 20);
  H5Pset_all_coll_metadata_ops(fapl, true);
  H5Pset_coll_metadata_write(fapl, true);
  hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  H5Pclose(fapl);
  if (f < 0) fail(path, ": cannot create HDF5 file (parallel)");
  H5File h(f, path);
  h.dxpl_ = H5Pcreate(H5P_DATASET_XFER);
  H5Pset_dxpl_mpio(h.dxpl_, H5FD_MPIO_COLLECTIVE);
  MPI_Comm_rank(comm, &h.rank_);
  return h;
}

void H5File::write_raw(hid_t dset, hid_t mem_type, const void* data, bool mine, const std::string& obj) {
  herr_t r;
  if (mine) {
    r = H5Dwrite(dset, mem_type, H5S_ALL, H5S_ALL, dxpl_, data);
  } else {
    Handle fs{H5Dget_space(dset), H5Sclose};
    H5Sselect_none(fs.id);
    Handle ms{H5Scopy(fs.id), H5Sclose};
    H5Sselect_none(ms.id);
    r = H5Dwrite(dset, mem_type, ms.id, fs.id, dxpl_, data);
  }
  if (r < 0) fail(path_, ": writing dataset ", obj, " failed", h5_io_reason());
}

H5File H5File::open(const std::string& path) {
  require_regular_file(path, "HDF5 file");
  silence();
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) fail(path, ": cannot open as an HDF5 file (missing, truncated or not HDF5)");
  return H5File(f, path);
}

bool h5_unclean() { return g_unclean; }
void h5_mark_unclean() { g_unclean = true; }

H5File::~H5File() {
  if (writeback_fd_ >= 0) ::close(writeback_fd_);
  if (id_ >= 0 && dxpl_ != H5P_DEFAULT && std::uncaught_exceptions() > 0) {
    // Unwinding from an error in a parallel file: closing is collective, and the other ranks may be anywhere
    // (waiting in the write this rank left). The file is left open; the process ends through MPI_Abort.
    g_unclean = true;
    return;
  }
  if (dxpl_ != H5P_DEFAULT) H5Pclose(dxpl_);
  if (id_ >= 0 && H5Fclose(id_) < 0) g_unclean = true;
}

void H5File::close() {
  if (id_ < 0) return;
  herr_t a = g_failed_closes != failed_closes_at_open_ ? -1 : H5Fflush(id_, H5F_SCOPE_GLOBAL);
  herr_t b = H5Fclose(id_);
  id_ = -1;
  if (writeback_fd_ >= 0) ::close(writeback_fd_), writeback_fd_ = -1;
  if (dxpl_ != H5P_DEFAULT) H5Pclose(dxpl_), dxpl_ = H5P_DEFAULT;
  if (b < 0) g_unclean = true;
  if (a < 0 || b < 0) fail(path_, ": flushing or closing the HDF5 file failed", h5_io_reason());
}

bool H5File::exists(const std::string& obj) const {
  // Walk the path one link at a time: H5Lexists fails on a missing intermediate group.
  size_t pos = 0;
  while (true) {
    pos = obj.find('/', pos + 1);
    std::string part = obj.substr(0, pos);
    if (H5Lexists(id_, part.c_str(), H5P_DEFAULT) <= 0) return false;
    if (pos == std::string::npos) return true;
  }
}

void H5File::make_group(const std::string& obj) {
  if (exists(obj)) return;
  Handle p{lcpl(), H5Pclose};
  Handle g{H5Gcreate2(id_, obj.c_str(), p.id, H5P_DEFAULT, H5P_DEFAULT), H5Gclose};
  if (g.id < 0) fail(path_, ": cannot create group ", obj);
}

std::vector<hsize_t> H5File::dims(const std::string& obj) const {
  Handle d{H5Dopen2(id_, obj.c_str(), H5P_DEFAULT), H5Dclose};
  if (d.id < 0) fail(path_, ": dataset ", obj, " is missing");
  Handle s{H5Dget_space(d.id), H5Sclose};
  int nd = H5Sget_simple_extent_ndims(s.id);
  if (nd < 0) fail(path_, ": dataset ", obj, " has an unreadable shape");
  std::vector<hsize_t> out(nd);
  H5Sget_simple_extent_dims(s.id, out.data(), nullptr);
  return out;
}

namespace {
void read_typed(hid_t file, const std::string& path, const std::string& obj, hid_t mem_type, void* data,
                const std::vector<hsize_t>& got, const std::vector<hsize_t>& expect) {
  if (got != expect) fail(path, ": dataset ", obj, " has shape ", dims_text(got), ", expected ", dims_text(expect));
  Handle d{H5Dopen2(file, obj.c_str(), H5P_DEFAULT), H5Dclose};
  if (H5Dread(d.id, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    fail(path, ": reading dataset ", obj, " failed (checksum mismatch or truncated file)");
}
}  // namespace

namespace {
// Chunks of about 1 MiB along the first axis of `dims`, whole along the others.
std::vector<hsize_t> mib_chunk(std::vector<hsize_t> dims) {
  hsize_t row = 1;
  for (size_t i = 1; i < dims.size(); i++) row *= dims[i];
  if (!dims.empty()) dims[0] = std::max<hsize_t>(1, std::min<hsize_t>(dims[0], (1u << 18) / std::max<hsize_t>(row, 1)));
  return dims;
}
}  // namespace

hid_t H5File::create_f32(const std::string& obj, const std::vector<hsize_t>& dims, const std::vector<hsize_t>& chunk) {
  Handle space{H5Screate_simple(int(dims.size()), dims.data(), nullptr), H5Sclose};
  Handle dcpl{H5Pcreate(H5P_DATASET_CREATE), H5Pclose};
  if (H5Pset_chunk(dcpl.id, int(chunk.size()), chunk.data()) < 0 || H5Pset_fletcher32(dcpl.id) < 0)
    fail(path_, ": dataset ", obj, ": chunk ", dims_text(chunk), " or Fletcher32 refused");
  H5Pset_obj_track_times(dcpl.id, 0);  // no timestamps: the same state gives the same bytes
  Handle p{lcpl(), H5Pclose};
  hid_t d = H5Dcreate2(id_, obj.c_str(), H5T_IEEE_F32LE, space.id, p.id, dcpl.id, H5P_DEFAULT);
  if (d < 0) fail(path_, ": cannot create dataset ", obj, h5_io_reason());
  return d;
}

void H5File::write_f32(const std::string& obj, const float* data, const std::vector<hsize_t>& dims, bool mine) {
  Handle d{create_f32(obj, dims, mib_chunk(dims)), H5Dclose};
  write_raw(d.id, H5T_NATIVE_FLOAT, data, mine, obj);
}

void H5File::write_f32_rows(const std::string& obj, const float* data, const std::vector<hsize_t>& dims,
                            const std::vector<hsize_t>& rows) {
  std::vector<hsize_t> chunk = mib_chunk(std::vector<hsize_t>(dims.begin() + 1, dims.end()));
  chunk.insert(chunk.begin(), 1);
  Handle d{create_f32(obj, dims, chunk), H5Dclose};
  Handle fs{H5Dget_space(d.id), H5Sclose};
  H5Sselect_none(fs.id);
  std::vector<hsize_t> start(dims.size(), 0), count = dims;
  for (size_t i = 0; i < rows.size();) {  // one hyperslab per run of consecutive rows
    size_t j = i + 1;
    while (j < rows.size() && rows[j] == rows[j - 1] + 1) j++;
    start[0] = rows[i];
    count[0] = j - i;
    if (H5Sselect_hyperslab(fs.id, H5S_SELECT_OR, start.data(), nullptr, count.data(), nullptr) < 0)
      fail(path_, ": dataset ", obj, ": selecting rows ", rows[i], "-", rows[j - 1], " failed");
    i = j;
  }
  std::vector<hsize_t> mdims = dims;
  mdims[0] = std::max<hsize_t>(rows.size(), 1);
  Handle ms{H5Screate_simple(int(mdims.size()), mdims.data(), nullptr), H5Sclose};
  if (rows.empty()) H5Sselect_none(ms.id);
  static const float dummy = 0;
  if (H5Dwrite(d.id, H5T_NATIVE_FLOAT, ms.id, fs.id, dxpl_, rows.empty() ? &dummy : data) < 0)
    fail(path_, ": writing dataset ", obj, " failed", h5_io_reason());
}

void H5File::read_f32_row(const std::string& obj, hsize_t row, float* data, const std::vector<hsize_t>& expect,
                          const std::string& what) const {
  std::vector<hsize_t> got = dims(obj);
  if (got.size() != expect.size() + 1 || !std::equal(expect.begin(), expect.end(), got.begin() + 1))
    fail(path_, ": dataset ", obj, " has shape ", dims_text(got), ", expected [rows, ", dims_text(expect).substr(1),
         " for ", what);
  if (row >= got[0]) fail(path_, ": dataset ", obj, " has ", got[0], " rows, ", what, " is row ", row);
  Handle d{H5Dopen2(id_, obj.c_str(), H5P_DEFAULT), H5Dclose};
  Handle fs{H5Dget_space(d.id), H5Sclose};
  std::vector<hsize_t> start(got.size(), 0), count = got;
  start[0] = row;
  count[0] = 1;
  H5Sselect_hyperslab(fs.id, H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr);
  Handle ms{H5Screate_simple(int(count.size()), count.data(), nullptr), H5Sclose};
  if (H5Dread(d.id, H5T_NATIVE_FLOAT, ms.id, fs.id, H5P_DEFAULT, data) < 0)
    fail(path_, ": reading dataset ", obj, " row ", row, " (", what, ") failed (checksum mismatch or truncated file)");
}

void H5File::read_f32(const std::string& obj, float* data, const std::vector<hsize_t>& expect) const {
  read_typed(id_, path_, obj, H5T_NATIVE_FLOAT, data, dims(obj), expect);
}


void H5File::write_i32(const std::string& obj, const int32_t* data, const std::vector<hsize_t>& dims) {
  Handle space{H5Screate_simple(int(dims.size()), dims.data(), nullptr), H5Sclose};
  Handle p{lcpl(), H5Pclose};
  Handle d{H5Dcreate2(id_, obj.c_str(), H5T_STD_I32LE, space.id, p.id, H5P_DEFAULT, H5P_DEFAULT), H5Dclose};
  if (d.id < 0) fail(path_, ": cannot create dataset ", obj, h5_io_reason());
  write_raw(d.id, H5T_NATIVE_INT32, data, rank_ == 0, obj);
}

void H5File::read_i32(const std::string& obj, int32_t* data, const std::vector<hsize_t>& expect) const {
  read_typed(id_, path_, obj, H5T_NATIVE_INT32, data, dims(obj), expect);
}

void H5File::read_f64(const std::string& obj, double* data, const std::vector<hsize_t>& expect) const {
  read_typed(id_, path_, obj, H5T_NATIVE_DOUBLE, data, dims(obj), expect);
}

void H5File::write_scalar(const std::string& obj, hid_t file_type, hid_t mem_type, const void* v) {
  Handle space{H5Screate(H5S_SCALAR), H5Sclose};
  Handle p{lcpl(), H5Pclose};
  Handle d{H5Dcreate2(id_, obj.c_str(), file_type, space.id, p.id, H5P_DEFAULT, H5P_DEFAULT), H5Dclose};
  if (d.id < 0) fail(path_, ": cannot create dataset ", obj, h5_io_reason());
  write_raw(d.id, mem_type, v, rank_ == 0, obj);
}

void H5File::write_i64(const std::string& obj, int64_t v) { write_scalar(obj, H5T_STD_I64LE, H5T_NATIVE_INT64, &v); }
void H5File::write_f64(const std::string& obj, double v) { write_scalar(obj, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v); }

int64_t H5File::read_i64(const std::string& obj) const {
  Handle d{H5Dopen2(id_, obj.c_str(), H5P_DEFAULT), H5Dclose};
  int64_t v = 0;
  if (d.id < 0 || H5Dread(d.id, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, &v) < 0)
    fail(path_, ": dataset ", obj, " is missing or unreadable");
  return v;
}

namespace {
hid_t string_type(size_t n) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, std::max<size_t>(n, 1));
  H5Tset_strpad(t, H5T_STR_NULLPAD);
  H5Tset_cset(t, H5T_CSET_UTF8);
  return t;
}
std::string read_string_of(hid_t type_src, bool is_attr, const std::string& what, const std::string& path) {
  Handle ft{is_attr ? H5Aget_type(type_src) : H5Dget_type(type_src), H5Tclose};
  if (ft.id < 0 || H5Tget_class(ft.id) != H5T_STRING || H5Tis_variable_str(ft.id) > 0)
    fail(path, ": ", what, " is not a fixed-length string");
  size_t n = H5Tget_size(ft.id);
  std::string s(n, '\0');
  Handle mt{string_type(n), H5Tclose};
  herr_t r = is_attr ? H5Aread(type_src, mt.id, s.data()) : H5Dread(type_src, mt.id, H5S_ALL, H5S_ALL, H5P_DEFAULT, s.data());
  if (r < 0) fail(path, ": reading ", what, " failed");
  s.resize(std::min(s.size(), s.find('\0')));
  return s;
}
}  // namespace

void H5File::write_string(const std::string& obj, const std::string& s) {
  Handle t{string_type(s.size()), H5Tclose};
  Handle space{H5Screate(H5S_SCALAR), H5Sclose};
  Handle p{lcpl(), H5Pclose};
  Handle d{H5Dcreate2(id_, obj.c_str(), t.id, space.id, p.id, H5P_DEFAULT, H5P_DEFAULT), H5Dclose};
  if (d.id < 0) fail(path_, ": cannot create dataset ", obj, h5_io_reason());
  write_raw(d.id, t.id, s.data(), rank_ == 0, obj);
}

std::string H5File::read_string(const std::string& obj) const {
  Handle d{H5Dopen2(id_, obj.c_str(), H5P_DEFAULT), H5Dclose};
  if (d.id < 0) fail(path_, ": dataset ", obj, " is missing");
  return read_string_of(d.id, false, "dataset " + obj, path_);
}

namespace {
template <class F>
void with_attr_write(hid_t file, const std::string& path, const std::string& obj, const std::string& name, hid_t type,
                     F&& write) {
  Handle o{H5Oopen(file, obj.c_str(), H5P_DEFAULT), H5Oclose};
  if (o.id < 0) fail(path, ": object ", obj, " is missing");
  if (H5Aexists(o.id, name.c_str()) > 0) H5Adelete(o.id, name.c_str());
  Handle space{H5Screate(H5S_SCALAR), H5Sclose};
  Handle a{H5Acreate2(o.id, name.c_str(), type, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose};
  if (a.id < 0 || write(a.id) < 0) fail(path, ": writing attribute ", obj, "@", name, " failed");
}
Handle attr_open(hid_t file, const std::string& path, const std::string& obj, const std::string& name) {
  Handle o{H5Oopen(file, obj.c_str(), H5P_DEFAULT), H5Oclose};
  if (o.id < 0) fail(path, ": object ", obj, " is missing");
  hid_t a = H5Aopen(o.id, name.c_str(), H5P_DEFAULT);
  if (a < 0) fail(path, ": attribute ", obj, "@", name, " is missing");
  return Handle{a, H5Aclose};
}
}  // namespace

void H5File::attr_string(const std::string& obj, const std::string& name, const std::string& v) {
  Handle t{string_type(v.size()), H5Tclose};
  with_attr_write(id_, path_, obj, name, t.id, [&](hid_t a) { return H5Awrite(a, t.id, v.data()); });
}
void H5File::attr_i64(const std::string& obj, const std::string& name, int64_t v) {
  with_attr_write(id_, path_, obj, name, H5T_STD_I64LE, [&](hid_t a) { return H5Awrite(a, H5T_NATIVE_INT64, &v); });
}
void H5File::attr_f64(const std::string& obj, const std::string& name, double v) {
  with_attr_write(id_, path_, obj, name, H5T_IEEE_F64LE, [&](hid_t a) { return H5Awrite(a, H5T_NATIVE_DOUBLE, &v); });
}
void H5File::attr_i64s(const std::string& obj, const std::string& name, const std::vector<int64_t>& v) {
  Handle o{H5Oopen(id_, obj.c_str(), H5P_DEFAULT), H5Oclose};
  if (o.id < 0) fail(path_, ": object ", obj, " is missing");
  const hsize_t n = v.size();
  Handle space{H5Screate_simple(1, &n, nullptr), H5Sclose};
  Handle a{H5Acreate2(o.id, name.c_str(), H5T_STD_I64LE, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose};
  if (a.id < 0 || H5Awrite(a.id, H5T_NATIVE_INT64, v.data()) < 0)
    fail(path_, ": writing attribute ", obj, "@", name, " failed", h5_io_reason());
}
bool H5File::has_attr(const std::string& obj, const std::string& name) const {
  return H5Aexists_by_name(id_, obj.c_str(), name.c_str(), H5P_DEFAULT) > 0;
}
std::vector<int64_t> H5File::attr_i64s(const std::string& obj, const std::string& name) const {
  Handle a = attr_open(id_, path_, obj, name);
  Handle s{H5Aget_space(a.id), H5Sclose};
  const hssize_t n = H5Sget_simple_extent_npoints(s.id);
  std::vector<int64_t> v(size_t(std::max<hssize_t>(n, 0)));
  if (n < 0 || H5Aread(a.id, H5T_NATIVE_INT64, v.data()) < 0)
    fail(path_, ": reading attribute ", obj, "@", name, " failed");
  return v;
}
std::string H5File::attr_string(const std::string& obj, const std::string& name) const {
  Handle a = attr_open(id_, path_, obj, name);
  return read_string_of(a.id, true, "attribute " + obj + "@" + name, path_);
}
int64_t H5File::attr_i64(const std::string& obj, const std::string& name) const {
  Handle a = attr_open(id_, path_, obj, name);
  int64_t v = 0;
  if (H5Aread(a.id, H5T_NATIVE_INT64, &v) < 0) fail(path_, ": reading attribute ", obj, "@", name, " failed");
  return v;
}
double H5File::attr_f64(const std::string& obj, const std::string& name) const {
  Handle a = attr_open(id_, path_, obj, name);
  double v = 0;
  if (H5Aread(a.id, H5T_NATIVE_DOUBLE, &v) < 0) fail(path_, ": reading attribute ", obj, "@", name, " failed");
  return v;
}

}  // namespace strata
