/*
 * A large form-encoded body. Triton's HTTP frontend (libevhtp, built into the executable)
 * reads the body of a request sent as "Content-Type: application/x-www-form-urlencoded" (what
 * curl -d and Python's urllib send unless told otherwise) as query arguments once it has
 * arrived, and that parser copies it onto the thread's stack twice: a body of ~4.2 MB or more
 * overflows the 8 MiB stack, SIGSEGV, on any path, before any routing or key check. Triton
 * reads its own arguments from the URL and the JSON body, never from a form. This library
 * defines strncasecmp in front of libc's and, called from evhtp's end-of-request function
 * (htp__request_parse_fini_, found by name like TopkClassifications) to compare the content
 * type with that form type, answers "different": the body is left alone and the request
 * goes on as any other (a valid JSON body is served, anything else refused).
 */
#include "guard.h"

#include <dlfcn.h>
#include <string.h>

typedef int (*compare_fn)(const char*, const char*, size_t);

static const char FORM_TYPE[] = "application/x-www-form-urlencoded";

int
strncasecmp(const char* left, const char* right, size_t count)
{
  static compare_fn library_compare;
  if (count == sizeof(FORM_TYPE) - 1 &&
      memcmp(right, FORM_TYPE, sizeof(FORM_TYPE) - 1) == 0 &&
      called_from(PARSE_FINISHED, (uintptr_t)__builtin_return_address(0))) {
    return 1; /* not a form: evhtp leaves the body alone */
  }
  if (library_compare == NULL) {
    library_compare = (compare_fn)dlsym(RTLD_NEXT, "strncasecmp");
  }
  if (library_compare == NULL) { /* cannot happen with glibc; compare here all the same */
    for (size_t i = 0; i < count; i++) {
      int a = (unsigned char)left[i], b = (unsigned char)right[i];
      a = (a >= 'A' && a <= 'Z') ? a + 32 : a;
      b = (b >= 'A' && b <= 'Z') ? b + 32 : b;
      if (a != b || a == 0) {
        return a - b;
      }
    }
    return 0;
  }
  return library_compare(left, right, count);
}
