#include "CTailgateChecksum.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <nmmintrin.h>
#endif

/* The reflected Castagnoli polynomial. */
#define POLYNOMIAL 0x82F63B78u

/* Slicing-by-8 tables for machines without the instruction. */
static uint32_t table[8][256];
static int accelerated;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void setup(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t crc = n;
        for (int k = 0; k < 8; k++) crc = (crc & 1) ? (crc >> 1) ^ POLYNOMIAL : crc >> 1;
        table[0][n] = crc;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t crc = table[0][n];
        for (int k = 1; k < 8; k++) {
            crc = table[0][crc & 0xFF] ^ (crc >> 8);
            table[k][n] = crc;
        }
    }
#if defined(__x86_64__)
    unsigned int a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d)) accelerated = (c & bit_SSE4_2) != 0;
#endif
}

static uint32_t software(uint32_t crc, const uint8_t *p, size_t n) {
    while (n > 0 && ((uintptr_t)p & 7) != 0) {
        crc = table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
        n--;
    }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        word ^= crc; /* little-endian: the CRC meets the first four bytes */
        crc = table[7][word & 0xFF] ^ table[6][(word >> 8) & 0xFF] ^ table[5][(word >> 16) & 0xFF] ^
              table[4][(word >> 24) & 0xFF] ^ table[3][(word >> 32) & 0xFF] ^ table[2][(word >> 40) & 0xFF] ^
              table[1][(word >> 48) & 0xFF] ^ table[0][word >> 56];
        p += 8;
        n -= 8;
    }
#endif
    while (n > 0) {
        crc = table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
        n--;
    }
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t hardware(uint32_t crc, const uint8_t *p, size_t n) {
    uint64_t wide = crc;
    while (n > 0 && ((uintptr_t)p & 7) != 0) {
        wide = _mm_crc32_u8((uint32_t)wide, *p++);
        n--;
    }
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        wide = _mm_crc32_u64(wide, word);
        p += 8;
        n -= 8;
    }
    while (n > 0) {
        wide = _mm_crc32_u8((uint32_t)wide, *p++);
        n--;
    }
    return (uint32_t)wide;
}
#endif

uint32_t tailgate_crc32c(uint32_t crc, const void *data, size_t length) {
    pthread_once(&once, setup);
    uint32_t state = ~crc;
#if defined(__x86_64__)
    if (accelerated) return ~hardware(state, (const uint8_t *)data, length);
#endif
    return ~software(state, (const uint8_t *)data, length);
}

uint32_t tailgate_crc32c_portable(uint32_t crc, const void *data, size_t length) {
    pthread_once(&once, setup);
    return ~software(~crc, (const uint8_t *)data, length);
}

int tailgate_crc32c_is_accelerated(void) {
    pthread_once(&once, setup);
    return accelerated;
}
