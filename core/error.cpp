// shmap::Error, the shmap error category, and status names.
#include <cerrno>
#include <cstring>
#include <string>

#include "segment.hpp"
#include "shmap/shmap.hpp"

namespace shmap {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "shmap"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::already_exists: return "segment already exists";
      case errc::not_found: return "segment not found";
      case errc::bad_magic: return "not a shmap segment (bad magic number)";
      case errc::version_mismatch: return "unsupported layout version";
      case errc::abi_mismatch: return "segment built for another ABI";
      case errc::truncated: return "segment truncated";
      case errc::corrupt: return "segment corrupt";
      case errc::init_timeout: return "segment still initializing (timed out)";
      case errc::creator_died: return "segment creator died during initialization";
      case errc::invalid_argument: return "invalid argument";
      case errc::read_only: return "map opened read-only";
      case errc::too_many_processes: return "too many processes attached";
      case errc::busy: return "segment busy (attached processes or a repair in progress)";
    }
    return "unknown shmap error";
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const Category category;
  return category;
}

std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), error_category()}; }

Error::Error(std::error_code code, std::string segment, std::string what)
    : std::system_error(code, what), segment_(std::move(segment)), what_(std::move(what)) {}

const char* to_string(Status s) noexcept {
  switch (s) {
    case Status::ok: return "ok";
    case Status::inserted: return "inserted";
    case Status::assigned: return "assigned";
    case Status::exists: return "exists";
    case Status::absent: return "absent";
    case Status::mismatch: return "mismatch";
    case Status::wrong_size: return "wrong_size";
    case Status::full_index: return "full_index";
    case Status::full_arena: return "full_arena";
    case Status::key_too_long: return "key_too_long";
    case Status::value_too_long: return "value_too_long";
  }
  return "unknown";
}

namespace detail {

void throw_error(errc code, std::string_view segment, const std::string& what) {
  std::string msg = "shmap: segment '" + std::string(segment) + "': " + what;
  throw Error(make_error_code(code), std::string(segment), msg);
}

void throw_system(std::string_view segment, const std::string& call, int err) {
  std::string msg = "shmap: segment '" + std::string(segment) + "': " + call + " failed: " + std::strerror(err);
  throw Error(std::error_code(err, std::system_category()), std::string(segment), msg);
}

}  // namespace detail
}  // namespace shmap
