// A minimal streaming JSON writer (objects, arrays, strings, numbers, booleans),
// enough for the result file; keeps the driver free of a JSON dependency.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace shmap::bench {

class JsonWriter {
 public:
  JsonWriter& begin_object();
  JsonWriter& end_object();
  JsonWriter& begin_array();
  JsonWriter& end_array();
  // Names the next value inside an object.
  JsonWriter& key(std::string_view k);
  JsonWriter& value(std::string_view s);
  JsonWriter& value(const char* s) { return value(std::string_view(s)); }
  JsonWriter& value(double d);
  JsonWriter& value(std::uint64_t u);
  JsonWriter& value(std::int64_t i);
  JsonWriter& value(unsigned u) { return value(std::uint64_t{u}); }
  JsonWriter& value(int i) { return value(std::int64_t{i}); }
  JsonWriter& value(bool b);
  template <class T>
  JsonWriter& field(std::string_view k, const T& v) {
    key(k);
    return value(v);
  }

  const std::string& str() const { return out_; }

 private:
  void before_value();
  void write_string(std::string_view s);
  JsonWriter& end_container(char close);
  void newline();
  std::string out_;
  std::vector<bool> first_;  // per open container: no element written yet
  bool after_key_ = false;
};

}  // namespace shmap::bench
