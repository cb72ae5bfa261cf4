// h5.hpp: a thin RAII layer over the HDF5 C API: files, float/int datasets (chunked, Fletcher32),
// scalar and string attributes. Every failure throws strata::Error naming the file and object.
#pragma once
#include <hdf5.h>
#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace strata {

class H5File {
 public:
  static H5File create(const std::string& path);  // truncates
  // Every rank of comm creates the same file through MPI-IO; from then on every call is collective: all ranks
  // make the same calls in the same order. Raw data is written by the ranks that pass `mine` (others write
  // nothing), scalars and strings by rank 0.
  static H5File create_parallel(const std::string& path, MPI_Comm comm);
  static H5File open(const std::string& path);    // read-only
  H5File(H5File&& o) noexcept
      : id_(o.id_), path_(std::move(o.path_)), dxpl_(o.dxpl_), rank_(o.rank_), writeback_fd_(o.writeback_fd_),
        failed_closes_at_open_(o.failed_closes_at_open_) {
    o.id_ = -1;
    o.dxpl_ = H5P_DEFAULT;
    o.writeback_fd_ = -1;
  }
  H5File& operator=(H5File&&) = delete;
  ~H5File();
  void close();  // flushes and closes; throws on failure
  // Starts the kernel writing this file's dirty pages to disk without waiting (Linux sync_file_range), so the
  // final fsync overlaps with the rest of the write instead of following it. Files made by create() only.
  void start_writeback();
  hid_t id() const { return id_; }
  const std::string& path() const { return path_; }

  bool exists(const std::string& obj) const;
  std::vector<hsize_t> dims(const std::string& obj) const;
  // Datasets (intermediate groups created). Floats are chunked with the Fletcher32 checksum.
  void write_f32(const std::string& obj, const float* data, const std::vector<hsize_t>& dims, bool mine = true);
  void read_f32(const std::string& obj, float* data, const std::vector<hsize_t>& expect) const;
  // A stack of equally shaped tensors, dims = [rows, shape…], chunked one row at a time (a row over 1 MiB split
  // along its first axis) with the Fletcher32 checksum. This call writes `rows` (row indices, ascending) from
  // data, their values one after another; in a parallel file every rank calls it with its own rows (or none).
  void write_f32_rows(const std::string& obj, const float* data, const std::vector<hsize_t>& dims,
                      const std::vector<hsize_t>& rows);
  // Reads row `row` of such a stack, checking the row's shape; `what` names the row in errors.
  void read_f32_row(const std::string& obj, hsize_t row, float* data, const std::vector<hsize_t>& expect,
                    const std::string& what) const;
  void write_i32(const std::string& obj, const int32_t* data, const std::vector<hsize_t>& dims);
  void read_i32(const std::string& obj, int32_t* data, const std::vector<hsize_t>& expect) const;
  void read_f64(const std::string& obj, double* data, const std::vector<hsize_t>& expect) const;  // [] = scalar
  void write_i64(const std::string& obj, int64_t v);
  void write_f64(const std::string& obj, double v);
  int64_t read_i64(const std::string& obj) const;
  void write_string(const std::string& obj, const std::string& s);
  std::string read_string(const std::string& obj) const;
  // Attributes on an existing object (a group or dataset).
  void attr_string(const std::string& obj, const std::string& name, const std::string& v);
  void attr_i64(const std::string& obj, const std::string& name, int64_t v);
  void attr_f64(const std::string& obj, const std::string& name, double v);
  void attr_i64s(const std::string& obj, const std::string& name, const std::vector<int64_t>& v);
  bool has_attr(const std::string& obj, const std::string& name) const;
  std::vector<int64_t> attr_i64s(const std::string& obj, const std::string& name) const;
  std::string attr_string(const std::string& obj, const std::string& name) const;
  int64_t attr_i64(const std::string& obj, const std::string& name) const;
  double attr_f64(const std::string& obj, const std::string& name) const;
  void make_group(const std::string& obj);

 private:
  H5File(hid_t id, std::string path);
  // Writes a whole dataset from data where `mine`, or takes part with an empty selection.
  void write_raw(hid_t dset, hid_t mem_type, const void* data, bool mine, const std::string& obj);
  void write_scalar(const std::string& obj, hid_t file_type, hid_t mem_type, const void* v);  // rank 0 writes
  // A chunked float dataset with the Fletcher32 checksum (the caller closes it).
  hid_t create_f32(const std::string& obj, const std::vector<hsize_t>& dims, const std::vector<hsize_t>& chunk);
  hid_t id_;
  std::string path_;
  hid_t dxpl_ = H5P_DEFAULT;  // collective transfer in parallel files
  int rank_ = 0;
  int writeback_fd_ = -1;  // a second descriptor of a created file, for start_writeback
  long failed_closes_at_open_ = 0;  // see close()
};

// True once closing an HDF5 file failed (a full disk, say) or was skipped: HDF5 1.10 then crashes in its own
// clean-up at exit (MPI_Finalize runs it), so the process ends with _exit after reporting its error (main.cpp).
bool h5_unclean();
void h5_mark_unclean();
// The system's reason behind the HDF5 error on the stack, as ": No space left on device", or "".
std::string h5_io_reason();

std::string dims_text(const std::vector<hsize_t>& d);  // "[4, 8]"

}  // namespace strata
