/* The density benchmark's function: a static program that does nothing and
 * stays resident until killed, so an idle warm sandbox is measured with a
 * process in it, as a `lambda` or `http` function's sandbox has. */
#include <unistd.h>

int main(void)
{
    for (;;)
        pause();
}
