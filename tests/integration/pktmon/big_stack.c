/* big_stack.c - pktmon style: nclose(sktid) fills and checks a local array of
 * sktid * 1000 bytes. pktmon's builds have wasm-ld's 64 KiB stack, so 40 KB locals work;
 * beyond the stack the access must trap (a crash), never overwrite the static data
 * (rv 3 = the string below was overwritten, 5 = the array did not hold). */
#include "monitor_helper.h"
#include "pktlab.h"
#include "string.h"

static const char canary[] = "static data intact";

int32_t check_pktlab_message_nclose(uint8_t sktid, void *persistent_memory,
                                    uint32_t persistent_memory_len) {
    uint32_t n = sktid * 1000u;
    volatile uint8_t big[n];
    for (uint32_t i = 0; i < n; i++)
        big[i] = (uint8_t)(i * 7);
    uint32_t good = 0;
    for (uint32_t i = 0; i < n; i++)
        good += big[i] == (uint8_t)(i * 7);
    if (strcmp(canary, "static data intact") != 0)
        return 3;
    return good == n ? 0 : 5;
}
