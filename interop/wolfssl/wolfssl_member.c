/*
 * wolfssl_member: one wolfSSL DTLS 1.2 multicast group member on an IPv4 loopback multicast group,
 * driven by line commands on stdin and reporting JSON lines on stdout. Written for the dtls-group
 * interop tests (see docs/interop.md); it uses only wolfSSL's public API.
 *
 *   wolfssl_member --id N --group 239.255.77.1:40123 --peers 2,7 --suite C0AE
 *                  --epoch 1 --pms HEX --client-random HEX --server-random HEX
 *                  [--timeout-ms 15000] [--no-prime] [--keep-arrays]
 *
 * Setup order (what wolfSSL 5.5.4 needs): CTX with the DTLS 1.2 client method, member ID, own I/O
 * callbacks; SSL; every peer added with wolfSSL_mcast_peer_add; wolfSSL_connect() once (it sends
 * nothing for a multicast member, but without it an AES-GCM/CCM member can't send after
 * wolfSSL_set_secret); wolfSSL_set_secret(epoch, pms, randoms, suite).
 *
 * Commands (one per line):
 *   send HEX                       wolfSSL_write one record with this plaintext
 *   secret EPOCH PMS CR SR [SUITE] a further wolfSSL_set_secret (epoch change)
 *   stats                          print the counters
 *   quit                           print the counters and exit 0
 * End of input stops command reading; the member keeps receiving until the time bound.
 *
 * Events (one JSON object per line, flushed):
 *   {"ev":"ready",...}                         set up, receiving (connect_ret: 0 if not called)
 *   {"ev":"rx","n":K,"len":L,"hex":"..."}      datagram K handed to wolfSSL (own ones skipped)
 *   {"ev":"record","peer":P,"len":L,"data":"..."}  wolfSSL_mcast_read delivered a record
 *   {"ev":"tx","len":L,"hex":"..."}            datagram wolfSSL sent
 *   {"ev":"sent","ret":R,"err":E}              result of wolfSSL_write
 *   {"ev":"secret","epoch":E,"ret":R,"err":E}  result of wolfSSL_set_secret
 *   {"ev":"read_error","ret":R,"err":E}        wolfSSL_mcast_read failed other than WANT_READ
 *   {"ev":"stats","rx":N,"records":N,"tx":N}
 *   {"ev":"exit","reason":"quit"|"timeout"}
 * Exit status: 0 after quit or the time bound, 2 on bad arguments, 3 on a setup failure.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#ifndef IP_MULTICAST_ALL
#define IP_MULTICAST_ALL 49
#endif

#define MAX_SECRET 256
#define MAX_PEERS 32
#define MAX_DGRAM 65535
#define LINE_MAX_LEN (2 * MAX_DGRAM + 1024)

struct member {
    int rx_fd;                    /* bound to the group port, joined on 127.0.0.1 */
    int tx_fd;                    /* sends to the group; its address marks our own datagrams */
    struct sockaddr_in group;
    struct sockaddr_in self;      /* tx_fd's local address */
    unsigned long rx_count;       /* datagrams handed to wolfSSL */
    unsigned long record_count;   /* records wolfSSL_mcast_read delivered */
    unsigned long tx_count;       /* datagrams wolfSSL sent */
};

static void die(int code, const char *what)
{
    printf("{\"ev\":\"fatal\",\"what\":\"%s\",\"errno\":%d}\n", what, errno);
    fflush(stdout);
    fprintf(stderr, "wolfssl_member: %s: %s\n", what, strerror(errno));
    exit(code);
}

static void usage(const char *msg)
{
    fprintf(stderr,
            "wolfssl_member: %s\n"
            "usage: wolfssl_member --id N --group A.B.C.D:PORT --peers P[,P...] --suite HEX4\n"
            "       --epoch E --pms HEX --client-random HEX64 --server-random HEX64\n"
            "       [--timeout-ms MS] [--no-prime] [--keep-arrays]\n",
            msg);
    exit(2);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes hex into out (at most cap bytes); returns the length or -1. */
static long hex_decode(const char *hex, unsigned char *out, size_t cap)
{
    size_t n = strlen(hex);
    if (n % 2 != 0 || n / 2 > cap)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return (long)(n / 2);
}

static void print_hex(const unsigned char *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        putchar(digits[p[i] >> 4]);
        putchar(digits[p[i] & 15]);
    }
}

