/*
 * wsload: an epoll WebSocket load generator for Tailgate-style streams (one thread, many connections).
 *
 * Opens N connections (non-blocking, at most --concurrency handshakes in flight), reads every frame,
 * counts records (not frames) in `logs` messages, checks that seqs are contiguous per connection (the
 * stream invariant: hello's replay_from, then logs/gap covering R, R+1, ...), and takes latency as
 * receive time minus a record's `timestamp` (the first record of each frame by default, every record
 * with --lat-all) into a log-linear histogram (HdrHistogram-style, ~0.1% resolution, microseconds).
 * Prints one JSON object with totals, latency percentiles, wire bytes and its own CPU share.
 *
 * Usage: wsload HOST PORT PATH CONNECTIONS SECONDS [options]
 *   --endpoints E1,E2,...  connection i goes to E[i % n]; each E is PATH or PORT:PATH
 *   --no-read-conn K       the first K connections send the upgrade and then never read
 *   --warmup S             seconds between "all connected" and the measured window (default 0.5)
 *   --concurrency C        handshakes in flight at once (default 256)
 *   --storm                connect storm: stop once every connection is ready; report ready/s
 *   --ready-on-upgrade     a connection is ready at its 101 (for servers that send no hello)
 *   --deflate              offer permessage-deflate; inflate compressed messages (zlib). Messages without context
 *                          takeover are whole streams, and a server that compresses once sends every subscriber the
 *                          same bytes: the last 16 distinct ones are kept with their inflated form, so identical
 *                          bytes are inflated once, not once per connection (each is still parsed and checked per
 *                          connection). Without it, inflating made the generator the bottleneck at 1,000 subscribers.
 *   --lat-all              one latency sample per record instead of per frame
 *   --busy-poll            never sleep in epoll_wait (timeout 0): the generator spins on its own core, so a
 *                          server's write never has to wake it. Without it, a server whose writes come slower
 *                          than the generator reads pays a cross-CPU wake-up on many of its writes (on
 *                          loopback the writer wakes the reader), which made CPU per delivered record depend
 *                          on the generator's sleeping (Benchmarks/results/FINDINGS.md). Generator CPU is
 *                          then always 1.0 and says nothing.
 *   --connect-timeout S    give up waiting for connections after S seconds (default 60)
 *   --reconnect            resume mode (a gateway restart during the run): a connection that closes after its
 *                          `hello` connects again with `epoch=E&since=S` (E from its hello, S its last seq),
 *                          retrying with back-off (100 ms doubling to 1 s, jittered) while refused; its next
 *                          `hello` must say `"resumed":true` with `replay_from` S+1, and seqs must go on
 *                          without a hole or a duplicate (violations otherwise). Reports reconnects, resumes,
 *                          and (epoch seconds) when the last connection had resumed and had a live record (one
 *                          stamped after its reconnect); SECONDS is the whole run.
 *   --until-end            replay mode (e.g. PATH ?since=0 of a stopped worker): count every record from the
 *                          first connect until each connection has received `end`, then exit; SECONDS is
 *                          only a time-out. `seconds` is connect → last `end`; no latency (the records are old)
 * While running it prints "READY n" on stderr once every connection is ready (or timed out).
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
#include <zlib.h>

enum { S_CONNECTING, S_UPGRADING, S_OPEN, S_CLOSED };

typedef struct {
    int fd, state, ep_idx, paused, ready, deflate, reset_each;
    /* --reconnect: the run's epoch, whether this connection is (re)connecting after a close, attempts,
       when it may try again, when it connected again, whether it has resumed and had a live record */
    char epoch[40]; int reconnecting, attempts, resumed, live; double retry_at, reconnected_at;
    char *buf; size_t len, cap;
    char *frag; size_t flen, fcap; int frag_rsv1, frag_op;
    z_stream *z;
    long long next_seq, records, violations, records_at_window;
} conn_t;

typedef struct { int port; char path[512]; char req[1400]; int reqlen; } endpoint_t;

static double now_s(void) { struct timespec ts; clock_gettime(CLOCK_REALTIME, &ts); return ts.tv_sec + ts.tv_nsec / 1e9; }
static double cpu_s(void) {
    struct rusage ru; getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}
