#include "runner.hpp"

#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <type_traits>

#include "topology.hpp"

namespace shmap::bench {

std::int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

std::int64_t thread_cpu_ns() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

double RunResult::min_busy() const {
  double b = 1;
  for (const WorkerResult& w : workers) b = std::min(b, w.busy);
  return workers.empty() ? 0 : b;
}

namespace {

enum : std::uint32_t { kWait = 0, kGo = 1, kAbort = 2 };

// One worker's results, in its own cache lines (no false sharing between the
// workers writing them).
struct alignas(64) WorkerSlot {
  LoopCounts counts;
  std::int32_t cpu_start;
  std::int32_t cpu_end;
  std::int32_t failed;
  char note[160];
  char error[256];
};

void copy_text(char* dst, std::size_t cap, const std::string& s) {
  const std::size_t n = std::min(cap - 1, s.size());
  std::memcpy(dst, s.data(), n);
  dst[n] = '\0';
}

void spin_pause(unsigned& spins) {
  if (++spins % 64 == 0) {
    sched_yield();  // more workers than PUs: let the ones still preparing run
  } else {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
}

}  // namespace

// Lives in a MAP_SHARED mapping: every atomic is lock-free, hence address-free,
// so processes that share the mapping share the atomics.
struct Control {
  alignas(64) std::atomic<std::uint32_t> ready{0};  // workers prepared and waiting
  alignas(64) std::atomic<std::uint32_t> go{kWait};  // kWait -> kGo or kAbort, set once by the parent
  std::int64_t start_ns = 0;                         // written before go (published by its release)
  std::int64_t deadline_ns = 0;
  WorkerSlot slots[kMaxWorkers];
};
static_assert(std::atomic<std::uint32_t>::is_always_lock_free,
              "the start gate's atomics must be lock-free to work across processes");

std::int64_t StartGate::arrive_and_wait() {
  arrived_ = true;
  // Release: publishes this worker's preparation; pairs with the parent's acquire load of `ready`.
  c_.ready.fetch_add(1, std::memory_order_release);
  unsigned spins = 0;
  std::uint32_t g;
  // Acquire: pairs with the parent's release store of `go`, making start_ns/deadline_ns visible.
  while ((g = c_.go.load(std::memory_order_acquire)) == kWait) spin_pause(spins);
  if (g == kAbort) throw std::runtime_error("aborted: another worker failed");
  return c_.deadline_ns;
}

namespace {

// The control block and, after it, one latency histogram per worker, in one
// MAP_SHARED | MAP_ANONYMOUS mapping made before fork().
class ControlMapping {
 public:
  explicit ControlMapping(unsigned workers) {
    bytes_ = sizeof(Control) + workers * sizeof(LatencyHistogram);
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap of the control block");
    c_ = new (p) Control{};
    hist_ = reinterpret_cast<LatencyHistogram*>(static_cast<char*>(p) + sizeof(Control));
    for (unsigned w = 0; w < workers; ++w) new (hist_ + w) LatencyHistogram{};
  }
  ~ControlMapping() {
    static_assert(std::is_trivially_destructible_v<LatencyHistogram>, "the histograms need no destructor call");
    c_->~Control();
    munmap(c_, bytes_);
  }
  ControlMapping(const ControlMapping&) = delete;
  ControlMapping& operator=(const ControlMapping&) = delete;
  Control& operator*() const { return *c_; }
  Control* operator->() const { return c_; }
  LatencyHistogram* histogram(unsigned w) const { return hist_ + w; }

 private:
  std::size_t bytes_;
  Control* c_;
  LatencyHistogram* hist_;
};
static_assert(sizeof(Control) % alignof(LatencyHistogram) == 0, "the histograms follow the control block, aligned");

// The worker side, common to processes and threads. Returns the exit status.
int worker_main(Control& c, LatencyHistogram* hist, std::uint32_t period, unsigned w, WorkerMode mode,
                const Machine& machine, const Placement& p, const WorkerBody& body) {
  WorkerSlot& slot = c.slots[w];
  std::string note;
  const bool bound = mode == WorkerMode::processes ? machine.bind_process(p) : machine.bind_thread(p);
  if (!bound) {
    note = "binding to " + describe(p) + " failed: " + std::error_code(errno, std::generic_category()).message() + "; ";
  }
  slot.cpu_start = sched_getcpu();
  StartGate gate(c, hist, period);
  try {
    WorkerOutcome o = body(w, gate);
    slot.counts = o.counts;
    note += o.note;
  } catch (const std::exception& e) {
    slot.failed = 1;
    copy_text(slot.error, sizeof slot.error, e.what());
  } catch (...) {
    slot.failed = 1;
    copy_text(slot.error, sizeof slot.error, "unknown exception");
  }
  // Release: the parent's acquire spin on `ready` must not wait for a worker that failed before arriving.
  if (slot.failed && !gate.arrived()) c.ready.fetch_add(1, std::memory_order_release);
  slot.cpu_end = sched_getcpu();
  copy_text(slot.note, sizeof slot.note, note);
  return slot.failed ? 1 : 0;
}

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) {
    return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
           sigdescr_np(WTERMSIG(status)) + ")";  // glibc >= 2.32; unlike strsignal, thread-safe
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
    return "exited with status " + std::to_string(WEXITSTATUS(status));
  }
  return {};
}

void sleep_ms(long ms) {
  timespec ts{ms / 1000, (ms % 1000) * 1'000'000};
  nanosleep(&ts, nullptr);
}

}  // namespace

