/*
 * wsload: an epoll WebSocket load generator for Tailgate-style streams.
 *
 * Opens N connections to ws://HOST:PORT/PATH, reads every frame, counts records (not frames) in
 * `logs` messages, checks that seqs are contiguous per connection (the stream invariant), and takes
 * latency as receive time minus the first record's `timestamp` in each frame (one sample per frame).
 * Prints one JSON object with the totals, latency percentiles and its own CPU time.
 *
 * Usage: wsload HOST PORT PATH CONNECTIONS SECONDS [--no-read-conn K] [--paths P1,P2,...]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int fd;
    int state; /* 0 handshake, 1 streaming, 2 closed */
    char *buf;
    size_t len, cap;
    long long next_seq; /* -1 until hello */
    long long records;
    long long violations;
    int paused;
} conn_t;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* days from civil, Howard Hinnant */
static long long days_from_civil(long long y, unsigned m, unsigned d) {
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long long)doe - 719468;
}

static double parse_ts(const char *p) { /* 2026-11-27T13:16:40.123456Z */
    long long y = atoi(p), mo = atoi(p + 5), d = atoi(p + 8), h = atoi(p + 11), mi = atoi(p + 14), s = atoi(p + 17);
    long long us = atoll(p + 20);
    return (double)(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s) + us / 1e6;
}

#define MAXLAT 4000000
static double *lat;
static long long nlat;

static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void handle_payload(conn_t *c, const char *p, size_t n, double t) {
    if (n > 14 && memcmp(p, "{\"type\":\"logs\"", 14) == 0) {
        const char *q = p, *end = p + n;
        int first = 1;
        while ((q = memmem(q, end - q, "{\"seq\":", 7)) != NULL) {
            q += 7;
            long long seq = strtoll(q, NULL, 10);
            if (c->next_seq >= 0 && seq != c->next_seq) c->violations++;
            c->next_seq = seq + 1;
            c->records++;
            if (first) {
                const char *ts = memmem(q, end - q, "\"timestamp\":\"", 13);
                if (ts && nlat < MAXLAT) lat[nlat++] = t - parse_ts(ts + 13);
                first = 0;
            }
        }
    } else if (n > 15 && memcmp(p, "{\"type\":\"hello\"", 15) == 0) {
        const char *r = memmem(p, n, "\"replay_from\":", 14);
        if (r) c->next_seq = strtoll(r + 14, NULL, 10);
    } else if (n > 13 && memcmp(p, "{\"type\":\"gap\"", 13) == 0) {
        const char *f = memmem(p, n, "\"from\":", 7), *to = memmem(p, n, "\"to\":", 5);
        if (f && to) {
            if (strtoll(f + 7, NULL, 10) != c->next_seq) c->violations++;
            c->next_seq = strtoll(to + 5, NULL, 10) + 1;
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: wsload HOST PORT PATH CONNECTIONS SECONDS [--no-read-conn K]\n");
        return 2;
    }
    const char *host = argv[1], *path = argv[3];
    int port = atoi(argv[2]), n = atoi(argv[4]);
    double seconds = atof(argv[5]);
    int no_read = 0;
    for (int i = 6; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--no-read-conn")) no_read = atoi(argv[i + 1]);
    lat = malloc(sizeof(double) * MAXLAT);
    struct rlimit rl = {65536, 65536};
    setrlimit(RLIMIT_NOFILE, &rl);
    int ep = epoll_create1(0);
    conn_t *cs = calloc(n, sizeof(conn_t));
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    inet_pton(AF_INET, host, &sa.sin_addr);
    char req[1024];
    int reqlen = snprintf(req, sizeof req,
        "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", path, host, port);
    double t0 = now_s();
    int connected = 0;
    for (int i = 0; i < n; i++) {
        conn_t *c = &cs[i];
        c->fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("connect"); c->state = 2; continue; }
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (write(c->fd, req, reqlen) != reqlen) { c->state = 2; continue; }
        fcntl(c->fd, F_SETFL, O_NONBLOCK);
        c->cap = 1 << 20;
        c->buf = malloc(c->cap);
        c->next_seq = -1;
        c->paused = i < no_read;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (!c->paused) epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
        connected++;
    }
    double connect_time = now_s() - t0;
    struct epoll_event evs[512];
    double start = now_s(), cpu0 = cpu_s();
    long long hellos = 0, closed = 0;
    while (now_s() - start < seconds) {
        int k = epoll_wait(ep, evs, 512, 100);
        double t = now_s();
        for (int e = 0; e < k; e++) {
            conn_t *c = &cs[evs[e].data.u32];
            for (;;) {
                if (c->cap - c->len < 65536) { c->cap *= 2; c->buf = realloc(c->buf, c->cap); }
                ssize_t r = read(c->fd, c->buf + c->len, c->cap - c->len);
                if (r <= 0) {
                    if (r == 0 || (errno != EAGAIN && errno != EINTR)) { epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL); c->state = 2; closed++; }
                    break;
                }
                c->len += r;
            }
            size_t off = 0;
            if (c->state == 0) {
                char *hdr_end = memmem(c->buf, c->len, "\r\n\r\n", 4);
                if (!hdr_end) continue;
                if (memcmp(c->buf, "HTTP/1.1 101", 12) != 0) { c->state = 2; closed++; continue; }
                off = hdr_end + 4 - c->buf;
                c->state = 1;
                hellos++;
            }
            while (c->len - off >= 2) {
                unsigned char *f = (unsigned char *)c->buf + off;
                size_t plen = f[1] & 127, h = 2;
                if (plen == 126) { if (c->len - off < 4) break; plen = (f[2] << 8) | f[3]; h = 4; }
                else if (plen == 127) { if (c->len - off < 10) break; plen = 0; for (int b = 0; b < 8; b++) plen = (plen << 8) | f[2 + b]; h = 10; }
                if (c->len - off < h + plen) break;
                if ((f[0] & 0x0f) == 1) handle_payload(c, (char *)f + h, plen, t);
                off += h + plen;
            }
            memmove(c->buf, c->buf + off, c->len - off);
            c->len -= off;
        }
    }
    double elapsed = now_s() - start, cpu = cpu_s() - cpu0;
    long long records = 0, violations = 0;
    for (int i = 0; i < n; i++) { records += cs[i].records; violations += cs[i].violations; }
    qsort(lat, nlat, sizeof(double), cmpd);
#define PCT(p) (nlat ? lat[(long long)((nlat - 1) * (p))] * 1000 : -1)
    printf("{\"connections\":%d,\"connected\":%d,\"handshakes\":%lld,\"closed\":%lld,\"seconds\":%.3f,\"records\":%lld,"
           "\"records_per_s\":%.0f,\"violations\":%lld,\"latency_samples\":%lld,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,"
           "\"max_ms\":%.3f,\"loadgen_cpu_share\":%.3f,\"connect_seconds\":%.3f}\n",
           n, connected, hellos, closed, elapsed, records, records / elapsed, violations, nlat, PCT(0.5), PCT(0.99), PCT(0.999),
           nlat ? lat[nlat - 1] * 1000 : -1, cpu / elapsed, connect_time);
    return violations ? 1 : 0;
}
