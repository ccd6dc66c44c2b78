/* Host tests of the C API's record layer, from C: contexts, every suite, drops with their
 * errors and counters, the GnuTLS and wolfSSL known answers, the sequence store across a
 * simulated reboot, events and timers. Exits non-zero on any failure.
 * Built by .ci/capi.sh with gcc -std=c99 -Wall -Wextra -Werror, run plainly, under valgrind
 * and with -fsanitize=address,undefined. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtls_group.h"
#include "../kat_vectors.h"

static int failures;
static int checks;

#define CHECK(cond)                                                              \
    do {                                                                         \
        checks++;                                                                \
        if (!(cond)) {                                                           \
            failures++;                                                          \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);      \
        }                                                                        \
    } while (0)

#define CHECK_RC(expr, want)                                                     \
    do {                                                                         \
        dg_error rc_ = (expr);                                                   \
        checks++;                                                                \
        if (rc_ != (want)) {                                                     \
            failures++;                                                          \
            fprintf(stderr, "FAIL %s:%d: %s returned %s, want %s\n", __FILE__,   \
                    __LINE__, #expr, dg_error_name(rc_), dg_error_name(want));   \
        }                                                                        \
    } while (0)

static const uint8_t SECRET[32] = {0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
                                   0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
                                   0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
                                   0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42};

/* A sequence store in "flash": a record of what was saved, which can be lost or refuse. */
struct flash {
    int present;
    int lost;
    int fail_saves;
    int saves;
    dg_sequence_state state;
};

static int32_t flash_load(void *user, dg_sequence_state *out) {
    struct flash *f = user;
    if (f->lost) return DG_STORE_MISSING;
    if (!f->present) return DG_STORE_EMPTY;
    *out = f->state;
    return DG_STORE_OK;
}

static int32_t flash_save(void *user, const dg_sequence_state *st) {
    struct flash *f = user;
    if (f->fail_saves) return DG_STORE_IO;
    f->state = *st;
    f->present = 1;
    f->lost = 0;
    f->saves++;
    return DG_STORE_OK;
}

/* Sets up a context: sender `sid` (or a listener when sid < 0) in group 7 with `suite`. */
static dg_error setup(dg_group *g, int sid, uint16_t suite, struct flash *f) {
    dg_group_config cfg;
    dg_error rc = dg_group_config_init(&cfg, 7);
    if (rc != DG_OK) return rc;
    cfg.suite = suite;
    if (sid >= 0) {
        cfg.is_sender = 1;
        cfg.sender_id = (uint8_t)sid;
    }
    rc = dg_group_init(g, sizeof *g, &cfg);
    if (rc != DG_OK) return rc;
    if (f != NULL) {
        rc = dg_group_set_sequence_store(g, flash_load, flash_save, f);
        if (rc != DG_OK) return rc;
    }
    rc = dg_group_install_native(g, 1, SECRET, sizeof SECRET);
    if (rc != DG_OK) return rc;
    return dg_group_activate(g, 1, 0);
}

static dg_group sender, light;

