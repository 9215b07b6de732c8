/* ingestpub: publishes NDJSON records into one Tailgate worker over ONE streamed HTTP request
 * (POST /api/workers/{id}/records, Transfer-Encoding: chunked), the way an external publisher does.
 *
 *   ingestpub HOST PORT WORKER [--rate R] [--seconds S] [--count N] [--workers K] [--stop]
 *
 * --rate R     records per second, sent as one chunk per 1 ms tick (R/1000 lines, remainder carried);
 *              0 (the default) floods: 64 KiB chunks as fast as the socket takes them, so TCP backpressure
 *              from the gateway sets the pace.
 * --seconds S  how long to publish (default 5, or no limit with --count), then the body ends and the
 *              gateway's summary is read.
 * --count N    publish exactly N records (per worker), then end the body.
 * --workers K  publish into K workers WORKER-1 ... WORKER-K, one after the other, one connection each
 *              (with --count: N records each; the history benchmark's data set).
 * --stop       after each body, stop the worker (POST /api/workers/{id}/stop), so that its run is finished.
 *
 * Each line is a ~200-byte record shaped like the demo workers' (same fields, no seq) with the
 * publisher's own `timestamp`, so a subscriber's latency (receive time - timestamp) covers the whole
 * ingest path. Prints one JSON line: sent, seconds, records_per_s, cpu_share (this process) and the
 * gateway's accepted / rejected counts from its response (summed over workers), workers, stopped.
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
#include <sys/time.h>
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

static int connect_to(const char *host, int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa)) { perror("ingestpub: connect"); if (fd >= 0) close(fd); return -1; }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {120, 0}; /* a gateway that never answers must not hang the benchmark */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* reads one HTTP response into resp (NUL-terminated): the head, then Content-Length bytes of body or,
 * without one, until `done` appears (or EOF); returns its status code, 0 when there is none */
static int read_response(int fd, char *resp, size_t cap, const char *done) {
    size_t got = 0;
    resp[0] = 0;
    for (;;) {
        ssize_t r = read(fd, resp + got, cap - 1 - got);
        if (r <= 0) break;
        got += (size_t)r;
        resp[got] = 0;
        char *body = strstr(resp, "\r\n\r\n");
        if (!body) continue;
        body += 4;
        char *cl = strcasestr(resp, "\r\ncontent-length:");
        if (cl && cl < body) {
            if ((size_t)(resp + got - body) >= (size_t)atoll(cl + 17)) break;
        } else if (done && strstr(body, done)) break;
        if (got + 1 >= cap) break;
    }
    return got > 12 ? atoi(resp + 9) : 0;
}

typedef struct { long long sent, accepted, rejected; int status, failed; } result_t;

/* one streamed POST of records into `worker` */
static result_t publish(const char *host, int port, const char *worker, double rate, double seconds, long long count) {
    result_t res = {0, -1, -1, 0, 0};
    int fd = connect_to(host, port);
    if (fd < 0) { res.failed = 1; return res; }
    char head[512];
    int hn = snprintf(head, sizeof head,
                      "POST /api/workers/%s/records HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/x-ndjson\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n", worker, host, port);
    if (write_all(fd, head, (size_t)hn)) { perror("ingestpub: write"); close(fd); res.failed = 1; return res; }

    enum { CAP = 64 * 1024 };
    static char buf[CAP + 512];
    char iso[40];
    long long sent = 0, limit = count > 0 ? count : -1;
    double t0 = rec_mono(), end = seconds > 0 ? t0 + seconds : 1e300;
    int failed = 0;
    if (rate <= 0) {
        while (rec_mono() < end && !failed && (limit < 0 || sent < limit)) {
            rec_iso_now(iso);
            size_t n = 0;
            while (n < CAP && (limit < 0 || sent < limit)) n += (size_t)line(buf + n, sizeof buf - n, sent++, iso);
            failed = send_chunk(fd, buf, n);
        }
    } else {
        double tick = 0.001, next = t0, carry = 0;
        while (!failed && (limit < 0 || sent < limit)) {
            double now = rec_mono();
            if (now >= end) break;
            if (now < next) {
                struct timespec ts = {0, (long)((next - now) * 1e9)};
                nanosleep(&ts, NULL);
                continue;
            }
            next += tick;
            carry += rate * tick;
            int cnt = (int)carry;
            carry -= cnt;
            if (cnt == 0) continue;
            rec_iso_now(iso);
            size_t n = 0;
            for (int i = 0; i < cnt && n < CAP && (limit < 0 || sent < limit); i++) n += (size_t)line(buf + n, sizeof buf - n, sent++, iso);
            failed = send_chunk(fd, buf, n);
        }
    }
    res.sent = sent;
    if (failed || write_all(fd, "0\r\n\r\n", 5)) { perror("ingestpub: write"); close(fd); res.failed = 1; return res; }
    static char resp[65536];
    res.status = read_response(fd, resp, sizeof resp, "]}");
    res.accepted = json_int(resp, "\"accepted\":");
    res.rejected = json_int(resp, "\"rejected\":");
    close(fd);
    return res;
}

