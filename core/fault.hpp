// Fault points: places where a test build can make this process die, to prove
// that a process killed at any step leaves a map that recovery makes whole.
// Compiled out (an empty statement) unless SHMAP_FAULT_POINTS is defined; only
// the shmap_faults test library defines it.
#pragma once

#ifdef SHMAP_FAULT_POINTS
namespace shmap::detail {
// Counts fault points passed in this process; at the N-th, where N is the
// value of the environment variable SHMAP_KILL_AT, writes the point's name and
// a newline to the file descriptor SHMAP_FAULT_FD (if set) and SIGKILLs itself.
void fault_point(const char* name) noexcept;
}  // namespace shmap::detail
#define SHMAP_FAULT(name) ::shmap::detail::fault_point(name)
#else
#define SHMAP_FAULT(name) ((void)0)
#endif
