# floe_unity_build(): with FLOE_UNITY_BUILD on, every C++ target below the
# top directory compiles its .cpp sources in batches of 8, one compilation a
# batch, so the heavy headers (GoogleTest, nlohmann::json, MPI, HDF5) are
# parsed once a batch instead of once a source (the sanitizer stages use it:
# scripts/lib/stages.sh, RELIABILITY.md).
#
# Why not CMake's own CMAKE_UNITY_BUILD: before CMake 3.32 its batch files
# include each source by absolute path, so a clone at another path (CI
# builds a fresh clone each time) compiles every batch again, ccache or not.
# These batch files include their sources by paths relative to themselves,
# the same in every clone whose build directory sits at the same place in
# the tree, so ccache (with CCACHE_BASEDIR) finds them.
#
# A target sets FLOE_NO_UNITY to keep its sources apart.
option(FLOE_UNITY_BUILD "Compile each target's C++ sources in batches (unity build)" OFF)
set(FLOE_UNITY_BATCH 8)

function(floe_unity_target target)
  get_target_property(type ${target} TYPE)
  if(NOT type MATCHES "^(EXECUTABLE|STATIC_LIBRARY|SHARED_LIBRARY|MODULE_LIBRARY|OBJECT_LIBRARY)$")
    return()
  endif()
  get_target_property(skip ${target} FLOE_NO_UNITY)
  get_target_property(sources ${target} SOURCES)
  if(skip OR NOT sources)
    return()
  endif()
  get_target_property(source_dir ${target} SOURCE_DIR)
  get_target_property(binary_dir ${target} BINARY_DIR)
  set(unity_dir ${binary_dir}/floe_unity/${target})
  set(kept "")
  set(lines "")
  foreach(source IN LISTS sources)
    if(source MATCHES "^\\$<" OR NOT source MATCHES "\\.cpp$")
      list(APPEND kept ${source})
    else()
      get_filename_component(path ${source} ABSOLUTE BASE_DIR ${source_dir})
      file(RELATIVE_PATH relative ${unity_dir} ${path})
      list(APPEND lines "#include \"${relative}\"\n")
    endif()
  endforeach()
  # Batch k: lines [8k, 8k + 8), written only when its text changes.
  set(batches "")
  list(LENGTH lines count)
  set(first 0)
  while(first LESS count)
    list(SUBLIST lines ${first} ${FLOE_UNITY_BATCH} batch)
    list(JOIN batch "" text)
    list(LENGTH batches k)
    file(CONFIGURE OUTPUT ${unity_dir}/batch_${k}.cpp CONTENT "${text}" @ONLY)
    list(APPEND batches ${unity_dir}/batch_${k}.cpp)
    math(EXPR first "${first} + ${FLOE_UNITY_BATCH}")
  endwhile()
  set_property(TARGET ${target} PROPERTY SOURCES ${kept} ${batches})
endfunction()

# Every target of `dir` and the directories below it.
function(floe_unity_directory dir)
  get_property(targets DIRECTORY ${dir} PROPERTY BUILDSYSTEM_TARGETS)
  foreach(target IN LISTS targets)
    floe_unity_target(${target})
  endforeach()
  get_property(children DIRECTORY ${dir} PROPERTY SUBDIRECTORIES)
  foreach(child IN LISTS children)
    floe_unity_directory(${child})
  endforeach()
endfunction()

function(floe_unity_build)
  if(FLOE_UNITY_BUILD)
    floe_unity_directory(${PROJECT_SOURCE_DIR})
  endif()
endfunction()