RunResult run_workers(WorkerMode mode, const Machine& machine, const std::vector<Placement>& plan, double duration_s,
                      std::uint32_t sample_period, const WorkerBody& body, const ParentProbe& probe) {
  const unsigned n = static_cast<unsigned>(plan.size());
  if (n == 0 || n > kMaxWorkers) throw std::invalid_argument("worker count must be 1.." + std::to_string(kMaxWorkers));
  ControlMapping c(n);
  RunResult result;
  std::vector<pid_t> pids;
  std::vector<int> statuses(n, 0);
  std::vector<bool> reaped(n, false);
  std::vector<std::thread> threads;

  auto reap = [&](bool block) {  // returns true when every child has been reaped
    for (unsigned w = 0; w < pids.size(); ++w) {
      if (reaped[w]) continue;
      const pid_t r = waitpid(pids[w], &statuses[w], block ? 0 : WNOHANG);
      if (r == pids[w] || (r < 0 && errno == ECHILD)) reaped[w] = true;
    }
    return std::all_of(reaped.begin(), reaped.end(), [](bool b) { return b; });
  };

  if (mode == WorkerMode::processes) {
    std::fflush(nullptr);  // no buffered output duplicated into the children
    for (unsigned w = 0; w < n; ++w) {
      const pid_t pid = fork();
      if (pid < 0) {
        const int err = errno;
        // Release: tells the started workers to give up; pairs with their acquire spin on `go`.
        c->go.store(kAbort, std::memory_order_release);
        reap(true);
        throw std::system_error(err, std::generic_category(), "fork");
      }
      if (pid == 0) _exit(worker_main(*c, c.histogram(w), sample_period, w, mode, machine, plan[w], body));
      pids.push_back(pid);
    }
  } else {
    for (unsigned w = 0; w < n; ++w) {
      threads.emplace_back(
          [&, w] { worker_main(*c, c.histogram(w), sample_period, w, mode, machine, plan[w], body); });
    }
  }

  // Wait for every worker to be ready; a process that dies first aborts the run.
  unsigned spins = 0;
  bool aborted = false;
  // Acquire: pairs with each worker's release increment, so their preparation happened before go.
  while (c->ready.load(std::memory_order_acquire) < n) {
    spin_pause(spins);
    if (mode == WorkerMode::processes && spins % 4096 == 0) {
      reap(false);
      if (std::any_of(reaped.begin(), reaped.end(), [](bool b) { return b; })) {
        aborted = true;
        break;
      }
    }
  }
  c->start_ns = now_ns();
  c->deadline_ns = c->start_ns + static_cast<std::int64_t>(duration_s * 1e9);
  // Release: publishes start_ns and deadline_ns; pairs with the acquire spin in arrive_and_wait.
  c->go.store(aborted ? kAbort : kGo, std::memory_order_release);

  if (mode == WorkerMode::processes) {
    // Poll (the workers have the CPUs); kill any worker still running well after the deadline.
    const std::int64_t kill_at = c->deadline_ns + std::max<std::int64_t>(10'000'000'000, c->deadline_ns - c->start_ns);
    while (!reap(false)) {
      if (now_ns() > kill_at) {
        for (unsigned w = 0; w < n; ++w) {
          if (reaped[w]) continue;
          result.errors.push_back("worker " + std::to_string(w) + " (pid " + std::to_string(pids[w]) +
                                  ") still running long after the deadline: killed (hang or livelock?)");
          kill(pids[w], SIGKILL);
        }
        reap(true);
        break;
      }
      if (probe && !aborted) probe(c->start_ns, c->deadline_ns);
      sleep_ms(1);
    }
  } else {
    for (std::thread& t : threads) t.join();
  }

  result.workers.resize(n);
  for (unsigned w = 0; w < n; ++w) {
    const WorkerSlot& s = c->slots[w];
    WorkerResult& r = result.workers[w];
    r.counts = s.counts;
    r.cpu_start = s.cpu_start;
    r.cpu_end = s.cpu_end;
    r.latency = summarize(*c.histogram(w));
    result.latency.merge(*c.histogram(w));
    r.note = s.note;
    if (s.failed) r.error = s.error;
    if (mode == WorkerMode::processes) {
      const std::string st = describe_status(statuses[w]);
      if (!st.empty() && r.error.empty()) r.error = st;
    }
    if (!r.error.empty()) result.errors.push_back("worker " + std::to_string(w) + ": " + r.error);
    if (r.counts.end_ns > 0) {
      r.seconds = static_cast<double>(r.counts.end_ns - c->start_ns) / 1e9;
      if (r.seconds > 0) r.busy = static_cast<double>(r.counts.cpu_ns) / 1e9 / r.seconds;
      result.seconds = std::max(result.seconds, r.seconds);
    }
    result.ops += r.counts.ops;
  }
  return result;
}

}  // namespace shmap::bench
