/*
 * spinner: counts as fast as it can in the first word of the file argv[1] (mapped shared),
 * never entering the kernel, so that the count shows whether it ran at all: a process
 * stopped by job control and dumped must not count again before SIGCONT.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int fd = argc > 1 ? open(argv[1], O_RDWR) : -1;
    volatile uint64_t *count = fd < 0 ? MAP_FAILED
        : mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (count == MAP_FAILED)
        return 2;
    write(1, "READY\n", 6);
    for (;;)
        (*count)++;
}
