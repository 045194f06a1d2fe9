# Catch2 suites. Three executables, one per ctest label:
#   shmap_unit_tests    "unit"    single-threaded: lifecycle, errors, operations, forged
#                                 corruption, model test
#   shmap_thread_tests  "threads" std::thread races; never forks, so it runs under TSan
#   shmap_proc_tests    "procs"   fork()ed processes sharing a map by name
#   shmap_fault_tests   "procs"   kill a writer at every fault point, then repair + fsck
find_package(Catch2 2 REQUIRED)
find_package(Threads REQUIRED)
include(Catch)

# Catch's main is slow to compile: build it once and link it everywhere.
add_library(shmap_catch_main STATIC ${CMAKE_CURRENT_LIST_DIR}/test_main.cpp)
target_link_libraries(shmap_catch_main PUBLIC Catch2::Catch2 PRIVATE $<BUILD_INTERFACE:shmap_build_flags>)
target_compile_features(shmap_catch_main PUBLIC cxx_std_20)

function(shmap_add_catch_suite target label timeout)
  add_executable(${target} ${ARGN})
  target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR}/core)
  target_link_libraries(${target} PRIVATE shmap::shmap shmap_catch_main Threads::Threads
                                          $<BUILD_INTERFACE:shmap_build_flags>)
  catch_discover_tests(${target} PROPERTIES LABELS ${label} TIMEOUT ${timeout})
endfunction()

shmap_add_catch_suite(shmap_unit_tests unit 120
  ${CMAKE_CURRENT_LIST_DIR}/test_lifecycle.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_ops.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_corrupt.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_model.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_fsck.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_migrate.cpp)
# The same library with fault points compiled in (core/fault.hpp), for the
# kill-at-every-step test; never installed.
list(TRANSFORM SHMAP_SOURCES PREPEND ${PROJECT_SOURCE_DIR}/ OUTPUT_VARIABLE shmap_fault_sources)
add_library(shmap_faults STATIC ${shmap_fault_sources})
target_compile_definitions(shmap_faults PUBLIC SHMAP_FAULT_POINTS)
target_compile_features(shmap_faults PUBLIC cxx_std_20)
target_include_directories(shmap_faults PUBLIC ${PROJECT_SOURCE_DIR}/include PRIVATE ${PROJECT_SOURCE_DIR}/core)
target_link_libraries(shmap_faults PRIVATE $<BUILD_INTERFACE:shmap_build_flags>)

add_executable(shmap_fault_tests ${CMAKE_CURRENT_LIST_DIR}/test_faults.cpp)
target_include_directories(shmap_fault_tests PRIVATE ${PROJECT_SOURCE_DIR}/core)
target_link_libraries(shmap_fault_tests PRIVATE shmap_faults shmap_catch_main Threads::Threads
                                                $<BUILD_INTERFACE:shmap_build_flags>)
catch_discover_tests(shmap_fault_tests PROPERTIES LABELS procs TIMEOUT 300)

shmap_add_catch_suite(shmap_thread_tests threads 120
  ${CMAKE_CURRENT_LIST_DIR}/test_threads.cpp)
shmap_add_catch_suite(shmap_proc_tests procs 120
  ${CMAKE_CURRENT_LIST_DIR}/test_procs.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_registry.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_repair.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_grow_procs.cpp
  ${CMAKE_CURRENT_LIST_DIR}/test_space.cpp)
