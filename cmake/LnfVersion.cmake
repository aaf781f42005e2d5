# lnf_read_version(<header> <out-var>): "MAJOR.MINOR.PATCH" from the LNF_VERSION_{MAJOR,MINOR,PATCH}
# defines of include/lnformer/version.hpp, the one place the version is written.
function(lnf_read_version header out)
  file(STRINGS "${header}" defines REGEX "^#define LNF_VERSION_(MAJOR|MINOR|PATCH) +[0-9]+ *$")
  foreach(part MAJOR MINOR PATCH)
    if(NOT defines MATCHES "#define LNF_VERSION_${part} +([0-9]+)")
      message(FATAL_ERROR "${header} has no line `#define LNF_VERSION_${part} <number>`")
    endif()
    set(${part} ${CMAKE_MATCH_1})
  endforeach()
  set(${out} "${MAJOR}.${MINOR}.${PATCH}" PARENT_SCOPE)
endfunction()
