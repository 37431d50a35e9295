/*
 * Replays fuzz inputs without libFuzzer: each file given is passed to
 * LLVMFuzzerTestOneInput once, and reported as a TAP line. A failed
 * property aborts, which prove counts as a failure.
 */

#include <stdio.h>
#include <stdlib.h>


int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);


int
main(int argc, char **argv)
{
    int             i;
    long            len;
    FILE           *f;
    unsigned char  *buf;

    printf("1..%d\n", argc - 1);

    for (i = 1; i < argc; i++) {
        f = fopen(argv[i], "rb");

        if (f == NULL || fseek(f, 0, SEEK_END) != 0
            || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
        {
            printf("not ok %d - %s: cannot read\n", i, argv[i]);
            continue;
        }

        buf = malloc((size_t) len + 1);

        if (buf == NULL || fread(buf, 1, (size_t) len, f) != (size_t) len) {
            printf("not ok %d - %s: cannot read\n", i, argv[i]);
            fclose(f);
            free(buf);
            continue;
        }

        fclose(f);
        fflush(stdout);
        LLVMFuzzerTestOneInput(buf, (size_t) len);
        free(buf);
        printf("ok %d - %s\n", i, argv[i]);
    }

    return 0;
}
