// log.hpp: rank-tagged logging to stdout/stderr and the process rank used in error messages.
#pragma once
#include <string>

namespace strata {

void log_set_rank(int rank);
int log_rank();
void log_info(const std::string& line);   // "[rank R] line" on stdout when rank tagging is on, else the line
void log_error(const std::string& line);  // "strata: error: line" on stderr (with the rank where there are several)

}  // namespace strata
