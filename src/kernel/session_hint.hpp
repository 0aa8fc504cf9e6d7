// Internal to the kernel module: the hint the firewall libraries' sessions (libipset, libnftables)
// append to a failure's text, so that the user reads what to do about it.
#pragma once

#include <cerrno>
#include <initializer_list>
#include <string>

namespace flowshaper::kernel::detail {

// An errno and what the user can do about it.
struct ErrnoHint {
    int err;
    const char* hint;
};

// " (<hint>)" for `err`: the missing capability for EPERM and EACCES, else the session's own hint
// for `err` from `own`, else "".
inline std::string session_hint(int err, std::initializer_list<ErrnoHint> own) {
    if (err == EPERM || err == EACCES)
        return " (flowshaper needs CAP_NET_ADMIN: run it as root or grant the capability)";
    for (const ErrnoHint& h : own)
        if (h.err == err) return std::string(" (") + h.hint + ")";
    return "";
}

}  // namespace flowshaper::kernel::detail
