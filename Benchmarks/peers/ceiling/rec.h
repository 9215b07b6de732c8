/* Shared by the C peers: realistic ~200-byte records like Tailgate's demo workers, and ISO-8601 time. */
#pragma once
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *REC_MSG[][4] = {
    {"DEBUG", "bar 002050.SZ 09:01 o=9.97 h=10.00 l=9.95 c=9.98 v=4700", "on_bar", "88"},
    {"INFO", "signal LONG 002050.SZ strength=0.74 (fast MA crossed slow MA)", "generate_signal", "131"},
    {"INFO", "order submitted id=A-10492 LONG 002050.SZ 1000 @ 9.98 limit", "send_order", "212"},
    {"WARNING", "slippage 0.03 above threshold on fill id=A-10492", "on_trade", "277"},
};

static inline double rec_mono(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec + ts.tv_nsec / 1e9; }

static inline double rec_real(void) { struct timespec ts; clock_gettime(CLOCK_REALTIME, &ts); return ts.tv_sec + ts.tv_nsec / 1e9; }

/* writes the wall-clock time `at` (seconds since the epoch) as "2026-11-27T13:16:40.123456Z" (27 chars + NUL) */
static inline void rec_iso_at(double at, char *out) {
    time_t sec = (time_t)at; long micros = (long)((at - (double)sec) * 1e6);
    if (micros > 999999) micros = 999999;
    struct tm tm; gmtime_r(&sec, &tm);
    snprintf(out, 40, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, micros);
}

/* writes "2026-11-27T13:16:40.123456Z" (27 chars + NUL) for now */
static inline void rec_iso_now(char *out) { rec_iso_at(rec_real(), out); }

/* appends one record's JSON to out; returns bytes written */
static inline int rec_format(char *out, size_t cap, long long seq, const char *iso) {
    const char **m = REC_MSG[seq % 4];
    return snprintf(out, cap,
        "{\"seq\":%lld,\"timestamp\":\"%s\",\"level\":\"%s\",\"message\":\"%s\",\"logger_name\":\"TurtleBreakout\","
        "\"module\":\"strategies.turtlebreakout\",\"func_name\":\"%s\",\"line_no\":%s}", seq, iso, m[0], m[1], m[2], m[3]);
}

/* builds {"type":"logs","records":[...]} for seqs first..first+count-1 into out (cap >= count*300+64),
 * every record stamped `iso` (its publish time) */
static inline size_t rec_batch_at(char *out, size_t cap, long long first, int count, const char *iso) {
    size_t n = (size_t)snprintf(out, cap, "{\"type\":\"logs\",\"records\":[");
    for (int i = 0; i < count; i++) {
        if (i) out[n++] = ',';
        n += (size_t)rec_format(out + n, cap - n, first + i, iso);
    }
    n += (size_t)snprintf(out + n, cap - n, "]}");
    return n;
}

/* builds the batch of the records a steady publisher made due between `published` and `due` (counts since
 * the start; record p is seq first + p - published - 1), each stamped with the due time of the tick it
 * fell due in: start + k * tick, k the first tick with floor(k * tick * rate) >= p. A loop that gets round
 * to several ticks at once thus stamps each record when a timely publisher would have published it. */
static inline size_t rec_batch_due(char *out, size_t cap, long long first, long long published, long long due,
                                   double start, double tick, double rate) {
    size_t n = (size_t)snprintf(out, cap, "{\"type\":\"logs\",\"records\":[");
    char iso[40]; long long iso_tick = -1;
    for (long long p = published + 1; p <= due; p++) {
        long long k = (long long)ceil(((double)p - 1e-6) / (tick * rate));
        if (k != iso_tick) { rec_iso_at(start + (double)k * tick, iso); iso_tick = k; }
        if (p > published + 1) out[n++] = ',';
        n += (size_t)rec_format(out + n, cap - n, first + (p - published - 1), iso);
    }
    n += (size_t)snprintf(out + n, cap - n, "]}");
    return n;
}

/* the same, stamped now (a publisher on a thread of its own publishes when it runs) */
static inline size_t rec_batch(char *out, size_t cap, long long first, int count) {
    char iso[40]; rec_iso_now(iso);
    return rec_batch_at(out, cap, first, count, iso);
}

/* WebSocket frame header for a payload of len bytes; returns header length. mask: add a zero mask key. */
static inline int ws_header(unsigned char *h, unsigned char op, size_t len, int mask) {
    int n; h[0] = 0x80 | op;
    unsigned char mb = mask ? 0x80 : 0;
    if (len < 126) { h[1] = mb | (unsigned char)len; n = 2; }
    else if (len < 65536) { h[1] = mb | 126; h[2] = len >> 8; h[3] = len & 255; n = 4; }
    else { h[1] = mb | 127; for (int i = 0; i < 8; i++) h[2 + i] = (unsigned char)(len >> (56 - 8 * i)); n = 10; }
    if (mask) { memset(h + n, 0, 4); n += 4; }
    return n;
}
