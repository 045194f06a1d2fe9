// The worker processes: writers and readers, each opening the map by name after
// fork and running its role until the supervisor asks it to stop.
#pragma once

#include <atomic>
#include <cstdint>

#include "model.hpp"
#include "options.hpp"

namespace shmap::stress {

enum class Role { writer, reader };

inline const char* to_string(Role r) noexcept {
  return r == Role::writer ? "writer" : "reader";
}

struct WorkerSpec {
  Role role = Role::writer;
  unsigned index = 0;             // among the writers, or among the readers
  unsigned slot = 0;              // WorkerStats slot: writers first, then readers
  std::uint64_t incarnation = 0;  // 0 for the slot's first process, +1 per respawn
};

// A worker that recorded its own violation (an exception) exits with this code,
// so the supervisor does not count the exit as a second violation.
inline constexpr int kWorkerExitReported = 3;

// Set by SIGINT/SIGTERM (the handler is installed before the first fork, so
// workers inherit it): the supervisor ends the run early, a worker stops after
// the operation at hand. Lock-free, hence async-signal-safe.
extern std::atomic<int> g_stop_signal;

// Runs the worker and exits the process (_Exit: the supervisor's atexit
// handlers and objects must not run twice). Exit 0 after a requested stop.
[[noreturn]] void run_worker(const Options& opts, const KeySpaces& spaces, SharedRegion& shared,
                             const WorkerSpec& spec);

}  // namespace shmap::stress
