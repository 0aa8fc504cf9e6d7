#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>

#include <cstring>
#include <memory>

#include "flowshaper/kernel/link_port.hpp"
#include "nl_socket.hpp"

namespace flowshaper::kernel {

namespace {

using detail::CachePtr;
using detail::NlSocket;

// Fills a libnl cache on a fresh socket of the calling thread's namespace; errors carry the
// kernel's errno (or libnl's, mapped) and its hint.
template <typename Alloc>
Result<CachePtr> fill_cache(const char* operation, Alloc alloc) {
    auto sock = NlSocket::open();
    if (!sock) return make_error(operation, "", sock.error().code, sock.error().text());
    nl_cache* raw = nullptr;
    (*sock)->reset_errno();
    if (int err = alloc((*sock)->get(), &raw); err < 0) {
        int e = (*sock)->errno_for(err);
        return make_error(operation, "", e, detail::errno_detail(e, detail::ObjectKind::Device, false));
    }
    return CachePtr(raw);
}

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
    auto cache = fill_cache("list links", [](nl_sock* sock, nl_cache** raw) {
        return rtnl_link_alloc_cache(sock, AF_UNSPEC, raw);
    });
    if (!cache) return cache.error();
    std::vector<LinkInfo> out;
    for (nl_object* o = nl_cache_get_first(cache->get()); o; o = nl_cache_get_next(o)) {
        auto* link = reinterpret_cast<rtnl_link*>(o);
        if (const char* name = rtnl_link_get_name(link)) out.push_back({name, rtnl_link_get_ifindex(link)});
    }
    return out;
}

Result<std::vector<net::Address>> NetlinkLinkPort::local_addresses() {
    auto cache = fill_cache("list addresses", &rtnl_addr_alloc_cache);
    if (!cache) return cache.error();
    std::vector<net::Address> out;
    for (nl_object* o = nl_cache_get_first(cache->get()); o; o = nl_cache_get_next(o)) {
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
