/*
 * Preloaded into tritonserver (LD_PRELOAD) by `tritonhf serve` and the Triton image: keeps one
 * request from killing Triton 2.51.
 *
 * A client may ask for the KServe classification extension on any output ("parameters":
 * {"classification": N} over HTTP, class_count over gRPC). Triton's frontends then call
 * TopkClassifications, which divides the output's byte size by
 * TRITONSERVER_DataTypeByteSize(datatype) before it checks the type, and that size is 0 for
 * BYTES: an integer division by zero, SIGFPE, and the whole server is gone. Every classifier
 * tritonhf exports has a BYTES output (LABEL).
 *
 * This library defines TRITONSERVER_DataTypeByteSize in front of libtritonserver's. Called from
 * inside TopkClassifications (found by name in the executable's symbol table) for BYTES, it
 * answers 1 instead of 0; TopkClassifications then refuses the type, as it refuses BOOL:
 * "class result not available for output due to unsupported type 'BYTES'" (HTTP 400, gRPC
 * INVALID_ARGUMENT). Every other caller, and every other type, gets the library's own answer.
 * In an executable without that symbol (a stripped build, the backend stubs that inherit the
 * environment) it changes nothing; in a tritonserver without it, it says so on stderr.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define TRITONSERVER_TYPE_BYTES 13
#define MAX_RANGES 8

typedef uint32_t (*byte_size_fn)(int);

static const char TOPK[] = "_ZN6triton6server19TopkClassifications";
static uintptr_t range_start[MAX_RANGES], range_end[MAX_RANGES];
static int range_count;

static int
first_object_bias(struct dl_phdr_info* info, size_t size, void* bias)
{
  (void)size;
  *(uintptr_t*)bias = (uintptr_t)info->dlpi_addr; /* the first object is the executable */
  return 1;
}

static int
inside(size_t file_size, uint64_t offset, uint64_t length)
{
  return offset <= file_size && length <= file_size - offset;
}

/* Each function (and its .cold part) named TopkClassifications, as run-time address ranges. */
__attribute__((constructor)) static void
find_topk_classifications(void)
{
  int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return;
  }
  struct stat status;
  if (fstat(fd, &status) != 0 || (size_t)status.st_size < sizeof(Elf64_Ehdr)) {
    close(fd);
    return;
  }
  size_t size = (size_t)status.st_size;
  const unsigned char* file = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (file == MAP_FAILED) {
    return;
  }
  const Elf64_Ehdr* header = (const Elf64_Ehdr*)file;
  uintptr_t bias = 0;
  if (memcmp(header->e_ident, ELFMAG, SELFMAG) != 0 ||
      header->e_ident[EI_CLASS] != ELFCLASS64 ||
      !inside(size, header->e_shoff, (uint64_t)header->e_shnum * sizeof(Elf64_Shdr))) {
    goto done;
  }
  dl_iterate_phdr(first_object_bias, &bias);
  const Elf64_Shdr* sections = (const Elf64_Shdr*)(file + header->e_shoff);
  for (int s = 0; s < header->e_shnum; s++) {
    if (sections[s].sh_type != SHT_SYMTAB || sections[s].sh_link >= header->e_shnum) {
      continue;
    }
    const Elf64_Shdr* names = &sections[sections[s].sh_link];
    if (!inside(size, sections[s].sh_offset, sections[s].sh_size) ||
        !inside(size, names->sh_offset, names->sh_size)) {
      continue;
    }
    const Elf64_Sym* symbols = (const Elf64_Sym*)(file + sections[s].sh_offset);
    size_t count = sections[s].sh_size / sizeof(Elf64_Sym);
    for (size_t i = 0; i < count && range_count < MAX_RANGES; i++) {
      const Elf64_Sym* symbol = &symbols[i];
      if (ELF64_ST_TYPE(symbol->st_info) != STT_FUNC || symbol->st_size == 0 ||
          symbol->st_name + sizeof(TOPK) > names->sh_size) {
        continue;
      }
      const char* name = (const char*)(file + names->sh_offset + symbol->st_name);
      if (strncmp(name, TOPK, sizeof(TOPK) - 1) == 0) {
        range_start[range_count] = bias + symbol->st_value;
        range_end[range_count] = bias + symbol->st_value + symbol->st_size;
        range_count++;
      }
    }
  }
done:
  munmap((void*)file, size);
  char path[4096];
  ssize_t length = readlink("/proc/self/exe", path, sizeof(path) - 1);
  if (range_count == 0 && length > 0) {
    path[length] = '\0';
    const char* base = strrchr(path, '/');
    if (strcmp(base == NULL ? path : base + 1, "tritonserver") == 0) {
      static const char warning[] =
          "tritonhf classification guard: this tritonserver has no TopkClassifications "
          "symbol (stripped?), so a classification request on a BYTES output can still "
          "crash it\n";
      ssize_t ignored = write(STDERR_FILENO, warning, sizeof(warning) - 1);
      (void)ignored;
    }
  }
}

uint32_t
TRITONSERVER_DataTypeByteSize(int datatype)
{
  static byte_size_fn library_byte_size;
  if (library_byte_size == NULL) {
    library_byte_size = (byte_size_fn)dlsym(RTLD_NEXT, "TRITONSERVER_DataTypeByteSize");
  }
  uint32_t size = library_byte_size == NULL ? 0 : library_byte_size(datatype);
  if (size == 0 && datatype == TRITONSERVER_TYPE_BYTES) {
    uintptr_t caller = (uintptr_t)__builtin_return_address(0);
    for (int r = 0; r < range_count; r++) {
      if (caller >= range_start[r] && caller < range_end[r]) {
        return 1;
      }
    }
  }
  return size;
}
