// Writers and readers. Every check a worker makes is sound under any
// interleaving and any kill of any other process; docs/stress.md gives the
// argument for each. The two ordering facts they rest on:
//   - an acknowledgement (a release store into the shared region) is made
//     after the map operation it acknowledges returned, so a reader that
//     acquire-loads it before starting a read reads the map after that
//     operation took effect;
//   - a writer's next write starts after its previous acknowledgement (and a
//     counter increment after its attempt was counted), so a reader that saw a
//     write through the map (the map publishes with a release CAS and reads with
//     an acquire load) sees the shared-region stores made before that write.
#include "worker.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "shmap/shmap.hpp"

namespace shmap::stress {

std::atomic<int> g_stop_signal{0};

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kUnknown = UINT64_MAX;

// Bytes of a key or value for a message: printable ASCII as is, the rest as \xNN.
std::string printable(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < s.size() && i < 48; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  if (s.size() > 48) out += "...";
  return out;
}

class Worker {
 public:
  Worker(const Options& o, const KeySpaces& spaces, SharedRegion& shared, const WorkerSpec& spec)
      : o_(o),
        spaces_(spaces),
        shared_(shared),
        spec_(spec),
        rng_(mix64(o.seed ^ mix64((std::uint64_t{spec.slot} << 32) + spec.incarnation + 1))),
        who_(std::string(to_string(spec.role)) + " " + std::to_string(spec.index) + " (pid " +
             std::to_string(::getpid()) + ")") {}

  const std::string& who() const noexcept { return who_; }

 protected:
  bool stopping() const noexcept {
    // Relaxed: a request to stop; nothing is read through either flag.
    return g_stop_signal.load(std::memory_order_relaxed) != 0 ||
           shared_.control().stop.load(std::memory_order_relaxed) != 0;
  }

  void violation(const std::string& what) {
    const std::string msg = who_ + ": " + what;
    shared_.record_violation(msg);
    if (printed_ < 5) {
      ++printed_;
      std::fprintf(stderr, "shmap-stress: VIOLATION %s\n", msg.c_str());
    }
  }

