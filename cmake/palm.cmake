# palm_library(NAME SRCS ... DEPS ...): one static library per subsystem, rooted at src/.
function(palm_library name)
  cmake_parse_arguments(PL "" "" "SRCS;DEPS" ${ARGN})
  add_library(${name} STATIC ${PL_SRCS})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(${name} PUBLIC ${PL_DEPS})
endfunction()

# palm_test(NAME SRCS ... DEPS ... [LABELS ...]): a GoogleTest binary registered with ctest.
function(palm_test name)
  cmake_parse_arguments(PT "" "TIMEOUT" "SRCS;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${PT_SRCS})
  target_link_libraries(${name} PRIVATE ${PT_DEPS} GTest::gmock GTest::gtest_main)
  add_test(NAME ${name} COMMAND ${name})
  if(NOT PT_TIMEOUT)
    set(PT_TIMEOUT 120)
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${PT_TIMEOUT} LABELS "${PT_LABELS}"
    ENVIRONMENT "PALM_BIN=$<TARGET_FILE:palm>;PALM_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
endfunction()
