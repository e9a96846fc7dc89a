#ifndef TALLY_CRC32C_H
#define TALLY_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/// CRC-32C (Castagnoli), as used by iSCSI, ext4 and LevelDB. `crc` is the running value
/// (0 to start); the result is finalised, so tally_crc32c(tally_crc32c(0, a), b) == crc of a‖b.
uint32_t tally_crc32c(uint32_t crc, const void *data, size_t length);

/// 1 when the hardware instruction is used (SSE 4.2 on x86-64, CRC on ARMv8), 0 for the table.
int tally_crc32c_hardware(void);

#endif
