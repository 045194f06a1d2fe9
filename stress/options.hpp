// shmap-stress command line: the options, their defaults and limits, and the
// --help text (docs/stress.md has the same table with the reasons).
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

namespace shmap::stress {

enum class Workload { owned, counters, churn, mixed, grow };
enum class Pin { none, compact };

struct Options {
  double duration_s = 10;
  unsigned writers = 2;
  unsigned readers = 2;
  std::uint64_t keys = 10000;      // keys of the owned space and of the churn space, each
  std::uint32_t key_bytes = 16;    // every key has exactly this length
  std::uint32_t value_bytes = 32;  // payload after the 24-byte self-check header
  double kill_rate = 0;            // SIGKILLs per second (exponential inter-arrival times)
  std::uint64_t seed = 0;          // drawn at random when --seed is not given
  bool seed_given = false;
  Workload workload = Workload::mixed;
  Pin pin = Pin::none;
  std::string name;  // segment name; empty: /shmap-stress-<pid>
  bool keep = false;
  bool allow_leaks = false;
  std::string json_path = "stress-results.json";  // empty: no JSON file
};

// A mistake on the command line (exit code 2).
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Parses the command line. Returns nullopt after printing --help.
// Throws UsageError.
std::optional<Options> parse_options(int argc, char** argv);

const char* to_string(Workload w) noexcept;
const char* to_string(Pin p) noexcept;

}  // namespace shmap::stress
