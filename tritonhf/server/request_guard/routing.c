/*
 * Routes a call inside Triton's executable through the guard: every `call rel32` in a caller
 * (found by name) whose target is a callee (found by its exact symbol) is pointed at a jump,
 * `movabs $wrapper, %rax; jmp *%rax`, in a page mapped within a 32-bit call of it. The wrapper
 * takes the callee's arguments and calls the callee itself. This runs from the library's
 * constructor, before any thread of Triton's exists; where a call is not found as expected it
 * changes nothing.
 */
#include "guard.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* A jump to ``wrapper`` in a page within a 32-bit call of ``near``, or 0 if none is free. */
static uintptr_t
jump_near(uintptr_t near, uintptr_t wrapper)
{
  static const unsigned char code[] = {0x48, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xe0};
  long page = sysconf(_SC_PAGESIZE);
  for (uintptr_t distance = 1 << 24; distance < (1u << 31) - (1 << 24); distance += 1 << 24) {
    for (int side = 0; side < 2; side++) {
      uintptr_t hint = ((side ? near - distance : near + distance) & ~(uintptr_t)(page - 1));
      void* place = mmap((void*)hint, (size_t)page, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
      if (place == MAP_FAILED) {
        continue;
      }
      if ((uintptr_t)place != hint) { /* a kernel that took the address as a hint only */
        munmap(place, (size_t)page);
        continue;
      }
      memcpy(place, code, sizeof(code));
      memcpy((unsigned char*)place + 2, &wrapper, sizeof(wrapper));
      if (mprotect(place, (size_t)page, PROT_READ | PROT_EXEC) != 0) {
        munmap(place, (size_t)page);
        return 0;
      }
      return hint;
    }
  }
  return 0;
}

int
route_calls(enum caller caller, enum callee callee, uintptr_t wrapper)
{
  const struct ranges* code = ranges_of(caller);
  uintptr_t target = address_of(callee);
  if (target == 0 || code->count == 0) {
    return 0;
  }
  long page = sysconf(_SC_PAGESIZE);
  int routed = 0;
  uintptr_t jump = 0;
  for (int r = 0; r < code->count; r++) {
    for (uintptr_t at = code->start[r]; at + 5 <= code->end[r]; at++) {
      int32_t offset;
      memcpy(&offset, (const void*)(at + 1), sizeof(offset));
      if (*(const unsigned char*)at != 0xe8 || at + 5 + (intptr_t)offset != target) {
        continue; /* not a call of the callee */
      }
      if (jump == 0 && (jump = jump_near(at, wrapper)) == 0) {
        return 0;
      }
      intptr_t to_jump = (intptr_t)jump - (intptr_t)(at + 5);
      if (to_jump != (int32_t)to_jump) {
        return 0;
      }
      int32_t new_offset = (int32_t)to_jump;
      uintptr_t first = at & ~(uintptr_t)(page - 1), last = (at + 4) & ~(uintptr_t)(page - 1);
      size_t span = (size_t)(last - first) + (size_t)page;
      if (mprotect((void*)first, span, PROT_READ | PROT_WRITE | PROT_EXEC) != 0) {
        return 0;
      }
      memcpy((void*)(at + 1), &new_offset, sizeof(new_offset)); /* before any thread runs */
      mprotect((void*)first, span, PROT_READ | PROT_EXEC);
      routed = 1;
      at += 4;
    }
  }
  return routed;
}
