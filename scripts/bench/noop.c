/* The trivial function every process-start benchmark runs: exits 0 at once.
 * Built with `gcc -static -O2` so it needs nothing from the rootfs it runs in
 * (crun's bundle holds this file alone), and so dynamic loading is not part
 * of what is measured. */
int main(void)
{
    return 0;
}
