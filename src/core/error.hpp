// error.hpp: strata::Error, the one-line error type, and the str()/check helpers that build its message.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace strata {

// Every user-facing failure is an Error whose what() is one line naming the file or key and the values.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// An error every rank raises alike at the same point (a non-finite step under on_nonfinite = "abort"): printed
// once, by rank 0, and every rank exits 1 without MPI_Abort.
struct AgreedError : Error {
  using Error::Error;
};

template <class... A>
std::string str(const A&... a) {
  std::ostringstream os;
  (os << ... << a);
  return os.str();
}

template <class... A>
[[noreturn]] void fail(const A&... a) {
  throw Error(str(a...));
}

}  // namespace strata

// STRATA_CHECK(cond, parts...): throws strata::Error with the concatenated parts when cond is false.
#define STRATA_CHECK(cond, ...)                 \
  do {                                          \
    if (!(cond)) ::strata::fail(__VA_ARGS__);   \
  } while (0)
