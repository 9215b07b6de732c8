#ifndef TAILGATE_CZLIB_SHIM_H
#define TAILGATE_CZLIB_SHIM_H
#include <zlib.h>

/* zlib's init functions are macros; Swift cannot call macros. */
static inline int tailgate_deflateInit2(z_streamp stream, int level, int windowBits, int memLevel) {
    return deflateInit2(stream, level, Z_DEFLATED, windowBits, memLevel, Z_DEFAULT_STRATEGY);
}

static inline int tailgate_inflateInit2(z_streamp stream, int windowBits) {
    return inflateInit2(stream, windowBits);
}
#endif
