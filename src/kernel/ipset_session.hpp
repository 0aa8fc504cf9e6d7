// libipset in-process (no exec of ipset): one RAII session per call, created in the calling
// thread's network namespace, commands in the ipset command language, output and the library's
// error text captured. Plus the kernel's set name <-> index lookup that xt_set rules need (the
// SO_IP_SET socket option, as libxt_set does it).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "flowshaper/common/result.hpp"

struct ipset;

namespace flowshaper::kernel::ipset {

class Session {
public:
    // A fresh session (its netlink socket belongs to the namespace current now).
    static Result<Session> open();

    // Runs one command line ("create S hash:ip family inet", "add -exist S 192.0.2.7", "save",
    // "list -n", ...) and returns what it printed. On failure the error carries the operation, the
    // object, an errno read from the library's text, and that text.
    Result<std::string> run(const std::string& line, const std::string& operation, const std::string& object);

private:
    struct Free {
        void operator()(struct ::ipset* handle) const;
    };
    explicit Session(std::unique_ptr<struct ::ipset, Free> handle) : handle_(std::move(handle)) {}
    std::unique_ptr<struct ::ipset, Free> handle_;
};

// The kernel's index of set `name` (what an xt_set match carries); ENOENT when there is none.
Result<uint16_t> index_of(const std::string& name);
// The name of the set with kernel index `index`; ENOENT when there is none.
Result<std::string> name_of(uint16_t index);

// The errno the library's message stands for (it reports text, not numbers).
int errno_of(const std::string& text);

}  // namespace flowshaper::kernel::ipset