static void test_contexts(void) {
    static union {
        dg_group g;
        uint8_t bytes[sizeof(dg_group) + 16];
    } raw;
    dg_group_config cfg;
    dg_counters c;
    uint8_t rec[64];
    size_t len = 0;

    CHECK(dg_group_size() <= DG_GROUP_SIZE);
    CHECK(dg_group_align() <= DG_GROUP_ALIGN);
    CHECK(sizeof(dg_group) == DG_GROUP_SIZE);
    CHECK_RC(dg_group_config_init(NULL, 7), DG_ERR_NULL_POINTER);
    CHECK_RC(dg_group_config_init(&cfg, 7), DG_OK);
    CHECK_RC(dg_group_init(NULL, sizeof(dg_group), &cfg), DG_ERR_NULL_POINTER);
    CHECK_RC(dg_group_init(&raw.g, sizeof(dg_group), NULL), DG_ERR_NULL_POINTER);
    CHECK_RC(dg_group_init(&raw.g, dg_group_size() - 1, &cfg), DG_ERR_CONTEXT_TOO_SMALL);
    CHECK_RC(dg_group_init((dg_group *)(void *)(raw.bytes + 1), sizeof(dg_group), &cfg),
             DG_ERR_CONTEXT_UNALIGNED);
    /* Never initialised: memory full of junk. */
    memset(&raw, 0xA5, sizeof raw);
    CHECK_RC(dg_group_counters(&raw.g, &c), DG_ERR_NOT_INITIALISED);
    CHECK_RC(dg_group_open(&raw.g, 0, rec, sizeof rec, &(dg_delivery){0}), DG_ERR_NOT_INITIALISED);
    CHECK_RC(dg_group_counters(NULL, &c), DG_ERR_NULL_POINTER);
    CHECK_RC(dg_group_counters((dg_group *)(void *)(raw.bytes + 8), &c), DG_ERR_CONTEXT_UNALIGNED);
    /* Bad configurations. */
    cfg.replay_window = 100;
    CHECK_RC(dg_group_init(&raw.g, sizeof(dg_group), &cfg), DG_ERR_INVALID_ARGUMENT);
    CHECK_RC(dg_group_config_init(&cfg, 7), DG_OK);
    cfg.suite = 0x1234;
    CHECK_RC(dg_group_init(&raw.g, sizeof(dg_group), &cfg), DG_ERR_UNKNOWN_SUITE);
    CHECK_RC(dg_group_config_init(&cfg, 7), DG_OK);
    cfg.admission = 9;
    CHECK_RC(dg_group_init(&raw.g, sizeof(dg_group), &cfg), DG_ERR_INVALID_ARGUMENT);
    CHECK_RC(dg_group_config_init(&cfg, 7), DG_OK);
    cfg.is_sender = 2;
    CHECK_RC(dg_group_init(&raw.g, sizeof(dg_group), &cfg), DG_ERR_INVALID_ARGUMENT);
    /* A byte copy of a live context is refused (it would repeat sequence numbers). */
    CHECK_RC(setup(&sender, 1, DG_SUITE_AES_128_CCM_8, NULL), DG_OK);
    memcpy(&raw.g, &sender, sizeof sender);
    CHECK_RC(dg_group_counters(&raw.g, &c), DG_ERR_NOT_INITIALISED);
    /* Deinitialised. */
    CHECK_RC(dg_group_deinit(&sender), DG_OK);
    CHECK_RC(dg_group_counters(&sender, &c), DG_ERR_NOT_INITIALISED);
    CHECK_RC(dg_group_deinit(&sender), DG_ERR_NOT_INITIALISED);
    /* Null buffers. */
    CHECK_RC(setup(&light, -1, DG_SUITE_AES_128_CCM_8, NULL), DG_OK);
    CHECK_RC(dg_group_open(&light, 0, NULL, 10, &(dg_delivery){0}), DG_ERR_NULL_POINTER);
    CHECK_RC(dg_group_open(&light, 0, rec, sizeof rec, NULL), DG_ERR_NULL_POINTER);
    CHECK_RC(dg_group_seal(&light, 0, NULL, 3, rec, sizeof rec, &len), DG_ERR_NULL_POINTER);
    CHECK_RC(dg_group_seal(&light, 0, (const uint8_t *)"on", 2, rec, sizeof rec, &len),
             DG_ERR_NOT_A_SENDER);
    CHECK_RC(dg_group_install_native(&light, 2, SECRET, 31), DG_ERR_BAD_KEY_LENGTH);
    CHECK_RC(dg_group_install_native(&light, 0, SECRET, 32), DG_ERR_EPOCH_ZERO);
    /* The same keys again are accepted (idempotent); other keys for an installed epoch not. */
    CHECK_RC(dg_group_install_native(&light, 1, SECRET, 32), DG_OK);
    CHECK_RC(dg_group_install_raw(&light, 1, KAT_CLIENT_WRITE_KEY, 16, KAT_CLIENT_WRITE_IV, 4),
             DG_ERR_EPOCH_NOT_NEWER);
    CHECK_RC(dg_group_install_raw(&light, 3, KAT_CLIENT_WRITE_KEY, 15, KAT_CLIENT_WRITE_IV, 4),
             DG_ERR_BAD_KEY_LENGTH);
    CHECK_RC(dg_group_install_raw(&light, 3, KAT_CLIENT_WRITE_KEY, 16, KAT_CLIENT_WRITE_IV, 12),
             DG_ERR_BAD_IV_LENGTH);
    CHECK_RC(dg_group_activate(&light, 5, 0), DG_ERR_NOT_STAGED);
    CHECK_RC(dg_group_deinit(&light), DG_OK);
    /* A sender without a sequence store can't seal. */
    CHECK_RC(setup(&sender, 1, DG_SUITE_AES_128_CCM_8, NULL), DG_OK);
    CHECK_RC(dg_group_seal(&sender, 0, (const uint8_t *)"on", 2, rec, sizeof rec, &len),
             DG_ERR_NO_SEQUENCE_STORE);
    CHECK_RC(dg_group_set_sequence_store(&sender, NULL, flash_save, NULL), DG_ERR_NULL_POINTER);
    CHECK_RC(dg_group_deinit(&sender), DG_OK);
}

