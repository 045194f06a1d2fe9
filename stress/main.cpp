// shmap-stress: the supervisor. It creates the segment and the shared region,
// forks the workers, plays the killer (SIGKILL a random worker at exponential
// intervals, reap it, note what it had in flight, fork its successor), prints
// progress, then stops the workers, runs the final checks and fsck, and
// reports. The killer lives in the supervisor because only the parent can reap
// a child and must know, before respawning, exactly which process died.
#include <hwloc.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "model.hpp"
#include "options.hpp"
#include "report.hpp"
#include "shmap/shmap.hpp"
#include "verify.hpp"
#include "worker.hpp"

namespace shmap::stress {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kExitClean = 0;
constexpr int kExitViolation = 1;
constexpr int kExitUsage = 2;
constexpr int kExitSetup = 3;

// Workers get this long to finish their operation after SIGTERM; one that does
// not is stuck in an operation that should be lock-free, which is a violation.
constexpr auto kStopGrace = std::chrono::seconds(10);
// Unexpected deaths after which the run stops respawning and ends.
constexpr std::uint64_t kMaxUnexpectedDeaths = 20;

void on_stop_signal(int) {
  g_stop_signal.store(1, std::memory_order_relaxed);
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    // NOLINTNEXTLINE(concurrency-mt-unsafe): the supervisor has one thread
    const char* name = ::strsignal(sig);
    return "killed by signal " + std::to_string(sig) + " (" + (name ? name : "?") + ")";
  }
  return "status " + std::to_string(status);
}

// --pin compact: worker slot i runs on PU i modulo the PUs, in hwloc's logical
// order (SMT siblings next to each other, cores of a package together).
class Pinning {
 public:
  explicit Pinning(Pin policy) {
    if (policy == Pin::none) return;
    if (hwloc_topology_init(&topo_) != 0 || hwloc_topology_load(topo_) != 0)
      throw std::runtime_error("hwloc cannot load the machine topology");
    const int n = hwloc_get_nbobjs_by_type(topo_, HWLOC_OBJ_PU);
    for (int i = 0; i < n; ++i) pus_.push_back(hwloc_get_obj_by_type(topo_, HWLOC_OBJ_PU, static_cast<unsigned>(i)));
    if (pus_.empty()) throw std::runtime_error("hwloc finds no processing unit to pin to");
  }
  ~Pinning() {
    if (topo_) hwloc_topology_destroy(topo_);
  }
  Pinning(const Pinning&) = delete;
  Pinning& operator=(const Pinning&) = delete;

  // In the child, before it opens the map.
  void bind(unsigned slot) const {
    if (pus_.empty()) return;
    const hwloc_obj_t pu = pus_[slot % pus_.size()];
    // NOLINTBEGIN(concurrency-mt-unsafe): a worker has one thread
    if (hwloc_set_cpubind(topo_, pu->cpuset, HWLOC_CPUBIND_PROCESS) != 0)
      std::fprintf(stderr, "shmap-stress: warning: cannot pin worker slot %u to PU %u: %s\n", slot, pu->os_index,
                   std::strerror(errno));
    // NOLINTEND(concurrency-mt-unsafe)
  }

 private:
  hwloc_topology_t topo_ = nullptr;
  std::vector<hwloc_obj_t> pus_;
};

struct Proc {
  WorkerSpec spec;
  pid_t pid = -1;
};

class Supervisor {
 public:
  Supervisor(const Options& o, const KeySpaces& spaces, SharedRegion& shared, const Pinning& pin)
      : o_(o), spaces_(spaces), shared_(shared), pin_(pin), rng_(mix64(o.seed ^ 0x4b494c4c4552ULL)) {
    for (unsigned w = 0; w < o.writers; ++w) procs_.push_back({{Role::writer, w, w, 0}, -1});
    for (unsigned r = 0; r < o.readers; ++r) procs_.push_back({{Role::reader, r, o.writers + r, 0}, -1});
  }

  void start() {
    for (Proc& p : procs_) spawn(p);
  }

