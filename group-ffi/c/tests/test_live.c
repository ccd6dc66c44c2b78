/* Live tests of the C API on IPv4 loopback multicast (IP_MULTICAST_IF 127.0.0.1, TTL 1),
 * driven by group-ffi/c/tests/live.sh against the real `dtls-group` tool. Every wait is
 * bounded; the exit status is non-zero on any failure.
 *
 *   test_live static GROUP PORT KEY_HEX IV_HEX
 *       a dg_group (AES-128-CCM, epoch 1, sender ID 9) with static keys: prints READY, opens
 *       one record from `dtls-group send`, then sends "c: hello" (for `dtls-group listen`).
 *   test_live member SERVER PORT SERVER_PUB_HEX DEVICE_KEY_HEX DEVICE_ID GROUP_ID GROUP GPORT
 *       a dg_member in signed mode (a sender): joins the key server, prints JOINED epoch=E,
 *       waits for a newer epoch (the script revokes another member), prints REKEYED epoch=E2,
 *       sends "c: member" to the group (again every 500 ms, as a member may get its bundle
 *       after the record) until it has opened one record from another member. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dtls_group.h"

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int fail(const char *what, int rc) {
    fprintf(stderr, "test_live: %s: %s\n", what, rc >= 0 ? dg_error_name(rc) : strerror(errno));
    return 1;
}

static size_t unhex(const char *h, uint8_t *out, size_t cap) {
    size_t n = 0;
    while (h[0] && h[1] && n < cap) {
        unsigned v;
        if (sscanf(h, "%2x", &v) != 1) break;
        out[n++] = (uint8_t)v;
        h += 2;
    }
    return n;
}

/* A socket on the group: bound to GROUP:PORT, member on 127.0.0.1, sending there with TTL 1. */
static int group_socket(const char *group, int port, struct sockaddr_in *dst) {
    int s = socket(AF_INET, SOCK_DGRAM, 0), one = 1, zero = 0;
    unsigned char ttl = 1, loop = 1;
    struct ip_mreq mreq;
    struct in_addr lo;
    if (s < 0) return -1;
    memset(dst, 0, sizeof *dst);
    dst->sin_family = AF_INET;
    dst->sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, group, &dst->sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &lo);
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (bind(s, (struct sockaddr *)dst, sizeof *dst) != 0) return -1;
    mreq.imr_multiaddr = dst->sin_addr;
    mreq.imr_interface = lo;
    if (setsockopt(s, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mreq, sizeof mreq) != 0) return -1;
    setsockopt(s, IPPROTO_IP, IP_MULTICAST_IF, &lo, sizeof lo);
    setsockopt(s, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof ttl);
    setsockopt(s, IPPROTO_IP, IP_MULTICAST_LOOP, &loop, sizeof loop);
    setsockopt(s, IPPROTO_IP, IP_MULTICAST_ALL, &zero, sizeof zero);
    return s;
}

/* The sender's sequence store: in memory (a device writes flash). */
static dg_sequence_state stored;
static int stored_present;
static int32_t load(void *u, dg_sequence_state *o) {
    (void)u;
    if (!stored_present) return DG_STORE_EMPTY;
    *o = stored;
    return DG_STORE_OK;
}
static int32_t save(void *u, const dg_sequence_state *s) {
    (void)u;
    stored = *s;
    stored_present = 1;
    return DG_STORE_OK;
}
static int32_t rng(void *u, uint8_t *buf, size_t len) {
    (void)u;
    return getrandom(buf, len, 0) == (ssize_t)len ? 0 : -1;
}

