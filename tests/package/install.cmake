# ctest fixture step of the packaging tests: installs the build tree into a
# fresh prefix and checks that every file a consumer needs is there.
#   cmake -DBUILD_DIR=<build tree> -DPREFIX=<dir> -DLIBDIR=<relative libdir>
#         -DLIBRARY=<file name of the shmap library> [-DTOOL=<file name of the tool>]
#         [-DCONFIG=<config>] [-DCLEAN=<dirs to empty>] -P install.cmake
cmake_minimum_required(VERSION 3.20)

# A stale prefix would let a file dropped from the install rules go unnoticed.
file(REMOVE_RECURSE "${PREFIX}" ${CLEAN})

set(args --install "${BUILD_DIR}" --prefix "${PREFIX}")
if(CONFIG)
  list(APPEND args --config "${CONFIG}")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" ${args} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install ${BUILD_DIR} --prefix ${PREFIX} failed (${rc}); is the project built?")
endif()

set(expected
  include/shmap/shmap.hpp
  ${LIBDIR}/${LIBRARY}
  ${LIBDIR}/cmake/shmap/shmapConfig.cmake
  ${LIBDIR}/cmake/shmap/shmapConfigVersion.cmake
  ${LIBDIR}/cmake/shmap/shmapTargets.cmake
  ${LIBDIR}/pkgconfig/shmap.pc)
if(TOOL)
  list(APPEND expected bin/${TOOL})
endif()
foreach(f IN LISTS expected)
  if(NOT EXISTS "${PREFIX}/${f}")
    message(FATAL_ERROR "the install is missing ${f} (prefix ${PREFIX})")
  endif()
endforeach()

if(TOOL)
  execute_process(COMMAND "${PREFIX}/bin/${TOOL}" --version
    RESULT_VARIABLE rc OUTPUT_VARIABLE out OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0 OR NOT out MATCHES "^shmap [0-9]+\\.[0-9]+\\.[0-9]+$")
    message(FATAL_ERROR "installed bin/${TOOL} --version: exit ${rc}, output '${out}'")
  endif()
endif()
message(STATUS "installed into ${PREFIX}")