static void print_stats(WOLFSSL *ssl, const struct member *m)
{
    /* wolfSSL_dtls_get_drop_stats is not in Debian's build (no WOLFSSL_DTLS_DROP_STATS): what
     * was dropped is what was received and not delivered. */
    (void)ssl;
    printf("{\"ev\":\"stats\",\"rx\":%lu,\"records\":%lu,\"tx\":%lu}\n", m->rx_count,
           m->record_count, m->tx_count);
    fflush(stdout);
}

/* wolfSSL reads one datagram per call. Non-blocking: nothing queued means WANT_READ. */
static int recv_cb(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
    struct member *m = ctx;
    (void)ssl;
    for (;;) {
        struct sockaddr_in from;
        socklen_t fromlen = sizeof from;
        ssize_t n = recvfrom(m->rx_fd, buf, (size_t)sz, MSG_DONTWAIT, (struct sockaddr *)&from,
                             &fromlen);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return WOLFSSL_CBIO_ERR_WANT_READ;
            if (errno == EINTR)
                continue;
            return WOLFSSL_CBIO_ERR_GENERAL;
        }
        /* Our own datagrams loop back (IP_MULTICAST_LOOP): skip them, as a socket on another
         * host would never see them. */
        if (from.sin_addr.s_addr == m->self.sin_addr.s_addr && from.sin_port == m->self.sin_port)
            continue;
        m->rx_count++;
        printf("{\"ev\":\"rx\",\"n\":%lu,\"len\":%zd,\"hex\":\"", m->rx_count, n);
        print_hex((const unsigned char *)buf, (size_t)n);
        printf("\"}\n");
        fflush(stdout);
        return (int)n;
    }
}

static int send_cb(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
    struct member *m = ctx;
    (void)ssl;
    ssize_t n = sendto(m->tx_fd, buf, (size_t)sz, 0, (const struct sockaddr *)&m->group,
                       sizeof m->group);
    if (n < 0)
        return errno == EAGAIN ? WOLFSSL_CBIO_ERR_WANT_WRITE : WOLFSSL_CBIO_ERR_GENERAL;
    m->tx_count++;
    printf("{\"ev\":\"tx\",\"len\":%zd,\"hex\":\"", n);
    print_hex((const unsigned char *)buf, (size_t)n);
    printf("\"}\n");
    fflush(stdout);
    return (int)n;
}

static void open_sockets(struct member *m)
{
    const int one = 1, zero = 0;
    const unsigned char ttl = 1, loop = 1;
    struct in_addr lo;
    lo.s_addr = htonl(INADDR_LOOPBACK);

    m->rx_fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (m->rx_fd < 0)
        die(3, "socket");
    if (setsockopt(m->rx_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        setsockopt(m->rx_fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        die(3, "SO_REUSEADDR/SO_REUSEPORT");
    /* Only this group's datagrams, even if other groups on this port were joined. */
    if (setsockopt(m->rx_fd, IPPROTO_IP, IP_MULTICAST_ALL, &zero, sizeof zero) < 0)
        die(3, "IP_MULTICAST_ALL");
    if (bind(m->rx_fd, (const struct sockaddr *)&m->group, sizeof m->group) < 0)
        die(3, "bind group");
    struct ip_mreq mreq;
    mreq.imr_multiaddr = m->group.sin_addr;
    mreq.imr_interface = lo;
    if (setsockopt(m->rx_fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mreq, sizeof mreq) < 0)
        die(3, "IP_ADD_MEMBERSHIP");

    m->tx_fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (m->tx_fd < 0)
        die(3, "socket");
    /* Loopback only: interface 127.0.0.1, TTL 1. */
    if (setsockopt(m->tx_fd, IPPROTO_IP, IP_MULTICAST_IF, &lo, sizeof lo) < 0 ||
        setsockopt(m->tx_fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof ttl) < 0 ||
        setsockopt(m->tx_fd, IPPROTO_IP, IP_MULTICAST_LOOP, &loop, sizeof loop) < 0)
        die(3, "IP_MULTICAST_IF/TTL/LOOP");
    struct sockaddr_in local;
    memset(&local, 0, sizeof local);
    local.sin_family = AF_INET;
    local.sin_addr = lo;
    if (bind(m->tx_fd, (const struct sockaddr *)&local, sizeof local) < 0)
        die(3, "bind 127.0.0.1");
    socklen_t len = sizeof m->self;
    if (getsockname(m->tx_fd, (struct sockaddr *)&m->self, &len) < 0)
        die(3, "getsockname");
}

static int parse_group(const char *s, struct sockaddr_in *out)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= sizeof host)
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port <= 0 || port > 65535)
        return -1;
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &out->sin_addr) != 1)
        return -1;
    if (!IN_MULTICAST(ntohl(out->sin_addr.s_addr)))
        return -1;
    return 0;
}

