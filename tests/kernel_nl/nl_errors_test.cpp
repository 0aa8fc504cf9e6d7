// One mapping from libnl's NLE_* codes to errno (nle_to_errno) and one Error built from a libnl
// code (libnl_error): every code of netlink/errno.h, checked against libnl's own errno -> NLE_*
// mapping (nl_syserr2nlerr) where there is one.
#include <netlink/errno.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>
#include <set>

#include "nl_socket.hpp"

using flowshaper::kernel::detail::libnl_error;
using flowshaper::kernel::detail::nle_to_errno;
using flowshaper::kernel::detail::ObjectKind;

TEST_CASE("every libnl error code maps to a real errno, the same for -code and code") {
    CHECK(nle_to_errno(NLE_SUCCESS) == 0);
    for (int code = 1; code <= NLE_MAX; ++code) {
        INFO("NLE code " << code << " (" << nl_geterror(code) << ")");
        int err = nle_to_errno(-code);
        CHECK(err > 0);
        CHECK(nle_to_errno(code) == err);
        CHECK(std::string(std::strerror(err)).rfind("Unknown error", 0) == std::string::npos);
        // Only the unspecific failure is the catch-all.
        if (code != NLE_FAILURE) CHECK(err != EIO);
    }
    CHECK(nle_to_errno(NLE_FAILURE) == EIO);
    CHECK(nle_to_errno(-(NLE_MAX + 1)) == EIO);
}

TEST_CASE("an errno that libnl turned into its own code comes back as that errno's code") {
    // libnl maps errnos to NLE_* codes (nl_syserr2nlerr); our mapping must land in the same class,
    // whichever errno libnl started from (ENOBUFS and ENOMEM are both NLE_NOMEM, for instance).
    int checked = 0;
    for (int err = 1; err < 134; ++err) {
        int code = nl_syserr2nlerr(err);
        if (code == NLE_FAILURE) continue;
        INFO("errno " << err << " (" << std::strerror(err) << ") -> NLE code " << code);
        CHECK(nl_syserr2nlerr(nle_to_errno(-code)) == code);
        ++checked;
    }
    CHECK(checked >= 20);
}

TEST_CASE("the permission codes, and only they, read as EPERM or EACCES") {
    CHECK(nle_to_errno(-NLE_PERM) == EPERM);
    CHECK(nle_to_errno(-NLE_NOACCESS) == EACCES);
    CHECK(nle_to_errno(-NLE_PERM) != ENOSPC);  // -NLE_PERM is 28, which as an errno is ENOSPC
    std::set<int> permission_codes;
    for (int code = 1; code <= NLE_MAX; ++code) {
        int err = nle_to_errno(-code);
        if (err == EPERM || err == EACCES) permission_codes.insert(code);
    }
    CHECK(permission_codes == std::set<int>{NLE_NOACCESS, NLE_PERM});
}

TEST_CASE("NLE_PERM becomes an error that says CAP_NET_ADMIN is needed") {
    auto e = libnl_error("list links", "", -NLE_PERM);
    CHECK(e.code == EPERM);
    CHECK(e.text().find("needs CAP_NET_ADMIN") != std::string::npos);
    CHECK(e.text().find(std::strerror(EPERM)) != std::string::npos);
    CHECK(e.text().find(nl_geterror(NLE_PERM)) != std::string::npos);
    auto busy = libnl_error("delete class", "eth0 f5:2", -NLE_BUSY, ObjectKind::Class, true);
    CHECK(busy.code == EBUSY);
    CHECK(busy.text() ==
          std::string("delete class eth0 f5:2: ") + std::strerror(EBUSY) +
              " (still referenced by a filter or child class) [libnl: " + nl_geterror(NLE_BUSY) + "]");
    auto nomem = libnl_error("create class", "eth0 f5:2", -NLE_NOMEM, ObjectKind::Class);
    CHECK(nomem.code == ENOMEM);
    CHECK(nomem.text().find("CAP_NET_ADMIN") == std::string::npos);
}
