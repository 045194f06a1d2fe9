// Fault points for the kill-at-every-step tests; see fault.hpp.
#include "fault.hpp"

#ifdef SHMAP_FAULT_POINTS
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace shmap::detail {

void fault_point(const char* name) noexcept {
  static std::atomic<long> passed{0};
  const char* at = std::getenv("SHMAP_KILL_AT");
  if (!at) return;
  // Relaxed: a per-process step counter; the tests run one writer thread.
  const long n = passed.fetch_add(1, std::memory_order_relaxed) + 1;
  if (n != std::atol(at)) return;
  if (const char* fd = std::getenv("SHMAP_FAULT_FD")) {
    const int f = std::atoi(fd);
    (void)!::write(f, name, std::strlen(name));
    (void)!::write(f, "\n", 1);
  }
  ::raise(SIGKILL);
}

}  // namespace shmap::detail
#endif