static long parse_num(const char *s, long max)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 0 || v > max)
        return -1;
    return v;
}

struct secret {
    long epoch;
    unsigned char pms[MAX_SECRET];
    long pms_len;
    unsigned char cr[32], sr[32];
    unsigned char suite[2];
};

static int set_secret(WOLFSSL *ssl, const struct secret *s)
{
    int ret = wolfSSL_set_secret(ssl, (unsigned short)s->epoch, s->pms, (unsigned int)s->pms_len,
                                 s->cr, s->sr, s->suite);
    int err = ret == WOLFSSL_SUCCESS ? 0 : wolfSSL_get_error(ssl, ret);
    printf("{\"ev\":\"secret\",\"epoch\":%ld,\"suite\":\"%02X%02X\",\"ret\":%d,\"err\":%d}\n",
           s->epoch, s->suite[0], s->suite[1], ret, err);
    fflush(stdout);
    return ret;
}

/* Reads every record wolfSSL can deliver now. */
static void drain(WOLFSSL *ssl, struct member *m)
{
    static unsigned char data[MAX_DGRAM];
    for (;;) {
        unsigned short peer = 0;
        int ret = wolfSSL_mcast_read(ssl, &peer, data, (int)sizeof data);
        if (ret > 0) {
            m->record_count++;
            printf("{\"ev\":\"record\",\"peer\":%u,\"len\":%d,\"data\":\"", peer, ret);
            print_hex(data, (size_t)ret);
            printf("\"}\n");
            fflush(stdout);
            continue;
        }
        int err = wolfSSL_get_error(ssl, ret);
        if (err == WOLFSSL_ERROR_WANT_READ)
            return;
        printf("{\"ev\":\"read_error\",\"ret\":%d,\"err\":%d}\n", ret, err);
        fflush(stdout);
        return;
    }
}

static int parse_secret_fields(char **f, int nf, struct secret *s)
{
    /* f: EPOCH PMS CR SR [SUITE] */
    if (nf != 4 && nf != 5)
        return -1;
    s->epoch = parse_num(f[0], 65535);
    s->pms_len = hex_decode(f[1], s->pms, sizeof s->pms);
    if (s->epoch < 0 || s->pms_len <= 0 || hex_decode(f[2], s->cr, 32) != 32 ||
        hex_decode(f[3], s->sr, 32) != 32)
        return -1;
    if (nf == 5 && hex_decode(f[4], s->suite, 2) != 2)
        return -1;
    return 0;
}

