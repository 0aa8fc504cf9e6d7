#include <netlink/netlink.h>
#include <netlink/route/link.h>

#include <memory>

#include "flowshaper/kernel/link_port.hpp"

namespace flowshaper::kernel {

namespace {

struct SockFree {
    void operator()(nl_sock* s) const { nl_socket_free(s); }
};
struct CacheFree {
    void operator()(nl_cache* c) const { nl_cache_free(c); }
};

}  // namespace

Result<std::vector<std::string>> NetlinkLinkPort::devices() {
    std::unique_ptr<nl_sock, SockFree> sock(nl_socket_alloc());
    if (!sock) return make_error("list links", "", ENOMEM, "out of memory");
    if (int err = nl_connect(sock.get(), NETLINK_ROUTE); err < 0)
        return make_error("list links", "", -err, nl_geterror(err));
    nl_cache* raw = nullptr;
    if (int err = rtnl_link_alloc_cache(sock.get(), AF_UNSPEC, &raw); err < 0)
        return make_error("list links", "", -err, nl_geterror(err));
    std::unique_ptr<nl_cache, CacheFree> cache(raw);
    std::vector<std::string> names;
    for (nl_object* o = nl_cache_get_first(cache.get()); o; o = nl_cache_get_next(o))
        if (const char* name = rtnl_link_get_name(reinterpret_cast<rtnl_link*>(o))) names.emplace_back(name);
    return names;
}

}  // namespace flowshaper::kernel
