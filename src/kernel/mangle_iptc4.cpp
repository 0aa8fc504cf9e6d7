// The IPv4 flavour of libiptc (iptc_*) as an IptcApi.
#include <libiptc/libiptc.h>

#include "mangle_iptc.hpp"

namespace flowshaper::kernel::mangle {

namespace {

const ipt_entry* entry(const void* e) {
    return static_cast<const ipt_entry*>(e);
}

}  // namespace

const IptcApi& ip4tc_api() {
    static const IptcApi api{
        [](const char* t) { return iptc_init(t); },
        [](xtc_handle* h) { iptc_free(h); },
        [](const char* c, xtc_handle* h) { return iptc_is_chain(c, h); },
        [](const char* c, xtc_handle* h) -> const void* { return iptc_first_rule(c, h); },
        [](const void* e, xtc_handle* h) -> const void* { return iptc_next_rule(entry(e), h); },
        [](const void* e, xtc_handle* h) { return iptc_get_target(entry(e), h); },
        [](const char* c, xtc_handle* h) { return iptc_create_chain(c, h); },
        [](const char* c, xtc_handle* h) { return iptc_delete_chain(c, h); },
        [](const char* c, const void* e, unsigned n, xtc_handle* h) {
            return iptc_insert_entry(c, entry(e), n, h);
        },
        [](const char* c, const void* e, unsigned n, xtc_handle* h) {
            return iptc_replace_entry(c, entry(e), n, h);
        },
        [](const char* c, const void* e, xtc_handle* h) { return iptc_append_entry(c, entry(e), h); },
        [](const char* c, unsigned n, xtc_handle* h) { return iptc_delete_num_entry(c, n, h); },
        [](xtc_handle* h) { return iptc_commit(h); },
        [](int err) { return iptc_strerror(err); },
    };
    return api;
}

}  // namespace flowshaper::kernel::mangle
