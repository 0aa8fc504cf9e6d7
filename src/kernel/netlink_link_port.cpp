#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>

#include <cstring>
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

Result<std::vector<std::string>> LinkPort::devices() {
    auto all = links();
    if (!all) return all.error();
    std::vector<std::string> names;
    for (auto& l : *all) names.push_back(std::move(l.name));
    return names;
}

FakeLinkPort::FakeLinkPort(std::vector<std::string> names, std::vector<net::Address> addresses)
    : addresses_(std::move(addresses)) {
    for (const auto& n : names) add(n);
}

void FakeLinkPort::add(const std::string& name) {
    remove(name);
    links_.push_back({name, next_ifindex_++});
}

void FakeLinkPort::remove(const std::string& name) {
    std::erase_if(links_, [&](const LinkInfo& l) { return l.name == name; });
}

Result<std::vector<LinkInfo>> NetlinkLinkPort::links() {
    std::unique_ptr<nl_sock, SockFree> sock(nl_socket_alloc());
    if (!sock) return make_error("list links", "", ENOMEM, "out of memory");
    if (int err = nl_connect(sock.get(), NETLINK_ROUTE); err < 0)
        return make_error("list links", "", -err, nl_geterror(err));
    nl_cache* raw = nullptr;
    if (int err = rtnl_link_alloc_cache(sock.get(), AF_UNSPEC, &raw); err < 0)
        return make_error("list links", "", -err, nl_geterror(err));
    std::unique_ptr<nl_cache, CacheFree> cache(raw);
    std::vector<LinkInfo> out;
    for (nl_object* o = nl_cache_get_first(cache.get()); o; o = nl_cache_get_next(o)) {
        auto* link = reinterpret_cast<rtnl_link*>(o);
        if (const char* name = rtnl_link_get_name(link)) out.push_back({name, rtnl_link_get_ifindex(link)});
    }
    return out;
}

Result<std::vector<net::Address>> NetlinkLinkPort::local_addresses() {
    std::unique_ptr<nl_sock, SockFree> sock(nl_socket_alloc());
    if (!sock) return make_error("list addresses", "", ENOMEM, "out of memory");
    if (int err = nl_connect(sock.get(), NETLINK_ROUTE); err < 0)
        return make_error("list addresses", "", -err, nl_geterror(err));
    nl_cache* raw = nullptr;
    if (int err = rtnl_addr_alloc_cache(sock.get(), &raw); err < 0)
        return make_error("list addresses", "", -err, nl_geterror(err));
    std::unique_ptr<nl_cache, CacheFree> cache(raw);
    std::vector<net::Address> out;
    for (nl_object* o = nl_cache_get_first(cache.get()); o; o = nl_cache_get_next(o)) {
        nl_addr* local = rtnl_addr_get_local(reinterpret_cast<rtnl_addr*>(o));
        if (!local) continue;
        net::Address a;
        int family = nl_addr_get_family(local);
        unsigned len = nl_addr_get_len(local);
        if (family == AF_INET && len == 4) {
            a.family = net::Family::V4;
        } else if (family == AF_INET6 && len == 16) {
            a.family = net::Family::V6;
        } else {
            continue;
        }
        std::memcpy(a.bytes.data(), nl_addr_get_binary_addr(local), len);
        out.push_back(a);
    }
    return out;
}

}  // namespace flowshaper::kernel
