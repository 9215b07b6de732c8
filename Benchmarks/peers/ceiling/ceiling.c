/*
 * ceiling: the machine's fan-out ceiling. A tiny single-threaded epoll WebSocket server that, every tick
 * (1 ms at >= 2000 rec/s per worker, 10 ms otherwise, like Tailgate's demo), builds one batch of records
 * per worker, frames it once, and writes the same bytes to every subscriber of that worker. A subscriber
 * that cannot take the bytes gets them queued in its own buffer (EPOLLOUT); past --max-queue it is closed.
 *
 * Usage: ceiling --port P [--workers N] [--rate R] [--max-queue BYTES]
 * Streams: ws://127.0.0.1:P/ws/workers/demo-K : hello, then {"type":"logs","records":[...]} text frames.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include "rec.h"

/* --- SHA-1 + base64 for Sec-WebSocket-Accept --- */
#define ROL(v, b) (((v) << (b)) | ((v) >> (32 - (b))))
static void sha1(const unsigned char *msg, size_t len, unsigned char out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t total = ((len + 8) / 64 + 1) * 64; unsigned char *m = calloc(total, 1);
    memcpy(m, msg, len); m[len] = 0x80; uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) m[total - 1 - i] = (unsigned char)(bits >> (8 * i));
    for (size_t off = 0; off < total; off += 64) {
        uint32_t w[80];
        for (int i = 0; i < 16; i++) w[i] = (uint32_t)m[off + 4 * i] << 24 | (uint32_t)m[off + 4 * i + 1] << 16 | (uint32_t)m[off + 4 * i + 2] << 8 | m[off + 4 * i + 3];
        for (int i = 16; i < 80; i++) w[i] = ROL(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20) { f = (b & c) | (~b & d); k = 0x5A827999; } else if (i < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1; }
            else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDC; } else { f = b ^ c ^ d; k = 0xCA62C1D6; }
            uint32_t t = ROL(a, 5) + f + e + k + w[i]; e = d; d = c; c = ROL(b, 30); b = a; a = t;
        }
        h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
    }
    free(m);
    for (int i = 0; i < 5; i++) for (int j = 0; j < 4; j++) out[4 * i + j] = (unsigned char)(h[i] >> (24 - 8 * j));
}
static void b64(const unsigned char *in, int n, char *out) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    int o = 0;
    for (int i = 0; i < n; i += 3) {
        uint32_t v = in[i] << 16 | (i + 1 < n ? in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        out[o++] = t[v >> 18 & 63]; out[o++] = t[v >> 12 & 63];
        out[o++] = i + 1 < n ? t[v >> 6 & 63] : '='; out[o++] = i + 2 < n ? t[v & 63] : '=';
    }
    out[o] = 0;
}

typedef struct conn {
    int fd, worker, upgraded;
    char req[4096]; size_t reqlen;
    unsigned char *q; size_t qlen, qcap, qoff; /* pending output */
    struct conn *next, *prev; /* worker subscriber list */
} conn_t;

typedef struct { conn_t *subs; long long next_seq, published; } worker_t;

static int ep; static worker_t *workers; static int nworkers = 1; static double rate = 100; static size_t max_queue = 8 << 20;
static conn_t **byfd; static int maxfd = 1 << 16;

static void drop(conn_t *c) {
    if (c->upgraded) {
        worker_t *w = &workers[c->worker];
        if (c->prev) c->prev->next = c->next; else w->subs = c->next;
        if (c->next) c->next->prev = c->prev;
    }
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL); close(c->fd); byfd[c->fd] = NULL; free(c->q); free(c);
}

static void enqueue(conn_t *c, const unsigned char *p, size_t n) {
    if (c->qlen - c->qoff + n > max_queue) { drop(c); return; }
    if (c->qoff && c->qoff == c->qlen) c->qoff = c->qlen = 0;
    if (c->qcap - c->qlen < n) {
        if (c->qoff) { memmove(c->q, c->q + c->qoff, c->qlen - c->qoff); c->qlen -= c->qoff; c->qoff = 0; }
        if (c->qcap - c->qlen < n) { c->qcap = (c->qlen + n) * 2; c->q = realloc(c->q, c->qcap); }
    }
    memcpy(c->q + c->qlen, p, n); c->qlen += n;
}

/* writes bytes to c, queueing what the socket does not take; returns 0 if c was dropped */
static int send_bytes(conn_t *c, const unsigned char *p, size_t n) {
    if (c->qlen > c->qoff) { size_t before = c->qlen; enqueue(c, p, n); return before != 0 || 1; }
    ssize_t w = write(c->fd, p, n);
    if (w < 0) { if (errno != EAGAIN) { drop(c); return 0; } w = 0; }
    if ((size_t)w < n) {
        enqueue(c, p + w, n - w);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.fd = c->fd};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    }
    return 1;
}