static int run_static(char **argv) {
    static dg_group g;
    dg_group_config cfg;
    uint8_t key[16], iv[4], buf[2048];
    struct sockaddr_in dst;
    dg_delivery d;
    size_t len;
    int rc, s = group_socket(argv[2], atoi(argv[3]), &dst);
    if (s < 0) return fail("group socket", -1);
    if (unhex(argv[4], key, sizeof key) != 16 || unhex(argv[5], iv, sizeof iv) != 4)
        return fail("key/iv", DG_ERR_INVALID_ARGUMENT);
    dg_group_config_init(&cfg, 0);
    cfg.suite = DG_SUITE_AES_128_CCM;
    cfg.is_sender = 1;
    cfg.sender_id = 9;
    if ((rc = dg_group_init(&g, sizeof g, &cfg)) != DG_OK) return fail("init", rc);
    if ((rc = dg_group_set_sequence_store(&g, load, save, NULL)) != DG_OK) return fail("store", rc);
    if ((rc = dg_group_install_raw(&g, 1, key, 16, iv, 4)) != DG_OK) return fail("keys", rc);
    if ((rc = dg_group_activate(&g, 1, now_ms())) != DG_OK) return fail("activate", rc);
    printf("READY\n");
    fflush(stdout);
    uint64_t deadline = now_ms() + 20000;
    for (;;) {
        struct pollfd p = {s, POLLIN, 0};
        if (now_ms() > deadline) return fail("no record from dtls-group send", DG_ERR_OPEN);
        if (poll(&p, 1, 100) <= 0) continue;
        ssize_t n = recv(s, buf, sizeof buf, 0);
        if (n <= 0) continue;
        rc = dg_group_open(&g, now_ms(), buf, (size_t)n, &d);
        if (rc != DG_OK) {
            printf("dropped %s\n", dg_error_name(rc));
            continue;
        }
        printf("static received sender=%u epoch=%u seq=%llu plaintext=%.*s\n", d.sender_id,
               d.epoch, (unsigned long long)d.seq, (int)d.length, (const char *)buf + d.offset);
        break;
    }
    if ((rc = dg_group_seal(&g, now_ms(), (const uint8_t *)"c: hello", 8, buf, sizeof buf, &len)) != DG_OK)
        return fail("seal", rc);
    if (sendto(s, buf, len, 0, (struct sockaddr *)&dst, sizeof dst) != (ssize_t)len)
        return fail("sendto", -1);
    printf("static sent c: hello\n");
    dg_group_deinit(&g);
    close(s);
    return 0;
}

static dg_member m;
static int resend_socket = -1; /* while set: send "c: member" to the group every 500 ms */
static struct sockaddr_in resend_dst;
static uint64_t resend_at;
static int sent_count;

static int send_record(void) {
    uint8_t buf[256];
    size_t len = 0;
    dg_error rc = dg_member_seal(&m, now_ms(), (const uint8_t *)"c: member", 9, buf, sizeof buf, &len);
    if (rc != DG_OK) return fail("seal", rc);
    if (sendto(resend_socket, buf, len, 0, (struct sockaddr *)&resend_dst, sizeof resend_dst) != (ssize_t)len)
        return fail("sendto", -1);
    sent_count++;
    return 0;
}

/* Runs the member until `done` says so or the deadline passes: datagrams both ways, timers,
 * events. Returns 0 when done, 1 on timeout or error. */
static int pump(int ks, int grp, uint64_t limit_ms, int (*done)(const dg_member_event *, void *),
                void *arg, int (*on_record)(uint8_t *, size_t, void *)) {
    uint8_t buf[2048];
    uint64_t deadline = now_ms() + limit_ms;
    for (;;) {
        size_t len = 0;
        dg_error rc;
        dg_member_event ev;
        while ((rc = dg_member_poll_transmit(&m, now_ms(), buf, sizeof buf, &len)) == DG_OK && len)
            if (send(ks, buf, len, 0) < 0) return fail("send to key server", -1);
        if (rc != DG_OK) return fail("poll_transmit", rc);
        while (dg_member_poll_event(&m, &ev) == DG_OK && ev.kind != DG_MEMBER_EVENT_NONE) {
            printf("event kind=%u epoch=%u\n", ev.kind, ev.epoch);
            if (done && done(&ev, arg)) return 0;
        }
        if (now_ms() > deadline) return fail("timed out", DG_ERR_NOT_JOINED);
        /* Records in the new epoch may reach a member before its bundle does: send again. */
        if (resend_socket >= 0 && now_ms() >= resend_at) {
            if (send_record()) return 1;
            resend_at = now_ms() + 500;
        }
        uint64_t next = UINT64_MAX;
        dg_member_poll_timeout(&m, &next);
        int wait = 100;
        if (next != UINT64_MAX) {
            uint64_t t = now_ms();
            wait = next <= t ? 0 : (next - t < 100 ? (int)(next - t) : 100);
        }
        struct pollfd p[2] = {{ks, POLLIN, 0}, {grp, POLLIN, 0}};
        if (poll(p, 2, wait) > 0) {
            if (p[0].revents & POLLIN) {
                ssize_t n = recv(ks, buf, sizeof buf, 0);
                if (n > 0) {
                    rc = dg_member_handle_datagram(&m, now_ms(), buf, (size_t)n);
                    if (rc != DG_OK) printf("key server message refused: %s\n", dg_error_name(rc));
                }
            }
            if (p[1].revents & POLLIN) {
                ssize_t n = recv(grp, buf, sizeof buf, 0);
                if (n > 0 && on_record && on_record(buf, (size_t)n, arg)) return 0;
            }
        }
        dg_member_handle_timeout(&m, now_ms());
    }
}