static void test_error_names(void) {
    CHECK(strcmp(dg_error_name(DG_OK), "DG_OK") == 0);
    CHECK(strcmp(dg_error_name(DG_ERR_REPLAY), "DG_ERR_REPLAY") == 0);
    CHECK(strcmp(dg_error_name(DG_ERR_AUTHENTICATION_FAILED), "DG_ERR_AUTHENTICATION_FAILED") == 0);
    CHECK(strcmp(dg_error_name(-5), "DG_ERR_UNKNOWN") == 0);
    CHECK(DG_ERR_REPLAY == 44 && DG_ERR_UNKNOWN_EPOCH == 42 && DG_ERR_RECORD_OVERFLOW == 49);
}

static void test_suite(uint16_t suite) {
    struct flash f = {0};
    uint8_t rec[128], copy[128];
    size_t len = 0;
    dg_delivery d;
    dg_counters c;
    static const char msg[] = "dim 40";

    CHECK_RC(setup(&sender, 1, suite, &f), DG_OK);
    CHECK_RC(setup(&light, -1, suite, NULL), DG_OK);
    CHECK_RC(dg_group_seal(&sender, 0, (const uint8_t *)msg, 6, rec, sizeof rec, &len), DG_OK);
    CHECK(len > 6 && len <= 6 + DG_MAX_OVERHEAD);
    CHECK(f.saves >= 1);
    memcpy(copy, rec, len);
    CHECK_RC(dg_group_open(&light, 0, rec, len, &d), DG_OK);
    CHECK(d.sender_id == 1 && d.epoch == 1 && d.seq == 0);
    CHECK(d.length == 6 && d.offset + d.length <= len && memcmp(rec + d.offset, msg, 6) == 0);

    /* Replay. */
    memcpy(rec, copy, len);
    CHECK_RC(dg_group_open(&light, 0, rec, len, &d), DG_ERR_REPLAY);
    /* Tamper: a flipped ciphertext bit in a fresh record. */
    CHECK_RC(dg_group_seal(&sender, 0, (const uint8_t *)msg, 6, rec, sizeof rec, &len), DG_OK);
    rec[len - 3] ^= 0x01;
    CHECK_RC(dg_group_open(&light, 0, rec, len, &d), DG_ERR_AUTHENTICATION_FAILED);
    /* Short output buffer: nothing sealed. */
    CHECK_RC(dg_group_seal(&sender, 0, (const uint8_t *)msg, 6, rec, 10, &len), DG_ERR_BUFFER_TOO_SMALL);

    CHECK_RC(dg_group_counters(&light, &c), DG_OK);
    CHECK(c.accepted == 1 && c.replay == 1 && c.authentication_failed == 1);
    CHECK_RC(dg_group_counters(&sender, &c), DG_OK);
    CHECK(c.sealed == 2);

    /* Unknown epoch: the sender moves to epoch 2, the light never got it. */
    CHECK_RC(dg_group_install_native(&sender, 2, SECRET, sizeof SECRET), DG_OK);
    CHECK_RC(dg_group_activate(&sender, 2, 10), DG_OK);
    CHECK_RC(dg_group_seal(&sender, 10, (const uint8_t *)msg, 6, rec, sizeof rec, &len), DG_OK);
    CHECK_RC(dg_group_open(&light, 10, rec, len, &d), DG_ERR_UNKNOWN_EPOCH);
    CHECK_RC(dg_group_counters(&light, &c), DG_OK);
    CHECK(c.unknown_epoch == 1);
    /* ... and once it has it, the record opens in epoch 2. */
    CHECK_RC(dg_group_install_native(&light, 2, SECRET, sizeof SECRET), DG_OK);
    CHECK_RC(dg_group_open(&light, 10, rec, len, &d), DG_OK);
    CHECK(d.epoch == 2 && d.seq == 0);

    CHECK_RC(dg_group_deinit(&sender), DG_OK);
    CHECK_RC(dg_group_deinit(&light), DG_OK);
}