static void flush_queue(conn_t *c) {
    while (c->qoff < c->qlen) {
        ssize_t w = write(c->fd, c->q + c->qoff, c->qlen - c->qoff);
        if (w < 0) { if (errno != EAGAIN) drop(c); return; }
        c->qoff += w;
    }
    c->qoff = c->qlen = 0;
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = c->fd};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void handle_request(conn_t *c) {
    char *end = memmem(c->req, c->reqlen, "\r\n\r\n", 4);
    if (!end) { if (c->reqlen >= sizeof c->req - 1) drop(c); return; }
    *end = 0;
    int w = -1;
    char *path = strstr(c->req, "/ws/workers/demo-");
    if (path) w = atoi(path + 17) - 1;
    char *key = strcasestr(c->req, "Sec-WebSocket-Key:");
    if (w < 0 || w >= nworkers || !key) {
        const char *r = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        if (write(c->fd, r, strlen(r)) < 0) {}
        drop(c); return;
    }
    key += 18; while (*key == ' ') key++;
    char k[128]; int kl = 0; while (key[kl] && key[kl] != '\r' && kl < 60) { k[kl] = key[kl]; kl++; }
    memcpy(k + kl, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
    unsigned char dig[20]; char acc[32]; sha1((unsigned char *)k, kl + 36, dig); b64(dig, 20, acc);
    worker_t *wk = &workers[w];
    char iso[40]; rec_iso_now(iso);
    char body[256]; int bl = snprintf(body, sizeof body,
        "{\"type\":\"hello\",\"worker\":\"demo-%d\",\"state\":\"running\",\"first_seq\":1,\"last_seq\":%lld,\"replay_from\":%lld,\"server_time\":\"%s\"}",
        w + 1, wk->next_seq - 1, wk->next_seq, iso);
    unsigned char out[600];
    int n = snprintf((char *)out, sizeof out,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", acc);
    n += ws_header(out + n, 1, bl, 0); memcpy(out + n, body, bl); n += bl;
    c->upgraded = 1; c->worker = w; c->reqlen = 0;
    c->next = wk->subs; c->prev = NULL; if (wk->subs) wk->subs->prev = c; wk->subs = c;
    send_bytes(c, out, n);
}

int main(int argc, char **argv) {
    int port = 8095;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc) port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--workers") && i + 1 < argc) nworkers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rate") && i + 1 < argc) rate = atof(argv[++i]);
        else if (!strcmp(argv[i], "--max-queue") && i + 1 < argc) max_queue = (size_t)atoll(argv[++i]);
        else { fprintf(stderr, "usage: ceiling --port P [--workers N] [--rate R] [--max-queue BYTES]\n"); return 2; }
    }
    struct rlimit rl; getrlimit(RLIMIT_NOFILE, &rl); rl.rlim_cur = rl.rlim_max; setrlimit(RLIMIT_NOFILE, &rl);
    maxfd = (int)rl.rlim_cur + 16; byfd = calloc(maxfd, sizeof(conn_t *));
    workers = calloc(nworkers, sizeof(worker_t));
    for (int i = 0; i < nworkers; i++) workers[i].next_seq = 1;
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {0}; sa.sin_family = AF_INET; sa.sin_port = htons(port); inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("bind"); return 1; }
    listen(ls, 4096);
    ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = -1}; epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    long tick_ns = rate >= 2000 ? 1000000 : 10000000;
    struct itimerspec its = {{0, tick_ns}, {0, tick_ns}}; timerfd_settime(tfd, 0, &its, NULL);
    /* Ticks are due at timer_real + k * tick. Each record carries the due time of the tick it fell due in,
     * not the time this loop got round to it: the publisher runs on the loop that fans out, so a busy loop
     * handles several ticks at once, and stamping them all with the latest (or with now) would hide the time
     * the older records waited (Tailgate's demo publishes from a thread of its own, on time). */
    double timer_real = rec_real(), tick_s = tick_ns / 1e9; long long ticks = 0;
    ev.data.fd = -2; epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
    printf("ceiling listening on http://127.0.0.1:%d/ (%d workers at %.0f rec/s)\n", port, nworkers, rate); fflush(stdout);
    size_t bcap = 1 << 20; unsigned char *batch = malloc(bcap);
    struct epoll_event evs[1024];
    for (;;) {
        int k = epoll_wait(ep, evs, 1024, -1);
        for (int e = 0; e < k; e++) {
            int fd = evs[e].data.fd;
            if (fd == -1) {
                for (;;) {
                    int cfd = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
                    if (cfd < 0) break;
                    if (cfd >= maxfd) { close(cfd); continue; }
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn_t *c = calloc(1, sizeof(conn_t)); c->fd = cfd; byfd[cfd] = c;
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = cfd}; epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev);
                }
            } else if (fd == -2) {
                uint64_t exp; if (read(tfd, &exp, 8) == 8) ticks += (long long)exp;
                long long due = (long long)((double)ticks * tick_s * rate + 1e-6);
                for (int w = 0; w < nworkers; w++) {
                    worker_t *wk = &workers[w];
                    int count = (int)(due - wk->published);
                    if (count <= 0) continue;
                    size_t need = (size_t)count * 300 + 64;
                    if (need > bcap) { bcap = need * 2; batch = realloc(batch, bcap); }
                    size_t pl = rec_batch_due((char *)batch + 14, bcap - 14, wk->next_seq, wk->published, due, timer_real, tick_s, rate);
                    unsigned char h[14]; int hl = ws_header(h, 1, pl, 0);
                    unsigned char *frame = batch + 14 - hl; memcpy(frame, h, hl);
                    wk->next_seq += count; wk->published = due;
                    for (conn_t *c = wk->subs, *nx; c; c = nx) { nx = c->next; send_bytes(c, frame, pl + hl); }
                }
            } else {
                conn_t *c = byfd[fd];
                if (!c) continue;
                if (evs[e].events & EPOLLOUT) { flush_queue(c); if (!byfd[fd]) continue; }
                if (evs[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                    char buf[4096];
                    for (;;) {
                        ssize_t r = c->upgraded ? read(fd, buf, sizeof buf) : read(fd, c->req + c->reqlen, sizeof c->req - 1 - c->reqlen);
                        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) { drop(c); break; }
                        if (r < 0) break;
                        if (!c->upgraded) { c->reqlen += r; handle_request(c); break; }
                        /* clients send nothing but pongs/close: ignore */
                    }
                }
            }
        }
    }
}