/* POST /api/workers/{worker}/stop; its status code */
static int stop_worker(const char *host, int port, const char *worker) {
    int fd = connect_to(host, port);
    if (fd < 0) return 0;
    char req[512];
    int n = snprintf(req, sizeof req, "POST /api/workers/%s/stop HTTP/1.1\r\nHost: %s:%d\r\nContent-Length: 0\r\n"
                     "Connection: close\r\n\r\n", worker, host, port);
    static char resp[8192];
    int status = write_all(fd, req, (size_t)n) ? 0 : read_response(fd, resp, sizeof resp, "}");
    close(fd);
    return status;
}

int main(int argc, char **argv) {
    if (argc < 4 || !strcmp(argv[1], "--help")) {
        fprintf(stderr, "usage: ingestpub HOST PORT WORKER [--rate R] [--seconds S] [--count N] [--workers K] [--stop]\n"
                        "  --rate R     records/s in 1 ms ticks; 0 (default) floods as fast as the socket takes them\n"
                        "  --seconds S  how long to publish (default 5; no limit with --count)\n"
                        "  --count N    exactly N records (per worker)\n"
                        "  --workers K  into WORKER-1 ... WORKER-K, one after the other\n"
                        "  --stop       stop each worker after its body (POST /api/workers/{id}/stop)\n");
        return 2;
    }
    const char *host = argv[1], *worker = argv[3];
    int port = atoi(argv[2]), workers = 0, stop = 0, seconds_given = 0;
    double rate = 0, seconds = 5;
    long long count = 0;
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--rate") && i + 1 < argc) rate = atof(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) { seconds = atof(argv[++i]); seconds_given = 1; }
        else if (!strcmp(argv[i], "--count") && i + 1 < argc) count = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--workers") && i + 1 < argc) workers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--stop")) stop = 1;
        else { fprintf(stderr, "ingestpub: unknown option %s\n", argv[i]); return 2; }
    }
    if (count > 0 && !seconds_given) seconds = 0; /* no time limit */

    long long sent = 0, accepted = 0, rejected = 0;
    int status = 200, stopped = 0, n = workers > 0 ? workers : 1;
    double cpu0 = cpu_now(), t0 = rec_mono();
    for (int k = 1; k <= n; k++) {
        char name[300];
        if (workers > 0) snprintf(name, sizeof name, "%s-%d", worker, k);
        else snprintf(name, sizeof name, "%s", worker);
        result_t r = publish(host, port, name, rate, seconds, count);
        sent += r.sent;
        if (r.failed) return 1;
        if (r.status != 200) status = r.status;
        accepted = (accepted < 0 || r.accepted < 0) ? -1 : accepted + r.accepted;
        rejected = (rejected < 0 || r.rejected < 0) ? -1 : rejected + r.rejected;
        if (stop) {
            int s = stop_worker(host, port, name);
            if (s == 200) stopped++;
            else if (status == 200) status = s;
        }
    }
    double t1 = rec_mono(), cpu1 = cpu_now();
    printf("{\"sent\":%lld,\"seconds\":%.3f,\"records_per_s\":%.0f,\"cpu_share\":%.3f,\"status\":%d,"
           "\"accepted\":%lld,\"rejected\":%lld,\"workers\":%d,\"stopped\":%d}\n",
           sent, t1 - t0, sent / (t1 - t0), (cpu1 - cpu0) / (t1 - t0), status, accepted, rejected, n, stopped);
    return status == 200 ? 0 : 1;
}