static void test_oversize(void) {
    static uint8_t big[(1 << 14) + 64], rec[(1 << 14) + 128];
    struct flash f = {0};
    size_t len = 0;
    dg_delivery d;
    dg_counters c;
    const size_t frag = (1 << 14) + 1 + 8 + 8; /* plaintext 2^14 + 1, explicit nonce, CCM_8 tag */

    CHECK_RC(setup(&sender, 1, DG_SUITE_AES_128_CCM_8, &f), DG_OK);
    CHECK_RC(setup(&light, -1, DG_SUITE_AES_128_CCM_8, NULL), DG_OK);
    CHECK_RC(dg_group_seal(&sender, 0, big, (1 << 14) + 1, rec, sizeof rec, &len), DG_ERR_RECORD_OVERFLOW);
    CHECK_RC(dg_group_counters(&sender, &c), DG_OK);
    CHECK(c.seal_record_overflow == 1 && c.sealed == 0 && f.saves == 0);
    /* A record claiming a 2^14 + 1 byte plaintext is refused before decryption. */
    CHECK_RC(dg_group_seal(&sender, 0, big, 100, rec, sizeof rec, &len), DG_OK);
    rec[11] = (uint8_t)(frag >> 8);
    rec[12] = (uint8_t)frag;
    CHECK_RC(dg_group_open(&light, 0, rec, 13 + frag, &d), DG_ERR_RECORD_OVERFLOW);
    CHECK_RC(dg_group_counters(&light, &c), DG_OK);
    CHECK(c.record_overflow == 1 && c.accepted == 0);
    /* Malformed: a truncated header. */
    CHECK_RC(dg_group_open(&light, 0, rec, 5, &d), DG_ERR_MALFORMED);
    CHECK_RC(dg_group_counters(&light, &c), DG_OK);
    CHECK(c.malformed == 1);
    CHECK_RC(dg_group_deinit(&sender), DG_OK);
    CHECK_RC(dg_group_deinit(&light), DG_OK);
}

static void test_gnutls_kat(void) {
    uint8_t buf[640];
    dg_delivery d;
    dg_group_config cfg;
    int opened = 0, refused = 0;
    CHECK_RC(dg_group_config_init(&cfg, 0), DG_OK);
    for (int dir = 0; dir < 2; dir++) {
        int installed = 0;
        for (size_t i = 0; i < KAT_RECORD_COUNT; i++) {
            const struct kat_record *r = &KAT_RECORDS[i];
            if (r->direction != dir) continue;
            if (!installed) {
                CHECK_RC(dg_group_init(&light, sizeof light, &cfg), DG_OK);
                CHECK_RC(dg_group_install_raw(&light, r->epoch, r->key, 16, r->iv, 4), DG_OK);
                CHECK_RC(dg_group_activate(&light, r->epoch, 0), DG_OK);
                installed = 1;
            }
            memcpy(buf, r->record, r->record_len);
            CHECK_RC(dg_group_open(&light, 0, buf, r->record_len, &d), DG_OK);
            CHECK(d.seq == r->seq && d.sender_id == 0 && d.epoch == r->epoch);
            CHECK(d.length == r->plaintext_len && memcmp(buf + d.offset, r->plaintext, d.length) == 0);
            memcpy(buf, r->record, r->record_len);
            CHECK_RC(dg_group_open(&light, 0, buf, r->record_len, &d), DG_ERR_REPLAY);
            opened++;
        }
        CHECK_RC(dg_group_deinit(&light), DG_OK);
    }
    for (size_t i = 0; i < KAT_TAMPERED_COUNT; i++) {
        const struct kat_tampered *t = &KAT_TAMPERED[i];
        CHECK_RC(dg_group_init(&light, sizeof light, &cfg), DG_OK);
        CHECK_RC(dg_group_install_raw(&light, 1, t->key, 16, t->iv, 4), DG_OK);
        CHECK_RC(dg_group_activate(&light, 1, 0), DG_OK);
        memcpy(buf, t->record, t->record_len);
        if (dg_group_open(&light, 0, buf, t->record_len, &d) != DG_OK) refused++;
        else fprintf(stderr, "FAIL: tampered GnuTLS record (%s) accepted\n", t->kind);
        CHECK_RC(dg_group_deinit(&light), DG_OK);
    }
    CHECK(opened == KAT_RECORD_COUNT && refused == KAT_TAMPERED_COUNT);
    printf("gnutls ccm_8 known answers: %d records opened, %d tampered refused\n", opened, refused);
}

