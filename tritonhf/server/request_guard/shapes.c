/*
 * A shape whose size overflows. Triton checks that an input's data is as long as its shape
 * says by multiplying the dimensions without an overflow check: INT64 input_ids of shape
 * [1, 2^61 + 4] with 32 bytes of data pass (2^61 + 4 elements of 8 bytes wrap to 32), and the
 * Python-backend stub that receives them aborts building that array ("array is too big"),
 * before the step's code can refuse it; a negative dimension (2^63 + 4 read back) does the
 * same. Sent to a model step directly, each request killed its stub. This library defines
 * TRITONBACKEND_InputProperties and TRITONBACKEND_InputPropertiesForHostPolicy in front of
 * Triton's, which every backend calls to read an input, and answers an input whose shape does
 * not fit its bytes (a negative dimension, an element count that overflows, more elements than
 * the bytes hold) with an INVALID_ARG error naming it; the backend then fails that request.
 */
#include "guard.h"

#include <dlfcn.h>
#include <stdio.h>

typedef struct TRITONBACKEND_Input TRITONBACKEND_Input;
typedef TRITONSERVER_Error* (*properties_fn)(
    TRITONBACKEND_Input*, const char**, int*, const int64_t**, uint32_t*, uint64_t*, uint32_t*);
typedef TRITONSERVER_Error* (*host_properties_fn)(
    TRITONBACKEND_Input*, const char*, const char**, int*, const int64_t**, uint32_t*,
    uint64_t*, uint32_t*);

uint32_t TRITONSERVER_DataTypeByteSize(int datatype); /* classification.c */

/* An error for an input whose shape does not fit its byte size, or NULL when it fits. */
static TRITONSERVER_Error*
misfit(const char* name, int datatype, const int64_t* shape, uint32_t dims, uint64_t byte_size)
{
  uint64_t count = 1;
  int overflow = 0, negative = 0;
  for (uint32_t d = 0; d < dims; d++) {
    if (shape[d] < 0) {
      negative = 1;
    } else if (__builtin_mul_overflow(count, (uint64_t)shape[d], &count)) {
      overflow = 1;
    }
  }
  uint32_t element = TRITONSERVER_DataTypeByteSize(datatype);
  uint64_t needed = 0;
  if (!negative && !overflow) {
    if (element == 0) { /* BYTES: at least a 4-byte length per element */
      if (count <= byte_size / 4) {
        return NULL;
      }
    } else if (!__builtin_mul_overflow(count, (uint64_t)element, &needed) &&
               needed <= byte_size) {
      return NULL;
    }
  }
  char message[256];
  snprintf(
      message, sizeof(message),
      "input '%.64s' has a shape that does not fit its %llu bytes of data (%s)",
      name == NULL ? "?" : name, (unsigned long long)byte_size,
      negative ? "a negative dimension"
               : (overflow ? "its element count overflows" : "more elements than bytes hold"));
  return invalid_argument(message);
}

/* What Triton said of an input, handed on to the caller's pointers (any may be NULL). */
struct properties {
  const char* name;
  int datatype;
  const int64_t* shape;
  uint32_t dims;
  uint64_t byte_size;
  uint32_t buffers;
};

static TRITONSERVER_Error*
hand_on(
    TRITONSERVER_Error* error, const struct properties* own, const char** name, int* datatype,
    const int64_t** shape, uint32_t* dims_count, uint64_t* byte_size, uint32_t* buffer_count)
{
  if (error == NULL) {
    error = misfit(own->name, own->datatype, own->shape, own->dims, own->byte_size);
  }
  if (name != NULL) *name = own->name;
  if (datatype != NULL) *datatype = own->datatype;
  if (shape != NULL) *shape = own->shape;
  if (dims_count != NULL) *dims_count = own->dims;
  if (byte_size != NULL) *byte_size = own->byte_size;
  if (buffer_count != NULL) *buffer_count = own->buffers;
  return error;
}

TRITONSERVER_Error*
TRITONBACKEND_InputProperties(
    TRITONBACKEND_Input* input, const char** name, int* datatype, const int64_t** shape,
    uint32_t* dims_count, uint64_t* byte_size, uint32_t* buffer_count)
{
  static properties_fn library_properties;
  if (library_properties == NULL) {
    library_properties = (properties_fn)dlsym(RTLD_NEXT, "TRITONBACKEND_InputProperties");
  }
  if (library_properties == NULL) { /* not inside Triton: nothing to read */
    return NULL;
  }
  struct properties own = {0};
  TRITONSERVER_Error* error = library_properties(
      input, &own.name, &own.datatype, &own.shape, &own.dims, &own.byte_size, &own.buffers);
  return hand_on(error, &own, name, datatype, shape, dims_count, byte_size, buffer_count);
}

TRITONSERVER_Error*
TRITONBACKEND_InputPropertiesForHostPolicy(
    TRITONBACKEND_Input* input, const char* host_policy_name, const char** name, int* datatype,
    const int64_t** shape, uint32_t* dims_count, uint64_t* byte_size, uint32_t* buffer_count)
{
  static host_properties_fn library_properties;
  if (library_properties == NULL) {
    library_properties = (host_properties_fn)dlsym(
        RTLD_NEXT, "TRITONBACKEND_InputPropertiesForHostPolicy");
  }
  if (library_properties == NULL) { /* not inside Triton: nothing to read */
    return NULL;
  }
  struct properties own = {0};
  TRITONSERVER_Error* error = library_properties(
      input, host_policy_name, &own.name, &own.datatype, &own.shape, &own.dims,
      &own.byte_size, &own.buffers);
  return hand_on(error, &own, name, datatype, shape, dims_count, byte_size, buffer_count);
}
