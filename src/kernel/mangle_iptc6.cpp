// The IPv6 flavour of libiptc (ip6tc_*) as an IptcApi.
#include <climits>

// Unlike libiptc.h, libip6tc.h declares its functions without extern "C".
extern "C" {
#include <libiptc/libip6tc.h>
}

#include "mangle_iptc.hpp"

namespace flowshaper::kernel::mangle {

namespace {

const ip6t_entry* entry(const void* e) {
    return static_cast<const ip6t_entry*>(e);
}

}  // namespace

const IptcApi& ip6tc_api() {
    static const IptcApi api{
        [](const char* t) { return ip6tc_init(t); },
        [](xtc_handle* h) { ip6tc_free(h); },
        [](const char* c, xtc_handle* h) { return ip6tc_is_chain(c, h); },
        [](const char* c, xtc_handle* h) -> const void* { return ip6tc_first_rule(c, h); },
        [](const void* e, xtc_handle* h) -> const void* { return ip6tc_next_rule(entry(e), h); },
        [](const void* e, xtc_handle* h) { return ip6tc_get_target(entry(e), h); },
        [](const char* c, xtc_handle* h) { return ip6tc_create_chain(c, h); },
        [](const char* c, xtc_handle* h) { return ip6tc_delete_chain(c, h); },
        [](const char* c, const void* e, unsigned n, xtc_handle* h) {
            return ip6tc_insert_entry(c, entry(e), n, h);
        },
        [](const char* c, const void* e, unsigned n, xtc_handle* h) {
            return ip6tc_replace_entry(c, entry(e), n, h);
        },
        [](const char* c, const void* e, xtc_handle* h) { return ip6tc_append_entry(c, entry(e), h); },
        [](const char* c, unsigned n, xtc_handle* h) { return ip6tc_delete_num_entry(c, n, h); },
        [](xtc_handle* h) { return ip6tc_commit(h); },
        [](int err) { return ip6tc_strerror(err); },
    };
    return api;
}

}  // namespace flowshaper::kernel::mangle
