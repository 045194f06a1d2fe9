// shmap: the command-line tool. Creates, inspects, reads, writes and removes
// shmap segments; see docs/cli.md.
//
// Exit codes are a contract for scripts (docs/cli.md, `shmap --help`):
//   0 success · 1 key not found (get, del) or key exists (put --if-absent) ·
//   2 usage error · 3 runtime error (shmap::Error, I/O) · 4 map full or key/value too long.
// Reading commands (info, get, dump) map the segment read-only, so they work on
// a segment the user may only read and cannot disturb the writers.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <exception>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "args.hpp"
#include "shmap/shmap.hpp"

#ifndef SHMAP_VERSION
#error "SHMAP_VERSION must be defined by the build (tools/CMakeLists.txt)"
#endif

namespace shmap::cli {
namespace {

enum Exit : int {
  kExitOk = 0,
  kExitNotFound = 1,  // also "exists" for put --if-absent
  kExitUsage = 2,
  kExitRuntime = 3,
  kExitFull = 4,
  kExitCorrupt = 5,
};

// A runtime failure of the tool itself (reading a value file, writing stdout): exit 3.
class RuntimeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An outcome that is not success but not an error of the tool either
// (absent key, existing key, full map): the message is printed, the code returned.
struct Outcome {
  int code;
  std::string message;
};

struct Command {
  std::string_view name;
  std::string_view synopsis;  // after "shmap "
  std::string_view summary;   // one line, for the global help
  std::string_view details;   // paragraph(s) for the command's help
  std::size_t min_positional;
  std::size_t max_positional;
  std::vector<OptionSpec> options;
  int (*run)(const Command&, const ParsedArgs&);
};

// ---------------------------------------------------------------------------
// Output helpers
// ---------------------------------------------------------------------------

// strerror() is not thread-safe; the generic category's message is the same text.
std::string errno_text(int err) {
  return std::error_code(err, std::generic_category()).message();
}

void write_stdout(std::string_view bytes) {
  if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), stdout) != bytes.size())
    throw RuntimeError("writing to standard output: " + errno_text(errno));
}

void finish_stdout() {
  if (std::fflush(stdout) != 0 || std::ferror(stdout))
    throw RuntimeError("writing to standard output: " + errno_text(errno));
}

constexpr char kHexDigits[] = "0123456789abcdef";
constexpr std::size_t kIoChunkBytes = std::size_t{64} * 1024;

void append_hex_byte(std::string& out, unsigned char c) {
  out += kHexDigits[c >> 4];
  out += kHexDigits[c & 0xf];
}

// Printable ASCII stays as it is, a backslash doubles, every other byte
// (tab and newline included) becomes \xNN: a dump line is unambiguous.
void append_escaped(std::string& out, std::string_view bytes) {
  for (const char ch : bytes) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\\') {
      out += "\\\\";
    } else if (c >= 0x20 && c < 0x7f) {
      out += ch;
    } else {
      out += "\\x";
      append_hex_byte(out, c);
    }
  }
}

void append_hex(std::string& out, std::string_view bytes) {
  for (const char ch : bytes) append_hex_byte(out, static_cast<unsigned char>(ch));
}

// A key as shown in messages: escaped, and shortened when it is long.
std::string shown_key(std::string_view key) {
  constexpr std::size_t kShown = 64;
  std::string out = "'";
  append_escaped(out, key.substr(0, kShown));
  out += "'";
  if (key.size() > kShown) out += "... (" + std::to_string(key.size()) + " bytes)";
  return out;
}

std::string human_bytes(std::uint64_t n) {
  static constexpr std::array<const char*, 5> kUnits{"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  std::size_t u = 0;
  while (v >= 1024 && u + 1 < kUnits.size()) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0)
    std::snprintf(buf, sizeof buf, "%" PRIu64 " B", n);
  else
    std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[u]);
  return buf;
}

