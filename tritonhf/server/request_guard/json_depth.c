/*
 * A deeply nested JSON body. Triton's HTTP frontend parses a request body with a recursive
 * JSON parser, then walks "data" recursively: "data" nested ~50,000 levels deep (a ~100 KB
 * request to any model) or "inputs" ~200,000 overflows the thread's stack, SIGSEGV. Both are
 * compiled into the executable, so no symbol of a library stands in front of them. Instead,
 * once at load, this library points the one call that hands an HTTP body to the parser (in
 * EVBufferToJson, to TritonJson::Value::Parse, both found by name; the call found by its
 * target) at body_parse (routing.c): it reads the nesting of the body (outside strings) and
 * refuses one deeper than MAX_JSON_DEPTH levels with an INVALID_ARG error (HTTP 400), or calls
 * the parser (and a body that is not JSON gets 400 too, at every endpoint, not Triton's 500). A
 * KServe v2 request nests 3 levels, "data" one more per dimension. Where the call is not found
 * as expected it changes nothing and says so on stderr.
 *
 * The same pass counts each object's members and refuses an object of more than
 * MAX_JSON_MEMBERS: Triton looks each request parameter up with a linear search, so a body of
 * 100,000 top-level "parameters" (1.7 MB) held an HTTP thread for 27.7 s, and a dozen such
 * requests held the health endpoint 14.6 s. No Triton request needs more than a handful.
 */
#include "guard.h"

#include <stdio.h>

#define MAX_JSON_DEPTH 1024
#define MAX_JSON_MEMBERS 1024

/* TritonJson::Value::Parse(const char*, size_t), a member function: this comes first. */
typedef TRITONSERVER_Error* (*parse_fn)(void*, const char*, size_t);

#define STRINGIFY(x) #x
#define TEXT(x) STRINGIFY(x)

/* Stands in for the parser's call on an HTTP body: refuses a body nested too deep, or with an
 * object of too many members. */
static TRITONSERVER_Error*
body_parse(void* value, const char* body, size_t length)
{
  int depth = 0, in_string = 0, escaped = 0;
  int members[MAX_JSON_DEPTH + 1]; /* of the object open at each depth (-1: an array) */
  const char* too_much = NULL;     /* what the body has too much of, at byte ``i`` */
  size_t i = 0;
  for (; i < length && too_much == NULL; i++) {
    char c = body[i];
    if (in_string) {
      if (escaped) {
        escaped = 0;
      } else if (c == '\\') {
        escaped = 1;
      } else if (c == '"') {
        in_string = 0;
      }
    } else if (c == '"') {
      in_string = 1;
    } else if (c == '[' || c == '{') {
      if (++depth > MAX_JSON_DEPTH) {
        too_much = "nests deeper than " TEXT(MAX_JSON_DEPTH) " levels";
      } else if (depth > 0) { /* not after stray closers, which the parser refuses */
        members[depth] = c == '{' ? 0 : -1;
      }
    } else if (c == ']' || c == '}') {
      depth--;
    } else if (c == ':' && depth > 0 && members[depth] >= 0 &&
               ++members[depth] > MAX_JSON_MEMBERS) {
      too_much = "has an object of more than " TEXT(MAX_JSON_MEMBERS) " members";
    }
  }
  if (too_much != NULL) {
    char message[200];
    snprintf(message, sizeof(message), "the request's JSON %s (at byte %zu): refused unparsed",
             too_much, i - 1);
    TRITONSERVER_Error* refused = invalid_argument(message);
    if (refused != NULL) { /* NULL outside Triton: the parser's own answer */
      return refused;
    }
  }
  /* A body that is not JSON is the client's error, not Triton's INTERNAL one (client_errors.c) */
  return as_client_error(((parse_fn)address_of(JSON_PARSE))(value, body, length));
}

/* Point EVBufferToJson's calls of the parser at body_parse; whether there was one to point. */
int
route_body_parse(void)
{
  return route_calls(BODY_TO_JSON, JSON_PARSE, (uintptr_t)&body_parse);
}
