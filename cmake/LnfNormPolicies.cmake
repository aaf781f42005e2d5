# lnf_norm_policies(<types_var> <names_var>): the normalization policies of the library's list
# (`using NormPolicies = TypeList<...>` in include/lnformer/norm/policies.hpp), in its order, as C++
# type names (PreLN) and as their `name` members (pre, the spelling of --norm). Read from the headers
# at configure time, and the build re-configures when they change, so that a policy added to the list
# gets its parity tests and policy-matrix cells with no edit outside norm/.
function(lnf_norm_policies types_var names_var)
  set(dir ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/../include/lnformer/norm)
  file(GLOB headers ${dir}/*.hpp)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${headers})
  file(READ ${dir}/policies.hpp list_src)
  if(NOT list_src MATCHES "using NormPolicies = TypeList<([^>]*)>;")
    message(FATAL_ERROR "lnf_norm_policies: no `using NormPolicies = TypeList<...>;` in ${dir}/policies.hpp")
  endif()
  string(REGEX REPLACE "[ \t\r\n]" "" types "${CMAKE_MATCH_1}")
  string(REPLACE "," ";" types "${types}")
  set(names)
  foreach(type IN LISTS types)
    set(name "")
    foreach(h IN LISTS headers)
      file(READ ${h} src)
      if(src MATCHES "struct ${type} {[ \t\r\n]*static constexpr std::string_view name = \"([^\"]+)\";")
        set(name ${CMAKE_MATCH_1})
        break()
      endif()
    endforeach()
    if(NOT name)
      message(FATAL_ERROR "lnf_norm_policies: no header under ${dir} has `struct ${type} {` followed by its "
                          "`static constexpr std::string_view name = \"...\";` (the form every policy uses)")
    endif()
    list(APPEND names ${name})
  endforeach()
  set(${types_var} ${types} PARENT_SCOPE)
  set(${names_var} ${names} PARENT_SCOPE)
endfunction()
