// The C side of swift-raft's WAL: liburing (io_uring) and the hardware CRC32C instruction.
// Only what Swift cannot call directly lives here.
#ifndef SWIFT_RAFT_CLIBURING_SHIM_H
#define SWIFT_RAFT_CLIBURING_SHIM_H

// <features.h> first: without it a clean build sees `fd_set` defined twice through <liburing.h>.
#include <features.h>
#include <liburing.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

/// An eventfd (Glibc's Swift overlay does not export `eventfd`), close-on-exec.
static inline int swift_raft_eventfd(void) { return eventfd(0, EFD_CLOEXEC); }

/// An anonymous in-memory file (`memfd_create`, close-on-exec): the fault-injecting file
/// system's scratch target for io_uring's writes and syncs.
static inline int swift_raft_memfd(const char *name) { return (int)syscall(SYS_memfd_create, name, 1U /* MFD_CLOEXEC */); }

/// `IOSQE_IO_LINK` as a value (the macro form does not import into Swift).
static inline uint8_t swift_raft_sqe_flag_io_link(void) { return (uint8_t)(1U << IOSQE_IO_LINK_BIT); }

/// `IORING_FSYNC_DATASYNC` as a value.
static inline uint32_t swift_raft_fsync_datasync(void) { return IORING_FSYNC_DATASYNC; }

/// `IORING_SETUP_SQPOLL` as a value.
static inline uint32_t swift_raft_setup_sqpoll(void) { return IORING_SETUP_SQPOLL; }

#if defined(__x86_64__)
#include <cpuid.h>

/// 1 when the CPU has SSE4.2, whose `crc32` instruction computes CRC32C (Castagnoli).
static inline int swift_raft_crc32c_hardware_available(void) {
  unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
  return (ecx & bit_SSE4_2) != 0;
}

/// Advances the raw (not inverted) CRC32C state `crc` over `length` bytes with the SSE4.2
/// instruction, eight bytes at a time. Call only when `swift_raft_crc32c_hardware_available()`.
__attribute__((target("sse4.2")))
static inline uint32_t swift_raft_crc32c_hardware(uint32_t crc, const void *data, size_t length) {
  const unsigned char *p = (const unsigned char *)data;
  uint64_t c = crc;
  while (length >= 8) {
    uint64_t word;
    __builtin_memcpy(&word, p, 8);
    c = __builtin_ia32_crc32di(c, word);
    p += 8;
    length -= 8;
  }
  uint32_t c32 = (uint32_t)c;
  while (length > 0) {
    c32 = __builtin_ia32_crc32qi(c32, *p);
    p += 1;
    length -= 1;
  }
  return c32;
}
#else
static inline int swift_raft_crc32c_hardware_available(void) { return 0; }
static inline uint32_t swift_raft_crc32c_hardware(uint32_t crc, const void *data, size_t length) {
  (void)data;
  (void)length;
  return crc;
}
#endif

#endif
