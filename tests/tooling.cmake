# Tests of the shipped tool and of the installed package (included from
# tests/CMakeLists.txt, after enable_testing()).
#
#   cli.commands            label cli:       tests/cli_test.sh drives the built `shmap`
#                                             tool through every subcommand and exit code
#   packaging.install       label packaging: fixture: `cmake --install` into a fresh prefix
#   packaging.find_package  label packaging: tests/package built with find_package(shmap)
#   packaging.pkg_config    label packaging: tests/package/main.cpp built with pkg-config flags

# The TSan build turns the tool off (SHMAP_BUILD_TOOLS=OFF).
if(TARGET shmap-cli)
  add_test(NAME cli.commands COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cli_test.sh $<TARGET_FILE:shmap-cli>)
  set_tests_properties(cli.commands PROPERTIES LABELS cli TIMEOUT 300)
endif()

set(_shmap_pkg_root ${PROJECT_BINARY_DIR}/packaging-test)
set(_shmap_pkg_prefix ${_shmap_pkg_root}/prefix)
set(_shmap_pkg_consumer ${_shmap_pkg_root}/consumer)
set(_shmap_pkg_pkgconfig ${_shmap_pkg_root}/pkg-config)

# An instrumented library needs the sanitizer runtime in the consumer too.
set(_shmap_pkg_sanitize "")
if(SHMAP_SANITIZE STREQUAL "address")
  set(_shmap_pkg_sanitize "-fsanitize=address,undefined")
elseif(SHMAP_SANITIZE STREQUAL "thread")
  set(_shmap_pkg_sanitize "-fsanitize=thread")
endif()

set(_shmap_pkg_tool "")
if(TARGET shmap-cli)
  set(_shmap_pkg_tool "-DTOOL=$<TARGET_FILE_NAME:shmap-cli>")
endif()
add_test(NAME packaging.install
  COMMAND ${CMAKE_COMMAND}
    -DBUILD_DIR=${PROJECT_BINARY_DIR}
    -DPREFIX=${_shmap_pkg_prefix}
    -DLIBDIR=${CMAKE_INSTALL_LIBDIR}
    -DLIBRARY=$<TARGET_FILE_NAME:shmap>
    ${_shmap_pkg_tool}
    -DCONFIG=$<CONFIG>
    -DCLEAN=${_shmap_pkg_consumer}$<SEMICOLON>${_shmap_pkg_pkgconfig}
    -P ${CMAKE_CURRENT_SOURCE_DIR}/package/install.cmake)
set_tests_properties(packaging.install PROPERTIES
  LABELS packaging FIXTURES_SETUP shmap_installed TIMEOUT 120)

add_test(NAME packaging.find_package
  COMMAND ${CMAKE_CTEST_COMMAND}
    --build-and-test ${CMAKE_CURRENT_SOURCE_DIR}/package ${_shmap_pkg_consumer}
    --build-generator ${CMAKE_GENERATOR}
    --build-makeprogram ${CMAKE_MAKE_PROGRAM}
    --build-options
      -DCMAKE_PREFIX_PATH=${_shmap_pkg_prefix}
      -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER}
      -DCMAKE_BUILD_TYPE=$<CONFIG>
      -DCMAKE_CXX_FLAGS=${_shmap_pkg_sanitize}
      -DCMAKE_EXE_LINKER_FLAGS=${_shmap_pkg_sanitize}
    --test-command shmap-consumer)
set_tests_properties(packaging.find_package PROPERTIES
  LABELS packaging FIXTURES_REQUIRED shmap_installed TIMEOUT 300)

find_program(SHMAP_PKG_CONFIG_EXECUTABLE NAMES pkg-config pkgconf)
if(SHMAP_PKG_CONFIG_EXECUTABLE)
  add_test(NAME packaging.pkg_config
    COMMAND ${CMAKE_COMMAND}
      -DPKG_CONFIG=${SHMAP_PKG_CONFIG_EXECUTABLE}
      -DPREFIX=${_shmap_pkg_prefix}
      -DLIBDIR=${CMAKE_INSTALL_LIBDIR}
      -DCXX=${CMAKE_CXX_COMPILER}
      -DSOURCE=${CMAKE_CURRENT_SOURCE_DIR}/package/main.cpp
      -DOUTPUT=${_shmap_pkg_pkgconfig}/shmap-consumer
      -DEXTRA_FLAGS=${_shmap_pkg_sanitize}
      -P ${CMAKE_CURRENT_SOURCE_DIR}/package/pkgconfig.cmake)
  set_tests_properties(packaging.pkg_config PROPERTIES
    LABELS packaging FIXTURES_REQUIRED shmap_installed TIMEOUT 300)
else()
  message(WARNING "pkg-config not found: test packaging.pkg_config is not registered")
endif()