static long long days_from_civil(long long y, unsigned m, unsigned d) {
    y -= m <= 2; long long era = (y >= 0 ? y : y - 399) / 400; unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1; unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long long)doe - 719468;
}
static char date_cache[10]; static double date_base;
static inline int d2(const char *p) { return (p[0] - '0') * 10 + (p[1] - '0'); }
static double parse_ts(const char *p) { /* 2026-11-27T13:16:40.123456Z */
    if (memcmp(p, date_cache, 10) != 0) {
        memcpy(date_cache, p, 10);
        date_base = (double)(days_from_civil(atoi(p), d2(p + 5), d2(p + 8)) * 86400);
    }
    long us = 0; const char *q = p + 20; int digits = 0;
    while (*q >= '0' && *q <= '9' && digits < 6) { us = us * 10 + (*q - '0'); q++; digits++; }
    while (digits++ < 6) us *= 10;
    return date_base + d2(p + 11) * 3600 + d2(p + 14) * 60 + d2(p + 17) + us / 1e6;
}

/* log-linear histogram of microseconds: exact below 2048, then 1024 sub-buckets per power of two */
#define HBUCKETS (2048 + 40 * 1024)
static long long hist[HBUCKETS], hcount; static long long hmax;
static void hist_add(double seconds) {
    long long v = (long long)(seconds * 1e6); if (v < 0) v = 0;
    if (v > hmax) hmax = v;
    int idx;
    if (v < 2048) idx = (int)v;
    else { int b = 63 - __builtin_clzll((unsigned long long)v), shift = b - 10; idx = 2048 + (shift - 1) * 1024 + (int)((v >> shift) - 1024); }
    if (idx >= HBUCKETS) idx = HBUCKETS - 1;
    hist[idx]++; hcount++;
}
static double hist_pct(double p) { /* ms */
    if (!hcount) return -1;
    long long target = (long long)(p * hcount); if (target >= hcount) target = hcount - 1;
    long long acc = 0;
    for (int i = 0; i < HBUCKETS; i++) {
        acc += hist[i];
        if (acc > target) {
            if (i < 2048) return i / 1000.0;
            int shift = (i - 2048) / 1024 + 1; long long sub = (i - 2048) % 1024 + 1024;
            return ((sub << shift) + ((1LL << shift) / 2)) / 1000.0;
        }
    }
    return hmax / 1000.0;
}

static int lat_all = 0, measuring = 0, ready_on_upgrade = 0, until_end = 0, reconnect = 0, busy_poll = 0;
static long long reconnects, resumes, not_resumed, lives, rinflight, retrying; static double last_resumed_at, last_live_at, first_close_at;
static double last_end_at;
static long long m_records, m_frames, m_messages, m_compressed, m_wire, m_inflated_bytes, hello_msgs, gaps, ends;
static char refusal[64];
static unsigned char *zout; static size_t zout_cap = 1 << 22;

/* The next `{"seq":` in [q, end): memchr for '{' (vectorised, and '{' is rare inside records) and a
 * 7-byte compare. glibc's memmem was the generator's largest cost at millions of records/s. */
static inline const char *find_record(const char *q, const char *end) {
    while (end - q >= 7) {
        const char *b = memchr(q, '{', (size_t)(end - q - 6));
        if (!b) return NULL;
        if (memcmp(b, "{\"seq\":", 7) == 0) return b;
        q = b + 1;
    }
    return NULL;
}

