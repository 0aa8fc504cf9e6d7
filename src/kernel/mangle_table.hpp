// One snapshot of the mangle table of one family, edited in memory and committed at once: the
// shape of libiptc's handle (init ... edits ... commit), so that the convergence logic in
// mangle_engine runs unchanged against libiptc (mangle_iptc.cpp) and the fake (mangle_fake.cpp).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "flowshaper/common/net.hpp"
#include "flowshaper/common/result.hpp"
#include "mangle_xt_rules.hpp"

namespace flowshaper::kernel::mangle {

struct TableRule {
    Bytes entry;         // ipt_entry / ip6t_entry + matches + target, as the table holds it
    std::string target;  // the target's name; for a jump, the chain jumped to
};

class MangleTable {
public:
    virtual ~MangleTable() = default;

    virtual bool has_chain(const std::string& chain) = 0;
    virtual std::vector<TableRule> rules(const std::string& chain) = 0;
    virtual Status create_chain(const std::string& chain) = 0;
    virtual Status delete_chain(const std::string& chain) = 0;
    // Positions are 0-based.
    virtual Status insert(const std::string& chain, unsigned position, const Bytes& entry) = 0;
    virtual Status replace(const std::string& chain, unsigned position, const Bytes& entry) = 0;
    virtual Status append(const std::string& chain, const Bytes& entry) = 0;
    virtual Status erase(const std::string& chain, unsigned position) = 0;
    // Replaces the kernel's table with this snapshot. EAGAIN: the kernel's table changed since
    // the snapshot was taken; open a new one and redo the edits.
    virtual Status commit() = 0;

    // The kernel's sets that xt_set rules refer to by index: the index of set `name` (ENOENT
    // when it does not exist) and the name of the set with index `index`.
    virtual Result<uint16_t> set_index(const std::string& name) = 0;
    virtual Result<std::string> set_name(uint16_t index) = 0;
};

// Takes snapshots. The real one holds the xtables lock for as long as the snapshot lives.
class MangleTableSource {
public:
    virtual ~MangleTableSource() = default;
    virtual Result<std::unique_ptr<MangleTable>> open(net::Family family) = 0;
};

// "mangle (IPv4)" / "mangle (IPv6)": the object named in errors.
std::string table_name(net::Family family);

// The library's or kernel's text for `err` plus what the user can do about it.
std::string explain(int err, const std::string& library_text);

}  // namespace flowshaper::kernel::mangle
