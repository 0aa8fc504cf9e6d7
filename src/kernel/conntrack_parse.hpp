// Reading one ctnetlink conntrack message (dump reply or event) straight into a FlowSample.
//
// libnetfilter_conntrack's nfct_nlmsg_parse() fills a ~400-byte nf_conntrack object with every
// attribute; on a 100,000-entry dump that parse alone cost as much as the kernel's whole reply
// (bench/conntrack_poll.cpp). This reader walks the attributes once and keeps only the few that
// flowshaper needs; tests/kernel_conntrack checks it against nfct_nlmsg_parse() on real entries.
#pragma once

#include <linux/netlink.h>

#include <cstddef>

#include "flowshaper/kernel/conntrack_port.hpp"

namespace flowshaper::kernel {

enum class CtMessageKind { Other, New, Update, Destroy };

// Kind of a ctnetlink message from its type and flags (NEW with NLM_F_CREATE is a new entry).
CtMessageKind conntrack_message_kind(const nlmsghdr* nlh);

// Fills `out` from a message of the conntrack subsystem; `assured` (optional) gets IPS_ASSURED.
// Returns false for malformed messages and for families other than IPv4/IPv6.
bool parse_conntrack_message(const nlmsghdr* nlh, FlowSample& out, bool* assured = nullptr);

}  // namespace flowshaper::kernel
