#include "ipset_session.hpp"

#include <libipset/ipset.h>
#include <linux/netfilter/ipset/ip_set.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "session_hint.hpp"

namespace flowshaper::kernel::ipset {

void Session::Free::operator()(struct ::ipset* handle) const {
    ipset_fini(handle);
}

namespace {

std::string vformat(const char* fmt, va_list ap) {
    va_list copy;
    va_copy(copy, ap);
    const int n = std::vsnprintf(nullptr, 0, fmt, copy);
    va_end(copy);
    if (n <= 0) return {};
    std::string out(static_cast<size_t>(n) + 1, '\0');
    std::vsnprintf(out.data(), out.size(), fmt, ap);
    out.resize(static_cast<size_t>(n));
    return out;
}

struct Text {
    std::string out;
    std::string error;
};

int print_out(struct ipset_session* /*session*/, void* p, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    static_cast<Text*>(p)->out += vformat(fmt, ap);
    va_end(ap);
    return 0;
}

// Parse errors of the command line (flowshaper writes its lines itself: a bug if it happens).
int custom_error(struct ::ipset* /*handle*/, void* p, int status, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    static_cast<Text*>(p)->error += vformat(fmt, ap);
    va_end(ap);
    return status == IPSET_NO_PROBLEM ? 0 : -1;
}

// Errors the kernel or the session reported (the set exists, the element is not there, ...).
int standard_error(struct ::ipset* handle, void* p) {
    struct ipset_session* session = ipset_session(handle);
    const char* msg = ipset_session_report_msg(session);
    const bool warning = ipset_session_report_type(session) == IPSET_WARNING;
    if (msg && *msg && !warning) static_cast<Text*>(p)->error += msg;
    ipset_session_report_reset(session);
    return warning ? 0 : -1;
}

std::string hint(int err) {
    return detail::session_hint(
        err, {{EPROTONOSUPPORT, "the kernel lacks ip_set or the hash:ip type: use firewall = \"nftables\""},
              {EBUSY, "a rule that is not flowshaper's still refers to the set; remove it first"}});
}

}  // namespace

int errno_of(const std::string& text) {
    const std::pair<const char*, int> known[] = {{"already exists", EEXIST},
                                                 {"it's already added", EEXIST},
                                                 {"does not exist", ENOENT},
                                                 {"it's not added", ENOENT},
                                                 {"in use by a kernel component", EBUSY},
                                                 {"Operation not permitted", EPERM},
                                                 {"Permission denied", EACCES},
                                                 {"must be root", EPERM},
                                                 {"not supported", EPROTONOSUPPORT},
                                                 {"Cannot open session to kernel", EPROTONOSUPPORT},
                                                 {"resolving to IPv4 address failed", EAFNOSUPPORT},
                                                 {"resolving to IPv6 address failed", EAFNOSUPPORT}};
    for (const auto& [needle, err] : known)
        if (text.find(needle) != std::string::npos) return err;
    return EINVAL;
}

Result<Session> Session::open() {
    static std::once_flag types;
    std::call_once(types, [] { ipset_load_types(); });
    std::unique_ptr<struct ::ipset, Free> handle(ipset_init());
    if (!handle)
        return make_error("initialise", "libipset", errno ? errno : ENOMEM,
                          "ipset_init failed (no netlink socket to the kernel's ip_set?)");
    return Session(std::move(handle));
}

Result<std::string> Session::run(const std::string& line, const std::string& operation,
                                 const std::string& object) {
    Text text;
    ipset_custom_printf(handle_.get(), custom_error, standard_error, print_out, &text);
    std::string copy = line;  // the library parses the line in place
    const int rc = ipset_parse_line(handle_.get(), copy.data());
    // The library can report an error and still return 0 (a parse error of an element).
    if (rc == 0 && text.error.empty()) return std::move(text.out);
    while (!text.error.empty() && (text.error.back() == '\n' || text.error.back() == ' '))
        text.error.pop_back();
    if (text.error.empty()) text.error = "libipset failed without a message";
    const int err = errno_of(text.error);
    return make_error(operation, object, err, text.error + hint(err));
}

namespace {

// The kernel answers SO_IP_SET on any IPv4 socket (a datagram one needs no CAP_NET_RAW).
template <typename Request>
Status ask_kernel(Request& req, const std::string& operation, const std::string& object) {
    const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return make_error(operation, object, errno, std::strerror(errno));
    socklen_t size = sizeof req;
    const int rc = getsockopt(fd, SOL_IP, SO_IP_SET, &req, &size);
    const int err = errno;
    close(fd);
    if (rc != 0) return make_error(operation, object, err, std::strerror(err) + hint(err));
    return {};
}

Result<unsigned> kernel_protocol() {
    ip_set_req_version req{};
    req.op = IP_SET_OP_VERSION;
    if (auto st = ask_kernel(req, "ask the protocol version of", "ip_set"); !st) return st.error();
    return req.version;
}

}  // namespace

Result<uint16_t> index_of(const std::string& name) {
    auto version = kernel_protocol();
    if (!version) return version.error();
    ip_set_req_get_set req{};
    req.op = IP_SET_OP_GET_BYNAME;
    req.version = *version;
    std::strncpy(req.set.name, name.c_str(), IPSET_MAXNAMELEN - 1);
    if (auto st = ask_kernel(req, "find", "ipset " + name); !st) return st.error();
    if (req.set.index == IPSET_INVALID_ID) return make_error("find", "ipset " + name, ENOENT, "no such set");
    return req.set.index;
}

Result<std::string> name_of(uint16_t index) {
    auto version = kernel_protocol();
    if (!version) return version.error();
    ip_set_req_get_set req{};
    req.op = IP_SET_OP_GET_BYINDEX;
    req.version = *version;
    req.set.index = index;
    const std::string object = "ipset #" + std::to_string(index);
    if (auto st = ask_kernel(req, "find", object); !st) return st.error();
    std::string name(req.set.name, strnlen(req.set.name, IPSET_MAXNAMELEN));
    if (name.empty()) return make_error("find", object, ENOENT, "no such set");
    return name;
}

}  // namespace flowshaper::kernel::ipset
