/*
 * unsaved MODE: holds one piece of state torpor does not save yet, so a dump must refuse it
 * and leave the process running.  MODE is alarm (ITIMER_REAL via alarm(2)), itimer-prof,
 * posix-timer (timer_create, armed) or seccomp (an allow-all filter).  On SIGUSR1 it checks
 * that the state is still in place and prints PASS.
 */
#include "common.h"

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/time.h>
#include <time.h>

static void arm_seccomp(void)
{
    struct sock_filter allow[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
    struct sock_fprog prog = {.len = 1, .filter = allow};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0)
        FAIL_ERRNO("seccomp filter");
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    timer_t timer;
    struct itimerval it = {.it_value = {.tv_sec = 1000}};
    workload_init("unsaved", 0);
    if (strcmp(mode, "alarm") == 0) {
        alarm(1000);
    } else if (strcmp(mode, "itimer-prof") == 0) {
        if (setitimer(ITIMER_PROF, &it, NULL) != 0)
            FAIL_ERRNO("setitimer");
    } else if (strcmp(mode, "posix-timer") == 0) {
        struct sigevent ev = {.sigev_notify = SIGEV_NONE};
        struct itimerspec spec = {.it_value = {.tv_sec = 1000}};
        if (timer_create(CLOCK_MONOTONIC, &ev, &timer) != 0 || timer_settime(timer, 0, &spec, NULL) != 0)
            FAIL_ERRNO("timer_create");
    } else if (strcmp(mode, "seccomp") == 0) {
        arm_seccomp();
    } else {
        fail("unknown mode '%s' (alarm, itimer-prof, posix-timer, seccomp)", mode);
    }
    ready();
    wait_for_usr1();
    if (strcmp(mode, "alarm") == 0 && alarm(0) == 0)
        fail("the alarm is no longer armed");
    if (strcmp(mode, "posix-timer") == 0) {
        struct itimerspec left;
        if (timer_gettime(timer, &left) != 0 || left.it_value.tv_sec == 0)
            fail("the POSIX timer is no longer armed");
    }
    if (strcmp(mode, "seccomp") == 0 && prctl(PR_GET_SECCOMP) != 2)
        fail("the seccomp filter is gone");
    finish();
}
