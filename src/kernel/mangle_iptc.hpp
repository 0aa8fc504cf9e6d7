// libiptc's two flavours (libip4tc: iptc_*, libip6tc: ip6tc_*) behind one table of functions, so
// that one MangleTable implementation serves both. Each flavour lives in its own translation
// unit (mangle_iptc4.cpp, mangle_iptc6.cpp): their headers are not meant to meet.
#pragma once

#include <cstddef>

struct xtc_handle;

namespace flowshaper::kernel::mangle {

struct IptcApi {
    xtc_handle* (*init)(const char* table);
    void (*free)(xtc_handle* h);
    int (*is_chain)(const char* chain, xtc_handle* h);
    const void* (*first_rule)(const char* chain, xtc_handle* h);
    const void* (*next_rule)(const void* prev, xtc_handle* h);
    const char* (*get_target)(const void* entry, xtc_handle* h);
    int (*create_chain)(const char* chain, xtc_handle* h);
    int (*delete_chain)(const char* chain, xtc_handle* h);
    int (*insert)(const char* chain, const void* entry, unsigned position, xtc_handle* h);
    int (*replace)(const char* chain, const void* entry, unsigned position, xtc_handle* h);
    int (*append)(const char* chain, const void* entry, xtc_handle* h);
    int (*erase)(const char* chain, unsigned position, xtc_handle* h);
    int (*commit)(xtc_handle* h);
    const char* (*strerror)(int err);
};

const IptcApi& ip4tc_api();
const IptcApi& ip6tc_api();

}  // namespace flowshaper::kernel::mangle
