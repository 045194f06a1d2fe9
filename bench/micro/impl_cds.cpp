// libcds (Debian libcds-dev 2.3.3): the in-process lock-free maps, each with
// the hazard-pointer garbage collector cds::gc::HP.
//
// libcds-michael    MichaelHashMap over MichaelKVList buckets (load factor 1)
// libcds-feldman    FeldmanHashMap (multi-level array; the key is its own hash)
// libcds-splitlist  SplitListMap over a Michael list
//
// They are compared on 8-byte integer keys and values only (std::uint64_t:
// the keys' and values' first word), never on byte strings, so they do no
// hashing of bytes and no string copies: a generous baseline. The mapped
// value is an atomic word (Cell), so an update stores into the node in place
// (find() with a functor, as libcds documents for in-place changes) instead
// of update(), which for MichaelKVList/Feldman links a node with a default
// value and sets it afterwards, so a concurrent get could see the default.
// A missing key is inserted with insert(key, value), which builds the whole
// node before linking it. Memory per entry is the heap growth over the
// preload.
//
// Threads: main() attaches the main thread (CdsRuntime); every other
// benchmark thread attaches for its run (ThreadScope) and detaches after.
#include <cds/container/feldman_hashmap_hp.h>
#include <cds/container/michael_kvlist_hp.h>
#include <cds/container/michael_list_hp.h>
#include <cds/container/michael_map.h>
#include <cds/container/split_list_map.h>
#include <cds/gc/hp.h>
#include <cds/init.h>

#include <bit>

#include "micro.hpp"

namespace shmap::micro {

// Members are constructed in order and destroyed in reverse: the library is
// initialized before the garbage collector exists and terminated after it
// is gone, and the main thread is attached while both exist.
struct CdsRuntime::State {
  struct Library {
    Library() { cds::Initialize(); }
    ~Library() { cds::Terminate(); }
  } library;
  cds::gc::HP hp;
  struct MainThread {
    MainThread() { cds::threading::Manager::attachThread(); }
    ~MainThread() { cds::threading::Manager::detachThread(); }
  } main_thread;
};

CdsRuntime::CdsRuntime() : state_(std::make_unique<State>()) {}
CdsRuntime::~CdsRuntime() = default;

namespace {

namespace cc = cds::container;

struct Cell {
  std::atomic<std::uint64_t> v{0};
  Cell() = default;
  Cell(std::uint64_t x) : v(x) {}  // implicit: libcds builds a node from (key, value)
  // Relaxed: libcds copies a cell only while building a node nobody else sees yet.
  Cell(const Cell& o) : v(o.v.load(std::memory_order_relaxed)) {}
  Cell& operator=(const Cell& o) {
    // Relaxed: as above.
    v.store(o.v.load(std::memory_order_relaxed), std::memory_order_relaxed);
    return *this;
  }
};

// The keys are already uniformly random; a multiply spreads them over the
// bucket bits either end of the word.
struct WordHash {
  std::size_t operator()(std::uint64_t k) const { return k * 0x9e3779b97f4a7c15ull; }
};

struct MichaelListTraits : cc::michael_list::traits {
  using less = std::less<std::uint64_t>;
};
struct MichaelMapTraits : cc::michael_map::traits {
  using hash = WordHash;
};
using MichaelMap = cc::MichaelHashMap<cds::gc::HP, cc::MichaelKVList<cds::gc::HP, std::uint64_t, Cell, MichaelListTraits>,
                                      MichaelMapTraits>;

struct SplitTraits : cc::split_list::traits {
  using ordered_list = cc::michael_list_tag;
  using hash = WordHash;
  struct ordered_list_traits : cc::michael_list::traits {
    using less = std::less<std::uint64_t>;
  };
};
using SplitMap = cc::SplitListMap<cds::gc::HP, std::uint64_t, Cell, SplitTraits>;

using FeldmanMap = cc::FeldmanHashMap<cds::gc::HP, std::uint64_t, Cell, cc::feldman_hashmap::traits>;

std::unique_ptr<MichaelMap> make_map(const Case& c, MichaelMap*) { return std::make_unique<MichaelMap>(c.keys, 1); }
std::unique_ptr<SplitMap> make_map(const Case& c, SplitMap*) { return std::make_unique<SplitMap>(c.keys, 1); }
std::unique_ptr<FeldmanMap> make_map(const Case& c, FeldmanMap*) {
  // A head array of about one slot per key, array nodes of 16.
  const auto head_bits = std::clamp<std::size_t>(std::bit_width(c.keys), 4, 24);
  return std::make_unique<FeldmanMap>(head_bits, 4);
}

class AttachThread {
 public:
  AttachThread() : attached_(!cds::threading::Manager::isThreadAttached()) {
    if (attached_) cds::threading::Manager::attachThread();
  }
  ~AttachThread() {
    if (attached_) cds::threading::Manager::detachThread();
  }
  AttachThread(const AttachThread&) = delete;
  AttachThread& operator=(const AttachThread&) = delete;

 private:
  bool attached_;
};

template <class Map>
class CdsTable {
 public:
  using ThreadScope = AttachThread;
  using value_type = typename Map::value_type;

  explicit CdsTable(const Case& c) : map_(make_map(c, static_cast<Map*>(nullptr))) {}

  long get(std::string_view key, char* out) const {
    std::uint64_t v = 0;
    // Relaxed: the node was published by libcds's release CAS; the word itself may change under us.
    if (!map_->find(load64(key.data()), [&](value_type& item) { v = item.second.v.load(std::memory_order_relaxed); })) {
      return -1;
    }
    store64(out, v);
    return 8;
  }
  bool insert(std::string_view key, std::string_view value) {
    return map_->insert(load64(key.data()), load64(value.data()));
  }
  Put assign(std::string_view key, std::string_view value) {
    const std::uint64_t k = load64(key.data());
    const std::uint64_t v = load64(value.data());
    for (;;) {
      // Relaxed: last writer wins, as in the ideal tables.
      if (map_->find(k, [&](value_type& item) { item.second.v.store(v, std::memory_order_relaxed); })) {
        return Put::assigned;
      }
      if (map_->insert(k, v)) return Put::inserted;
    }
  }
  bool erase(std::string_view key) { return map_->erase(load64(key.data())); }
  bool fetch_add(std::string_view key, std::uint64_t delta) {
    // Relaxed RMW: exact under contention, ordered with nothing else.
    return map_->find(load64(key.data()),
                      [&](value_type& item) { item.second.v.fetch_add(delta, std::memory_order_relaxed); });
  }
  double footprint() const { return -1; }

 private:
  std::unique_ptr<Map> map_;
};

bool eight_by_eight(std::uint32_t k, std::uint32_t v) { return k == 8 && v == 8; }

}  // namespace

std::vector<Impl> cds_impls() {
  return {{"libcds-michael", true, eight_by_eight, run_case<CdsTable<MichaelMap>>},
          {"libcds-feldman", true, eight_by_eight, run_case<CdsTable<FeldmanMap>>},
          {"libcds-splitlist", true, eight_by_eight, run_case<CdsTable<SplitMap>>}};
}

}  // namespace shmap::micro