static void test_wolfssl_kat(void) {
    uint8_t buf[256];
    dg_delivery d;
    dg_group_config cfg;
    int opened = 0;
    CHECK_RC(dg_group_config_init(&cfg, 0), DG_OK);
    cfg.nonce_profile = DG_NONCE_COMPATIBILITY;
    CHECK_RC(dg_group_init(&light, sizeof light, &cfg), DG_OK);
    CHECK_RC(dg_group_install_wolfssl(&light, WOLF_EPOCH, WOLF_PRE_MASTER_SECRET,
                                      sizeof WOLF_PRE_MASTER_SECRET, WOLF_CLIENT_RANDOM,
                                      WOLF_SERVER_RANDOM), DG_OK);
    CHECK_RC(dg_group_activate(&light, WOLF_EPOCH, 0), DG_OK);
    for (size_t i = 0; i < WOLF_RECORD_COUNT; i++) {
        const struct wolf_record *r = &WOLF_RECORDS[i];
        memcpy(buf, r->record, r->record_len);
        CHECK_RC(dg_group_open(&light, 0, buf, r->record_len, &d), DG_OK);
        CHECK(d.sender_id == r->sender_id && d.seq == r->seq && d.length == r->plaintext_len &&
              memcmp(buf + d.offset, r->plaintext, d.length) == 0);
        opened++;
    }
    CHECK_RC(dg_group_deinit(&light), DG_OK);
    /* The strict profile refuses them: wolfSSL's explicit nonces are not epoch||sid||seq. */
    cfg.nonce_profile = DG_NONCE_STRICT;
    CHECK_RC(dg_group_init(&light, sizeof light, &cfg), DG_OK);
    CHECK_RC(dg_group_install_wolfssl(&light, WOLF_EPOCH, WOLF_PRE_MASTER_SECRET,
                                      sizeof WOLF_PRE_MASTER_SECRET, WOLF_CLIENT_RANDOM,
                                      WOLF_SERVER_RANDOM), DG_OK);
    memcpy(buf, WOLF_RECORDS[1].record, WOLF_RECORDS[1].record_len);
    CHECK_RC(dg_group_open(&light, 0, buf, WOLF_RECORDS[1].record_len, &d), DG_ERR_NONCE_MISMATCH);
    CHECK_RC(dg_group_deinit(&light), DG_OK);
    printf("wolfssl ccm_8 known answers: %d records opened\n", opened);
}

/* Sequence numbers survive a reboot through the callbacks and are never reused. */
static void test_reboot(void) {
    struct flash f = {0};
    uint8_t rec[64];
    size_t len = 0;
    dg_delivery d;
    uint64_t seen[64];
    int n = 0;
    CHECK_RC(setup(&light, -1, DG_SUITE_AES_128_CCM, NULL), DG_OK);
    for (int boot = 0; boot < 3; boot++) {
        CHECK_RC(setup(&sender, 1, DG_SUITE_AES_128_CCM, &f), DG_OK);
        for (int i = 0; i < 5; i++) {
            CHECK_RC(dg_group_seal(&sender, 0, (const uint8_t *)"x", 1, rec, sizeof rec, &len), DG_OK);
            CHECK_RC(dg_group_open(&light, 0, rec, len, &d), DG_OK);
            for (int j = 0; j < n; j++) CHECK(seen[j] != d.seq);
            CHECK(n == 0 || d.seq > seen[n - 1]);
            CHECK(d.seq < f.state.reserved_until); /* reserved before use */
            seen[n++] = d.seq;
        }
        /* Power cut: the context is gone, only the flash survives. */
        memset(&sender, 0, sizeof sender);
    }
    CHECK(n == 15 && f.saves >= 3);
    /* Lost flash: no guessing, no sealing. */
    f.lost = 1;
    CHECK_RC(setup(&sender, 1, DG_SUITE_AES_128_CCM, &f), DG_OK);
    CHECK_RC(dg_group_seal(&sender, 0, (const uint8_t *)"x", 1, rec, sizeof rec, &len),
             DG_ERR_SEQUENCE_STATE_LOST);
    CHECK_RC(dg_group_deinit(&sender), DG_OK);
    /* A save that fails: nothing is sealed. */
    struct flash g = {0};
    g.fail_saves = 1;
    CHECK_RC(setup(&sender, 2, DG_SUITE_AES_128_CCM, &g), DG_OK);
    CHECK_RC(dg_group_seal(&sender, 0, (const uint8_t *)"x", 1, rec, sizeof rec, &len),
             DG_ERR_SEQUENCE_STORE);
    CHECK_RC(dg_group_deinit(&sender), DG_OK);
    CHECK_RC(dg_group_deinit(&light), DG_OK);
    printf("sequence store: %d records over 3 boots, %d saves, no number reused\n", n, f.saves);
}