/* Handles one command line; returns 1 on quit. */
static int command(WOLFSSL *ssl, struct member *m, struct secret *current, char *line)
{
    char *f[8];
    int nf = 0;
    for (char *tok = strtok(line, " \t\r\n"); tok != NULL && nf < 8; tok = strtok(NULL, " \t\r\n"))
        f[nf++] = tok;
    if (nf == 0)
        return 0;
    if (strcmp(f[0], "send") == 0 && nf == 2) {
        static unsigned char data[MAX_DGRAM];
        long n = hex_decode(f[1], data, sizeof data);
        if (n < 0) {
            printf("{\"ev\":\"bad_command\",\"cmd\":\"send\"}\n");
        } else {
            int ret = wolfSSL_write(ssl, data, (int)n);
            int err = ret > 0 ? 0 : wolfSSL_get_error(ssl, ret);
            printf("{\"ev\":\"sent\",\"ret\":%d,\"err\":%d}\n", ret, err);
        }
    } else if (strcmp(f[0], "secret") == 0) {
        struct secret next = *current;
        if (parse_secret_fields(f + 1, nf - 1, &next) < 0) {
            printf("{\"ev\":\"bad_command\",\"cmd\":\"secret\"}\n");
        } else {
            set_secret(ssl, &next);
            *current = next;
        }
    } else if (strcmp(f[0], "stats") == 0 && nf == 1) {
        print_stats(ssl, m);
    } else if (strcmp(f[0], "quit") == 0 && nf == 1) {
        print_stats(ssl, m);
        printf("{\"ev\":\"exit\",\"reason\":\"quit\"}\n");
        fflush(stdout);
        return 1;
    } else {
        printf("{\"ev\":\"bad_command\",\"cmd\":\"%.16s\"}\n", f[0]);
    }
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    long id = -1, timeout_ms = 15000;
    long peers[MAX_PEERS];
    int npeers = 0, prime = 1, keep_arrays = 0, have_group = 0, have_suite = 0;
    struct member m;
    struct secret sec;
    memset(&m, 0, sizeof m);
    memset(&sec, 0, sizeof sec);
    sec.epoch = -1;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--no-prime") == 0) {
            prime = 0;
            continue;
        }
        if (strcmp(a, "--keep-arrays") == 0) {
            keep_arrays = 1;
            continue;
        }
        if (v == NULL)
            usage("missing value");
        i++;
        if (strcmp(a, "--id") == 0) {
            if ((id = parse_num(v, 255)) < 0)
                usage("--id: 0 to 255");
        } else if (strcmp(a, "--group") == 0) {
            if (parse_group(v, &m.group) < 0)
                usage("--group: IPv4 multicast A.B.C.D:PORT");
            have_group = 1;
        } else if (strcmp(a, "--peers") == 0) {
            char buf[512];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *t = strtok(buf, ","); t != NULL; t = strtok(NULL, ",")) {
                if (npeers == MAX_PEERS || (peers[npeers] = parse_num(t, 255)) < 0)
                    usage("--peers: IDs 0 to 255, comma-separated");
                npeers++;
            }
        } else if (strcmp(a, "--suite") == 0) {
            if (hex_decode(v, sec.suite, 2) != 2)
                usage("--suite: 4 hex digits, e.g. C0AE");
            have_suite = 1;
        } else if (strcmp(a, "--epoch") == 0) {
            if ((sec.epoch = parse_num(v, 65535)) < 0)
                usage("--epoch: 0 to 65535");
        } else if (strcmp(a, "--pms") == 0) {
            if ((sec.pms_len = hex_decode(v, sec.pms, sizeof sec.pms)) <= 0)
                usage("--pms: hex");
        } else if (strcmp(a, "--client-random") == 0) {
            if (hex_decode(v, sec.cr, 32) != 32)
                usage("--client-random: 32 bytes hex");
        } else if (strcmp(a, "--server-random") == 0) {
            if (hex_decode(v, sec.sr, 32) != 32)
                usage("--server-random: 32 bytes hex");
        } else if (strcmp(a, "--timeout-ms") == 0) {
            if ((timeout_ms = parse_num(v, 600000)) <= 0)
                usage("--timeout-ms: 1 to 600000");
        } else {
            usage("unknown option");
        }
    }
    if (id < 0 || !have_group || !have_suite || sec.epoch < 0 || sec.pms_len <= 0)
        usage("--id, --group, --suite, --epoch, --pms and the randoms are required");

    const int64_t deadline = now_ms() + timeout_ms;
    open_sockets(&m);

    if (wolfSSL_Init() != WOLFSSL_SUCCESS)
        die(3, "wolfSSL_Init");
    WOLFSSL_CTX *ctx = wolfSSL_CTX_new(wolfDTLSv1_2_client_method());
    if (ctx == NULL)
        die(3, "wolfSSL_CTX_new");
    if (wolfSSL_CTX_mcast_set_member_id(ctx, (unsigned short)id) != WOLFSSL_SUCCESS)
        die(3, "wolfSSL_CTX_mcast_set_member_id");
    /* After the member ID: it installs wolfSSL's own multicast receive callback. */
    wolfSSL_CTX_SetIORecv(ctx, recv_cb);
    wolfSSL_CTX_SetIOSend(ctx, send_cb);
    WOLFSSL *ssl = wolfSSL_new(ctx);
    if (ssl == NULL)
        die(3, "wolfSSL_new");
    wolfSSL_SetIOReadCtx(ssl, &m);
    wolfSSL_SetIOWriteCtx(ssl, &m);
    if (keep_arrays)
        wolfSSL_KeepArrays(ssl);
    for (int i = 0; i < npeers; i++) {
        if (wolfSSL_mcast_peer_add(ssl, (unsigned short)peers[i], 0) != WOLFSSL_SUCCESS)
            die(3, "wolfSSL_mcast_peer_add");
    }
    int primed = 0;
    if (prime) {
        int ret = wolfSSL_connect(ssl);
        primed = ret;
    }
    if (set_secret(ssl, &sec) != WOLFSSL_SUCCESS)
        die(3, "wolfSSL_set_secret");

    printf("{\"ev\":\"ready\",\"id\":%ld,\"suite\":\"%02X%02X\",\"epoch\":%ld,\"peers\":%d,"
           "\"max_peers\":%d,\"prime\":%d,\"connect_ret\":%d,\"port\":%u,\"version\":\"%s\"}\n",
           id, sec.suite[0], sec.suite[1], sec.epoch, npeers, wolfSSL_mcast_get_max_peers(), prime,
           primed, ntohs(m.self.sin_port), LIBWOLFSSL_VERSION_STRING);
    fflush(stdout);

    static char line[LINE_MAX_LEN];
    size_t line_len = 0;
    int stdin_open = 1;
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            print_stats(ssl, &m);
            printf("{\"ev\":\"exit\",\"reason\":\"timeout\"}\n");
            fflush(stdout);
            break;
        }
        struct pollfd pfd[2] = {{m.rx_fd, POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
        int n = poll(pfd, stdin_open ? 2 : 1, left > 100 ? 100 : (int)left);
        if (n < 0 && errno != EINTR)
            die(3, "poll");
        if (n > 0 && (pfd[0].revents & POLLIN))
            drain(ssl, &m);
        if (stdin_open && n > 0 && (pfd[1].revents & (POLLIN | POLLHUP))) {
            ssize_t got = read(STDIN_FILENO, line + line_len, sizeof line - 1 - line_len);
            if (got <= 0) {
                stdin_open = 0;
                continue;
            }
            line_len += (size_t)got;
            int quit = 0;
            char *nl;
            while (!quit && (nl = memchr(line, '\n', line_len)) != NULL) {
                *nl = '\0';
                size_t used = (size_t)(nl - line) + 1;
                quit = command(ssl, &m, &sec, line);
                memmove(line, line + used, line_len - used);
                line_len -= used;
            }
            if (quit)
                break;
            if (line_len == sizeof line - 1) {
                printf("{\"ev\":\"bad_command\",\"cmd\":\"line too long\"}\n");
                fflush(stdout);
                line_len = 0;
            }
        }
    }
    wolfSSL_free(ssl);
    wolfSSL_CTX_free(ctx);
    wolfSSL_Cleanup();
    close(m.rx_fd);
    close(m.tx_fd);
    return 0;
}
