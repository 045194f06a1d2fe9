// The end of a run: the summary on stdout and the JSON file (format in
// docs/stress.md).
#pragma once

#include <array>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "model.hpp"
#include "options.hpp"
#include "verify.hpp"

namespace shmap::stress {

struct RunResult {
  Options opts;
  KeySpaces spaces;
  double elapsed_s = 0;
  std::array<std::uint64_t, kOpKinds> ops{};
  std::uint64_t total_ops = 0;
  std::uint64_t killed_writers = 0;     // by the killer
  std::uint64_t killed_readers = 0;     // by the killer
  std::uint64_t shutdown_kills = 0;     // workers that ignored SIGTERM and got SIGKILL
  std::uint64_t unexpected_deaths = 0;  // workers that died on their own
  std::uint64_t respawns = 0;
  std::uint64_t violations = 0;       // the harness's own checks (workers and final checks)
  std::vector<std::string> messages;  // the first of them
  FsckReport before_recovery;  // fsck before recovery: what the kills left
  FsckVerdict fsck;            // fsck after recovery
  FinalCheck final;
  Stats index;  // the map's statistics after recovery (index size, migrations)
  int exit_status = 0;
  std::string verdict;  // one line: PASS / FAIL and why
};

void print_summary(std::FILE* out, const RunResult& r);

// Writes the JSON file; returns an error message, empty on success.
std::string write_json(const std::string& path, const RunResult& r);

}  // namespace shmap::stress
