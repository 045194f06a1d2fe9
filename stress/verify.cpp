#include "verify.hpp"

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <string_view>

namespace shmap::stress {

FsckReport recover_and_fsck(Map& map, FsckReport& before) {
  before = map.fsck();
  (void)map.recover();
  return map.fsck();
}

namespace {

// A number a counter message names: a sum of signed shares may be negative.
struct Signed {
  bool negative = false;
  std::uint64_t magnitude = 0;
};

// Parses "<prefix>A<middle>B..." where prefix/middle are literal texts, A an
// integer that may be negative and B a count; false if the message does not
// have that shape.
bool parse_pair(const std::string& msg, std::size_t after_prefix, std::string_view middle, Signed& a,
                std::uint64_t& b) {
  std::size_t i = after_prefix;
  auto number = [&](std::uint64_t& out) {
    const std::size_t start = i;
    out = 0;
    while (i < msg.size() && msg[i] >= '0' && msg[i] <= '9')
      out = out * 10 + static_cast<std::uint64_t>(msg[i++] - '0');
    return i > start && i - start <= 19;
  };
  a.negative = i < msg.size() && msg[i] == '-';
  if (a.negative) ++i;
  if (!number(a.magnitude)) return false;
  if (msg.compare(i, middle.size(), middle) != 0) return false;
  i += middle.size();
  return number(b);
}

// |a - b|, saturating.
std::uint64_t distance(const Signed& a, std::uint64_t b) {
  if (a.negative) return a.magnitude > UINT64_MAX - b ? UINT64_MAX : a.magnitude + b;
  return a.magnitude > b ? a.magnitude - b : b - a.magnitude;
}

// The text after "size class N: " when msg starts so, else npos.
std::size_t after_size_class(const std::string& msg) {
  constexpr std::string_view kPrefix = "size class ";
  if (!msg.starts_with(kPrefix)) return std::string::npos;
  std::size_t i = kPrefix.size();
  const std::size_t digits = i;
  while (i < msg.size() && msg[i] >= '0' && msg[i] <= '9') ++i;
  if (i == digits || msg.compare(i, 2, ": ") != 0) return std::string::npos;
  return i + 2;
}

// Drift accumulated so far per counter kind (live-key shares, used-slot
// shares, carved blocks per size class): a dead writer held at most one block
// and had at most one update of each counter outstanding, so the drifts of
// one kind summed over all size classes are bounded by the deaths too.
struct DriftTotals {
  std::uint64_t by_kind[3] = {};
};

// Empty if the finding is explained by `deaths` dead writers; else why not.
std::string explain(const std::string& msg, std::uint64_t deaths, std::uint64_t leak_bound, DriftTotals& totals) {
  if (deaths == 0) return "no writer died";
  constexpr std::string_view kLeak = " carved bytes are neither reachable, free, nor in flight";
  if (msg.ends_with(kLeak)) {
    std::uint64_t n = 0;
    if (std::sscanf(msg.c_str(), "%" SCNu64, &n) != 1) return "unrecognised leak message";
    if (n > leak_bound)
      return "more than the " + std::to_string(leak_bound) + " bytes that " + std::to_string(deaths) +
             " dead writers can hold (one block each)";
    return {};
  }
  struct Shape {
    std::string_view prefix, middle;
  };
  static constexpr Shape kCounters[] = {{"live-key shares sum to ", ", the index has "},
                                        {"used-slot shares sum to ", ", the index has "}};
  static constexpr Shape kClassCounter = {"entries carved ", " blocks, reachable + free + in flight is "};
  Signed a;
  std::uint64_t b = 0;
  int kind = -1;
  bool parsed = false;
  for (int k = 0; k < 2; ++k) {
    if (msg.starts_with(kCounters[k].prefix)) {
      kind = k;
      parsed = parse_pair(msg, kCounters[k].prefix.size(), kCounters[k].middle, a, b);
    }
  }
  if (const std::size_t rest = after_size_class(msg); rest != std::string::npos) {
    if (msg.compare(rest, kClassCounter.prefix.size(), kClassCounter.prefix) == 0) {
      kind = 2;
      parsed = parse_pair(msg, rest + kClassCounter.prefix.size(), kClassCounter.middle, a, b);
    }
  }
  if (kind < 0) return "not a consequence of a kill";
  if (!parsed) return "unrecognised counter message";
  const std::uint64_t drift = distance(a, b);
  std::uint64_t& total = totals.by_kind[kind];
  total = drift > UINT64_MAX - total ? UINT64_MAX : total + drift;
  if (total > deaths)
    return "off by " + std::to_string(drift) +
           (total > drift ? " (" + std::to_string(total) + " over all classes)" : "") + ", more than the " +
           std::to_string(deaths) + " dead writers explain";
  return {};
}

}  // namespace

FsckVerdict judge_fsck(FsckReport report, std::uint64_t writer_deaths, std::uint64_t largest_block) {
  FsckVerdict v;
  v.largest_block = largest_block;
  v.leak_bound = writer_deaths * largest_block;
  DriftTotals totals;
  for (const std::string& msg : report.violations) {
    if (const std::string why = explain(msg, writer_deaths, v.leak_bound, totals); why.empty()) {
      v.explained.push_back(msg);
    } else {
      v.unexplained.push_back(msg);
      v.unexplained.back().append(" [").append(why).append("]");
    }
  }
  v.unlisted =
      report.violation_count > report.violations.size() ? report.violation_count - report.violations.size() : 0;
  v.report = std::move(report);
  return v;
}

FinalCheck check_final_state(const Map& map, const Options& o, const KeySpaces& spaces, SharedRegion& shared,
                             const KillLedger& kills) {
  unsigned printed = 0;
  auto violation = [&](const std::string& what) {
    const std::string msg = "final check: " + what;
    shared.record_violation(msg);
    if (printed++ < 10) std::fprintf(stderr, "shmap-stress: VIOLATION %s\n", msg.c_str());
  };
  FinalCheck out;
  std::string key, value;

  // Owned: the stored version is the acknowledged one, or one more for a key a
  // dying writer was writing; never less (a lost write), never more otherwise.
  std::vector<std::uint64_t> acked(spaces.owned);
  for (std::uint64_t id = 0; id < spaces.owned; ++id) {
    // Acquire: pairs with the writers' release stores; every writer has exited
    // and been reaped, so these are their final values.
    acked[id] = shared.owned_acked(id).load(std::memory_order_acquire);
    make_key(key, Space::owned, id, o.key_bytes);
    const std::string k = "owned key " + std::to_string(id) + ": ";
    if (acked[id] > 0) ++out.owned_acked_keys;
    out.acked_versions += acked[id];
    if (!map.get(key, value)) {
      if (acked[id] > 0) violation(k + "absent, but version " + std::to_string(acked[id]) + " was acknowledged");
      continue;
    }
    std::uint64_t v = 0;
    if (const std::string err = check_value(value, Space::owned, id, o.value_bytes, v); !err.empty()) {
      violation(k + err);
      continue;
    }
    if (v < acked[id]) {
      violation(k + "holds version " + std::to_string(v) + ", but " + std::to_string(acked[id]) +
                " was acknowledged (a lost write)");
    } else if (v == acked[id] + 1 && kills.owned_inflight.count(id)) {
      ++out.owned_inflight_landed;
    } else if (v > acked[id]) {
      violation(k + "holds version " + std::to_string(v) + ", but " + std::to_string(acked[id]) +
                " was acknowledged and no writer died writing it");
    }
  }

  // Counters: every acknowledged increment is in the value, and nothing beyond
  // the attempted ones (at most one per dead writer is unacknowledged).
  for (std::uint64_t c = 0; c < spaces.counters; ++c) {
    CounterResult r;
    for (unsigned w = 0; w < shared.writers(); ++w) {
      // Acquire: as above.
      r.acked += shared.writer(w).counter_acked[c].load(std::memory_order_acquire);
      // Acquire: as above.
      r.attempted += shared.writer(w).counter_attempts[c].load(std::memory_order_acquire);
    }
    make_key(key, Space::counter, c, o.key_bytes);
    std::int64_t raw = 0;
    const Status st = map.get_as(key, raw);
    const std::string k = "counter " + std::to_string(c) + ": ";
    if (st == Status::ok) {
      r.value = static_cast<std::uint64_t>(raw);
    } else if (st != Status::absent) {
      violation(k + "get_as<int64_t> returned " + to_string(st));
    }
    if (r.value < r.acked)
      violation(k + "is " + std::to_string(r.value) + ", but " + std::to_string(r.acked) +
                " increments were acknowledged (lost increments)");
    if (r.value > r.attempted || r.value > r.acked + kills.writer_deaths)
      violation(k + "is " + std::to_string(r.value) + ": " + std::to_string(r.acked) + " acknowledged, " +
                std::to_string(r.attempted) + " attempted, " + std::to_string(kills.writer_deaths) +
                " writer deaths (an increment applied twice?)");
    out.counters.push_back(r);
  }

  // Churn: whatever is there is a well-formed value of its key.
  for (std::uint64_t id = 0; id < spaces.churn; ++id) {
    make_key(key, Space::churn, id, o.key_bytes);
    if (!map.get(key, value)) continue;
    ++out.churn_present;
    std::uint64_t v = 0;
    if (const std::string err = check_value(value, Space::churn, id, o.value_bytes, v); !err.empty())
      violation("churn key " + std::to_string(id) + ": " + err);
  }

  // A walk of the quiet map: only keys of ours, each once, and every
  // acknowledged owned key and counter among them.
  std::vector<std::uint8_t> seen_owned(spaces.owned), seen_counter(spaces.counters), seen_churn(spaces.churn);
  map.for_each([&](std::string_view k, std::string_view v) {
    ++out.entries;
    ParsedKey pk{};
    if (!parse_key(k, o.key_bytes, spaces, pk)) {
      violation("for_each found a key this harness never writes (" + std::to_string(k.size()) + " bytes)");
      return;
    }
    std::vector<std::uint8_t>& seen = pk.space == Space::owned     ? seen_owned
                                      : pk.space == Space::counter ? seen_counter
                                                                   : seen_churn;
    if (seen[pk.id]++) violation("for_each saw key \"" + std::string(k) + "\" twice (a duplicate key)");
    std::uint64_t version = 0;
    if (pk.space == Space::counter) {
      if (v.size() != 8) violation("for_each: counter " + std::to_string(pk.id) + " is not 8 bytes");
    } else if (const std::string err = check_value(v, pk.space, pk.id, o.value_bytes, version); !err.empty()) {
      violation("for_each: key \"" + std::string(k) + "\": " + err);
    }
  });
  for (std::uint64_t id = 0; id < spaces.owned; ++id)
    if (acked[id] > 0 && !seen_owned[id]) violation("for_each missed owned key " + std::to_string(id));
  for (std::uint64_t c = 0; c < spaces.counters; ++c)
    if (out.counters[c].acked > 0 && !seen_counter[c]) violation("for_each missed counter " + std::to_string(c));
  return out;
}

}  // namespace shmap::stress
