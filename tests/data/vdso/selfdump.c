/* Write this process's own vDSO image, its special maps lines and its auxv into a directory:
 *   selfdump DIR  ->  DIR/vdso.so  DIR/maps.txt  DIR/auxv.bin
 * The image is the whole [vdso] mapping starting at getauxval(AT_SYSINFO_EHDR).
 * Build with -m64 or -m32 to get either bitness. */
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>

static FILE *out(const char *dir, const char *name)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	return fopen(path, "wb");
}

int main(int argc, char **argv)
{
	unsigned long base = getauxval(AT_SYSINFO_EHDR), start, end, size = 0;
	char line[512], buf[4096];
	size_t n;
	FILE *in, *o;

	if (argc != 2 || !base)
		return 2;
	in = fopen("/proc/self/maps", "r");
	o = out(argv[1], "maps.txt");
	if (!in || !o)
		return 1;
	while (fgets(line, sizeof line, in)) {
		if (!strstr(line, "[vdso]") && !strstr(line, "[vvar"))
			continue;
		fputs(line, o);
		if (sscanf(line, "%lx-%lx", &start, &end) == 2 && start == base)
			size = end - start;
	}
	fclose(in);
	fclose(o);
	if (!size)
		return 1;

	o = out(argv[1], "vdso.so");
	if (!o || fwrite((void *)base, 1, size, o) != size)
		return 1;
	fclose(o);

	in = fopen("/proc/self/auxv", "rb");
	o = out(argv[1], "auxv.bin");
	if (!in || !o)
		return 1;
	while ((n = fread(buf, 1, sizeof buf, in)) > 0)
		fwrite(buf, 1, n, o);
	fclose(in);
	fclose(o);
	return 0;
}