  // Runs until the duration ends, a SIGINT/SIGTERM arrives, or too many
  // workers died on their own. Returns the seconds run.
  double run() {
    const auto start = Clock::now();
    const auto deadline =
        start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o_.duration_s));
    auto next_progress = start + std::chrono::seconds(1);
    auto next_kill = o_.kill_rate > 0 ? start + exponential() : Clock::time_point::max();
    std::uint64_t last_ops = 0;
    auto last_progress = start;
    for (;;) {
      auto now = Clock::now();
      // Relaxed: set by the signal handler; nothing is read through it.
      if (now >= deadline || g_stop_signal.load(std::memory_order_relaxed) || unexpected_ >= kMaxUnexpectedDeaths)
        break;
      reap_unexpected();
      if (now >= next_kill) {
        kill_one();
        next_kill += exponential();
      }
      if (now >= next_progress) {
        const std::uint64_t ops = shared_.total_ops();
        const double dt = std::chrono::duration<double>(now - last_progress).count();
        std::fprintf(stderr,
                     "shmap-stress: %6.1f s  %10.0f ops/s  ops %" PRIu64 "  kills %" PRIu64 "  respawns %" PRIu64
                     "  violations %" PRIu64 "\n",
                     std::chrono::duration<double>(now - start).count(), dt > 0 ? double(ops - last_ops) / dt : 0.0,
                     ops, killed_writers_ + killed_readers_, respawns_, shared_.violations());
        last_ops = ops;
        last_progress = now;
        next_progress += std::chrono::seconds(1);
      }
      now = Clock::now();
      const auto wake = std::min({deadline, next_kill, next_progress, now + std::chrono::milliseconds(20)});
      if (wake > now) std::this_thread::sleep_for(wake - now);
    }
    if (unexpected_ >= kMaxUnexpectedDeaths)
      violation("stopping early: " + std::to_string(unexpected_) + " workers died on their own");
    return std::chrono::duration<double>(Clock::now() - start).count();
  }

  // Asks every worker to stop (shared flag and SIGTERM), waits, SIGKILLs the
  // stragglers, and reaps everyone.
  void stop() {
    // Relaxed: a request; workers need no data from the supervisor to stop.
    shared_.control().stop.store(1, std::memory_order_relaxed);
    for (const Proc& p : procs_)
      if (p.pid > 0) ::kill(p.pid, SIGTERM);
    const auto deadline = Clock::now() + kStopGrace;
    while (alive() > 0 && Clock::now() < deadline) {
      int status = 0;
      const pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid > 0) {
        if (Proc* p = find(pid)) {
          p->pid = -1;
          if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) died_unexpectedly(*p, status);
        }
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
    for (Proc& p : procs_) {
      if (p.pid <= 0) continue;
      ::kill(p.pid, SIGKILL);
      int status = 0;
      while (::waitpid(p.pid, &status, 0) < 0 && errno == EINTR) {
      }
      violation(who(p) + " did not stop within " + std::to_string(kStopGrace.count()) +
                " s of SIGTERM (an operation that never finished?); SIGKILLed");
      ++shutdown_kills_;
      record_death(p);
      p.pid = -1;
    }
  }

  // Ends every worker at once (a setup failure or an exception in the supervisor).
  void abort_all() {
    for (Proc& p : procs_) {
      if (p.pid <= 0) continue;
      ::kill(p.pid, SIGKILL);
      while (::waitpid(p.pid, nullptr, 0) < 0 && errno == EINTR) {
      }
      p.pid = -1;
    }
  }

  const KillLedger& ledger() const noexcept { return ledger_; }
  void fill(RunResult& r) const {
    r.killed_writers = killed_writers_;
    r.killed_readers = killed_readers_;
    r.shutdown_kills = shutdown_kills_;
    r.unexpected_deaths = unexpected_;
    r.respawns = respawns_;
  }

 private:
  Clock::duration exponential() {
    const double s = -std::log(1.0 - rng_.unit()) / o_.kill_rate;
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  }

  void violation(const std::string& what) {
    const std::string msg = "supervisor: " + what;
    shared_.record_violation(msg);
    std::fprintf(stderr, "shmap-stress: VIOLATION %s\n", msg.c_str());
  }

  std::string who(const Proc& p) const {
    return std::string(to_string(p.spec.role)) + " " + std::to_string(p.spec.index) + " (pid " + std::to_string(p.pid) +
           ")";
  }

  void spawn(Proc& p) {
    std::fflush(stdout);
    std::fflush(stderr);
    const pid_t supervisor = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) throw std::system_error(errno, std::generic_category(), "fork");
    if (pid == 0) {
      // A worker must not outlive a supervisor that was killed (a ctest
      // timeout, a SIGKILL): the kernel then SIGKILLs it too. The getppid()
      // check covers a supervisor that died before the prctl.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != supervisor) std::_Exit(0);
      pin_.bind(p.spec.slot);
      run_worker(o_, spaces_, shared_, p.spec);
    }
    p.pid = pid;
  }

  void respawn(Proc& p) {
    ++p.spec.incarnation;
    ++respawns_;
    spawn(p);
  }

  // A writer that died abruptly may have left one write in flight: note the
  // owned key it was writing, and clear the word for its successor.
  void record_death(Proc& p) {
    if (p.spec.role == Role::reader) {
      ++ledger_.reader_deaths;
      return;
    }
    ++ledger_.writer_deaths;
    std::atomic<std::uint64_t>& inflight = shared_.writer(p.spec.index).owned_inflight;
    // Relaxed: the writer is dead and reaped (waitpid orders its stores before
    // this load), and its successor is not forked yet.
    const std::uint64_t key = inflight.load(std::memory_order_relaxed);
    if (key != 0) ledger_.owned_inflight.insert(key - 1);
    // Relaxed: as above.
    inflight.store(0, std::memory_order_relaxed);
  }

  void died_unexpectedly(Proc& p, int status) {
    ++unexpected_;
    // A worker that recorded its own violation exits with kWorkerExitReported.
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == kWorkerExitReported))
      violation(who(p) + " " + describe_status(status));
    record_death(p);
  }

  void kill_one() {
    Proc& p = procs_[rng_.below(procs_.size())];
    if (p.pid <= 0) return;
    ::kill(p.pid, SIGKILL);
    int status = 0;
    while (::waitpid(p.pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
      (p.spec.role == Role::writer ? killed_writers_ : killed_readers_)++;
      record_death(p);
    } else {
      died_unexpectedly(p, status);  // it ended on its own just before the kill
    }
    respawn(p);
  }

  void reap_unexpected() {
    for (;;) {
      int status = 0;
      const pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid <= 0) return;
      Proc* p = find(pid);
      if (!p) continue;
      died_unexpectedly(*p, status);
      if (unexpected_ < kMaxUnexpectedDeaths)
        respawn(*p);
      else
        p->pid = -1;
    }
  }

  Proc* find(pid_t pid) {
    for (Proc& p : procs_)
      if (p.pid == pid) return &p;
    return nullptr;
  }

  std::size_t alive() const {
    return static_cast<std::size_t>(
        std::count_if(procs_.begin(), procs_.end(), [](const Proc& p) { return p.pid > 0; }));
  }

  const Options& o_;
  const KeySpaces& spaces_;
  SharedRegion& shared_;
  const Pinning& pin_;
  Rng rng_;
  std::vector<Proc> procs_;
  KillLedger ledger_;
  std::uint64_t killed_writers_ = 0;
  std::uint64_t killed_readers_ = 0;
  std::uint64_t shutdown_kills_ = 0;
  std::uint64_t unexpected_ = 0;
  std::uint64_t respawns_ = 0;
};