static void handle_payload(conn_t *c, const char *p, size_t n, double t) {
    if (n > 14 && memcmp(p, "{\"type\":\"logs\"", 14) == 0) {
        const char *q = p, *end = p + n; int first = 1;
        while ((q = find_record(q, end)) != NULL) {
            q += 7;
            long long seq = 0;
            while (q < end && *q >= '0' && *q <= '9') seq = seq * 10 + (*q++ - '0');
            if (c->next_seq >= 0 && seq != c->next_seq) c->violations++;
            c->next_seq = seq + 1;
            c->records++;
            if (reconnect && c->resumed && !c->live) {
                const char *ts = memmem(q, end - q < 64 ? end - q : 64, "\"timestamp\":\"", 13);
                if (ts && parse_ts(ts + 13) >= c->reconnected_at) { c->live = 1; lives++; if (t > last_live_at) last_live_at = t; }
            }
            if (measuring) {
                m_records++;
                if (!until_end && (first || lat_all)) {
                    const char *ts = memmem(q, end - q < 64 ? end - q : 64, "\"timestamp\":\"", 13);
                    if (ts) hist_add(t - parse_ts(ts + 13));
                    first = 0;
                }
            }
        }
    } else if (n > 15 && memcmp(p, "{\"type\":\"hello\"", 15) == 0) {
        const char *r = memmem(p, n, "\"replay_from\":", 14);
        if (reconnect && c->reconnecting) { /* a resume: same run, going on right after the last seq seen */
            c->reconnecting = 0;
            rinflight--;
            if (memmem(p, n, "\"resumed\":true", 14) && r && strtoll(r + 14, NULL, 10) == c->next_seq) {
                c->resumed = 1; resumes++; if (t > last_resumed_at) last_resumed_at = t;
            } else { not_resumed++; c->violations++; }
        } else if (r) c->next_seq = strtoll(r + 14, NULL, 10);
        if (reconnect && !c->epoch[0]) {
            const char *e = memmem(p, n, "\"epoch\":\"", 9);
            if (e) { size_t l = strcspn(e + 9, "\""); if (l < sizeof c->epoch) { memcpy(c->epoch, e + 9, l); c->epoch[l] = 0; } }
        }
        hello_msgs++;
        c->ready = 1;
    } else if (n > 13 && memcmp(p, "{\"type\":\"gap\"", 13) == 0) {
        const char *f = memmem(p, n, "\"from\":", 7), *to = memmem(p, n, "\"to\":", 5);
        if (f && to) {
            if (c->next_seq >= 0 && strtoll(f + 7, NULL, 10) != c->next_seq) c->violations++;
            c->next_seq = strtoll(to + 5, NULL, 10) + 1;
        }
        gaps++;
    } else if (n > 13 && memcmp(p, "{\"type\":\"end\"", 13) == 0) { ends++; last_end_at = t; }
}

/* Inflated forms of the last distinct compressed messages (no context takeover only), by their bytes. */
#define ICACHE 16
static struct { char *in; size_t in_len; char *out; size_t out_len; } icache[ICACHE];
static int icache_next;
static long long icache_hits;

static void handle_message(conn_t *c, int rsv1, const char *p, size_t n, double t) {
    if (measuring) { m_messages++; if (rsv1) m_compressed++; }
    if (rsv1 && c->z && c->reset_each) {
        for (int i = 0; i < ICACHE; i++) {
            if (icache[i].in && icache[i].in_len == n && memcmp(icache[i].in, p, n) == 0) {
                icache_hits++;
                if (measuring) m_inflated_bytes += icache[i].out_len;
                handle_payload(c, icache[i].out, icache[i].out_len, t);
                return;
            }
        }
    }
    if (rsv1 && c->z) {
        z_stream *z = c->z;
        if (c->reset_each) inflateReset(z);
        static const unsigned char tail[4] = {0, 0, 0xff, 0xff};
        size_t out = 0;
        for (int part = 0; part < 2; part++) {
            z->next_in = part ? (unsigned char *)tail : (unsigned char *)p;
            z->avail_in = part ? 4 : (uInt)n;
            while (z->avail_in > 0) {
                if (zout_cap - out < 65536) { zout_cap *= 2; zout = realloc(zout, zout_cap); }
                z->next_out = zout + out; z->avail_out = (uInt)(zout_cap - out);
                int rc = inflate(z, Z_SYNC_FLUSH);
                out = zout_cap - z->avail_out;
                if (rc != Z_OK && rc != Z_BUF_ERROR) { c->violations++; return; }
                if (rc == Z_BUF_ERROR && z->avail_in > 0 && z->avail_out > 0) { c->violations++; return; }
            }
        }
        if (measuring) m_inflated_bytes += out;
        if (c->reset_each) { /* remember it: the other connections get the same bytes */
            int i = icache_next; icache_next = (icache_next + 1) % ICACHE;
            free(icache[i].in); free(icache[i].out);
            icache[i].in = malloc(n); memcpy(icache[i].in, p, n); icache[i].in_len = n;
            icache[i].out = malloc(out ? out : 1); memcpy(icache[i].out, zout, out); icache[i].out_len = out;
        }
        handle_payload(c, (char *)zout, out, t);
    } else handle_payload(c, p, n, t);
}