static void test_events_and_strict(void) {
    struct flash f = {0};
    dg_event ev;
    uint64_t deadline = 0;
    uint16_t epoch = 0;
    uint8_t rec[64];
    size_t len = 0;
    dg_delivery d;
    dg_group_config cfg;

    CHECK_RC(setup(&light, -1, DG_SUITE_AES_128_GCM, NULL), DG_OK);
    CHECK_RC(dg_group_poll_event(&light, &ev), DG_OK);
    CHECK(ev.kind == DG_EVENT_NONE);
    CHECK_RC(dg_group_poll_timeout(&light, &deadline), DG_OK);
    CHECK(deadline == UINT64_MAX);
    CHECK_RC(dg_group_install_native(&light, 2, SECRET, sizeof SECRET), DG_OK);
    CHECK_RC(dg_group_activate(&light, 2, 1000), DG_OK);
    CHECK_RC(dg_group_current_epoch(&light, &epoch), DG_OK);
    CHECK(epoch == 2);
    CHECK_RC(dg_group_poll_timeout(&light, &deadline), DG_OK);
    CHECK(deadline == 1000 + 60000);
    CHECK_RC(dg_group_handle_timeout(&light, deadline - 1), DG_OK);
    CHECK_RC(dg_group_poll_event(&light, &ev), DG_OK);
    CHECK(ev.kind == DG_EVENT_NONE);
    CHECK_RC(dg_group_handle_timeout(&light, deadline), DG_OK);
    CHECK_RC(dg_group_poll_event(&light, &ev), DG_OK);
    CHECK(ev.kind == DG_EVENT_EPOCH_RETIRED && ev.epoch == 1);
    CHECK_RC(dg_group_deinit(&light), DG_OK);

    /* Strict admission: only listed senders. */
    CHECK_RC(dg_group_config_init(&cfg, 7), DG_OK);
    cfg.admission = DG_ADMISSION_STRICT;
    cfg.suite = DG_SUITE_AES_128_GCM;
    CHECK_RC(dg_group_init(&light, sizeof light, &cfg), DG_OK);
    CHECK_RC(dg_group_install_native(&light, 1, SECRET, sizeof SECRET), DG_OK);
    CHECK_RC(dg_group_activate(&light, 1, 0), DG_OK);
    CHECK_RC(setup(&sender, 3, DG_SUITE_AES_128_GCM, &f), DG_OK);
    CHECK_RC(dg_group_seal(&sender, 0, (const uint8_t *)"on", 2, rec, sizeof rec, &len), DG_OK);
    CHECK_RC(dg_group_open(&light, 0, rec, len, &d), DG_ERR_UNKNOWN_SENDER);
    CHECK_RC(dg_group_add_sender(&light, 3), DG_OK);
    CHECK_RC(dg_group_seal(&sender, 0, (const uint8_t *)"on", 2, rec, sizeof rec, &len), DG_OK);
    CHECK_RC(dg_group_open(&light, 0, rec, len, &d), DG_OK);
    CHECK(d.sender_id == 3);
    /* Own sender ID: the sender hears itself. */
    CHECK_RC(dg_group_seal(&sender, 0, (const uint8_t *)"on", 2, rec, sizeof rec, &len), DG_OK);
    CHECK_RC(dg_group_open(&sender, 0, rec, len, &d), DG_ERR_OWN_SENDER_ID);
    CHECK_RC(dg_group_deinit(&sender), DG_OK);
    CHECK_RC(dg_group_deinit(&light), DG_OK);
}

/* The member without a key server: contexts, credentials, the RNG callback, refusals. */
static int rng_fails;
static int32_t test_rng(void *user, uint8_t *buf, size_t len) {
    (void)user;
    if (rng_fails) return -1;
    for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)(i * 7 + 1);
    return 0;
}

