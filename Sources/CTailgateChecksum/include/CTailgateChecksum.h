#ifndef C_TAILGATE_CHECKSUM_H
#define C_TAILGATE_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

/// CRC-32C (Castagnoli, the polynomial of iSCSI and ext4), continued from `crc` over `length` bytes:
/// `tailgate_crc32c(0, "123456789", 9) == 0xE3069283`, and checksumming a and then b from the first
/// result gives the checksum of a followed by b. Uses the CPU's CRC32 instruction where there is one
/// (x86-64 with SSE 4.2), a table otherwise.
uint32_t tailgate_crc32c(uint32_t crc, const void *data, size_t length);

/// The same with the table alone, whatever the CPU (for tests on machines that have the instruction).
uint32_t tailgate_crc32c_portable(uint32_t crc, const void *data, size_t length);

/// Whether `tailgate_crc32c` uses the CPU's instruction on this machine.
int tailgate_crc32c_is_accelerated(void);

#endif
