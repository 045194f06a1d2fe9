// A small command-line parser for the shmap tool, and strict number parsing.
//
// Grammar, per subcommand: positional arguments and options in any order;
// long options as `--name`, `--name value` or `--name=value`; the short
// aliases a subcommand declares (`-h`, `-f`); `--` ends the options, so a key
// that starts with '-' is written `shmap get /m -- -key`. A lone `-` is a
// positional argument. An option given twice is an error, not "last wins":
// scripts that build command lines by concatenation get told, not surprised.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace shmap::cli {

// A mistake in the command line: reported with the subcommand's name and a
// pointer to its --help, exit code 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct OptionSpec {
  std::string_view name;        // long name without the dashes: "capacity"
  char short_name = 0;          // 'f' for -f; 0 when there is none
  std::string_view value_name;  // "N" when the option takes a value; empty for a flag
  std::string_view help;        // one line for --help
};

struct ParsedArgs {
  std::vector<std::string> positional;
  std::map<std::string, std::string, std::less<>> options;  // flags map to ""
  bool help = false;                                        // -h or --help seen

  bool has(std::string_view name) const { return options.find(name) != options.end(); }
  // The option's value, or nullptr when it was not given.
  const std::string* value(std::string_view name) const {
    const auto it = options.find(name);
    return it == options.end() ? nullptr : &it->second;
  }
};

// Parses `args` (the words after the subcommand) against `specs`.
// -h/--help is always accepted. Throws UsageError.
ParsedArgs parse_args(std::span<const std::string_view> args, std::span<const OptionSpec> specs);

// Strict numbers: the whole text must be the number; no sign, no spaces, no
// trailing garbage ("12abc"), no overflow. `what` names the option in messages.

// Decimal, or hexadecimal with a 0x prefix.
std::uint64_t parse_u64(std::string_view text, std::string_view what);
// Like parse_u64 (decimal only) with an optional binary-multiple suffix
// K, M, G or T (either case; 1K = 1024).
std::uint64_t parse_size(std::string_view text, std::string_view what);
// Octal permission bits, at most 07777 ("600", "0644").
std::uint32_t parse_mode(std::string_view text, std::string_view what);

}  // namespace shmap::cli
