/* A C firmware for Cortex-M4 (QEMU mps2-an386) linking the thumbv7em staticlib of the C API:
 * the GnuTLS AES-128-CCM_8 known answers and a seal/open round trip, with the stack painted
 * to report the deepest use. Output and exit go through semihosting; the exit status is
 * non-zero on any failure (QEMU exits 1). Built and run by .ci/capi-firmware.sh. */
#include <stdint.h>
#include <string.h>

#include "dtls_group.h"
#include "../kat_vectors.h"

/* --- semihosting ------------------------------------------------------------------------ */
static int semihost(int op, const void *arg) {
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}
static void put(const char *s) { semihost(0x04, s); } /* SYS_WRITE0 */
static void put_u(unsigned long v) {
    char b[12];
    int i = 11;
    b[i] = 0;
    do { b[--i] = (char)('0' + v % 10); v /= 10; } while (v && i > 0);
    put(b + i);
}
static void __attribute__((noreturn)) finish(int ok) {
    /* SYS_EXIT: ADP_Stopped_ApplicationExit (QEMU exits 0) or RunTimeErrorUnknown (exits 1). */
    semihost(0x18, (const void *)(uintptr_t)(ok ? 0x20026 : 0x20023));
    for (;;) {}
}

/* --- stack painting ---------------------------------------------------------------------- */
extern uint32_t _ebss[], _estack[];
#define PAINT 0xC0FFEE11u
static uintptr_t lowest_painted;
static __attribute__((noinline)) void paint(void) {
    /* From just above .bss up to 256 bytes below this frame (left alone). */
    uintptr_t top = (uintptr_t)__builtin_frame_address(0) - 256;
    lowest_painted = (uintptr_t)_ebss + 64;
    for (uintptr_t a = lowest_painted; a < top; a += 4) *(volatile uint32_t *)a = PAINT;
}
static unsigned long stack_used(void) {
    uintptr_t a = lowest_painted;
    while (a < (uintptr_t)_estack && *(volatile uint32_t *)a == PAINT) a += 4;
    return (unsigned long)((uintptr_t)_estack - a);
}

/* --- the work ------------------------------------------------------------------------------ */
static int failures;
#define CHECK(c) do { if (!(c)) { failures++; put("FAIL line "); put_u(__LINE__); put("\n"); } } while (0)

#ifndef DG_BASELINE
static dg_group light, sw;
static dg_sequence_state flash;
static int flash_written;
static int32_t load(void *u, dg_sequence_state *o) {
    (void)u;
    if (!flash_written) return DG_STORE_EMPTY;
    *o = flash;
    return DG_STORE_OK;
}
static int32_t save(void *u, const dg_sequence_state *s) {
    (void)u;
    flash = *s;
    flash_written = 1;
    return DG_STORE_OK;
}
#endif

#ifndef DG_BASELINE
static void known_answers(void) {
    static uint8_t buf[640];
    dg_group_config cfg;
    dg_delivery d;
    int opened = 0, refused = 0;
    CHECK(dg_group_config_init(&cfg, 0) == DG_OK);
    for (int dir = 0; dir < 2; dir++) {
        int installed = 0;
        for (unsigned i = 0; i < KAT_RECORD_COUNT; i++) {
            const struct kat_record *r = &KAT_RECORDS[i];
            if (r->direction != dir) continue;
            if (!installed) {
                CHECK(dg_group_init(&light, sizeof light, &cfg) == DG_OK);
                CHECK(dg_group_install_raw(&light, r->epoch, r->key, 16, r->iv, 4) == DG_OK);
                CHECK(dg_group_activate(&light, r->epoch, 0) == DG_OK);
                installed = 1;
            }
            memcpy(buf, r->record, r->record_len);
            if (dg_group_open(&light, 0, buf, r->record_len, &d) == DG_OK && d.seq == r->seq &&
                d.length == r->plaintext_len && memcmp(buf + d.offset, r->plaintext, d.length) == 0)
                opened++;
            memcpy(buf, r->record, r->record_len);
            CHECK(dg_group_open(&light, 0, buf, r->record_len, &d) == DG_ERR_REPLAY);
        }
    }
    for (unsigned i = 0; i < KAT_TAMPERED_COUNT; i++) {
        const struct kat_tampered *t = &KAT_TAMPERED[i];
        CHECK(dg_group_init(&light, sizeof light, &cfg) == DG_OK);
        CHECK(dg_group_install_raw(&light, 1, t->key, 16, t->iv, 4) == DG_OK);
        CHECK(dg_group_activate(&light, 1, 0) == DG_OK);
        memcpy(buf, t->record, t->record_len);
        if (dg_group_open(&light, 0, buf, t->record_len, &d) != DG_OK) refused++;
    }
    CHECK(opened == KAT_RECORD_COUNT && refused == KAT_TAMPERED_COUNT);
    put("c-firmware: gnutls ccm_8 known answers: ");
    put_u((unsigned long)opened);
    put(" opened, ");
    put_u((unsigned long)refused);
    put(" tampered refused\n");
}