// Map options: the index comfortably above the key spaces (4x), and an arena
// for four times that many of the largest records, plus one block per kill the
// run can be expected to leak before recovery runs at the end.
shmap::Options map_options(const Options& o, const KeySpaces& spaces) {
  shmap::Options m;
  m.capacity = std::max<std::uint64_t>(4 * spaces.total(), 64);
  const std::uint64_t record = 8 + (o.key_bytes + 7) / 8 * 8 + (kValueHeaderBytes + o.value_bytes + 7) / 8 * 8;
  const std::uint64_t block = 2 * record;  // a size class rounds a record up by less than 2x
  const std::uint64_t kills = static_cast<std::uint64_t>(std::ceil(2 * o.duration_s * o.kill_rate)) + 1024;
  const long double want = (static_cast<long double>(m.capacity) + kills) * block + (1u << 20);
  constexpr std::uint64_t kArenaMax = std::uint64_t{32} << 30;
  if (want > static_cast<long double>(kArenaMax))
    throw UsageError("--keys/--value-bytes/--kill-rate need an arena above the 32 GiB limit");
  m.arena_bytes = static_cast<std::uint64_t>(want);
  m.hash_seed = mix64(o.seed ^ 0x48415348ULL);
  if (o.workload == Workload::grow) {
    // Everything from the smallest start: the index and the arena grow with
    // the key spaces, and one write moves 16 slots of a migration, so
    // migrations span many writes (and many kills).
    m.capacity = 12;
    m.arena_bytes = 0;
    m.help_slots = 16;
  }
  return m;
}

