/* What a first touch of fresh memory costs on this machine: mallocs and fills 2,000
 * blocks of 150 KB (the size of a checkpoint chunk before docs/checkpoints.md's change)
 * and prints the blocks that took over 1 ms, then the average and the worst.
 * Build and run: gcc -O2 scripts/page_faults.c -o /tmp/page_faults && /tmp/page_faults */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(void) {
    const int blocks = 2000;
    const size_t size = 150000;
    double worst = 0, total = 0;
    for (int i = 0; i < blocks; i++) {
        double start = now_ms();
        char *p = malloc(size);
        memset(p, 1, size);
        double took = now_ms() - start;
        total += took;
        if (took > worst) worst = took;
        if (took > 1) printf("block %d: %.2f ms\n", i, took);
    }
    printf("average %.3f ms, worst %.2f ms\n", total / blocks, worst);
    return 0;
}