static void round_trip(void) {
    static const uint8_t secret[32] = {0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
                                       0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
                                       0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
                                       0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42};
    dg_group_config cfg;
    uint8_t buf[64];
    size_t len = 0;
    dg_delivery d;
    dg_counters c;
    CHECK(dg_group_config_init(&cfg, 7) == DG_OK);
    CHECK(dg_group_init(&light, sizeof light, &cfg) == DG_OK);
    cfg.is_sender = 1;
    cfg.sender_id = 2;
    CHECK(dg_group_init(&sw, sizeof sw, &cfg) == DG_OK);
    CHECK(dg_group_set_sequence_store(&sw, load, save, 0) == DG_OK);
    CHECK(dg_group_install_native(&light, 1, secret, 32) == DG_OK);
    CHECK(dg_group_activate(&light, 1, 0) == DG_OK);
    CHECK(dg_group_install_native(&sw, 1, secret, 32) == DG_OK);
    CHECK(dg_group_activate(&sw, 1, 0) == DG_OK);
    CHECK(dg_group_seal(&sw, 0, (const uint8_t *)"dim 40", 6, buf, sizeof buf, &len) == DG_OK);
    CHECK(flash_written && flash.reserved_until > 0);
    CHECK(dg_group_open(&light, 0, buf, len, &d) == DG_OK);
    CHECK(d.sender_id == 2 && d.length == 6 && memcmp(buf + d.offset, "dim 40", 6) == 0);
    CHECK(dg_group_open(&light, 0, buf, len, &d) != DG_OK); /* wiped or replayed: refused */
    CHECK(dg_group_counters(&light, &c) == DG_OK && c.accepted == 1);
    put("c-firmware: seal/open round trip ");
    put(failures ? "failed\n" : "ok\n");
}
#endif

#ifdef DG_BASELINE
/* The baseline image: the same startup, output, stack painting and known-answer data, no
 * library call. The library's text is the work image's minus this one's. */
static unsigned long checksum(void) {
    unsigned long sum = 0;
    for (unsigned i = 0; i < KAT_RECORD_COUNT; i++)
        for (size_t j = 0; j < KAT_RECORDS[i].record_len; j++) sum += KAT_RECORDS[i].record[j];
    for (unsigned i = 0; i < KAT_TAMPERED_COUNT; i++)
        for (size_t j = 0; j < KAT_TAMPERED[i].record_len; j++) sum += KAT_TAMPERED[i].record[j];
    return sum;
}
#define dg_group_size() ((size_t)0)
#else
static unsigned long stack_init, stack_kat, stack_round_trip;
static void init_only(void) {
    dg_group_config cfg;
    dg_group_config_init(&cfg, 7);
    cfg.replay_window = 256; /* the largest context */
    CHECK(dg_group_init(&light, sizeof light, &cfg) == DG_OK);
    CHECK(dg_group_deinit(&light) == DG_OK);
}
/* Each phase measured on a freshly painted stack. */
static void work(void) {
    paint();
    init_only();
    stack_init = stack_used();
    paint();
    known_answers();
    stack_kat = stack_used();
    paint();
    round_trip();
    stack_round_trip = stack_used();
}
#endif

int main(void) {
    unsigned long peak;
#ifndef DG_BASELINE
    work();
    peak = stack_init > stack_kat ? stack_init : stack_kat;
    peak = peak > stack_round_trip ? peak : stack_round_trip;
#else
    paint();
    peak = stack_used();
    put("c-firmware-baseline: known-answer data checksum ");
    put_u(checksum());
    put("\n");
#endif
#ifdef DG_FORCE_FAILURE /* CI builds this once to see a broken image fail */
    failures++;
#endif
#ifdef DG_BASELINE
    put("c-firmware-baseline ");
#else
    put("c-firmware ");
#endif
    put(failures ? "FAILED" : "ok");
    put(" stack=");
    put_u(peak);
#ifndef DG_BASELINE
    put(" (init ");
    put_u(stack_init);
    put(", known answers ");
    put_u(stack_kat);
    put(", round trip ");
    put_u(stack_round_trip);
    put(")");
#endif
    put(" ram_group32=");
    put_u((unsigned long)dg_group_size());
    put("\n");
    return failures == 0;
}

/* --- startup ------------------------------------------------------------------------------- */
extern uint32_t _sidata[], _sdata[], _edata[], _sbss[];
void reset_handler(void);
static void fault(void) {
    put("c-firmware: fault\n");
    finish(0);
}
__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(uintptr_t)_estack, reset_handler, fault, fault, fault, fault, fault,
};
void reset_handler(void) {
    for (uintptr_t s = (uintptr_t)_sidata, d = (uintptr_t)_sdata; d < (uintptr_t)_edata; s += 4, d += 4)
        *(volatile uint32_t *)d = *(const volatile uint32_t *)s;
    for (uintptr_t d = (uintptr_t)_sbss; d < (uintptr_t)_ebss; d += 4) *(volatile uint32_t *)d = 0;
    *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20; /* CPACR: enable the FPU (hard-float ABI) */
    __asm__ volatile("dsb\n isb");
    finish(main());
}
