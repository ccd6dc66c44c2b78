/*
 * wolfssl_records: wolfSSL's DTLS 1.2 multicast record layer in memory, timed, for the
 * side-by-side benchmark of issue 14 (bench/benches/wolfssl.rs). Two members of one group
 * (IDs 1 and 2) share a secret set with wolfSSL_set_secret; their I/O callbacks write to and
 * read from memory, so no socket is involved.
 *
 *   wolfssl_records --suite C0AE --size 64 --mode seal|open --ops N [--warmup W]
 *
 * seal: member 1 wolfSSL_write()s W records (untimed), then N records, timed.
 * open: member 1 writes W + N records (untimed); member 2 wolfSSL_mcast_read()s the W first
 *       (untimed), then the N others, timed; every one must be delivered with the right length.
 * Prints one line: {"mode":"seal","suite":"C0AE","size":64,"ops":N,"ns":TOTAL}
 * Exit status: 0, 2 on bad arguments, 3 on a wolfSSL failure.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#define MAX_RECORD 2048

struct queue {
    unsigned char *data; /* cap records of MAX_RECORD bytes */
    int *len;
    long cap, head, tail;
};

static void fail(const char *what, int code)
{
    fprintf(stderr, "wolfssl_records: %s (%d)\n", what, code);
    exit(3);
}

static int send_cb(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
    struct queue *q = ctx;
    (void)ssl;
    if (q->tail == q->cap || sz > MAX_RECORD)
        return WOLFSSL_CBIO_ERR_GENERAL;
    memcpy(q->data + (size_t)q->tail * MAX_RECORD, buf, (size_t)sz);
    q->len[q->tail++] = sz;
    return sz;
}

static int recv_cb(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
    struct queue *q = ctx;
    (void)ssl;
    if (q->head == q->tail)
        return WOLFSSL_CBIO_ERR_WANT_READ;
    int n = q->len[q->head];
    if (n > sz)
        return WOLFSSL_CBIO_ERR_GENERAL;
    memcpy(buf, q->data + (size_t)q->head * MAX_RECORD, (size_t)n);
    q->head++;
    return n;
}