std::string utc_time(std::uint64_t unix_ns) {
  const auto secs = static_cast<std::time_t>(unix_ns / 1'000'000'000u);
  std::tm tm{};
  char buf[64];
  if (gmtime_r(&secs, &tm) == nullptr || std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    return std::to_string(unix_ns) + " ns since the epoch";
  return buf;
}

std::string fmt(const char* format, auto... args) {
  char buf[128];
  std::snprintf(buf, sizeof buf, format, args...);
  return buf;
}

// ---------------------------------------------------------------------------
// Value input
// ---------------------------------------------------------------------------

// Reads at most kMaxValueBytes + 1 bytes: enough for insert to report
// value_too_long without slurping an endless input such as /dev/zero.
std::string read_value_file(const std::string& path) {
  const bool from_stdin = path == "-";
  const std::string shown = from_stdin ? "standard input" : "value file '" + path + "'";
  const int fd = from_stdin ? STDIN_FILENO : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw RuntimeError("cannot open " + shown + ": " + errno_text(errno));
  std::string value;
  const std::size_t limit = kMaxValueBytes + 1;
  std::size_t got = 0;
  int err = 0;
  while (got < limit) {
    value.resize(std::min(limit, std::max(got * 2, kIoChunkBytes)));
    const ssize_t n = ::read(fd, value.data() + got, value.size() - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  value.resize(got);
  if (!from_stdin) ::close(fd);
  if (err != 0) throw RuntimeError("cannot read " + shown + ": " + errno_text(err));
  return value;
}

// ---------------------------------------------------------------------------
// Status mapping
// ---------------------------------------------------------------------------

Outcome store_failure(std::string_view cmd, const std::string& name, std::string_view key, Status s) {
  const std::string where = "shmap: " + std::string(cmd) + " " + name + ": ";
  switch (s) {
    case Status::exists:
      return {kExitNotFound, where + "key " + shown_key(key) + " exists; not replaced (--if-absent)"};
    case Status::full_index:
      return {kExitFull, where + "map full: no free index slot for key " + shown_key(key) + " (full_index)"};
    case Status::full_arena:
      return {kExitFull, where + "map full: no arena room for key " + shown_key(key) + " (full_arena)"};
    case Status::key_too_long:
      return {kExitFull, where + "key too long: " + std::to_string(key.size()) + " bytes, at most " +
                             std::to_string(kMaxKeyBytes) + " (key_too_long)"};
    case Status::value_too_long:
      return {kExitFull, where + "value too long for key " + shown_key(key) + ": at most " +
                             std::to_string(kMaxValueBytes) + " bytes (value_too_long)"};
    default:
      return {kExitRuntime, where + "unexpected status " + to_string(s) + " for key " + shown_key(key)};
  }
}

int report(const Outcome& o) {
  std::fprintf(stderr, "%s\n", o.message.c_str());
  return o.code;
}

Options read_only_options() {
  Options o;
  o.read_only = true;
  return o;
}

// ---------------------------------------------------------------------------
// Subcommands
// ---------------------------------------------------------------------------

int cmd_create(const Command&, const ParsedArgs& a) {
  Options opts;
  if (const auto* v = a.value("capacity")) opts.capacity = parse_u64(*v, "--capacity");
  if (const auto* v = a.value("arena-bytes")) opts.arena_bytes = parse_size(*v, "--arena-bytes");
  if (const auto* v = a.value("max-bytes")) opts.max_bytes = parse_size(*v, "--max-bytes");
  if (const auto* v = a.value("help-slots")) {
    const std::uint64_t n = parse_u64(*v, "--help-slots");
    if (n > 0xffffffffu) throw UsageError("--help-slots: " + *v + " is too large");
    opts.help_slots = static_cast<std::uint32_t>(n);
  }
  if (const auto* v = a.value("mode")) opts.mode = static_cast<mode_t>(parse_mode(*v, "--mode"));
  if (const auto* v = a.value("seed")) opts.hash_seed = parse_u64(*v, "--seed");
  Map::create(a.positional[0], opts);
  return kExitOk;
}

int cmd_info(const Command&, const ParsedArgs& a) {
  const Map map = Map::open(a.positional[0], read_only_options());
  const Info info = map.info();
  const Stats st = map.stats();

  std::string out;
  const auto line = [&out](std::string_view label, const std::string& value) {
    out += label;
    out.append(label.size() < 18 ? 18 - label.size() : 1, ' ');
    out += value;
    out += '\n';
  };
  const auto bytes = [](std::uint64_t n) {
    return n < 1024 ? std::to_string(n) : std::to_string(n) + " (" + human_bytes(n) + ")";
  };

  line("name:", info.name);
  line("path:", info.path);
  line("layout version:", std::to_string(info.layout_version));
  line("total bytes:", bytes(info.total_bytes));
  line("max bytes:", bytes(info.max_bytes));
  line("capacity:", std::to_string(info.capacity) + " keys (the first index table; the index grows past it)");
  line("index slots:", std::to_string(info.index_slots) + " (at least " + std::to_string(info.min_index_slots) + ")");
  line("arena bytes:", bytes(info.arena_bytes));
  line("hash seed:", fmt("0x%016" PRIx64, info.hash_seed));
  line("mode:", fmt("%04o", static_cast<unsigned>(info.mode)));
  line("creator pid:", std::to_string(info.creator_pid));
  line("created:", utc_time(info.created_unix_ns));
  out += '\n';
  line("live keys:", std::to_string(st.live_keys));
  line("slots:", std::to_string(st.index_slots) + " (live " + std::to_string(st.live_slots) + ", deleted " +
                     std::to_string(st.deleted_slots) + ", empty " + std::to_string(st.empty_slots) + ", frozen " +
                     std::to_string(st.frozen_slots) + "; a migration starts at " + std::to_string(st.used_limit) +
                     " used)");
  line("deleted slots:", std::to_string(st.deleted_slots));
  line("load factor:", fmt("%.4f", st.load_factor));
  line("table generation:", std::to_string(st.table_generation));
  line("migration:", st.migrating ? "running, to " + std::to_string(st.next_index_slots) + " slots (" +
                                        std::to_string(st.migration_chunks_done) + " of " +
                                        std::to_string(st.migration_chunks) + " chunks moved)"
                                  : std::string("none"));
  line("migrations:", std::to_string(st.migrations) + " (grown " + std::to_string(st.grown) + ", shrunk " +
                          std::to_string(st.shrunk) + ", same size " +
                          std::to_string(st.migrations - st.grown - st.shrunk) + ")");
  line("reclaimed slots:", std::to_string(st.reclaimed_slots) + " (deleted slots dropped by migrations)");
  line("retired tables:", std::to_string(st.retired_tables) + " (memory returned)");
  line("index runs:", std::to_string(st.index_runs) + ", " + bytes(st.index_run_bytes) + " (" +
                          bytes(st.index_table_bytes) + " holding tables)");
  const double carved_pct =
      st.arena_bytes == 0 ? 0.0 : 100.0 * static_cast<double>(st.arena_carved) / static_cast<double>(st.arena_bytes);
  line("arena carved:", bytes(st.arena_carved) + " of " + bytes(st.arena_bytes) + fmt(", %.1f%%", carved_pct));
  out += "size classes:";
  if (st.classes.empty()) {
    out += "      none carved yet\n";
  } else {
    out += '\n';
    out += fmt("  %12s %12s %12s %12s %14s\n", "block bytes", "carved", "in use", "free", "carved bytes");
    for (const SizeClassStats& c : st.classes)
      out += fmt("  %12" PRIu32 " %12" PRIu64 " %12" PRIu64 " %12" PRIu64 " %14" PRIu64 "\n", c.block_bytes, c.carved,
                 c.in_use, c.free, static_cast<std::uint64_t>(c.block_bytes) * c.carved);
  }
  const std::vector<shmap::ProcessInfo> procs = map.processes();
  out += "processes:";
  if (procs.empty()) {
    out += "         none attached\n";
  } else {
    out += '\n';
    out += fmt("  %8s %8s %6s %-24s %s\n", "pid", "tid", "entry", "attached", "state");
    for (const shmap::ProcessInfo& p : procs)
      out += fmt("  %8" PRId64 " %8" PRId64 " %6" PRIu32 " %-24s %s\n", p.pid, p.tid, p.entry,
                 utc_time(p.attached_unix_ns).c_str(),
                 !p.alive       ? "dead (recovered by `shmap recover` or the next writable open)"
                 : p.recovering ? "alive, recovering or draining this entry"
                                : "alive");
  }
  write_stdout(out);
  finish_stdout();
  return kExitOk;
}

int cmd_put(const Command& cmd, const ParsedArgs& a) {
  const std::string& name = a.positional[0];
  const std::string& key = a.positional[1];
  const auto* file = a.value("value-file");
  if ((a.positional.size() == 3) == (file != nullptr))
    throw UsageError("give the value as the VALUE argument or with --value-file (exactly one of them)");
  const std::string value = file != nullptr ? read_value_file(*file) : a.positional[2];

  Map map = Map::open(name);
  const Status s = a.has("if-absent") ? map.insert(key, value) : map.insert_or_assign(key, value);
  if (succeeded(s)) return kExitOk;
  return report(store_failure(cmd.name, map.name(), key, s));
}

int cmd_get(const Command& cmd, const ParsedArgs& a) {
  const Map map = Map::open(a.positional[0], read_only_options());
  const std::string& key = a.positional[1];
  std::string value;
  if (!map.get(key, value))
    return report({kExitNotFound,
                   "shmap: " + std::string(cmd.name) + " " + map.name() + ": key " + shown_key(key) + " not found"});
  write_stdout(value);
  // Raw bytes for pipes and files; a terminal also gets the newline its prompt needs.
  if (::isatty(STDOUT_FILENO) == 1) write_stdout("\n");
  finish_stdout();
  return kExitOk;
}

int cmd_del(const Command& cmd, const ParsedArgs& a) {
  Map map = Map::open(a.positional[0]);
  const std::string& key = a.positional[1];
  if (map.erase(key)) return kExitOk;
  return report(
      {kExitNotFound, "shmap: " + std::string(cmd.name) + " " + map.name() + ": key " + shown_key(key) + " not found"});
}

int cmd_dump(const Command&, const ParsedArgs& a) {
  const Map map = Map::open(a.positional[0], read_only_options());
  const bool hex = a.has("hex");
  std::string buf;
  map.for_each([&](std::string_view key, std::string_view value) {
    if (hex) {
      append_hex(buf, key);
      buf += '\t';
      append_hex(buf, value);
    } else {
      append_escaped(buf, key);
      buf += '\t';
      append_escaped(buf, value);
    }
    buf += '\n';
    if (buf.size() >= kIoChunkBytes) {
      write_stdout(buf);
      buf.clear();
    }
  });
  write_stdout(buf);
  finish_stdout();
  return kExitOk;
}

int cmd_fsck(const Command& cmd, const ParsedArgs& a) {
  const bool repair = a.has("repair");
  Map map = repair ? Map::open(a.positional[0]) : Map::open(a.positional[0], read_only_options());
  const shmap::FsckReport r = repair ? map.repair() : map.fsck();
  if (repair) std::printf("repaired: free lists and counters rebuilt from the index\n");
  std::printf("live keys        %llu\n", static_cast<unsigned long long>(r.live_keys));
  std::printf("deleted slots    %llu\n", static_cast<unsigned long long>(r.deleted_slots));
  std::printf("reachable        %llu blocks, %llu bytes\n", static_cast<unsigned long long>(r.reachable_blocks),
              static_cast<unsigned long long>(r.reachable_bytes));
  std::printf("free             %llu blocks, %llu bytes\n", static_cast<unsigned long long>(r.free_blocks),
              static_cast<unsigned long long>(r.free_bytes));
  std::printf("carved           %llu bytes\n", static_cast<unsigned long long>(r.carved_bytes));
  std::printf("in flight        %llu bytes\n", static_cast<unsigned long long>(r.held_bytes));
  std::printf("leaked           %llu bytes\n", static_cast<unsigned long long>(r.leaked_bytes));
  if (r.dead_entries != 0)
    std::printf(
        "dead attached    %u entries, %llu bytes to return (not damage: shmap recover %s, or any "
        "writable open, recovers them)\n",
        r.dead_entries, static_cast<unsigned long long>(r.recoverable_bytes), map.name().c_str());
  for (const std::string& v : r.violations) std::printf("violation: %s\n", v.c_str());
  if (r.violation_count > r.violations.size())
    std::printf("... and %llu more violations\n",
                static_cast<unsigned long long>(r.violation_count - r.violations.size()));
  finish_stdout();
  if (r.ok) return kExitOk;
  return report({kExitCorrupt, "shmap: " + std::string(cmd.name) + " " + map.name() + ": " +
                                   std::to_string(r.violation_count) + " violation(s)"});
}

int cmd_recover(const Command&, const ParsedArgs& a) {
  shmap::Options opts;
  opts.recover_on_open = false;  // count what this command recovers
  Map map = Map::open(a.positional[0], opts);
  const shmap::RecoverReport r = map.recover();
  std::printf("recovered        %u entries of dead processes\n", r.entries);
  std::printf("returned         %llu blocks, %llu bytes\n", static_cast<unsigned long long>(r.blocks_returned),
              static_cast<unsigned long long>(r.bytes_returned));
  std::printf("orphan heaps     %u moved to the pool\n", r.orphans_borrowed);
  finish_stdout();
  return kExitOk;
}

int cmd_rm(const Command& cmd, const ParsedArgs& a) {
  const std::string& name = a.positional[0];
  if (!a.has("force")) {
    // Map::remove itself only refuses files without the shmap magic number;
    // the full validation also catches a mistyped name of some other segment
    // whose header is damaged, and says what is wrong with it.
    (void)Map::info(name);
  }
  if (Map::remove(name) || a.has("force")) return kExitOk;
  return report({kExitRuntime, "shmap: " + std::string(cmd.name) + " " + name + ": no such segment"});
}

// ---------------------------------------------------------------------------
// Command table and help
// ---------------------------------------------------------------------------

const std::vector<Command>& commands() {
  static const std::vector<Command> table{
      {.name = "create",
       .synopsis =
           "create NAME [--capacity N] [--arena-bytes N] [--max-bytes N] [--help-slots N] [--mode OCTAL] [--seed N]",
       .summary = "create a new map segment (fails if NAME exists)",
       .details = "Creates the segment NAME and initializes an empty map in it. Fails (exit 3)\n"
                  "if NAME already exists. NAME is a POSIX shm name (\"/jobs\": one leading slash,\n"
                  "no other; lives in /dev/shm) or a filesystem path (a map in a file).\n"
                  "Numbers are decimal; --seed also takes 0x-prefixed hexadecimal;\n"
                  "--arena-bytes and --max-bytes take a K, M, G or T suffix (powers of 1024).\n"
                  "The index and the arena grow as keys come (up to --max-bytes), and the\n"
                  "index rebuilds itself to reclaim the slots of erased keys.",
       .min_positional = 1,
       .max_positional = 1,
       .options = {{"capacity", 0, "N", "keys the first index table holds (default 65536; a hint: it grows)"},
                   {"arena-bytes", 0, "N", "initial arena for records, sparse (default: 256 per key, >= 1M)"},
                   {"max-bytes", 0, "N", "the largest the segment may grow to (default: the filesystem's size)"},
                   {"help-slots", 0, "N", "old-table slots each write moves during a migration (default 1024)"},
                   {"mode", 0, "OCTAL", "permission bits of the segment (default 0600; umask not applied)"},
                   {"seed", 0, "N", "hash seed (default: random)"}},
       .run = cmd_create},
      {.name = "info",
       .synopsis = "info NAME",
       .summary = "print the segment's header facts and usage statistics",
       .details = "Prints the header (name, path, layout version, sizes, capacity, hash seed,\n"
                  "mode, creator, creation time) and the statistics: live keys, index slots\n"
                  "(live, deleted, empty, frozen), load factor, the table generation, a running\n"
                  "migration, migrations so far, reclaimed slots, retired tables, index runs,\n"
                  "arena use, a per-size-class table,\n"
                  "and the writing threads attached (pid, thread id, registry entry, since\n"
                  "when, alive or dead).\n"
                  "Maps the segment read-only.",
       .min_positional = 1,
       .max_positional = 1,
       .options = {},
       .run = cmd_info},
      {.name = "put",
       .synopsis = "put NAME KEY (VALUE | --value-file PATH) [--if-absent]",
       .summary = "store a value under a key",
       .details = "Stores VALUE under KEY, replacing any previous value. With --if-absent an\n"
                  "existing key is left alone and the exit code is 1 (\"exists\").\n"
                  "--value-file PATH reads the value's raw bytes from PATH ('-' for standard\n"
                  "input), for binary values. Exit 4 when the map is full or the key or value\n"
                  "is too long; the map is unchanged then.",
       .min_positional = 2,
       .max_positional = 3,
       .options = {{"if-absent", 0, "", "insert only; exit 1 if KEY exists"},
                   {"value-file", 0, "PATH", "read the value from PATH ('-': standard input)"}},
       .run = cmd_put},
      {.name = "get",
       .synopsis = "get NAME KEY",
       .summary = "write a key's value to standard output",
       .details = "Writes the raw bytes of KEY's value to standard output, with no newline\n"
                  "added (a newline is added only when standard output is a terminal).\n"
                  "Exit 1 if KEY is not present. Maps the segment read-only.",
       .min_positional = 2,
       .max_positional = 2,
       .options = {},
       .run = cmd_get},
      {.name = "del",
       .synopsis = "del NAME KEY",
       .summary = "erase a key",
       .details = "Erases KEY. Exit 1 if KEY is not present.",
       .min_positional = 2,
       .max_positional = 2,
       .options = {},
       .run = cmd_del},
      {.name = "dump",
       .synopsis = "dump NAME [--hex]",
       .summary = "print every entry, one per line",
       .details = "Prints one line per entry: KEY, a tab, VALUE. Printable ASCII is shown as\n"
                  "is, a backslash as \\\\, every other byte (tab and newline included) as\n"
                  "\\xNN. With --hex, keys and values are printed entirely as lowercase hex.\n"
                  "Entries come in index order. The walk is weakly consistent: an entry\n"
                  "present throughout is printed exactly once; one written during the dump\n"
                  "may or may not be. Maps the segment read-only.",
       .min_positional = 1,
       .max_positional = 1,
       .options = {{"hex", 0, "", "print keys and values as hex"}},
       .run = cmd_dump},
      {.name = "fsck",
       .synopsis = "fsck NAME [--repair]",
       .summary = "check every invariant of a map; exit 5 on any violation",
       .details = "Walks the index and the arena and checks every invariant: slot words,\n"
                  "record bounds and generations, fingerprints, no duplicate keys, the probe\n"
                  "invariant, every thread's free lists and the pool, the counter shares,\n"
                  "and that every carved arena byte is reachable, free, or held by a\n"
                  "writer's intent (the rest is reported as leaked). A process that died or\n"
                  "exited attached is no violation: a \"dead attached\" line says what\n"
                  "`shmap recover` (or any writable open) will return.\n"
                  "Prints a summary and one line per violation. Exact on a quiet map.\n"
                  "Maps the segment read-only.\n"
                  "--repair first rebuilds the free lists and counters from the index (for\n"
                  "damage; crashes are handled online by `recover`), then checks. It needs\n"
                  "the map to itself: exit 3 if another process has it open for writing;\n"
                  "others cannot open it for writing meanwhile.",
       .min_positional = 1,
       .max_positional = 1,
       .options = {{"repair", 0, "", "rebuild free lists and counters first (map must be quiet)"}},
       .run = cmd_fsck},
      {.name = "recover",
       .synopsis = "recover NAME",
       .summary = "return what processes that died attached were holding (online)",
       .details = "Finds the registry entries of processes that died with the map open for\n"
                  "writing, finishes or undoes the step each of their threads was in, and\n"
                  "returns exactly the blocks they held to the free lists. Other processes\n"
                  "keep reading and writing meanwhile. Every writable open (put, del) does\n"
                  "this too. Prints how many entries, blocks and bytes it recovered.",
       .min_positional = 1,
       .max_positional = 1,
       .options = {},
       .run = cmd_recover},
      {.name = "rm",
       .synopsis = "rm NAME [--force]",
       .summary = "remove (unlink) a segment",
       .details = "Unlinks the segment NAME after validating it as `info` does. Processes\n"
                  "that have it open keep using it until they close it. --force skips that\n"
                  "validation (to remove a segment with a damaged header) and succeeds when\n"
                  "NAME does not exist. A file that does not start with the shmap magic\n"
                  "number is never removed, even with --force.",
       .min_positional = 1,
       .max_positional = 1,
       .options = {{"force", 'f', "", "skip the header validation; no error if missing"}},
       .run = cmd_rm},
  };
  return table;
}

constexpr std::string_view kExitCodeHelp =
    "Exit codes:\n"
    "  0  success\n"
    "  1  key not found (get, del), or key exists (put --if-absent)\n"
    "  2  usage error (unknown command or option, bad number, wrong arguments)\n"
    "  3  runtime error (segment missing, exists, corrupt, permission, I/O)\n"
    "  4  map full (index or arena), or key/value too long\n"
    "  5  fsck found a violation\n";

std::string global_help() {
  std::string s =
      "Usage: shmap COMMAND [ARGS...]\n"
      "       shmap COMMAND --help      (or: shmap help COMMAND)\n"
      "       shmap --help | --version\n"
      "\n"
      "Inspect and edit shmap maps: lock-free hash maps in POSIX shared memory.\n"
      "\n"
      "Commands:\n";
  for (const Command& c : commands()) {
    s += "  ";
    s += c.name;
    s.append(8 - c.name.size(), ' ');
    s += c.summary;
    s += '\n';
  }
  s += "\n"
       "NAME is a POSIX shm name (\"/jobs\") or a filesystem path. Keys and values\n"
       "are byte strings; a key starting with '-' goes after '--'.\n"
       "\n";
  s += kExitCodeHelp;
  s += "\nSee docs/cli.md for examples.\n";
  return s;
}

std::string command_help(const Command& c) {
  std::string s = "Usage: shmap ";
  s += c.synopsis;
  s += "\n\n";
  s += c.details;
  s += "\n\nOptions:\n";
  std::vector<std::pair<std::string, std::string_view>> rows;
  for (const OptionSpec& o : c.options) {
    std::string left = o.short_name != 0 ? std::string("-") + o.short_name + ", " : "    ";
    left += "--";
    left += o.name;
    if (!o.value_name.empty()) {
      left += ' ';
      left += o.value_name;
    }
    rows.emplace_back(std::move(left), o.help);
  }
  rows.emplace_back("-h, --help", "show this help");
  for (const auto& [left, help] : rows) {
    s += "  " + left;
    s.append(left.size() < 22 ? 22 - left.size() : 1, ' ');
    s += help;
    s += '\n';
  }
  s += '\n';
  s += kExitCodeHelp;
  return s;
}

int usage_error(const std::string& message) {
  std::fprintf(stderr, "shmap: %s\nTry 'shmap --help'.\n", message.c_str());
  return kExitUsage;
}

int print_and_exit(const std::string& text) {
  write_stdout(text);
  finish_stdout();
  return kExitOk;
}

int run(int argc, char** argv) {
  std::vector<std::string_view> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::fputs(global_help().c_str(), stderr);
    return kExitUsage;
  }
  const std::string_view first = args[0];
  if (first == "--help" || first == "-h") return print_and_exit(global_help());
  if (first == "--version") return print_and_exit("shmap " SHMAP_VERSION "\n");
  if (first == "help") {
    if (args.size() == 1) return print_and_exit(global_help());
    for (const Command& c : commands())
      if (c.name == args[1]) return print_and_exit(command_help(c));
    return usage_error("unknown command '" + std::string(args[1]) + "'");
  }

  const Command* cmd = nullptr;
  for (const Command& c : commands())
    if (c.name == first) cmd = &c;
  if (cmd == nullptr) {
    if (first.starts_with('-')) return usage_error("unknown option " + std::string(first));
    return usage_error("unknown command '" + std::string(first) + "'");
  }

  std::string where(cmd->name);  // "put /jobs" once the segment name is known
  try {
    const ParsedArgs parsed = parse_args(std::span(args).subspan(1), cmd->options);
    if (parsed.help) return print_and_exit(command_help(*cmd));
    const std::size_t n = parsed.positional.size();
    if (n < cmd->min_positional || n > cmd->max_positional)
      throw UsageError(n < cmd->min_positional ? "missing arguments" : "too many arguments");
    where += " " + parsed.positional[0];
    return cmd->run(*cmd, parsed);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "shmap: %.*s: %s\nUsage: shmap %.*s\nTry 'shmap %.*s --help'.\n",
                 static_cast<int>(cmd->name.size()), cmd->name.data(), e.what(), static_cast<int>(cmd->synopsis.size()),
                 cmd->synopsis.data(), static_cast<int>(cmd->name.size()), cmd->name.data());
    return kExitUsage;
  } catch (const Error& e) {
    // The library's messages name the segment and usually carry the prefix already.
    const std::string_view what = e.what();
    std::fprintf(stderr, "%s%.*s\n", what.starts_with("shmap: ") ? "" : "shmap: ", static_cast<int>(what.size()),
                 what.data());
    return kExitRuntime;
  } catch (const RuntimeError& e) {
    std::fprintf(stderr, "shmap: %s: %s\n", where.c_str(), e.what());
    return kExitRuntime;
  }
}

}  // namespace
}  // namespace shmap::cli

int main(int argc, char** argv) {
  try {
    return shmap::cli::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shmap: %s\n", e.what());
    return shmap::cli::kExitRuntime;
  }
}
