#include "args.hpp"

#include <charconv>
#include <limits>
#include <system_error>

namespace shmap::cli {
namespace {

std::string quoted(std::string_view s) {
  return "'" + std::string(s) + "'";
}

const OptionSpec* find_long(std::span<const OptionSpec> specs, std::string_view name) {
  for (const OptionSpec& s : specs)
    if (s.name == name) return &s;
  return nullptr;
}

const OptionSpec* find_short(std::span<const OptionSpec> specs, char c) {
  for (const OptionSpec& s : specs)
    if (s.short_name != 0 && s.short_name == c) return &s;
  return nullptr;
}

void store(ParsedArgs& out, const OptionSpec& spec, std::string value) {
  const bool inserted = out.options.emplace(std::string(spec.name), std::move(value)).second;
  if (!inserted) throw UsageError("option --" + std::string(spec.name) + " given twice");
}

// Digits in `base` only: from_chars alone would accept a leading '-' for
// signed types and stops silently at the first non-digit.
std::uint64_t parse_digits(std::string_view digits, int base, std::string_view text, std::string_view what) {
  const std::string problem = "invalid " + std::string(what) + " " + quoted(text) + ": ";
  if (digits.empty()) throw UsageError(problem + "expected a number");
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v, base);
  if (ec == std::errc::result_out_of_range) throw UsageError(problem + "number too large");
  if (ec != std::errc{} || end != digits.data() + digits.size())
    throw UsageError(problem + (base == 8    ? "not an octal number"
                                : base == 16 ? "not a hexadecimal number"
                                             : "not a decimal number"));
  return v;
}

}  // namespace

ParsedArgs parse_args(std::span<const std::string_view> args, std::span<const OptionSpec> specs) {
  ParsedArgs out;
  bool options_ended = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view arg = args[i];
    if (options_ended || arg == "-" || arg.empty() || arg[0] != '-') {
      out.positional.emplace_back(arg);
      continue;
    }
    if (arg == "--") {
      options_ended = true;
      continue;
    }
    if (arg == "--help" || arg == "-h") {
      out.help = true;
      continue;
    }

    const OptionSpec* spec = nullptr;
    std::string_view inline_value;
    bool has_inline_value = false;
    if (arg.starts_with("--")) {
      std::string_view name = arg.substr(2);
      if (const auto eq = name.find('='); eq != std::string_view::npos) {
        inline_value = name.substr(eq + 1);
        has_inline_value = true;
        name = name.substr(0, eq);
      }
      spec = find_long(specs, name);
      if (spec == nullptr) throw UsageError("unknown option --" + std::string(name));
    } else {
      if (arg.size() != 2 || (spec = find_short(specs, arg[1])) == nullptr)
        throw UsageError("unknown option " + std::string(arg) + " (a key or value starting with '-' goes after '--')");
    }

    if (spec->value_name.empty()) {
      if (has_inline_value) throw UsageError("option --" + std::string(spec->name) + " takes no value");
      store(out, *spec, {});
    } else if (has_inline_value) {
      store(out, *spec, std::string(inline_value));
    } else {
      if (i + 1 >= args.size())
        throw UsageError("option --" + std::string(spec->name) + " needs a value (" + std::string(spec->value_name) +
                         ")");
      store(out, *spec, std::string(args[++i]));
    }
  }
  return out;
}

std::uint64_t parse_u64(std::string_view text, std::string_view what) {
  if (text.starts_with("0x") || text.starts_with("0X")) return parse_digits(text.substr(2), 16, text, what);
  return parse_digits(text, 10, text, what);
}

std::uint64_t parse_size(std::string_view text, std::string_view what) {
  unsigned shift = 0;
  std::string_view digits = text;
  if (!text.empty()) {
    switch (text.back()) {
      case 'K':
      case 'k':
        shift = 10;
        break;
      case 'M':
      case 'm':
        shift = 20;
        break;
      case 'G':
      case 'g':
        shift = 30;
        break;
      case 'T':
      case 't':
        shift = 40;
        break;
      default:
        break;
    }
    if (shift != 0) digits.remove_suffix(1);
  }
  const std::uint64_t v = parse_digits(digits, 10, text, what);
  if (v > (std::numeric_limits<std::uint64_t>::max() >> shift))
    throw UsageError("invalid " + std::string(what) + " " + quoted(text) + ": number too large");
  return v << shift;
}

std::uint32_t parse_mode(std::string_view text, std::string_view what) {
  const std::uint64_t v = parse_digits(text, 8, text, what);
  if (v > 07777)
    throw UsageError("invalid " + std::string(what) + " " + quoted(text) + ": permission bits above 07777");
  return static_cast<std::uint32_t>(v);
}

}  // namespace shmap::cli
