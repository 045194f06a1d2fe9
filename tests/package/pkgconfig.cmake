# Packaging test: compiles the consumer with exactly the flags that
# `pkg-config --cflags --libs shmap` gives for the installed package, runs it.
#   cmake -DPKG_CONFIG=<pkg-config> -DPREFIX=<install prefix> -DLIBDIR=<relative libdir>
#         -DCXX=<compiler> -DSOURCE=<main.cpp> -DOUTPUT=<executable>
#         [-DEXTRA_FLAGS="<flags>"] -P pkgconfig.cmake
cmake_minimum_required(VERSION 3.20)

set(ENV{PKG_CONFIG_PATH} "${PREFIX}/${LIBDIR}/pkgconfig")
execute_process(COMMAND "${PKG_CONFIG}" --cflags --libs shmap
  RESULT_VARIABLE rc OUTPUT_VARIABLE flags ERROR_VARIABLE err OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config --cflags --libs shmap failed (${rc}): ${err}")
endif()
message(STATUS "pkg-config --cflags --libs shmap: ${flags}")
separate_arguments(flag_list UNIX_COMMAND "${flags}")

# The flags must lead to this prefix, not to wherever the build was configured
# to install: a .pc file has to survive `cmake --install --prefix`.
file(REAL_PATH "${PREFIX}/include" want_include)
file(REAL_PATH "${PREFIX}/${LIBDIR}" want_lib)
set(include_ok FALSE)
set(lib_ok FALSE)
foreach(f IN LISTS flag_list)
  # Nested, because ${CMAKE_MATCH_1} in the same if() would be expanded before the match.
  if(f MATCHES "^-([IL])(.+)$")
    set(kind "${CMAKE_MATCH_1}")
    set(dir "${CMAKE_MATCH_2}")
    if(EXISTS "${dir}")
      file(REAL_PATH "${dir}" dir)
      if(kind STREQUAL "I" AND dir STREQUAL want_include)
        set(include_ok TRUE)
      elseif(kind STREQUAL "L" AND dir STREQUAL want_lib)
        set(lib_ok TRUE)
      endif()
    endif()
  endif()
endforeach()
if(NOT include_ok OR NOT lib_ok)
  message(FATAL_ERROR "shmap.pc does not point into the install prefix ${PREFIX}: "
    "'${flags}' does not lead to both ${want_include} and ${want_lib}. "
    "A .pc file that hard-codes the configure-time CMAKE_INSTALL_PREFIX breaks on "
    "`cmake --install --prefix`; derive prefix from \${pcfiledir}.")
endif()

separate_arguments(extra UNIX_COMMAND "${EXTRA_FLAGS}")
get_filename_component(output_dir "${OUTPUT}" DIRECTORY)
file(MAKE_DIRECTORY "${output_dir}")
execute_process(COMMAND "${CXX}" ${extra} "${SOURCE}" -o "${OUTPUT}" ${flag_list} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "compiling ${SOURCE} with the pkg-config flags failed (${rc})")
endif()

# In case shmap was built as a shared library.
set(ENV{LD_LIBRARY_PATH} "${PREFIX}/${LIBDIR}:$ENV{LD_LIBRARY_PATH}")
execute_process(COMMAND "${OUTPUT}" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${OUTPUT} failed (${rc})")
endif()