/* --reconnect: drops a connection's socket and schedules its next attempt (back-off with jitter). */
static void retry_later(int ep, conn_t *c, double t) {
    if (c->fd >= 0) { epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL); close(c->fd); c->fd = -1; }
    if (!c->reconnecting) { c->reconnecting = 1; c->attempts = 0; c->resumed = 0; c->live = 0; reconnects++; if (!first_close_at) first_close_at = t; }
    else rinflight--;
    double delay = 0.1 * (1 << (c->attempts < 4 ? c->attempts : 4)); if (delay > 1.0) delay = 1.0;
    c->attempts++;
    c->retry_at = t + delay * (0.5 + (rand() % 1000) / 1000.0);
    c->state = S_CLOSED; c->len = 0; c->flen = 0;
    if (c->z) { inflateEnd(c->z); free(c->z); c->z = NULL; c->deflate = 0; }
    retrying++;
}

static void close_conn(int ep, conn_t *c, long long *closed) {
    if (c->state == S_CLOSED) return;
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL); close(c->fd); c->state = S_CLOSED; (*closed)++;
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: wsload HOST PORT PATH CONNECTIONS SECONDS [--endpoints E,...] [--no-read-conn K] [--warmup S]\n"
                        "       [--concurrency C] [--storm] [--ready-on-upgrade] [--deflate] [--lat-all] [--busy-poll] [--connect-timeout S]\n"
                        "       [--until-end] [--reconnect]\n");
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]), n = atoi(argv[4]);
    double seconds = atof(argv[5]), warmup = 0.5, connect_timeout = 60;
    int no_read = 0, storm = 0, offer_deflate = 0, concurrency = 256;
    const char *endpoints_arg = NULL;
    for (int i = 6; i < argc; i++) {
        if (!strcmp(argv[i], "--no-read-conn") && i + 1 < argc) no_read = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) warmup = atof(argv[++i]);
        else if (!strcmp(argv[i], "--concurrency") && i + 1 < argc) concurrency = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--connect-timeout") && i + 1 < argc) connect_timeout = atof(argv[++i]);
        else if (!strcmp(argv[i], "--endpoints") && i + 1 < argc) endpoints_arg = argv[++i];
        else if (!strcmp(argv[i], "--storm")) storm = 1;
        else if (!strcmp(argv[i], "--ready-on-upgrade")) ready_on_upgrade = 1;
        else if (!strcmp(argv[i], "--deflate")) offer_deflate = 1;
        else if (!strcmp(argv[i], "--lat-all")) lat_all = 1;
        else if (!strcmp(argv[i], "--busy-poll")) busy_poll = 1;
        else if (!strcmp(argv[i], "--until-end")) { until_end = 1; warmup = 0; }
        else if (!strcmp(argv[i], "--reconnect")) reconnect = 1;
        else { fprintf(stderr, "wsload: unknown option %s\n", argv[i]); return 2; }
    }
    /* endpoints */
    int nep = 1; endpoint_t *eps;
    if (endpoints_arg) { nep = 1; for (const char *p = endpoints_arg; *p; p++) nep += *p == ','; }
    eps = calloc(nep, sizeof(endpoint_t));
    if (endpoints_arg) {
        char *copy = strdup(endpoints_arg), *save = NULL; int k = 0;
        for (char *tok = strtok_r(copy, ",", &save); tok && k < nep; tok = strtok_r(NULL, ",", &save), k++) {
            char *colon = strchr(tok, ':');
            if (colon && colon < strchr(tok, '/')) { eps[k].port = atoi(tok); snprintf(eps[k].path, sizeof eps[k].path, "%s", colon + 1); }
            else { eps[k].port = port; snprintf(eps[k].path, sizeof eps[k].path, "%s", tok); }
        }
        nep = k;
    } else { eps[0].port = port; snprintf(eps[0].path, sizeof eps[0].path, "%s", argv[3]); }
    for (int k = 0; k < nep; k++)
        eps[k].reqlen = snprintf(eps[k].req, sizeof eps[k].req,
            "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
            eps[k].path, host, eps[k].port,
            offer_deflate ? "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" : "");

    struct rlimit rl; getrlimit(RLIMIT_NOFILE, &rl); rl.rlim_cur = rl.rlim_max; setrlimit(RLIMIT_NOFILE, &rl);
    zout = malloc(zout_cap);
    int ep = epoll_create1(0);
    conn_t *cs = calloc(n, sizeof(conn_t));
    struct epoll_event evs[1024];
    long long connected = 0, upgrades = 0, ready = 0, closed = 0, failed = 0, refused = 0;
    int launched = 0, inflight = 0;
    double t0 = now_s(), all_ready_at = 0, cpu_start = cpu_s();
    double start = 0, cpu0 = 0, window_end = 0, next_retry_scan = 0;
    int phase = 0; /* 0 connecting, 1 warmup, 2 measuring */
    if (until_end) { measuring = 1; cpu0 = cpu_start; start = t0; }
    for (;;) {
        double t = now_s();
        /* launch connections */
        while (phase == 0 && launched < n && inflight < concurrency) {
            conn_t *c = &cs[launched]; endpoint_t *e = &eps[launched % nep];
            c->ep_idx = launched % nep; c->next_seq = -1; c->paused = launched < no_read;
            c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
            struct sockaddr_in sa = {0}; sa.sin_family = AF_INET; sa.sin_port = htons(e->port); inet_pton(AF_INET, host, &sa.sin_addr);
            int one = 1; setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            launched++;
            if (c->fd < 0 || (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS)) {
                if (c->fd >= 0) close(c->fd);
                c->state = S_CLOSED; failed++; continue;
            }
            c->state = S_CONNECTING; inflight++;
            struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)(c - cs)};
            epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
        }
        if (phase == 0 && launched == n && (inflight == 0 || t - t0 > connect_timeout)) {
            all_ready_at = t; phase = storm ? 3 : 1;
            fprintf(stderr, "READY %lld\n", ready); fflush(stderr);
            if (storm) break;
            start = t + warmup;
        }
        if (phase == 0 && t - t0 > connect_timeout) { all_ready_at = t; fprintf(stderr, "READY %lld (timeout)\n", ready); fflush(stderr); phase = 1; start = t + warmup; }
        if (until_end) { /* measured from the first connect; ends once every connection has its `end` */
            if (ends >= n || closed >= n || t - t0 > seconds) break;
        } else if (phase == 1 && t >= start) {
            phase = 2; measuring = 1; cpu0 = cpu_s(); window_end = start + seconds; m_wire = 0;
            for (int i = 0; i < n; i++) cs[i].records_at_window = cs[i].records;
        }
        if (phase == 2 && t >= window_end) break;
        if (retrying > 0 && t >= next_retry_scan) { /* --reconnect: connections whose next attempt is due */
            next_retry_scan = t + 0.005;
            for (int i = 0; i < n && rinflight < concurrency; i++) {
                conn_t *c = &cs[i];
                if (c->state != S_CLOSED || !c->reconnecting || c->retry_at > t) continue;
                endpoint_t *e = &eps[c->ep_idx];
                retrying--;
                c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
                struct sockaddr_in sa = {0}; sa.sin_family = AF_INET; sa.sin_port = htons(e->port); inet_pton(AF_INET, host, &sa.sin_addr);
                int one = 1; setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                rinflight++;
                c->reconnected_at = t;
                if (c->fd < 0 || (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS)) { retry_later(ep, c, t); continue; }
                c->state = S_CONNECTING;
                struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)i};
                epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
            }
        }
        int k = epoll_wait(ep, evs, 1024, busy_poll ? 0 : 20);
        t = now_s();
        for (int ei = 0; ei < k; ei++) {
            if ((ei & 63) == 63) { t = now_s(); if (phase == 2 && t >= window_end) break; }
            conn_t *c = &cs[evs[ei].data.u32];
            if (c->state == S_CLOSED) continue;
            if (c->state == S_CONNECTING) {
                int err = 0; socklen_t el = sizeof err; getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err && c->reconnecting) { retry_later(ep, c, t); continue; }
                if (err) { close_conn(ep, c, &closed); failed++; inflight--; continue; }
                endpoint_t *e = &eps[c->ep_idx];
                const char *req = e->req; int reqlen = e->reqlen; char rreq[1600];
                if (c->reconnecting) { /* resume the run after the last seq seen */
                    char path[700];
                    snprintf(path, sizeof path, "%s%cepoch=%s&since=%lld", e->path, strchr(e->path, '?') ? '&' : '?', c->epoch, c->next_seq - 1);
                    reqlen = snprintf(rreq, sizeof rreq,
                        "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", path, host, e->port);
                    req = rreq;
                }
                if (write(c->fd, req, reqlen) != reqlen) {
                    if (c->reconnecting) { retry_later(ep, c, t); continue; }
                    close_conn(ep, c, &closed); failed++; inflight--; continue;
                }
                connected++;
                c->state = S_UPGRADING;
                if (c->paused) { epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL); inflight--; continue; }
                struct epoll_event ev = {.events = EPOLLIN, .data.u32 = evs[ei].data.u32};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                if (!c->buf) { c->cap = 1 << 16; c->buf = malloc(c->cap); }
                continue;
            }
            int was_ready = c->ready;
            for (int reads = 0; reads < 8; reads++) { /* at most ~8 reads per wake-up: epoll is level-triggered */
                if (c->cap - c->len < 16384) { c->cap *= 2; c->buf = realloc(c->buf, c->cap); }
                ssize_t r = read(c->fd, c->buf + c->len, c->cap - c->len);
                if (r <= 0) {
                    if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                        if (reconnect && (c->reconnecting || (c->ready && c->epoch[0] && phase > 0))) { retry_later(ep, c, now_s()); break; }
                        if (!c->ready && phase == 0) inflight--;
                        close_conn(ep, c, &closed);
                    }
                    break;
                }
                c->len += r; m_wire += r;
                if ((size_t)r < 16384) break;
            }
            if (c->state == S_CLOSED) continue;
            t = now_s(); /* receive time of these bytes (not of the epoll wake-up: a busy pass can take long) */
            size_t off = 0;
            if (c->state == S_UPGRADING) {
                char *hdr_end = memmem(c->buf, c->len, "\r\n\r\n", 4);
                if (!hdr_end) continue;
                if (memcmp(c->buf, "HTTP/1.1 101", 12) != 0) {
                    if (!refusal[0]) { size_t l = strcspn(c->buf, "\r\n"); snprintf(refusal, sizeof refusal, "%.*s", (int)(l < 60 ? l : 60), c->buf); }
                    if (c->reconnecting) { retry_later(ep, c, t); continue; } /* e.g. 503 while the gateway starts */
                    refused++; if (phase == 0) inflight--; close_conn(ep, c, &closed); continue; }
                *hdr_end = 0;
                if (offer_deflate && strcasestr(c->buf, "permessage-deflate")) {
                    c->deflate = 1; c->reset_each = strcasestr(c->buf, "server_no_context_takeover") != NULL;
                    c->z = calloc(1, sizeof(z_stream)); inflateInit2(c->z, -15);
                }
                off = hdr_end + 4 - c->buf;
                c->state = S_OPEN; upgrades++;
                if (ready_on_upgrade) c->ready = 1;
            }
            while (c->len - off >= 2) {
                unsigned char *f = (unsigned char *)c->buf + off;
                size_t plen = f[1] & 127, h = 2;
                if (plen == 126) { if (c->len - off < 4) break; plen = (f[2] << 8) | f[3]; h = 4; }
                else if (plen == 127) { if (c->len - off < 10) break; plen = 0; for (int b = 0; b < 8; b++) plen = (plen << 8) | f[2 + b]; h = 10; }
                if (c->len - off < h + plen) break;
                int fin = f[0] & 0x80, rsv1 = f[0] & 0x40, op = f[0] & 0x0f;
                char *pl = (char *)f + h;
                if (measuring) m_frames++;
                if (op == 9) { /* ping -> masked pong with zero key */
                    unsigned char pong[140]; size_t pn = plen > 125 ? 125 : plen;
                    pong[0] = 0x8A; pong[1] = 0x80 | (unsigned char)pn; memset(pong + 2, 0, 4); memcpy(pong + 6, pl, pn);
                    if (write(c->fd, pong, 6 + pn) < 0) {}
                } else if (op == 8) { /* close */
                } else if (op == 1 || op == 2) {
                    if (fin) handle_message(c, rsv1, pl, plen, t);
                    else { c->flen = 0; c->frag_rsv1 = rsv1; c->frag_op = op; goto append; }
                } else if (op == 0) {
                append:
                    if (c->fcap - c->flen < plen) { c->fcap = (c->flen + plen) * 2; c->frag = realloc(c->frag, c->fcap); }
                    memcpy(c->frag + c->flen, pl, plen); c->flen += plen;
                    if (fin) { handle_message(c, c->frag_rsv1, c->frag, c->flen, t); c->flen = 0; }
                }
                off += h + plen;
            }
            memmove(c->buf, c->buf + off, c->len - off);
            c->len -= off;
            if (!was_ready && c->ready) { ready++; if (phase == 0) inflight--; }
        }
    }
    double end = now_s();
    double elapsed = storm ? (all_ready_at - t0) : until_end ? ((ends >= n ? last_end_at : end) - t0) : (end - start);
    double cpu = storm ? (cpu_s() - cpu_start) : (cpu_s() - cpu0);
    long long records = 0, violations = 0, minrec = -1, maxrec = 0, reading = 0;
    for (int i = 0; i < n; i++) {
        records += cs[i].records; violations += cs[i].violations;
        if (cs[i].paused || cs[i].state != S_OPEN) continue;
        reading++;
        if (minrec < 0 || cs[i].records < minrec) minrec = cs[i].records;
        if (cs[i].records > maxrec) maxrec = cs[i].records;
    }
    long long lagging = 0, silent = 0; /* reading connections with under half the best one's records / none in the window */
    for (int i = 0; i < n; i++) {
        if (cs[i].paused || cs[i].state != S_OPEN) continue;
        if (cs[i].records * 2 < maxrec) lagging++;
        if (cs[i].records == cs[i].records_at_window) silent++;
    }
    if (elapsed <= 0) elapsed = 1e-9;
    printf("{\"connections\":%d,\"connected\":%lld,\"upgrades\":%lld,\"handshakes\":%lld,\"hellos\":%lld,\"ready\":%lld,\"failed\":%lld,"
           "\"refused\":%lld,\"first_refusal\":\"%s\",\"closed\":%lld,\"open_at_end\":%lld,\"connect_seconds\":%.3f,\"ready_per_s\":%.1f,"
           "\"seconds\":%.3f,\"records\":%lld,\"records_total\":%lld,\"records_per_s\":%.0f,\"violations\":%lld,\"gaps\":%lld,\"ends\":%lld,"
           "\"frames\":%lld,\"messages\":%lld,\"compressed_messages\":%lld,\"wire_bytes\":%lld,\"wire_bytes_per_s\":%.0f,"
           "\"inflated_bytes\":%lld,\"min_records_per_conn\":%lld,\"max_records_per_conn\":%lld,\"lagging_conns\":%lld,\"silent_conns\":%lld,"
           "\"inflate_cache_hits\":%lld,\"latency_samples\":%lld,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f,\"loadgen_cpu_share\":%.3f,"
           "\"reconnects\":%lld,\"resumes\":%lld,\"not_resumed\":%lld,\"live_after_resume\":%lld,\"still_reconnecting\":%lld,"
           "\"first_close_at\":%.6f,\"last_resumed_at\":%.6f,\"last_live_at\":%.6f}\n",
           n, connected, upgrades, upgrades, hello_msgs, ready, failed, refused, refusal, closed, reading, all_ready_at - t0,
           storm ? ready / elapsed : ready / ((all_ready_at - t0) > 0 ? (all_ready_at - t0) : 1e-9),
           elapsed, m_records, records, m_records / elapsed, violations, gaps, ends, m_frames, m_messages, m_compressed, m_wire,
           m_wire / elapsed, m_inflated_bytes, minrec < 0 ? 0 : minrec, maxrec, lagging, silent, icache_hits, hcount,
           hist_pct(0.5), hist_pct(0.99), hist_pct(0.999), hcount ? hmax / 1000.0 : -1, cpu / elapsed,
           reconnects, resumes, not_resumed, lives, retrying + rinflight, first_close_at, last_resumed_at, last_live_at);
    return violations ? 1 : 0;
}
