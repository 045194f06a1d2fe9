#include "report.hpp"

#include <cerrno>
#include <cinttypes>
#include <cstring>
#include <fstream>
#include <sstream>

namespace shmap::stress {

namespace {

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string json_strings(const std::vector<std::string>& v, const std::string& indent) {
  if (v.empty()) return "[]";
  std::string out = "[\n";
  for (std::size_t i = 0; i < v.size(); ++i)
    out += indent + "  " + json_string(v[i]) + (i + 1 < v.size() ? ",\n" : "\n");
  return out + indent + "]";
}

std::string json_number(double d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", d);
  return buf;
}

const char* yes_no(bool b) {
  return b ? "true" : "false";
}

}  // namespace

void print_summary(std::FILE* out, const RunResult& r) {
  const Options& o = r.opts;
  std::fprintf(out, "\nshmap-stress summary\n");
  std::fprintf(out, "  seed            %" PRIu64 "\n", o.seed);
  std::fprintf(out,
               "  workload        %s: %u writers, %u readers; keys owned %" PRIu64 ", counters %" PRIu64
               ", churn %" PRIu64 "; key %u B, value 24+%u B\n",
               to_string(o.workload), o.writers, o.readers, r.spaces.owned, r.spaces.counters, r.spaces.churn,
               o.key_bytes, o.value_bytes);
  std::fprintf(out, "  duration        %.1f s\n", r.elapsed_s);
  std::fprintf(out, "  operations      %" PRIu64 " (%.0f ops/s)\n", r.total_ops,
               r.elapsed_s > 0 ? double(r.total_ops) / r.elapsed_s : 0.0);
  for (unsigned k = 0; k < kOpKinds; ++k)
    if (r.ops[k]) std::fprintf(out, "    %-14s %" PRIu64 "\n", kOpNames[k], r.ops[k]);
  std::fprintf(out,
               "  kills           %" PRIu64 " (writers %" PRIu64 ", readers %" PRIu64 ") at %.1f/s; respawns %" PRIu64
               "; SIGKILLed at shutdown %" PRIu64 "; unexpected deaths %" PRIu64 "\n",
               r.killed_writers + r.killed_readers, r.killed_writers, r.killed_readers, o.kill_rate, r.respawns,
               r.shutdown_kills, r.unexpected_deaths);
  if (r.spaces.owned)
    std::fprintf(out,
                 "  owned           %" PRIu64 " keys acknowledged, %" PRIu64 " versions; %" PRIu64
                 " hold a killed writer's unacknowledged version\n",
                 r.final.owned_acked_keys, r.final.acked_versions, r.final.owned_inflight_landed);
  if (!r.final.counters.empty()) {
    std::uint64_t value = 0, acked = 0, attempted = 0;
    for (const CounterResult& c : r.final.counters) value += c.value, acked += c.acked, attempted += c.attempted;
    std::fprintf(out, "  counters        sum %" PRIu64 ", acknowledged %" PRIu64 ", attempted %" PRIu64 "\n", value,
                 acked, attempted);
  }
  if (r.spaces.churn)
    std::fprintf(out, "  churn           %" PRIu64 " keys present at the end\n", r.final.churn_present);
  std::fprintf(out, "  violations      %" PRIu64 "\n", r.violations);
  for (const std::string& m : r.messages) std::fprintf(out, "    %s\n", m.c_str());
  const FsckReport& b = r.before_recovery;
  std::fprintf(out,
               "  before recovery fsck %s: %" PRIu64 " violations; leaked bytes %" PRIu64 "\n",
               b.ok ? "ok" : "NOT ok", b.violation_count, b.leaked_bytes);
  const FsckReport& f = r.fsck.report;
  std::fprintf(out,
               "  fsck            %s: %" PRIu64 " violations (%zu explained by writer deaths, %zu not, %" PRIu64
               " unlisted); leaked bytes %" PRIu64 " (bound %" PRIu64 " = deaths x %" PRIu64 " B)\n",
               f.ok ? "ok" : "NOT ok", f.violation_count, r.fsck.explained.size(), r.fsck.unexplained.size(),
               r.fsck.unlisted, f.leaked_bytes, r.fsck.leak_bound, r.fsck.largest_block);
  std::fprintf(out,
               "                  live keys %" PRIu64 ", deleted slots %" PRIu64 ", reachable %" PRIu64
               " B, free %" PRIu64 " B, carved %" PRIu64 " B\n",
               f.live_keys, f.deleted_slots, f.reachable_bytes, f.free_bytes, f.carved_bytes);
  std::fprintf(out,
               "  index           %" PRIu64 " slots, table generation %" PRIu64 " (%" PRIu64 " grown, %" PRIu64
               " shrunk); %" PRIu64 " deleted slots reclaimed; %" PRIu64 " tables retired, %" PRIu64
               " not yet; arena %" PRIu64 " B\n",
               r.index.index_slots, r.index.table_generation, r.index.grown, r.index.shrunk, r.index.reclaimed_slots,
               r.index.retired_tables, f.unretired_tables, r.index.arena_bytes);
  for (const std::string& m : r.fsck.unexplained) std::fprintf(out, "    VIOLATION %s\n", m.c_str());
  for (const std::string& m : r.fsck.explained) std::fprintf(out, "    explained by kills: %s\n", m.c_str());
  std::fprintf(out, "  result          %s (exit %d)\n", r.verdict.c_str(), r.exit_status);
}

std::string write_json(const std::string& path, const RunResult& r) {
  const Options& o = r.opts;
  const FsckReport& f = r.fsck.report;
  std::ostringstream j;
  j << "{\n";
  j << "  \"tool\": \"shmap-stress\",\n";
  j << "  \"seed\": " << o.seed << ",\n";
  j << "  \"options\": {\n"
    << "    \"duration_s\": " << json_number(o.duration_s) << ",\n"
    << "    \"writers\": " << o.writers << ",\n"
    << "    \"readers\": " << o.readers << ",\n"
    << "    \"workload\": " << json_string(to_string(o.workload)) << ",\n"
    << "    \"keys\": " << o.keys << ",\n"
    << "    \"key_bytes\": " << o.key_bytes << ",\n"
    << "    \"value_bytes\": " << o.value_bytes << ",\n"
    << "    \"kill_rate\": " << json_number(o.kill_rate) << ",\n"
    << "    \"pin\": " << json_string(to_string(o.pin)) << ",\n"
    << "    \"name\": " << json_string(o.name) << ",\n"
    << "    \"keep\": " << yes_no(o.keep) << ",\n"
    << "    \"allow_leaks\": " << yes_no(o.allow_leaks) << "\n"
    << "  },\n";
  j << "  \"key_spaces\": {\"owned\": " << r.spaces.owned << ", \"counters\": " << r.spaces.counters
    << ", \"churn\": " << r.spaces.churn << "},\n";
  j << "  \"duration_s\": " << json_number(r.elapsed_s) << ",\n";
  j << "  \"ops\": {\n    \"total\": " << r.total_ops;
  for (unsigned k = 0; k < kOpKinds; ++k) j << ",\n    \"" << kOpNames[k] << "\": " << r.ops[k];
  j << "\n  },\n";
  j << "  \"ops_per_s\": " << json_number(r.elapsed_s > 0 ? double(r.total_ops) / r.elapsed_s : 0) << ",\n";
  j << "  \"kills\": {\"total\": " << r.killed_writers + r.killed_readers << ", \"writers\": " << r.killed_writers
    << ", \"readers\": " << r.killed_readers << ", \"at_shutdown\": " << r.shutdown_kills << "},\n";
  j << "  \"respawns\": " << r.respawns << ",\n";
  j << "  \"unexpected_deaths\": " << r.unexpected_deaths << ",\n";
  j << "  \"violations\": {\n    \"count\": " << r.violations
    << ",\n    \"first\": " << json_strings(r.messages, "    ") << "\n  },\n";
  j << "  \"final\": {\n"
    << "    \"owned_acked_keys\": " << r.final.owned_acked_keys << ",\n"
    << "    \"owned_acked_versions\": " << r.final.acked_versions << ",\n"
    << "    \"owned_inflight_landed\": " << r.final.owned_inflight_landed << ",\n"
    << "    \"counters\": [";
  for (std::size_t i = 0; i < r.final.counters.size(); ++i) {
    const CounterResult& c = r.final.counters[i];
    j << (i ? ", " : "") << "{\"value\": " << c.value << ", \"acked\": " << c.acked
      << ", \"attempted\": " << c.attempted << "}";
  }
  j << "],\n"
    << "    \"churn_present\": " << r.final.churn_present << ",\n"
    << "    \"entries\": " << r.final.entries << "\n"
    << "  },\n";
  j << "  \"fsck_before_recovery\": {\n"
    << "    \"ok\": " << yes_no(r.before_recovery.ok) << ",\n"
    << "    \"violation_count\": " << r.before_recovery.violation_count << ",\n"
    << "    \"leaked_bytes\": " << r.before_recovery.leaked_bytes << ",\n"
    << "    \"violations\": " << json_strings(r.before_recovery.violations, "    ") << "\n"
    << "  },\n";
  j << "  \"fsck\": {\n"
    << "    \"ok\": " << yes_no(f.ok) << ",\n"
    << "    \"violation_count\": " << f.violation_count << ",\n"
    << "    \"leaked_bytes\": " << f.leaked_bytes << ",\n"
    << "    \"leak_bound_bytes\": " << r.fsck.leak_bound << ",\n"
    << "    \"live_keys\": " << f.live_keys << ",\n"
    << "    \"deleted_slots\": " << f.deleted_slots << ",\n"
    << "    \"reachable_bytes\": " << f.reachable_bytes << ",\n"
    << "    \"free_bytes\": " << f.free_bytes << ",\n"
    << "    \"carved_bytes\": " << f.carved_bytes << ",\n"
    << "    \"violations\": " << json_strings(f.violations, "    ") << ",\n"
    << "    \"explained_by_kills\": " << json_strings(r.fsck.explained, "    ") << ",\n"
    << "    \"unexplained\": " << json_strings(r.fsck.unexplained, "    ") << ",\n"
    << "    \"unlisted\": " << r.fsck.unlisted << "\n"
    << "  },\n";
  j << "  \"index\": {\n"
    << "    \"index_slots\": " << r.index.index_slots << ",\n"
    << "    \"table_generation\": " << r.index.table_generation << ",\n"
    << "    \"grown\": " << r.index.grown << ",\n"
    << "    \"shrunk\": " << r.index.shrunk << ",\n"
    << "    \"reclaimed_slots\": " << r.index.reclaimed_slots << ",\n"
    << "    \"retired_tables\": " << r.index.retired_tables << ",\n"
    << "    \"unretired_tables\": " << f.unretired_tables << ",\n"
    << "    \"arena_bytes\": " << r.index.arena_bytes << "\n"
    << "  },\n";
  j << "  \"verdict\": " << json_string(r.verdict) << ",\n";
  j << "  \"exit_status\": " << r.exit_status << "\n";
  j << "}\n";

  std::ofstream file(path, std::ios::trunc);
  // NOLINTNEXTLINE(concurrency-mt-unsafe): the supervisor has one thread
  if (!file) return "cannot open " + path + ": " + std::strerror(errno);
  file << j.str();
  file.close();
  if (!file) return "cannot write " + path;
  return {};
}

}  // namespace shmap::stress
