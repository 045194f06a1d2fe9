// Consumer of an installed shmap: creates a map, writes, reads back from a
// second mapping, erases, removes. Exit 0 only if every step did what it must.
#include <unistd.h>

#include <cstdio>
#include <optional>
#include <random>
#include <shmap/shmap.hpp>
#include <string>

namespace {

int failed(const char* step) {
  std::fprintf(stderr, "shmap-consumer: %s\n", step);
  return 1;
}

int exercise(const std::string& name) {
  shmap::Options opts;
  opts.capacity = 64;
  shmap::Map writer = shmap::Map::create(name, opts);
  if (writer.insert("greeting", "hello") != shmap::Status::ok) return failed("insert did not return ok");
  if (writer.insert_or_assign("binary", std::string("a\0b", 3)) != shmap::Status::inserted)
    return failed("insert_or_assign did not return inserted");

  const shmap::Map reader = shmap::Map::open(name);
  if (reader.get("greeting") != std::optional<std::string>("hello")) return failed("get(greeting) != hello");
  if (reader.get("binary") != std::optional<std::string>(std::string("a\0b", 3))) return failed("binary value changed");
  if (reader.size() != 2) return failed("size() != 2");
  if (!writer.erase("greeting") || reader.contains("greeting")) return failed("erase not seen by the reader");
  if (!shmap::Map::remove(name)) return failed("remove() found no segment");
  return 0;
}

}  // namespace

int main() {
  // The pid alone can repeat (another pid namespace may share /dev/shm): a random word too.
  const std::string name =
      "/shmap-consumer-" + std::to_string(::getpid()) + "-" + std::to_string(std::random_device{}());
  try {
    const int rc = exercise(name);
    if (rc != 0) shmap::Map::remove(name);
    if (rc == 0) std::puts("shmap-consumer: ok");
    return rc;
  } catch (const shmap::Error& e) {
    shmap::Map::remove(name);
    std::fprintf(stderr, "shmap-consumer: %s\n", e.what());
    return 1;
  }
}