static WOLFSSL *member(WOLFSSL_CTX **ctx_out, unsigned short id, unsigned short peer,
                       const unsigned char suite[2], struct queue *q)
{
    static const unsigned char pms[48] = {0x42};
    static const unsigned char cr[32] = {1}, sr[32] = {2};
    WOLFSSL_CTX *ctx = wolfSSL_CTX_new(wolfDTLSv1_2_client_method());
    if (ctx == NULL)
        fail("wolfSSL_CTX_new", 0);
    if (wolfSSL_CTX_mcast_set_member_id(ctx, id) != WOLFSSL_SUCCESS)
        fail("wolfSSL_CTX_mcast_set_member_id", 0);
    wolfSSL_CTX_SetIORecv(ctx, recv_cb);
    wolfSSL_CTX_SetIOSend(ctx, send_cb);
    WOLFSSL *ssl = wolfSSL_new(ctx);
    if (ssl == NULL)
        fail("wolfSSL_new", 0);
    wolfSSL_SetIOReadCtx(ssl, q);
    wolfSSL_SetIOWriteCtx(ssl, q);
    if (wolfSSL_mcast_peer_add(ssl, peer, 0) != WOLFSSL_SUCCESS)
        fail("wolfSSL_mcast_peer_add", 0);
    /* Sends nothing for a multicast member; needed before an AES-GCM/CCM member can send. */
    (void)wolfSSL_connect(ssl);
    int ret = wolfSSL_set_secret(ssl, 1, pms, sizeof pms, cr, sr, suite);
    if (ret != WOLFSSL_SUCCESS)
        fail("wolfSSL_set_secret", wolfSSL_get_error(ssl, ret));
    *ctx_out = ctx;
    return ssl;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void usage(void)
{
    fprintf(stderr, "usage: wolfssl_records --suite HEX4 --size N --mode seal|open --ops N "
                    "[--warmup W]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    unsigned char suite[2] = {0, 0};
    long size = -1, ops = -1, warmup = 64;
    int open_mode = -1;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (strcmp(a, "--suite") == 0) {
            unsigned int s;
            if (sscanf(v, "%4x", &s) != 1)
                usage();
            suite[0] = (unsigned char)(s >> 8);
            suite[1] = (unsigned char)s;
        } else if (strcmp(a, "--size") == 0) {
            size = strtol(v, NULL, 10);
        } else if (strcmp(a, "--ops") == 0) {
            ops = strtol(v, NULL, 10);
        } else if (strcmp(a, "--warmup") == 0) {
            warmup = strtol(v, NULL, 10);
        } else if (strcmp(a, "--mode") == 0) {
            open_mode = strcmp(v, "open") == 0 ? 1 : strcmp(v, "seal") == 0 ? 0 : -1;
        } else {
            usage();
        }
    }
    if (size <= 0 || size > 1500 || ops <= 0 || ops > 1000000 || warmup < 0 || open_mode < 0)
        usage();

    struct queue q;
    q.cap = warmup + ops;
    q.head = q.tail = 0;
    q.data = malloc((size_t)q.cap * MAX_RECORD);
    q.len = malloc((size_t)q.cap * sizeof *q.len);
    unsigned char *plain = malloc((size_t)size), *out = malloc(MAX_RECORD);
    if (q.data == NULL || q.len == NULL || plain == NULL || out == NULL)
        fail("malloc", 0);
    for (long i = 0; i < size; i++)
        plain[i] = (unsigned char)i;

    if (wolfSSL_Init() != WOLFSSL_SUCCESS)
        fail("wolfSSL_Init", 0);
    WOLFSSL_CTX *sctx, *rctx;
    WOLFSSL *sender = member(&sctx, 1, 2, suite, &q);
    WOLFSSL *receiver = member(&rctx, 2, 1, suite, &q);

    int64_t total = 0;
    long n_seal = open_mode ? warmup + ops : warmup;
    for (long i = 0; i < n_seal; i++) {
        int ret = wolfSSL_write(sender, plain, (int)size);
        if (ret != size)
            fail("wolfSSL_write", wolfSSL_get_error(sender, ret));
    }
    if (!open_mode) {
        int64_t t0 = now_ns();
        for (long i = 0; i < ops; i++) {
            int ret = wolfSSL_write(sender, plain, (int)size);
            if (ret != size)
                fail("wolfSSL_write", wolfSSL_get_error(sender, ret));
        }
        total = now_ns() - t0;
    } else {
        unsigned short peer = 0;
        for (long i = 0; i < warmup; i++) {
            int ret = wolfSSL_mcast_read(receiver, &peer, out, MAX_RECORD);
            if (ret != size || peer != 1)
                fail("wolfSSL_mcast_read (warm-up)", wolfSSL_get_error(receiver, ret));
        }
        int64_t t0 = now_ns();
        for (long i = 0; i < ops; i++) {
            int ret = wolfSSL_mcast_read(receiver, &peer, out, MAX_RECORD);
            if (ret != size)
                fail("wolfSSL_mcast_read", wolfSSL_get_error(receiver, ret));
        }
        total = now_ns() - t0;
    }
    printf("{\"mode\":\"%s\",\"suite\":\"%02X%02X\",\"size\":%ld,\"ops\":%ld,\"ns\":%lld,"
           "\"version\":\"%s\"}\n",
           open_mode ? "open" : "seal", suite[0], suite[1], size, ops, (long long)total,
           LIBWOLFSSL_VERSION_STRING);
    wolfSSL_free(sender);
    wolfSSL_free(receiver);
    wolfSSL_CTX_free(sctx);
    wolfSSL_CTX_free(rctx);
    wolfSSL_Cleanup();
    return 0;
}
