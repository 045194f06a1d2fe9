// How shmap-stress sorts fsck's findings into "explained by kills" and real
// violations: the rule that decides whether stress.kill30 can pass.
#include <catch2/catch.hpp>

#include "verify.hpp"

namespace {

using shmap::FsckReport;
using shmap::stress::judge_fsck;

FsckReport report_of(std::vector<std::string> violations) {
  FsckReport r;
  r.ok = violations.empty();
  r.violation_count = violations.size();
  r.violations = std::move(violations);
  return r;
}

const std::vector<std::string> kKillFindings = {
    "size class 7: entries carved 16184 blocks, reachable + free + in flight is 16183",
    "live-key shares sum to 100, the index has 101 live slots",
    "used-slot shares sum to 200, the index has 201 claimed slots",
    "80 carved bytes are neither reachable, free, nor in flight",
};

}  // namespace

TEST_CASE("With no writer death every fsck finding is a real violation") {
  const auto v = judge_fsck(report_of(kKillFindings), 0, 80);
  CHECK(v.explained.empty());
  CHECK(v.unexplained.size() == kKillFindings.size());
  CHECK(v.real_failure());
}

TEST_CASE("Leaks and counter drift within what the writer deaths allow are explained") {
  const auto v = judge_fsck(report_of(kKillFindings), 2, 80);
  CHECK(v.explained.size() == kKillFindings.size());
  CHECK(v.unexplained.empty());
  CHECK_FALSE(v.real_failure());
  CHECK(v.leaks());
  CHECK(v.leak_bound == 160);
}

TEST_CASE("More leaked bytes than one largest block per dead writer is a real violation") {
  const auto v = judge_fsck(report_of({"161 carved bytes are neither reachable, free, nor in flight"}), 2, 80);
  CHECK(v.explained.empty());
  REQUIRE(v.unexplained.size() == 1);
  CHECK(v.real_failure());
}

TEST_CASE("Counter drift beyond the writer deaths is a real violation") {
  const auto v = judge_fsck(report_of({"live-key shares sum to 10, the index has 13 live slots"}), 2, 80);
  CHECK(v.unexplained.size() == 1);
  const auto u = judge_fsck(report_of({"used-slot shares sum to 16, the index has 13 claimed slots"}), 2, 80);
  CHECK(u.unexplained.size() == 1);
}

TEST_CASE("A negative live-key share sum is parsed with its sign") {
  // -1 against 1 live slot is off by 2: within 2 deaths, not within 1.
  const std::string msg = "live-key shares sum to -1, the index has 1 live slots";
  CHECK(judge_fsck(report_of({msg}), 2, 80).explained.size() == 1);
  CHECK(judge_fsck(report_of({msg}), 1, 80).unexplained.size() == 1);
}

TEST_CASE("Size-class drift is bounded by the writer deaths summed over all classes") {
  const auto v = judge_fsck(report_of({"size class 1: entries carved 5 blocks, reachable + free + in flight is 4",
                                       "size class 7: entries carved 9 blocks, reachable + free + in flight is 7",
                                       "live-key shares sum to 5, the index has 3 live slots"}),
                            2, 80);
  CHECK(v.explained.size() == 2);  // carved: 1 then 1 + 2 = 3 > 2; live-key shares: 2
  REQUIRE(v.unexplained.size() == 1);
  CHECK(v.unexplained[0].starts_with("size class 7: entries carved 9 blocks"));
}

TEST_CASE("Findings a kill cannot cause, or recovery should have cleared, are real violations whatever the deaths") {
  const auto v = judge_fsck(
      report_of({"slot 12: duplicate key (a second slot for one key)", "slot 3: record is free (odd generation)",
                 "blocks overlap at arena offset 4096",
                 "free list of entry 0, class 7 (80 B): node 12 is also in the index",
                 "registry entry 3: pid 4242 died attached and is not yet recovered (run recover)"}),
      1000, 80);
  CHECK(v.explained.empty());
  CHECK(v.unexplained.size() == 5);
}

TEST_CASE("A counter message that cannot be parsed is a real violation") {
  const auto v = judge_fsck(report_of({"live-key shares sum to many, the index has 3 live slots",
                                       "size class 2: entries carved 5 blocks, reachable + free is 3"}),
                            5, 80);
  CHECK(v.unexplained.size() == 2);
}

TEST_CASE("Findings fsck counted but did not list are real violations") {
  FsckReport r = report_of({"80 carved bytes are neither reachable, free, nor in flight"});
  r.violation_count = 150;
  const auto v = judge_fsck(r, 5, 80);
  CHECK(v.explained.size() == 1);
  CHECK(v.unlisted == 149);
  CHECK(v.real_failure());
}

TEST_CASE("A clean fsck report is neither a failure nor a leak") {
  const auto v = judge_fsck(report_of({}), 3, 80);
  CHECK_FALSE(v.real_failure());
  CHECK_FALSE(v.leaks());
}