static void test_member_offline(void) {
    static dg_member mb;
    static union {
        dg_member m;
        uint8_t bytes[sizeof(dg_member) + 16];
    } raw;
    static const uint8_t psk[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    dg_member_config cfg;
    uint8_t buf[1500];
    size_t len = 0;
    uint16_t epoch = 0;
    dg_delivery d;
    dg_counters c;
    dg_member_event ev;

    CHECK(dg_member_size() <= DG_MEMBER_SIZE && dg_member_align() <= DG_MEMBER_ALIGN);
    CHECK_RC(dg_member_config_init(&cfg, 5, 1), DG_OK);
    /* No RNG, a sender without a store, a bad role, short / unaligned / null contexts. */
    CHECK_RC(dg_member_init_psk(&mb, sizeof mb, &cfg, psk, 16), DG_ERR_NULL_POINTER);
    cfg.rng = test_rng;
    cfg.role = DG_ROLE_SENDER;
    CHECK_RC(dg_member_init_psk(&mb, sizeof mb, &cfg, psk, 16), DG_ERR_NO_SEQUENCE_STORE);
    cfg.role = 7;
    CHECK_RC(dg_member_init_psk(&mb, sizeof mb, &cfg, psk, 16), DG_ERR_INVALID_ARGUMENT);
    cfg.role = DG_ROLE_LISTENER;
    CHECK_RC(dg_member_init_psk(&mb, sizeof mb, &cfg, psk, 15), DG_ERR_BAD_KEY_LENGTH);
    CHECK_RC(dg_member_init_psk(&mb, dg_member_size() - 1, &cfg, psk, 16), DG_ERR_CONTEXT_TOO_SMALL);
    CHECK_RC(dg_member_init_psk((dg_member *)(void *)(raw.bytes + 4), sizeof mb, &cfg, psk, 16),
             DG_ERR_CONTEXT_UNALIGNED);
    CHECK_RC(dg_member_init_psk(NULL, sizeof mb, &cfg, psk, 16), DG_ERR_NULL_POINTER);
    memset(&raw, 0x5A, sizeof raw);
    CHECK_RC(dg_member_join(&raw.m, 0), DG_ERR_NOT_INITIALISED);
    /* Signed mode: a bad device key and a bad server key are refused. */
    memset(buf, 0, 65);
    CHECK_RC(dg_member_init_signed(&mb, sizeof mb, &cfg, buf, 32, buf, 33), DG_ERR_BAD_KEY_LENGTH);
    /* A listener in PSK mode: joining produces a request; garbage from the "server" is
     * refused; records before the first bundle are refused as not joined. */
    CHECK_RC(dg_member_init_psk(&mb, sizeof mb, &cfg, psk, 16), DG_OK);
    CHECK_RC(dg_member_current_epoch(&mb, &epoch), DG_ERR_NOT_JOINED);
    CHECK_RC(dg_member_join(&mb, 0), DG_OK);
    rng_fails = 1;
    CHECK_RC(dg_member_poll_transmit(&mb, 0, buf, sizeof buf, &len), DG_ERR_RNG);
    CHECK(len == 0);
    rng_fails = 0;
    CHECK_RC(dg_member_poll_transmit(&mb, 0, buf, sizeof buf, &len), DG_OK);
    CHECK(len > 0);
    CHECK_RC(dg_member_poll_transmit(&mb, 0, buf, sizeof buf, &len), DG_OK);
    CHECK(len == 0); /* nothing more until the retransmission timer */
    memset(buf, 0xEE, 40);
    CHECK(dg_member_handle_datagram(&mb, 1, buf, 40) >= DG_ERR_KD_MALFORMED);
    CHECK_RC(dg_member_handle_datagram(&mb, 1, buf, 0), DG_ERR_KD_MALFORMED);
    memset(buf, 0x17, 64);
    CHECK_RC(dg_member_open(&mb, 1, buf, 64, &d), DG_ERR_NOT_JOINED);
    CHECK_RC(dg_member_counters(&mb, &c), DG_OK);
    CHECK_RC(dg_member_seal(&mb, 1, (const uint8_t *)"x", 1, buf, sizeof buf, &len), DG_ERR_NO_CURRENT_EPOCH);
    CHECK_RC(dg_member_poll_event(&mb, &ev), DG_OK);
    CHECK(ev.kind == DG_MEMBER_EVENT_NONE);
    uint64_t deadline = 0;
    CHECK_RC(dg_member_poll_timeout(&mb, &deadline), DG_OK);
    CHECK(deadline != UINT64_MAX); /* the join request's retransmission */
    CHECK_RC(dg_member_handle_timeout(&mb, deadline), DG_OK);
    CHECK_RC(dg_member_poll_transmit(&mb, deadline, buf, sizeof buf, &len), DG_OK);
    CHECK(len > 0); /* sent again */
    CHECK_RC(dg_member_deinit(&mb), DG_OK);
    CHECK_RC(dg_member_join(&mb, 0), DG_ERR_NOT_INITIALISED);
}

/* A store whose callbacks call the API on the context they run for: refused as busy. */
struct reentrant {
    struct flash f;
    dg_group *g;
    int calls;
    dg_error seen[4];
};

static int32_t reentrant_load(void *user, dg_sequence_state *out) {
    struct reentrant *r = user;
    uint8_t rec[64];
    size_t len = 0;
    dg_counters c;
    if (r->calls == 0) {
        r->seen[0] = dg_group_seal(r->g, 0, (const uint8_t *)"x", 1, rec, sizeof rec, &len);
        r->seen[1] = dg_group_counters(r->g, &c);
        r->seen[2] = dg_group_deinit(r->g);
        r->seen[3] = dg_group_activate(r->g, 1, 0);
    }
    r->calls++;
    return flash_load(&r->f, out);
}

static int32_t reentrant_save(void *user, const dg_sequence_state *st) {
    struct reentrant *r = user;
    return flash_save(&r->f, st);
}

/* What a C programmer may get wrong at the boundary: re-entry from a callback, sealing in
 * place, an output inside a buffer or the context, a misaligned output. */
static void test_boundary(void) {
    static struct reentrant r;
    static union {
        uint64_t align;
        uint8_t bytes[256];
    } buf;
    uint8_t *b = buf.bytes;
    size_t len = 0;
    uint64_t deadline = 0;
    memset(&r, 0, sizeof r);
    r.g = &sender;
    CHECK_RC(setup(&sender, 1, DG_SUITE_AES_128_CCM_8, NULL), DG_OK);
    CHECK_RC(dg_group_set_sequence_store(&sender, reentrant_load, reentrant_save, &r), DG_OK);
    CHECK_RC(dg_group_seal(&sender, 0, (const uint8_t *)"on", 2, b, 128, &len), DG_OK);
    CHECK(r.calls == 2); /* to start, and before the save: is the store as we left it? */
    for (int i = 0; i < 4; i++) CHECK_RC(r.seen[i], DG_ERR_CONTEXT_BUSY);
    /* The context is not busy after the call. */
    CHECK_RC(dg_group_poll_timeout(&sender, &deadline), DG_OK);
    /* In place, overlapping, an output inside the output buffer or the context. */
    CHECK_RC(dg_group_seal(&sender, 0, b, 16, b, 128, &len), DG_ERR_BUFFERS_OVERLAP);
    CHECK_RC(dg_group_seal(&sender, 0, b + 100, 16, b, 110, &len), DG_ERR_BUFFERS_OVERLAP);
    CHECK_RC(dg_group_seal(&sender, 0, b + 128, 2, b, 128, (size_t *)(void *)(b + 64)),
             DG_ERR_BUFFERS_OVERLAP);
    CHECK_RC(dg_group_counters(&sender, (dg_counters *)(void *)&sender), DG_ERR_BUFFERS_OVERLAP);
    CHECK_RC(dg_group_open(&sender, 0, (uint8_t *)(void *)&sender, 64, (dg_delivery *)(void *)b),
             DG_ERR_BUFFERS_OVERLAP);
    /* A misaligned output. */
    CHECK_RC(dg_group_poll_timeout(&sender, (uint64_t *)(void *)(b + 1)), DG_ERR_POINTER_UNALIGNED);
    /* Adjacent buffers are fine: the next sequence number, 1. */
    CHECK_RC(dg_group_seal(&sender, 0, b + 128, 2, b, 128, &len), DG_OK);
    CHECK(len > 11 && b[10] == 1);
    CHECK_RC(dg_group_deinit(&sender), DG_OK);
}

int main(void) {
    static const uint16_t suites[] = {DG_SUITE_AES_128_CCM_8, DG_SUITE_AES_128_CCM,
                                      DG_SUITE_AES_128_GCM, DG_SUITE_CHACHA20_POLY1305};
    test_contexts();
    test_error_names();
    for (size_t i = 0; i < sizeof suites / sizeof suites[0]; i++) test_suite(suites[i]);
    test_oversize();
    test_gnutls_kat();
    test_wolfssl_kat();
    test_reboot();
    test_events_and_strict();
    test_member_offline();
    test_boundary();
    printf("test_group: %d checks, %d failures (dg_group_size %zu, dg_member_size %zu, align %zu)\n", checks,
           failures, dg_group_size(), dg_member_size(), dg_group_align());
    return failures == 0 ? 0 : 1;
}
