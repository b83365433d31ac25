/* A paced UDP load for bench/ingest.py: RATE datagrams a second for SECONDS
 * seconds, SIZE bytes each (RFC 5424, stamped with the current time, a
 * sequence number in MSG), sent with sendmmsg in slices of ~1 ms. Prints
 * count=N (datagrams the kernel accepted) at the end.
 *
 *   gcc -O2 -o bench/out/udp_sender bench/udp_sender.c
 *   bench/out/udp_sender 127.0.0.1 5514 200000 5 250
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SLICE 512

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void stamp_now(char *stamp, size_t size) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(stamp, size, "%Y-%m-%dT%H:%M:%S", &tm);
}

static size_t message(char *buf, size_t size, const char *stamp, long seq) {
    int n = snprintf(buf, size, "<38>1 %s.000000Z bench-host benchapp 1234 ID47 - seq %010ld ",
                     stamp, seq);
    if (n < 0 || (size_t)n >= size)
        return (size_t)(n < 0 ? 0 : size - 1);
    memset(buf + n, 'x', size - (size_t)n);
    return size;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s HOST PORT RATE SECONDS SIZE\n", argv[0]);
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]);
    long rate = atol(argv[3]);
    double seconds = atof(argv[4]);
    size_t size = (size_t)atol(argv[5]);
    if (port <= 0 || rate <= 0 || seconds <= 0 || size < 80 || size > 65000) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &to.sin_addr) != 1) {
        fprintf(stderr, "bad host %s\n", host);
        return 2;
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&to, sizeof to) < 0) {
        perror("socket");
        return 1;
    }
    int sndbuf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    static char bufs[SLICE][65000];
    static struct mmsghdr msgs[SLICE];
    static struct iovec iovs[SLICE];
    long total = (long)((double)rate * seconds);
    long sent = 0, accepted = 0;
    double t0 = now_s();
    while (sent < total) {
        long due = (long)((now_s() - t0) * (double)rate) + 1;
        if (due > total)
            due = total;
        while (sent < due) {
            int k = due - sent < SLICE ? (int)(due - sent) : SLICE;
            char stamp[32];
            stamp_now(stamp, sizeof stamp);
            for (int i = 0; i < k; i++) {
                iovs[i].iov_base = bufs[i];
                iovs[i].iov_len = message(bufs[i], size, stamp, sent + i);
                memset(&msgs[i], 0, sizeof msgs[i]);
                msgs[i].msg_hdr.msg_iov = &iovs[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            int got = sendmmsg(fd, msgs, (unsigned)k, 0);
            if (got < 0) {
                if (errno == EINTR)
                    continue;
                got = 1; /* ECONNREFUSED (nobody listening yet) and the like: one lost */
            } else {
                accepted += got;
            }
            sent += got;
        }
        struct timespec pause = {0, 200000}; /* 0.2 ms */
        nanosleep(&pause, NULL);
    }
    printf("count=%ld\n", accepted);
    printf("seconds=%.3f\n", now_s() - t0);
    return 0;
}
