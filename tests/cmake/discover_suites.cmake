# Registers one CTest test per GoogleTest *suite* of a test executable (run with --gtest_filter=Suite.*), written
# to OUT as a CTest script. The unit executable's tests take well under a second each, while every process pays
# about a second to load LibTorch: one process per suite keeps `ctest -L fast` short, and a failure still names
# its suite (rerun the executable with --gtest_filter to see the test). Suites whose name ends in "Statistics"
# (sampling-frequency checks over many draws) or "Enumeration" (exact expectations over every outcome) get the
# label `slow` instead of LABEL.
# Called after each build of the executable: cmake -D EXE=... -D OUT=... -D LABEL=... -D ENV=... -P this file.
execute_process(COMMAND "${EXE}" --gtest_list_tests OUTPUT_VARIABLE listing RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${EXE} --gtest_list_tests failed (${rc})")
endif()
string(REPLACE "\n" ";" lines "${listing}")
set(script "")
foreach(line IN LISTS lines)
  if(line MATCHES "^([^ #][^ ]*)\\.")
    set(suite "${CMAKE_MATCH_1}")
    set(label "${LABEL}")
    if(suite MATCHES "(Statistics|Enumeration)$")
      set(label slow)
    endif()
    string(APPEND script "add_test([=[${suite}]=] [=[${EXE}]=] [=[--gtest_filter=${suite}.*]=])\n"
                         "set_tests_properties([=[${suite}]=] PROPERTIES LABELS ${label} ENVIRONMENT [=[${ENV}]=])\n")
  endif()
endforeach()
file(WRITE "${OUT}" "${script}")
