/* ingestpub: publishes NDJSON records into one Tailgate worker over ONE streamed HTTP request
 * (POST /api/workers/{id}/records, Transfer-Encoding: chunked), the way an external publisher does.
 *
 *   ingestpub HOST PORT WORKER [--rate R] [--seconds S]
 *
 * --rate R   records per second, sent as one chunk per 1 ms tick (R/1000 lines, remainder carried);
 *            0 (the default) floods: 64 KiB chunks as fast as the socket takes them, so TCP backpressure
 *            from the gateway sets the pace.
 * --seconds S  how long to publish (default 5), then the body ends and the gateway's summary is read.
 *
 * Each line is a ~200-byte record shaped like the demo workers' (same fields, no seq) with the
 * publisher's own `timestamp`, so a subscriber's latency (receive time - timestamp) covers the whole
 * ingest path. Prints one JSON line: sent, seconds, records_per_s, cpu_share (this process) and the
 * gateway's accepted / rejected counts from its response.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../peers/ceiling/rec.h"

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* one NDJSON line for record k; returns its length */
static int line(char *out, size_t cap, long long k, const char *iso) {
    const char **m = REC_MSG[k % 4];
    return snprintf(out, cap,
        "{\"timestamp\":\"%s\",\"level\":\"%s\",\"message\":\"%s #%lld\",\"logger_name\":\"TurtleBreakout\","
        "\"module\":\"strategies.turtlebreakout\",\"func_name\":\"%s\",\"line_no\":%s}\n", iso, m[0], m[1], k, m[2], m[3]);
}

/* frames body[0..n) as one chunk and writes it */
static int send_chunk(int fd, const char *body, size_t n) {
    char head[32];
    int h = snprintf(head, sizeof head, "%zx\r\n", n);
    if (write_all(fd, head, (size_t)h) || write_all(fd, body, n) || write_all(fd, "\r\n", 2)) return -1;
    return 0;
}

static double cpu_now(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static long long json_int(const char *text, const char *key) {
    const char *p = strstr(text, key);
    return p ? atoll(p + strlen(key)) : -1;
}

int main(int argc, char **argv) {
    if (argc < 4 || !strcmp(argv[1], "--help")) {
        fprintf(stderr, "usage: ingestpub HOST PORT WORKER [--rate R] [--seconds S]\n"
                        "  --rate R     records/s in 1 ms ticks; 0 (default) floods as fast as the socket takes them\n"
                        "  --seconds S  how long to publish (default 5)\n");
        return 2;
    }
    const char *host = argv[1], *worker = argv[3];
    int port = atoi(argv[2]);
    double rate = 0, seconds = 5;
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--rate") && i + 1 < argc) rate = atof(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
        else { fprintf(stderr, "ingestpub: unknown option %s\n", argv[i]); return 2; }
    }

    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) { perror("ingestpub: connect"); return 1; }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

    char head[512];
    int hn = snprintf(head, sizeof head,
                      "POST /api/workers/%s/records HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/x-ndjson\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n", worker, host, port);
    if (write_all(fd, head, (size_t)hn)) { perror("ingestpub: write"); return 1; }

    enum { CAP = 64 * 1024 };
    static char buf[CAP + 512];
    char iso[40];
    long long sent = 0;
    double cpu0 = cpu_now(), t0 = rec_mono(), end = t0 + seconds;
    int failed = 0;
    if (rate <= 0) {
        while (rec_mono() < end && !failed) {
            rec_iso_now(iso);
            size_t n = 0;
            while (n < CAP) n += (size_t)line(buf + n, sizeof buf - n, sent++, iso);
            failed = send_chunk(fd, buf, n);
        }
    } else {
        double tick = 0.001, next = t0, carry = 0;
        while (!failed) {
            double now = rec_mono();
            if (now >= end) break;
            if (now < next) {
                struct timespec ts = {0, (long)((next - now) * 1e9)};
                nanosleep(&ts, NULL);
                continue;
            }
            next += tick;
            carry += rate * tick;
            int count = (int)carry;
            carry -= count;
            if (count == 0) continue;
            rec_iso_now(iso);
            size_t n = 0;
            for (int i = 0; i < count && n < CAP; i++) n += (size_t)line(buf + n, sizeof buf - n, sent++, iso);
            failed = send_chunk(fd, buf, n);
        }
    }
    double t1 = rec_mono(), cpu1 = cpu_now();
    if (failed) { perror("ingestpub: write"); return 1; }
    if (write_all(fd, "0\r\n\r\n", 5)) { perror("ingestpub: write"); return 1; }

    static char resp[65536];
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, resp + got, sizeof resp - 1 - got);
        if (r <= 0) break;
        got += (size_t)r;
        resp[got] = 0;
        if (strstr(resp, "\"errors\"") && strstr(resp, "]}")) break;
    }
    resp[got] = 0;
    int status = got > 12 ? atoi(resp + 9) : 0;
    printf("{\"sent\":%lld,\"seconds\":%.3f,\"records_per_s\":%.0f,\"cpu_share\":%.3f,\"status\":%d,"
           "\"accepted\":%lld,\"rejected\":%lld}\n",
           sent, t1 - t0, sent / (t1 - t0), (cpu1 - cpu0) / (t1 - t0), status,
           json_int(resp, "\"accepted\":"), json_int(resp, "\"rejected\":"));
    close(fd);
    return status == 200 ? 0 : 1;
}