  void count(OpKind k) noexcept {
    std::atomic<std::uint64_t>& n = shared_.stats(spec_.slot).ops[k];
    // Relaxed: a progress counter with a single writer (this slot's one live incarnation).
    n.store(n.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

  // Picks a key space by weight among those this worker has keys in; -1 if none.
  struct Choice {
    std::uint64_t owned, counters, churn;
  };
  int pick(const Choice& w) {
    const std::uint64_t total = w.owned + w.counters + w.churn;
    if (total == 0) return -1;
    std::uint64_t r = rng_.below(total);
    if (r < w.owned) return 0;
    r -= w.owned;
    return r < w.counters ? 1 : 2;
  }

  // Sums one counter key's per-writer words.
  std::uint64_t counter_sum(std::uint64_t c, bool attempts) {
    std::uint64_t sum = 0;
    for (unsigned w = 0; w < shared_.writers(); ++w) {
      WriterState& ws = shared_.writer(w);
      // Acquire: pairs with the writer's release store after (acked) or before
      // (attempts) its fetch_add; see the callers for the bound it gives.
      sum += (attempts ? ws.counter_attempts[c] : ws.counter_acked[c]).load(std::memory_order_acquire);
    }
    return sum;
  }

  const Options& o_;
  const KeySpaces& spaces_;
  SharedRegion& shared_;
  const WorkerSpec& spec_;
  Rng rng_;
  std::string who_;
  unsigned printed_ = 0;
  std::string key_;
};

class Writer : public Worker {
 public:
  Writer(const Options& o, const KeySpaces& spaces, SharedRegion& shared, const WorkerSpec& spec)
      : Worker(o, spaces, shared, spec),
        map_(Map::open(o.name)),
        ws_(shared.writer(spec.index)),
        mine_(spaces.owned > spec.index ? (spaces.owned - spec.index + o.writers - 1) / o.writers : 0),
        cur_(mine_, kUnknown) {}

  void run() {
    const Choice weights{mine_ ? 50u : 0u, spaces_.counters ? 20u : 0u, spaces_.churn ? 30u : 0u};
    while (!stopping()) {
      switch (pick(weights)) {
        case 0:
          owned_write();
          break;
        case 1:
          counter_add();
          break;
        case 2:
          churn_op();
          break;
        default:
          ::usleep(10000);  // more writers than owned keys: this one has nothing to do
      }
    }
  }

 private:
  // The owned keys of writer w are w, w + W, w + 2W, ...; cur_[j] is the
  // version this process knows key index + j*W to hold, kUnknown until read back.
  std::uint64_t owned_id(std::uint64_t j) const { return spec_.index + j * o_.writers; }

  void owned_write() {
    const std::uint64_t j = rng_.below(mine_);
    const std::uint64_t id = owned_id(j);
    make_key(key_, Space::owned, id, o_.key_bytes);
    if (cur_[j] == kUnknown) cur_[j] = resume(id);
    const std::uint64_t cur = cur_[j];
    const std::uint64_t next = cur + 1;
    encode_value(next_, Space::owned, id, next, o_.value_bytes);

    // Relaxed: read only by the supervisor after this process is dead (waitpid
    // orders it); tells it which key may hold one version more than acknowledged.
    ws_.owned_inflight.store(id + 1, std::memory_order_relaxed);
    Status st;
    Status want;
    OpKind kind;
    if (cur == 0) {
      kind = kOwnedInsert, want = Status::ok;
      st = map_.insert(key_, next_);
    } else if (rng_.below(4) == 0) {
      // This writer is the key's only writer and knows its exact bytes: the
      // exchange must succeed.
      kind = kOwnedCas, want = Status::ok;
      encode_value(prev_, Space::owned, id, cur, o_.value_bytes);
      st = map_.compare_exchange(key_, prev_, next_);
    } else {
      kind = kOwnedAssign, want = Status::assigned;
      st = map_.insert_or_assign(key_, next_);
    }
    if (st == want) {
      // Release: pairs with the acquire loads of readers (before and after their
      // reads) and of the next incarnation's resume(); the write is done.
      shared_.owned_acked(id).store(next, std::memory_order_release);
      cur_[j] = next;
    } else {
      violation("owned key " + std::to_string(id) + ": writing version " + std::to_string(next) + " returned " +
                to_string(st) + ", expected " + to_string(want) + " (this writer is the key's only writer)");
      cur_[j] = kUnknown;
    }
    // Relaxed: see the store of id + 1 above.
    ws_.owned_inflight.store(0, std::memory_order_relaxed);
    count(kind);
  }

  // Reads back an owned key this process has not written yet (a respawned
  // writer continues where its killed predecessor stopped) and returns the
  // version to continue from.
  std::uint64_t resume(std::uint64_t id) {
    const bool found = map_.get(key_, buf_);
    // Acquire: pairs with the release store of the acknowledgement (this slot's
    // earlier incarnations); they all exited before this process was forked.
    const std::uint64_t acked = shared_.owned_acked(id).load(std::memory_order_acquire);
    const std::string k = "owned key " + std::to_string(id) + ": ";
    if (!found) {
      if (acked > 0) violation(k + "absent, but version " + std::to_string(acked) + " was acknowledged");
      return 0;
    }
    std::uint64_t stored = 0;
    if (const std::string err = check_value(buf_, Space::owned, id, o_.value_bytes, stored); !err.empty()) {
      violation(k + "stored value is malformed: " + err);
      return acked;
    }
    if (stored < acked) {
      violation(k + "holds version " + std::to_string(stored) + ", but " + std::to_string(acked) +
                " was acknowledged (a lost write)");
      return acked;
    }
    if (stored > acked + 1) {
      violation(k + "holds version " + std::to_string(stored) + ", but only " + std::to_string(acked) +
                " was acknowledged (its writer never wrote it)");
    } else if (stored == acked + 1) {
      // The killed predecessor's in-flight write took effect: acknowledge it, so
      // the next version is written only after its predecessor is acknowledged
      // (readers rely on that). Release: as in owned_write().
      shared_.owned_acked(id).store(stored, std::memory_order_release);
    }
    return stored;
  }

  void counter_add() {
    const std::uint64_t c = rng_.below(spaces_.counters);
    make_key(key_, Space::counter, c, o_.key_bytes);
    // Increments acknowledged before this fetch_add started happened before it,
    // so the value it adds to includes them.
    const std::uint64_t acked_before = counter_sum(c, false);
    std::atomic<std::uint64_t>& attempts = ws_.counter_attempts[c];
    // Release: pairs with the readers' acquire load of the attempts after their
    // read: a reader that sees this increment sees the attempt counted. (The map's
    // publishing CAS is a release too; this keeps the edge explicit here.)
    attempts.store(attempts.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    const FetchResult<std::int64_t> r = map_.fetch_add(key_, 1);
    if (r.status == Status::ok || r.status == Status::inserted) {
      const auto previous = static_cast<std::uint64_t>(r.previous);
      if (previous < acked_before)
        violation("counter " + std::to_string(c) + ": fetch_add found " + std::to_string(previous) + ", but " +
                  std::to_string(acked_before) + " increments were acknowledged before it began");
      std::atomic<std::uint64_t>& acked = ws_.counter_acked[c];
      // Release: pairs with the acquire loads in counter_sum() (readers, other
      // writers) and with the supervisor's final check.
      acked.store(acked.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    } else {
      violation("counter " + std::to_string(c) + ": fetch_add returned " + to_string(r.status));
    }
    count(kCounterAdd);
  }

  // The churn id to write: anywhere in the space, or (grow) in a window of
  // `keys` ids that slides one id every 4 churn operations of this writer;
  // each grow operation also erases an id just behind the window, so the
  // live keys stay about one window.
  std::uint64_t churn_id() {
    if (o_.workload != Workload::grow) return rng_.below(spaces_.churn);
    const std::uint64_t base = churn_ops_++ / 4;
    make_key(key_, Space::churn, (base + spaces_.churn - 1 - rng_.below(o_.keys)) % spaces_.churn, o_.key_bytes);
    (void)map_.erase(key_);
    count(kChurnErase);
    return (base + rng_.below(o_.keys)) % spaces_.churn;
  }

  void churn_op() {
    const std::uint64_t id = churn_id();
    make_key(key_, Space::churn, id, o_.key_bytes);
    const std::uint64_t r = rng_.below(10);
    if (r < 6) {
      encode_value(next_, Space::churn, id, ++churn_tag_ ^ (std::uint64_t{spec_.slot} << 48), o_.value_bytes);
      if (r < 4) {
        const Status st = map_.insert(key_, next_);
        if (st != Status::ok && st != Status::exists)
          violation("churn key " + std::to_string(id) + ": insert returned " + to_string(st));
        count(kChurnInsert);
      } else {
        const Status st = map_.insert_or_assign(key_, next_);
        if (st != Status::inserted && st != Status::assigned)
          violation("churn key " + std::to_string(id) + ": insert_or_assign returned " + to_string(st));
        count(kChurnAssign);
      }
    } else {
      (void)map_.erase(key_);
      count(kChurnErase);
    }
  }

  Map map_;
  WriterState& ws_;
  std::uint64_t mine_;
  std::vector<std::uint64_t> cur_;
  std::uint64_t churn_tag_ = 0;
  std::uint64_t churn_ops_ = 0;
  std::string next_, prev_, buf_;
};

class Reader : public Worker {
 public:
  Reader(const Options& o, const KeySpaces& spaces, SharedRegion& shared, const WorkerSpec& spec)
      : Worker(o, spaces, shared, spec),
        map_(open_read_only(o.name)),
        last_owned_(spaces.owned, 0),
        last_counter_(spaces.counters, 0),
        bytes_(kValueHeaderBytes + o.value_bytes, '\0') {}

  void run() {
    const Choice weights{spaces_.owned ? 50u : 0u, spaces_.counters ? 20u : 0u, spaces_.churn ? 30u : 0u};
    // One full for_each walk about every second, starting at a random phase.
    auto next_walk = Clock::now() + std::chrono::milliseconds(200 + rng_.below(800));
    for (std::uint64_t n = 0; !stopping(); ++n) {
      if (n % 256 == 0 && Clock::now() >= next_walk) {
        walk();
        next_walk = Clock::now() + std::chrono::seconds(1);
        continue;
      }
      switch (pick(weights)) {
        case 0:
          owned_read();
          break;
        case 1:
          counter_read();
          break;
        case 2:
          churn_read();
          break;
        default:
          ::usleep(10000);
      }
    }
  }

 private:
  static Map open_read_only(const std::string& name) {
    shmap::Options opts;
    // Readers write nothing shared: a read-only mapping proves it (a store would fault).
    opts.read_only = true;
    return Map::open(name, opts);
  }

  void owned_read() {
    const std::uint64_t id = rng_.below(spaces_.owned);
    make_key(key_, Space::owned, id, o_.key_bytes);
    std::atomic<std::uint64_t>& ack = shared_.owned_acked(id);
    // Acquire: pairs with the writer's release store after its write; every
    // version up to `before` was written before this read starts.
    const std::uint64_t before = ack.load(std::memory_order_acquire);
    const std::string k = "owned key " + std::to_string(id) + ": ";
    const std::uint64_t how = rng_.below(10);
    bool found = false;
    std::string_view value;
    if (how == 0) {
      found = map_.contains(key_);
    } else if (how == 1) {
      std::size_t len = 0;
      found = map_.get_bytes(key_, bytes_.data(), bytes_.size(), len);
      if (found && len > bytes_.size()) {
        violation(k + "get_bytes reports a value of " + std::to_string(len) + " bytes, expected " +
                  std::to_string(bytes_.size()));
        return;
      }
      value = std::string_view(bytes_.data(), len);
    } else {
      found = map_.get(key_, buf_);
      value = buf_;
    }
    // Acquire: pairs with the writer's release store; the writer acknowledges
    // version v - 1 before it starts writing v, so a read that returned v is
    // followed by an acknowledgement of at least v - 1.
    const std::uint64_t after = ack.load(std::memory_order_acquire);
    count(kOwnedGet);
    if (!found) {
      if (before > 0)
        violation(k + "absent, but version " + std::to_string(before) + " was acknowledged before the read began");
      return;
    }
    if (how == 0) return;  // contains(): presence is all it reports
    std::uint64_t v = 0;
    if (const std::string err = check_value(value, Space::owned, id, o_.value_bytes, v); !err.empty()) {
      violation(k + err);
      return;
    }
    if (v < before)
      violation(k + "read version " + std::to_string(v) + ", but " + std::to_string(before) +
                " was acknowledged before the read began");
    if (v > after + 1)
      violation(k + "read version " + std::to_string(v) + ", but only " + std::to_string(after) +
                " was acknowledged after the read (a version nobody wrote yet)");
    if (v < last_owned_[id])
      violation(k + "version went back from " + std::to_string(last_owned_[id]) + " to " + std::to_string(v));
    last_owned_[id] = std::max(last_owned_[id], v);
  }

  void counter_read() {
    const std::uint64_t c = rng_.below(spaces_.counters);
    make_key(key_, Space::counter, c, o_.key_bytes);
    const std::uint64_t acked_before = counter_sum(c, false);
    std::int64_t raw = 0;
    const Status st = map_.get_as(key_, raw);
    const std::uint64_t attempted_after = counter_sum(c, true);
    count(kCounterGet);
    const std::string k = "counter " + std::to_string(c) + ": ";
    if (st == Status::absent) {
      if (acked_before > 0)
        violation(k + "absent, but " + std::to_string(acked_before) + " increments were acknowledged");
      return;
    }
    if (st != Status::ok) {
      violation(k + "get_as<int64_t> returned " + to_string(st));
      return;
    }
    const auto v = static_cast<std::uint64_t>(raw);
    if (v < acked_before)
      violation(k + "read " + std::to_string(v) + ", but " + std::to_string(acked_before) +
                " increments were acknowledged before the read began");
    if (v > attempted_after)
      violation(k + "read " + std::to_string(v) + ", but only " + std::to_string(attempted_after) +
                " increments were attempted (an increment applied twice?)");
    if (v < last_counter_[c])
      violation(k + "went back from " + std::to_string(last_counter_[c]) + " to " + std::to_string(v));
    last_counter_[c] = std::max(last_counter_[c], v);
  }

  void churn_read() {
    const std::uint64_t id = rng_.below(spaces_.churn);
    make_key(key_, Space::churn, id, o_.key_bytes);
    const bool found = map_.get(key_, buf_);
    count(kChurnGet);
    std::uint64_t v = 0;
    if (found)
      if (const std::string err = check_value(buf_, Space::churn, id, o_.value_bytes, v); !err.empty())
        violation("churn key " + std::to_string(id) + ": " + err);
  }

  // A for_each walk: every entry is a well-formed entry of a known key, no key
  // is seen twice, and every key present for the whole walk is seen (owned and
  // counter keys are never erased, so those acknowledged before the walk are).
  void walk() {
    std::vector<std::uint64_t> owned_before(spaces_.owned);
    for (std::uint64_t id = 0; id < spaces_.owned; ++id)
      // Acquire: as in owned_read().
      owned_before[id] = shared_.owned_acked(id).load(std::memory_order_acquire);
    std::vector<std::uint64_t> counter_before(spaces_.counters);
    for (std::uint64_t c = 0; c < spaces_.counters; ++c) counter_before[c] = counter_sum(c, false);
    std::vector<std::uint8_t> seen_owned(spaces_.owned), seen_counter(spaces_.counters), seen_churn(spaces_.churn);

    map_.for_each([&](std::string_view key, std::string_view value) {
      ParsedKey pk{};
      if (!parse_key(key, o_.key_bytes, spaces_, pk)) {
        violation("for_each: a key this harness never writes: \"" + printable(key) + "\"");
        return;
      }
      std::vector<std::uint8_t>& seen = pk.space == Space::owned     ? seen_owned
                                        : pk.space == Space::counter ? seen_counter
                                                                     : seen_churn;
      if (seen[pk.id]++) violation("for_each: key \"" + printable(key) + "\" seen twice in one walk");
      std::uint64_t v = 0;
      if (pk.space == Space::counter) {
        if (value.size() != 8) {
          violation("for_each: counter " + std::to_string(pk.id) + " has " + std::to_string(value.size()) + " bytes");
        } else if (load_u64(value.data()) < counter_before[pk.id]) {
          violation("for_each: counter " + std::to_string(pk.id) + " is " + std::to_string(load_u64(value.data())) +
                    ", below the " + std::to_string(counter_before[pk.id]) + " acknowledged before the walk");
        }
      } else if (const std::string err = check_value(value, pk.space, pk.id, o_.value_bytes, v); !err.empty()) {
        violation("for_each: key \"" + printable(key) + "\": " + err);
      } else if (pk.space == Space::owned && v < owned_before[pk.id]) {
        violation("for_each: owned key " + std::to_string(pk.id) + " has version " + std::to_string(v) + ", but " +
                  std::to_string(owned_before[pk.id]) + " was acknowledged before the walk");
      }
    });

    for (std::uint64_t id = 0; id < spaces_.owned; ++id)
      if (owned_before[id] > 0 && !seen_owned[id])
        violation("for_each missed owned key " + std::to_string(id) + ", present since before the walk");
    for (std::uint64_t c = 0; c < spaces_.counters; ++c)
      if (counter_before[c] > 0 && !seen_counter[c])
        violation("for_each missed counter " + std::to_string(c) + ", present since before the walk");
    count(kWalk);
  }

  Map map_;
  std::vector<std::uint64_t> last_owned_;
  std::vector<std::uint64_t> last_counter_;
  std::string bytes_;  // get_bytes destination
  std::string buf_;
};

}  // namespace

void run_worker(const Options& opts, const KeySpaces& spaces, SharedRegion& shared, const WorkerSpec& spec) {
  int code = 0;
  try {
    if (spec.role == Role::writer) {
      Writer(opts, spaces, shared, spec).run();
    } else {
      Reader(opts, spaces, shared, spec).run();
    }
  } catch (const std::exception& e) {
    const std::string msg = std::string(to_string(spec.role)) + " " + std::to_string(spec.index) + " (pid " +
                            std::to_string(::getpid()) + "): " + e.what();
    shared.record_violation(msg);
    std::fprintf(stderr, "shmap-stress: VIOLATION %s\n", msg.c_str());
    code = kWorkerExitReported;
  }
  std::fflush(stderr);
  std::_Exit(code);
}

}  // namespace shmap::stress
