# Sanitizers for the project's own executables (tests, later examples), never for the library
# target itself: lnformer is header-only, so its users choose their own flags.
#
#   -DLNF_SANITIZE=address,undefined   (any list -fsanitize= accepts: thread, leak, ...)
#
# lnf_sanitize(<target>) adds the compile and link flags to one target. Errors are fatal
# (-fno-sanitize-recover=all), so a sanitizer report fails the test instead of scrolling past.
# LNF_SANITIZER_ENV is the environment a test runs with (see tests/CMakeLists.txt).

set(LNF_SANITIZE "" CACHE STRING "Sanitizers for tests, e.g. address,undefined (empty: none)")

set(LNF_SANITIZER_ENV "")
if(LNF_SANITIZE)
  string(REPLACE ";" "," _lnf_sanitize "${LNF_SANITIZE}")  # accept a CMake list too
  set(LNF_SANITIZE_FLAGS -fsanitize=${_lnf_sanitize} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  # UBSan: a stack for every report, and stop at the first one.
  list(APPEND LNF_SANITIZER_ENV "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
  # ASan: leak checking stays on (a oneDNN matmul from the per-thread context on two threads plus
  # OpenMP loops report no leaks); the other options catch more at a small run-time cost.
  list(APPEND LNF_SANITIZER_ENV
       "ASAN_OPTIONS=detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1:halt_on_error=1")
  list(JOIN LNF_SANITIZE_FLAGS " " _lnf_flags)
  message(STATUS "lnformer: tests built with ${_lnf_flags}")
endif()

function(lnf_sanitize target)
  if(LNF_SANITIZE)
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${LNF_SANITIZE_FLAGS}>)
    target_link_options(${target} PRIVATE ${LNF_SANITIZE_FLAGS})
  endif()
endfunction()
