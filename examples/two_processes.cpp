// The README's example, built and run by ctest so it cannot rot.
#include <shmap/shmap.hpp>
#include <sys/wait.h>
#include <unistd.h>
#include <cstdio>

int main() {
  shmap::Options opts;
  opts.capacity = 100000;                                    // keys
  auto map = shmap::Map::create("/sessions", opts);          // fails if it exists
  if (fork() == 0) {                                         // a worker process
    auto m = shmap::Map::open("/sessions");
    (void)m.insert_or_assign("user:42", "alice");
    m.fetch_add("hits", 1);
    _exit(0);
  }
  wait(nullptr);
  std::string name;
  if (map.get("user:42", name)) std::printf("user:42 = %s\n", name.c_str());
  std::int64_t hits = 0;
  if (map.get_as("hits", hits) == shmap::Status::ok) std::printf("hits = %lld\n", (long long)hits);
  shmap::Map::remove("/sessions");                           // unlink the name
}
