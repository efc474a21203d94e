# SPDX-License-Identifier: Apache-2.0
# Helpers for the three levels of tests (style.md, rule 14).

# sh_add_unit_test(NAME SOURCES... LIBS libs...)
# A cmocka test in its own process, run by ctest with a timeout.
function(sh_add_unit_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS" ${ARGN})
  if(NOT SHOAL_TESTS OR SHOAL_FUZZ)
    return()
  endif()
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS} PkgConfig::CMOCKA)
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS unit)
endfunction()

# sh_add_fuzz(NAME SOURCES... LIBS libs... CORPUS dir [SECONDS n])
# A libFuzzer target; ctest runs it for a bounded time over the kept corpus,
# writing new units into the build tree (the repo's corpus stays as committed).
set(SHOAL_FUZZ_SECONDS 20 CACHE STRING "Seconds each fuzz target runs under ctest")
function(sh_add_fuzz name)
  cmake_parse_arguments(F "" "CORPUS;SECONDS" "SOURCES;LIBS" ${ARGN})
  if(NOT SHOAL_FUZZ)
    return()
  endif()
  add_executable(${name} ${F_SOURCES})
  target_link_libraries(${name} PRIVATE ${F_LIBS})
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  if(NOT F_SECONDS)
    set(F_SECONDS ${SHOAL_FUZZ_SECONDS})
  endif()
  set(work ${CMAKE_BINARY_DIR}/fuzz-corpus/${name})
  file(MAKE_DIRECTORY ${work})
  math(EXPR limit "${F_SECONDS} + 60")
  add_test(NAME ${name}
           COMMAND ${name} -max_total_time=${F_SECONDS} -timeout=10 -rss_limit_mb=2048
                   -print_final_stats=1 ${work} ${F_CORPUS})
  set_tests_properties(${name} PROPERTIES TIMEOUT ${limit} LABELS fuzz)
endfunction()