static int epoch_above(const dg_member_event *ev, void *arg) {
    return ev->kind == DG_MEMBER_EVENT_EPOCH_ACTIVATED && ev->epoch > *(uint16_t *)arg;
}

static int got_record(uint8_t *buf, size_t n, void *arg) {
    dg_delivery d;
    dg_error rc = dg_member_open(&m, now_ms(), buf, n, &d);
    (void)arg;
    if (rc != DG_OK) {
        printf("record dropped: %s\n", dg_error_name(rc));
        return 0;
    }
    printf("member received sender=%u epoch=%u seq=%llu plaintext=%.*s\n", d.sender_id, d.epoch,
           (unsigned long long)d.seq, (int)d.length, (const char *)buf + d.offset);
    return 1;
}

static int run_member(char **argv) {
    dg_member_config cfg;
    uint8_t server_pub[65], device_key[32];
    size_t pub_len = unhex(argv[4], server_pub, sizeof server_pub);
    struct sockaddr_in srv, dst;
    uint16_t epoch = 0, first;
    dg_counters c;
    int rc, ks = socket(AF_INET, SOCK_DGRAM, 0), grp = group_socket(argv[8], atoi(argv[9]), &dst);
    if (ks < 0 || grp < 0) return fail("sockets", -1);
    memset(&srv, 0, sizeof srv);
    srv.sin_family = AF_INET;
    srv.sin_port = htons((uint16_t)atoi(argv[3]));
    inet_pton(AF_INET, argv[2], &srv.sin_addr);
    if (connect(ks, (struct sockaddr *)&srv, sizeof srv) != 0) return fail("connect", -1);
    if (unhex(argv[5], device_key, sizeof device_key) != 32) return fail("device key", DG_ERR_INVALID_ARGUMENT);
    dg_member_config_init(&cfg, (uint32_t)atoi(argv[6]), (uint32_t)atoi(argv[7]));
    cfg.role = DG_ROLE_SENDER;
    cfg.load = load;
    cfg.save = save;
    cfg.rng = rng;
    if ((rc = dg_member_init_signed(&m, sizeof m, &cfg, device_key, 32, server_pub, pub_len)) != DG_OK)
        return fail("init", rc);
    if ((rc = dg_member_join(&m, now_ms())) != DG_OK) return fail("join", rc);
    if (pump(ks, grp, 30000, epoch_above, &epoch, NULL)) return 1;
    if ((rc = dg_member_current_epoch(&m, &first)) != DG_OK) return fail("current epoch", rc);
    printf("JOINED epoch=%u\n", first);
    fflush(stdout);
    if (pump(ks, grp, 30000, epoch_above, &first, NULL)) return 1;
    dg_member_current_epoch(&m, &epoch);
    printf("REKEYED epoch=%u\n", epoch);
    fflush(stdout);
    if (epoch <= first) return fail("no newer epoch", DG_ERR_NOT_JOINED);
    resend_socket = grp;
    resend_dst = dst;
    if (send_record()) return 1;
    resend_at = now_ms() + 500;
    printf("SENT c: member\n");
    fflush(stdout);
    if (pump(ks, grp, 30000, NULL, NULL, got_record)) return 1;
    dg_member_counters(&m, &c);
    printf("counters accepted=%llu sealed=%llu own_sender_id=%llu\n", (unsigned long long)c.accepted,
           (unsigned long long)c.sealed, (unsigned long long)c.own_sender_id);
    dg_member_deinit(&m);
    close(ks);
    close(grp);
    return c.accepted >= 1 && c.sealed == (uint64_t)sent_count ? 0 : 1;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 6 && strcmp(argv[1], "static") == 0) return run_static(argv);
    if (argc == 10 && strcmp(argv[1], "member") == 0) return run_member(argv);
    fprintf(stderr, "usage: see the comment at the top of test_live.c\n");
    return 2;
}