int run(Options o) {
  if (!o.seed_given) o.seed = (std::uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
  // The pid alone can repeat (another pid namespace may share /dev/shm): a random word too.
  if (o.name.empty())
    o.name = "/shmap-stress-" + std::to_string(::getpid()) + "-" + std::to_string(std::random_device{}());
  const KeySpaces spaces = key_spaces(o);
  std::printf("shmap-stress: seed %" PRIu64 " (repeat with --seed %" PRIu64 "), segment %s\n", o.seed, o.seed,
              o.name.c_str());
  std::fflush(stdout);

  const shmap::Options mopts = map_options(o, spaces);
  std::optional<Map> map;
  try {
    map.emplace(Map::create(o.name, mopts));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shmap-stress: cannot create the map: %s\n", e.what());
    return kExitSetup;
  }
  struct Remove {
    const Options& o;
    ~Remove() {
      if (o.keep) return;
      try {
        Map::remove(o.name);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "shmap-stress: cannot remove %s: %s\n", o.name.c_str(), e.what());
      }
    }
  } remove_at_exit{o};
  if (o.keep) std::printf("shmap-stress: --keep: the segment %s stays after the run\n", o.name.c_str());

  std::optional<SharedRegion> shared;
  std::optional<Pinning> pinning;
  try {
    shared.emplace(o.writers, o.readers, spaces.owned);
    pinning.emplace(o.pin);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shmap-stress: setup failed: %s\n", e.what());
    return kExitSetup;
  }

  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);

  RunResult r;
  r.opts = o;
  r.spaces = spaces;
  Supervisor sup(o, spaces, *shared, *pinning);
  try {
    sup.start();
    r.elapsed_s = sup.run();
    sup.stop();
  } catch (const std::exception& e) {
    sup.abort_all();
    std::fprintf(stderr, "shmap-stress: the run failed: %s\n", e.what());
    return kExitSetup;
  }
  sup.fill(r);

  // Every worker is reaped: the map is quiet and fsck is exact.
  const Stats stats = map->stats();
  std::uint64_t largest_block = 0;
  for (const SizeClassStats& c : stats.classes) largest_block = std::max<std::uint64_t>(largest_block, c.block_bytes);
  r.fsck = judge_fsck(recover_and_fsck(*map, r.before_recovery), sup.ledger().writer_deaths, largest_block);
  r.final = check_final_state(*map, o, spaces, *shared, sup.ledger());
  r.index = map->stats();
  if (r.fsck.report.unretired_tables != 0)
    shared->record_violation("final check: " + std::to_string(r.fsck.report.unretired_tables) +
                             " past index tables are not retired after recovery");
  if (r.index.migrating) shared->record_violation("final check: a migration still runs after recovery");
  if (r.final.entries != r.fsck.report.live_keys)
    shared->record_violation("final check: for_each saw " + std::to_string(r.final.entries) + " entries, fsck counts " +
                             std::to_string(r.fsck.report.live_keys) + " live slots");

  for (unsigned k = 0; k < kOpKinds; ++k) r.ops[k] = shared->ops(static_cast<OpKind>(k));
  r.total_ops = shared->total_ops();
  r.violations = shared->violations();
  r.messages = shared->messages();

  const std::uint64_t real = r.violations + r.fsck.unexplained.size() + r.fsck.unlisted;
  if (real > 0) {
    r.exit_status = kExitViolation;
    r.verdict = "FAIL: " + std::to_string(r.violations) + " violations, " +
                std::to_string(r.fsck.unexplained.size() + r.fsck.unlisted) + " fsck violations not explained by kills";
  } else if (r.fsck.leaks()) {
    const std::string what = std::to_string(r.fsck.report.leaked_bytes) + " leaked bytes and " +
                             std::to_string(r.fsck.explained.size()) +
                             " fsck findings after recovery, all explained by the " +
                             std::to_string(sup.ledger().writer_deaths) + " writer deaths";
    if (o.allow_leaks) {
      r.exit_status = kExitClean;
      r.verdict = "PASS with a warning: " + what + " (allowed by --allow-leaks)";
    } else {
      r.exit_status = kExitViolation;
      r.verdict = "FAIL: " + what + " (--allow-leaks makes this a warning)";
    }
  } else {
    r.exit_status = kExitClean;
    r.verdict = "PASS: no violation, fsck clean, 0 leaked bytes";
  }

  print_summary(stdout, r);
  if (!o.json_path.empty()) {
    if (const std::string err = write_json(o.json_path, r); !err.empty())
      std::fprintf(stderr, "shmap-stress: %s\n", err.c_str());
    else
      std::printf("  json            %s\n", o.json_path.c_str());
  }
  std::fflush(stdout);
  return r.exit_status;
}

}  // namespace
}  // namespace shmap::stress

int main(int argc, char** argv) {
  using namespace shmap::stress;
  std::optional<Options> o;
  try {
    o = parse_options(argc, argv);
    if (!o) return kExitClean;
    return run(std::move(*o));
  } catch (const UsageError& e) {
    std::fprintf(stderr, "shmap-stress: %s (see --help)\n", e.what());
    return kExitUsage;
  }
}
