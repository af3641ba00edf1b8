# Imported targets for the Arrow C++ libraries shipped inside the pinned pyarrow
# wheel. The wheel has no CMake package config, so we declare the targets here:
#   Arrow::arrow Arrow::compute Arrow::acero Arrow::dataset Arrow::parquet Arrow::s3
# Binaries get an RPATH to the wheel's directory so they run without LD_LIBRARY_PATH.
if(NOT FSTORE_PYARROW_DIR)
  file(GLOB _fstore_pyarrow_candidates
       "${PROJECT_SOURCE_DIR}/.venv/lib/python3*/site-packages/pyarrow")
  list(LENGTH _fstore_pyarrow_candidates _n)
  if(_n EQUAL 0)
    message(FATAL_ERROR "pyarrow not found under .venv: run scripts/install-deps.sh "
                        "(or set FSTORE_PYARROW_DIR)")
  endif()
  list(GET _fstore_pyarrow_candidates 0 _dir)
  set(FSTORE_PYARROW_DIR "${_dir}" CACHE PATH "pyarrow wheel directory" FORCE)
endif()
set(FSTORE_ARROW_SO_VERSION "2600")
set(FSTORE_ARROW_INCLUDE_DIR "${FSTORE_PYARROW_DIR}/include")
if(NOT EXISTS "${FSTORE_ARROW_INCLUDE_DIR}/arrow/api.h")
  message(FATAL_ERROR "Arrow headers not found in ${FSTORE_ARROW_INCLUDE_DIR}")
endif()

function(fstore_import_arrow_lib target libname)
  set(_path "${FSTORE_PYARROW_DIR}/lib${libname}.so.${FSTORE_ARROW_SO_VERSION}")
  if(NOT EXISTS "${_path}")
    message(FATAL_ERROR "${_path} not found: is pyarrow pinned to the expected version?")
  endif()
  add_library(${target} SHARED IMPORTED GLOBAL)
  set_target_properties(${target} PROPERTIES
    IMPORTED_LOCATION "${_path}"
    IMPORTED_SONAME "lib${libname}.so.${FSTORE_ARROW_SO_VERSION}"
    INTERFACE_INCLUDE_DIRECTORIES "${FSTORE_ARROW_INCLUDE_DIR}"
    INTERFACE_COMPILE_DEFINITIONS "ARROW_NO_DEPRECATED_API")
  if(ARGN)
    set_property(TARGET ${target} PROPERTY INTERFACE_LINK_LIBRARIES ${ARGN})
  endif()
endfunction()

fstore_import_arrow_lib(Arrow::arrow arrow)
fstore_import_arrow_lib(Arrow::compute arrow_compute Arrow::arrow)
fstore_import_arrow_lib(Arrow::acero arrow_acero Arrow::compute)
fstore_import_arrow_lib(Arrow::parquet parquet Arrow::arrow)
fstore_import_arrow_lib(Arrow::dataset arrow_dataset Arrow::acero Arrow::parquet)
# S3FileSystem and the AWS SDK it embeds: a library of its own in the wheel.
fstore_import_arrow_lib(Arrow::s3 arrow_s3 Arrow::arrow)

# Executables find the wheel's libraries through RPATH (build tree and install).
list(APPEND CMAKE_BUILD_RPATH "${FSTORE_PYARROW_DIR}")
