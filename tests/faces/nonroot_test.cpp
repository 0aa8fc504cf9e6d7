// Needs root to switch users: labelled "kernel" with the other privileged tests.
#include <sys/stat.h>
#include <sys/wait.h>

#include <thread>

#include "faces_harness.hpp"

using namespace flowshaper;
using namespace flowshaper::faces_test;

TEST_CASE("a user other than the daemon's cannot connect to the status socket") {
    REQUIRE(geteuid() == 0);
    Harness h;
    REQUIRE(chmod(h.dir.path.c_str(), 0755) == 0);  // only the socket's own mode may stop them
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        if (setgid(65534) != 0 || setuid(65534) != 0) _exit(100);
        Client c(h.path);
        _exit(c.fd >= 0 ? 0 : c.error);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == EACCES);
    Client root(h.path);  // the same connect as root works: the test can tell the difference
    CHECK(root.fd >= 0);
}
