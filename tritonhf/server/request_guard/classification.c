/*
 * The classification extension on a text output. A client may ask for the KServe
 * classification extension on any output ("parameters": {"classification": N} over HTTP,
 * class_count over gRPC). Triton's frontends then call TopkClassifications, which divides
 * the output's byte size by TRITONSERVER_DataTypeByteSize(datatype) before it checks the
 * type, and that size is 0 for BYTES: an integer division by zero, SIGFPE, and the whole
 * server is gone. Every classifier tritonhf exports has a BYTES output (LABEL).
 *
 * This library defines TRITONSERVER_DataTypeByteSize in front of libtritonserver's. Called from
 * inside TopkClassifications (found by name in the executable's symbol table) for BYTES, it
 * answers 1 instead of 0; TopkClassifications then refuses the type, as it refuses BOOL:
 * "class result not available for output due to unsupported type 'BYTES'" (HTTP 400, gRPC
 * INVALID_ARGUMENT). Every other caller, and every other type, gets the library's own answer.
 * In an executable without that symbol (a stripped build, the backend stubs that inherit the
 * environment) it changes nothing; in a tritonserver without it, it says so on stderr.
 */
#include "guard.h"

#include <dlfcn.h>

typedef uint32_t (*byte_size_fn)(int);

uint32_t
TRITONSERVER_DataTypeByteSize(int datatype)
{
  static byte_size_fn library_byte_size;
  if (library_byte_size == NULL) {
    library_byte_size = (byte_size_fn)dlsym(RTLD_NEXT, "TRITONSERVER_DataTypeByteSize");
  }
  uint32_t size = library_byte_size == NULL ? 0 : library_byte_size(datatype);
  if (size == 0 && datatype == TRITONSERVER_TYPE_BYTES &&
      called_from(TOPK_CLASSIFICATIONS, (uintptr_t)__builtin_return_address(0))) {
    return 1;
  }
  return size;
}
