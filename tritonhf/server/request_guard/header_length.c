/*
 * A malformed Inference-Header-Content-Length answered with a wrong result. Triton's HTTP
 * frontend reads the binary-data extension's header with strtol and keeps what it returns as an
 * int: "abc" or an empty value are 0, which asks for a raw binary request (the whole body as the
 * model's one input), so the client's JSON header and data were embedded as one text; 2^32 + 108
 * wraps to 108. This library defines strtol in front of libc's and, called from
 * GetInferenceHeaderLength (found by name), answers -1 for anything but a plain decimal that
 * fits an int (spaces around it allowed): Triton's own range check then refuses it, "inference
 * header size should be in range (0, 2048), got: abc" (HTTP 400). Every other caller gets
 * libc's answer.
 */
#include "guard.h"

#include <dlfcn.h>
#include <limits.h>

typedef long (*strtol_fn)(const char*, char**, int);

/* ``text`` as a plain decimal that fits an int, or -1. */
static long
header_length(const char* text)
{
  const char* at = text;
  while (*at == ' ' || *at == '\t') {
    at++;
  }
  long value = 0;
  int digits = 0;
  for (; *at >= '0' && *at <= '9'; at++, digits++) {
    value = value * 10 + (*at - '0');
    if (value > INT_MAX) {
      return -1;
    }
  }
  while (*at == ' ' || *at == '\t') {
    at++;
  }
  return digits > 0 && *at == '\0' ? value : -1;
}

long
strtol(const char* text, char** end, int base)
{
  static strtol_fn library_strtol;
  if (end == NULL && base == 10 &&
      called_from(HEADER_LENGTH, (uintptr_t)__builtin_return_address(0))) {
    return header_length(text);
  }
  if (library_strtol == NULL) {
    library_strtol = (strtol_fn)dlsym(RTLD_NEXT, "strtol");
  }
  return library_strtol(text, end, base);
}
