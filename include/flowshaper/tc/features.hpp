// Which optional tc kinds the running kernel has: a value type. The kernel module finds it out
// (TcPort::features()); plan decides with it (plan::resolve) without touching the kernel.
#pragma once

#include <string>

namespace flowshaper::tc {

struct Features {
    bool cls_fw = false;
    bool fq_codel = false;
    bool sfq = false;
    std::string source;  // how it was found out: "/proc/config.gz", "netlink probe", ...
};

}  // namespace flowshaper::tc
