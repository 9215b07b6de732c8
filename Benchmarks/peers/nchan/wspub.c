/*
 * wspub: the publisher feeding nginx + nchan (peer b). One WebSocket connection per worker to
 * ws://127.0.0.1:PORT/pub/demo-K; every tick (1 ms at >= 2000 rec/s per worker, 10 ms otherwise, like
 * Tailgate's demo) it publishes the records due as one message {"type":"logs","records":[...]} (masked
 * text frame), so subscribers get the same batches Tailgate sends. Replies from nchan are drained.
 *
 * Usage: wspub --port P [--workers N] [--rate R] [--seconds S]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include "../ceiling/rec.h"

static int write_all(int fd, const unsigned char *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) { if (errno == EAGAIN || errno == EINTR) { struct pollfd pf = {fd, POLLOUT, 0}; poll(&pf, 1, 100); continue; } return -1; }
        p += w; n -= w;
    }
    return 0;
}

int main(int argc, char **argv) {
    int port = 0, workers = 1; double rate = 100, seconds = 1e9;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc) port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--workers") && i + 1 < argc) workers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rate") && i + 1 < argc) rate = atof(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
        else { fprintf(stderr, "usage: wspub --port P [--workers N] [--rate R] [--seconds S]\n"); return 2; }
    }
    int *fds = calloc(workers, sizeof(int));
    long long *seq = calloc(workers, sizeof(long long));
    for (int w = 0; w < workers; w++) {
        fds[w] = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {0}; sa.sin_family = AF_INET; sa.sin_port = htons(port); inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
        if (connect(fds[w], (struct sockaddr *)&sa, sizeof sa) < 0) { perror("wspub connect"); return 1; }
        int one = 1; setsockopt(fds[w], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        char req[512];
        int n = snprintf(req, sizeof req, "GET /pub/demo-%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", w + 1, port);
        if (write_all(fds[w], (unsigned char *)req, n) < 0) return 1;
        char resp[4096]; size_t got = 0;
        while (!memmem(resp, got, "\r\n\r\n", 4)) {
            ssize_t r = read(fds[w], resp + got, sizeof resp - got);
            if (r <= 0) { fprintf(stderr, "wspub: no upgrade answer\n"); return 1; }
            got += r;
        }
        if (memcmp(resp, "HTTP/1.1 101", 12) != 0) { fprintf(stderr, "wspub: refused: %.60s\n", resp); return 1; }
        fcntl(fds[w], F_SETFL, O_NONBLOCK);
        seq[w] = 1;
    }
    printf("wspub publishing %d workers at %.0f rec/s\n", workers, rate); fflush(stdout);
    long tick_us = rate >= 2000 ? 1000 : 10000;
    size_t cap = 1 << 20; unsigned char *buf = malloc(cap), drain[65536];
    double t0 = rec_mono(); long long published = 0;
    while (rec_mono() - t0 < seconds) {
        usleep(tick_us);
        long long due = (long long)((rec_mono() - t0) * rate);
        int count = (int)(due - published);
        if (count <= 0) continue;
        if ((size_t)count * 300 + 64 > cap) { cap = (size_t)count * 600 + 64; buf = realloc(buf, cap); }
        for (int w = 0; w < workers; w++) {
            size_t pl = rec_batch((char *)buf + 14, cap - 14, seq[w], count);
            unsigned char h[14]; int hl = ws_header(h, 1, pl, 1);
            memcpy(buf + 14 - hl, h, hl);
            if (write_all(fds[w], buf + 14 - hl, pl + hl) < 0) { fprintf(stderr, "wspub: write failed\n"); return 1; }
            seq[w] += count;
            while (read(fds[w], drain, sizeof drain) > 0) {}
        }
        published = due;
    }
    return 0;
}
